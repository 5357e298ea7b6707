"""Alignment by synthesis: espeak-ng speaks the utterance's own tokens, and DTW carries the phoneme
boundaries of that synthetic speech over to the real recording (the idea of Malfrère & Dutoit 1997 and of
Praat's ``To TextGrid (align)``), for every language espeak-ng speaks plus Japanese and Mandarin.

1. ``ttsprep.aligners.synthesis_tokens.plan_speech``: espeak's input and the phoneme events each token expects.
2. ``ttsprep.aligners.espeak_events``: the synthetic waveform and the start sample of every phoneme event.
3. Needleman-Wunsch (``ttsprep.aligners.sequence``) pairs events with tokens: a token starts at its first paired
   event; an unpaired pause event is a pause.
4. ``ttsprep.aligners.synthesis_dtw``: features of both signals on a grid of ``hop_length / 4`` samples at the
   speech's rate, banded two-pass DTW; a synthetic boundary maps to the first real frame paired with it.
   The transcript is refused when the audio is not speech or the match is past ``MAX_MISMATCH``,
   ``MAX_CONTRAST`` or ``MAX_RATIO``.
5. ``ttsprep.aligners.spans.spans_to_alignment`` makes the durations (pauses become ``sil`` or punctuation).
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

from ttsprep.aligners import synthesis_dtw
from ttsprep.aligners.base import Alignment, SpeechInput, TokenSpan
from ttsprep.aligners.espeak_events import EspeakError, Synthesis, engine
from ttsprep.aligners.sequence import align_sequences
from ttsprep.aligners.spans import spans_to_alignment
from ttsprep.aligners.synthesis_tokens import SpeechPlan, plan_speech
from ttsprep.stages.core.errors import AlignmentFailed, InvalidTranscript
from ttsprep.stages.step3_text.g2p import g2p_engine

#: Above any of these (``synthesis_dtw.Match``) the transcript is taken not to match the audio. Measured over
#: every clip of ../shared/corpora with its own transcript (bench/bench_alignment_check.py): mismatch at most
#: 1.35, contrast 1.005, ratio 0.867; each limit leaves a margin of about 0.02-0.03 above that.
MAX_MISMATCH = 1.38
MAX_CONTRAST = 1.03
MAX_RATIO = 0.89
#: ``synthesis_dtw.shape_change_db`` of the real signal below which it is not speech (speech measured
#: 4.2 dB and up, tone bursts at most 2.5).
MIN_SHAPE_CHANGE_DB = 3.2
FINE_STEPS_PER_HOP = 4


class SynthesisAligner:
    """``SpeechAligner`` by espeak-ng synthesis and DTW (module docstring); stateless, one per process is
    enough (the espeak-ng engine is shared). ``max_mismatch``, ``max_contrast``, ``max_ratio``: the limits on
    ``synthesis_dtw.Match``."""

    name = "espeak_synthesis"

    def __init__(self, *, max_mismatch: float = MAX_MISMATCH, max_contrast: float = MAX_CONTRAST,
                 max_ratio: float = MAX_RATIO):
        self.max_mismatch, self.max_contrast, self.max_ratio = max_mismatch, max_contrast, max_ratio

    def supports(self, language: str) -> bool:
        """True for ``ja``, ``zh`` and every language espeak-ng has a voice for."""
        try:
            g2p_engine(language)
        except InvalidTranscript:
            return False
        return True

    def align(self, speech: SpeechInput) -> Alignment:
        """Durations of ``speech.tokens`` (``sil`` added at pauses); raises ``AlignmentFailed``."""
        return spans_to_alignment(speech, self.spans(speech))

    def spans(self, speech: SpeechInput) -> list[TokenSpan]:
        """Where each token was heard, in seconds of ``speech.samples`` (pauses are the gaps)."""
        synth, plan = _synthesize(speech)
        labels, synth_starts = _segments(plan, synth)
        hop = max(1, speech.hop_length // FINE_STEPS_PER_HOP)
        if speech.sample_rate == synth.sample_rate:  # what resample_poly returns then (a copy): espeak-ng's 22.05 kHz
            audio = np.array(synth.samples, dtype=np.float32)
        else:
            from scipy.signal import resample_poly  # here: importing scipy.signal costs a worker ~0.65 CPU-s

            audio = resample_poly(synth.samples, speech.sample_rate, synth.sample_rate).astype(np.float32)
        synth_feats, synth_silent, _ = synthesis_dtw.features(audio, speech.sample_rate, hop)
        real_feats, real_silent, change_db = synthesis_dtw.features(speech.samples, speech.sample_rate, hop)
        path, match = synthesis_dtw.align(synth_feats, real_feats, synth_silent, real_silent)
        self._check(match, change_db)
        rows = np.minimum(np.rint(synth_starts / synth.sample_rate * speech.sample_rate / hop).astype(np.int64),
                          len(synth_feats) - 1)
        real_starts = path[np.searchsorted(path[:, 0], rows), 1] * hop / speech.sample_rate
        return _spans(labels, real_starts, len(speech.tokens), speech.samples.size / speech.sample_rate)

    def _check(self, match: synthesis_dtw.Match, change_db: float) -> None:
        """Raises ``AlignmentFailed`` when the real signal's ``shape_change_db`` (``change_db``) is too low
        for speech or ``match`` is past any limit."""
        if change_db < MIN_SHAPE_CHANGE_DB:
            raise AlignmentFailed(f"the audio does not sound like speech (spectral shape change {change_db:.1f} dB "
                                  f"< {MIN_SHAPE_CHANGE_DB} dB): a steady tone or hum?")
        for name, value, limit in (("mismatch", match.mismatch, self.max_mismatch),
                                   ("contrast", match.contrast, self.max_contrast),
                                   ("ratio", match.ratio, self.max_ratio)):
            if value > limit:
                raise AlignmentFailed(f"synthetic and real speech differ (DTW {name} {value:.3f} > {limit}): "
                                      "transcript and audio do not match?")


def _synthesize(speech: SpeechInput) -> tuple[Synthesis, SpeechPlan]:
    try:
        plan = plan_speech(speech.text, speech.tokens, speech.language)
        synth = engine().synthesize(plan.text, plan.voice)
    except InvalidTranscript:
        raise AlignmentFailed(f"espeak-ng does not speak '{speech.language}'") from None
    except KeyError as exc:
        raise AlignmentFailed(f"no espeak phoneme for token {exc} of '{speech.language}'") from None
    except EspeakError as exc:
        raise AlignmentFailed(f"espeak-ng failed: {exc}") from None
    if synth.samples.size == 0 or not synth.phonemes:
        raise AlignmentFailed("espeak-ng produced no speech")
    return synth, plan


def _segments(plan: SpeechPlan, synth: Synthesis) -> tuple[list[int | None], np.ndarray]:
    """Synthetic segments: labels (a token index, or ``None`` for a pause) and start samples (int64
    ``[S]``, at ``synth.sample_rate``). A token's segment starts at its first paired event and runs to the
    next segment; unpaired events other than pauses extend the segment they fall in."""
    units = [(k, ipa) for k, expected in enumerate(plan.expected) for ipa in expected]
    pairs = _pair(units, synth.phonemes)
    labels: list[int | None] = []
    starts: list[int] = []
    for unit, event in pairs:
        token = units[unit][0] if unit is not None else None
        if event is None or token in labels[-1:]:
            continue
        if token is not None or synth.phonemes[event] == "":
            labels.append(token)
            starts.append(int(synth.starts[event]))
    if starts:
        starts[0] = 0  # the synthetic lead-in belongs to the first segment
    return labels, np.asarray(starts, dtype=np.int64)


def _pair(units: list[tuple[int, str]], events: list[str]) -> list[tuple[int | None, int | None]]:
    """``(unit, event)`` index pairs: in order when the events other than pauses spell the units exactly
    (the usual case), else by ``align_sequences``."""
    spoken = [e for e, name in enumerate(events) if name]
    if [events[e] for e in spoken] == [ipa for _, ipa in units]:
        by_event = dict(zip(spoken, range(len(units))))
        return [(by_event.get(e), e) for e in range(len(events))]
    return align_sequences([ipa for _, ipa in units], events, _similarity)


def _similarity(expected: str, event: str) -> float:
    """2 for the same IPA, 1 for the same letters without diacritics, -1 otherwise; pauses (``""``)
    pair only with pauses."""
    if expected == event:
        return 2.0
    if not expected or not event:
        return -2.0
    return 1.0 if _letters(expected) == _letters(event) else -1.0


@functools.cache
def _letters(ipa: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", ipa)
                   if not unicodedata.combining(c) and unicodedata.category(c) != "Lm")


def _spans(labels: list[int | None], starts_s: np.ndarray, num_tokens: int, end_s: float) -> list[TokenSpan]:
    """One span per token, in order: a token with a segment spans it (to the next segment's start); one
    without (punctuation, a phone espeak skipped) is empty at the next token segment's start."""
    bounds = np.append(starts_s, end_s)
    span_of = {label: (bounds[s], bounds[s + 1]) for s, label in enumerate(labels) if label is not None}
    spans: list[TokenSpan] = []
    next_start = end_s
    for k in reversed(range(num_tokens)):
        start, end = span_of.get(k, (next_start, next_start))
        spans.append(TokenSpan(k, float(start), float(end)))
        next_start = start
    return spans[::-1]
