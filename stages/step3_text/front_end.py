"""The text front-end over one shard of utterances: normalisation, then G2P batched per language.

Returns, per ``utt_id``, ``(normalized_text, tokens)`` or the ``InvalidTranscript`` that rejects it, so the
shard runner writes a ledger row naming the rule that failed instead of crashing.
"""

from __future__ import annotations

from collections import defaultdict

from ttsprep.stages.core.config import TextConfig
from ttsprep.stages.core.errors import InvalidTranscript
from ttsprep.stages.core.records import Utterance
from ttsprep.stages.step3_text import normalize_text, phonemize_batch

TextResult = tuple[str | None, list[str] | None] | InvalidTranscript


def front_end(utterances: list[Utterance], config: TextConfig) -> dict[str, TextResult]:
    """``{utt_id: (normalized, tokens) | InvalidTranscript}`` for every utterance, in one pass per language.

    The input to normalisation is the corpus's own normalised text when it has one (LibriTTS), else the
    text as given. With ``config.enabled`` false, nothing is converted: ``(corpus normalised text, None)``.
    """
    if not config.enabled:
        return {u.utt_id: (u.text_normalized, None) for u in utterances}
    results: dict[str, TextResult] = {}
    pending: dict[str, list[tuple[Utterance, str]]] = defaultdict(list)
    for utt in utterances:
        try:
            normalized = normalize_text(utt.text_normalized or utt.text, utt.language)
        except InvalidTranscript as error:
            results[utt.utt_id] = error
            continue
        pending[utt.language].append((utt, normalized))
    for language, items in pending.items():
        pinyins = [u.pinyin if config.prefer_corpus_pinyin else None for u, _ in items]
        tokens = phonemize_batch([text for _, text in items], language, pinyins)
        for (utt, normalized), result in zip(items, tokens, strict=True):
            results[utt.utt_id] = result if isinstance(result, InvalidTranscript) else (normalized, result)
    return results
