"""Symbol tables: one multilingual phone vocabulary, and the speaker and language maps, as ``{key: id}``.

Vocabulary layout (ids in this order, so a table is a pure function of its input):

1. ``SPECIAL_TOKENS``: ``<pad>`` = 0, ``<unk>``, ``<bos>``, ``<eos>``, ``<blank>``;
2. the punctuation tokens of ``ttsprep.stages.step3_text.g2p.PUNCTUATION``, shared by every language, sorted;
3. phones, each prefixed with its language's primary subtag (``"en:ə"``, ``"zh:ao3"``, ``"ja:N"``), sorted by
   code point. The prefix keeps phones of different G2P systems apart (espeak-ng's ``a`` in French and
   OpenJTalk's ``a`` are separate symbols, ``en-US`` and ``en-GB`` share ``en:``). zh and ja have closed
   phone sets: their whole ``inventory`` is included, so ids do not depend on which phones a corpus used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from ttsprep.stages.core.atomic import atomic_path
from ttsprep.stages.step3_text.g2p import PUNCTUATION, inventory
from ttsprep.stages.step3_text.normalize import base_language

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<blank>")


def symbol(token: str, language: str) -> str:
    """The vocabulary key of a ``phonemize`` token: ``("ə", "en-US")`` -> ``"en:ə"``; punctuation as is."""
    return token if token in PUNCTUATION else f"{base_language(language)}:{token}"


def build_vocab(tokens_per_language: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """One symbol table for every language: ``{symbol: id}`` in id order (see the module doc).

    ``tokens_per_language``: language tag -> the tokens ``phonemize`` produced for it (punctuation allowed).
    """
    phones: set[str] = set()
    for language, tokens in tokens_per_language.items():
        closed = inventory(language) or frozenset()
        phones.update(symbol(t, language) for t in (*tokens, *closed) if t not in PUNCTUATION)
    ordered = [*SPECIAL_TOKENS, *sorted(PUNCTUATION), *sorted(phones)]
    return {s: i for i, s in enumerate(ordered)}


def encode(tokens: Iterable[str], language: str, vocab: Mapping[str, int]) -> list[int]:
    """Ids of ``phonemize`` tokens in ``vocab``; a symbol missing from it becomes ``<unk>``."""
    unknown = vocab["<unk>"]
    return [vocab.get(symbol(t, language), unknown) for t in tokens]


def build_speaker_map(speakers: Iterable[tuple[str, str]]) -> dict[str, int]:
    """``{"dataset:speaker": id}`` over the distinct ``(dataset, speaker)`` pairs, ids in sorted key order."""
    return {key: i for i, key in enumerate(sorted({f"{dataset}:{speaker}" for dataset, speaker in speakers}))}


def build_language_map(languages: Iterable[str]) -> dict[str, int]:
    """``{language tag: id}`` over the distinct tags as the shards hold them (``"zh-CN"``), sorted."""
    return {language: i for i, language in enumerate(sorted(set(languages)))}


def write_table(path: Path, table: Mapping[str, int]) -> None:
    """Write a ``{key: id}`` table (vocab, speakers, languages) as UTF-8 JSON in id order, atomically."""
    ordered = dict(sorted(table.items(), key=lambda item: item[1]))
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(ordered, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
