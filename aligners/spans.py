"""An audio aligner's token spans to the shard's ``phonemes`` and ``durations``.

Tokens stay the dataset's own: every token of ``SpeechInput.tokens`` appears once, in order, with the
frames whose centres fall inside its span (``ttsprep.aligners.durations``' frame rule; a token may get 0 frames).
Pauses the aligner found become ``sil`` tokens, except a pause next to a punctuation token (``,`` ``.``
...), which becomes that mark's duration: the mark is where the text says the speaker pauses. The spans
are first made to tile ``[0, N / sample_rate)``: a gap is a pause, an overlap is cut at the later start.
"""

from __future__ import annotations

import numpy as np

from ttsprep.aligners.base import SILENCE, Alignment, Interval, SpeechInput, TokenSpan
from ttsprep.aligners.durations import intervals_to_durations
from ttsprep.stages.core.errors import AlignmentFailed
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.step3_text.g2p import PUNCTUATION

#: Pauses shorter than this (seconds) are not pauses: they go to the token before them (or after, at the start).
MIN_PAUSE_S = 0.02


def spans_to_alignment(speech: SpeechInput, spans: list[TokenSpan]) -> Alignment:
    """Durations (int32, units of ``r`` frames, summing to ``num_frames / r``) of the dataset's tokens, with
    ``sil`` inserted where the aligner found pauses (module docstring).

    Raises ``AlignmentFailed`` (reason ``alignment_failed``) when ``spans`` do not name every token exactly
    once and in order: an aligner bug must not write shifted durations.
    """
    named = [s.token for s in spans if s.token is not None]
    if named != list(range(len(speech.tokens))):
        raise AlignmentFailed(f"the aligner's spans name tokens {named[:8]}... instead of each of the "
                              f"{len(speech.tokens)} tokens once, in order", reason=Reason.ALIGNMENT_FAILED)
    end_s = speech.samples.size / speech.sample_rate
    labels: list[int | None] = []
    bounds: list[float] = []
    cursor = 0.0
    for span in spans:
        start = min(max(span.start_s, cursor), end_s)
        if start - cursor >= MIN_PAUSE_S:
            labels.append(None)
            bounds.append(cursor)
        elif labels:
            start = cursor  # a short gap goes to the previous span
        else:
            start = 0.0
        labels.append(span.token)
        bounds.append(start)
        cursor = max(start, min(span.end_s, end_s))
    if end_s - cursor >= MIN_PAUSE_S:
        labels.append(None)
        bounds.append(cursor)
    bounds.append(end_s)
    labels, bounds = _pauses_into_punctuation(labels, bounds, speech.tokens)
    intervals = [Interval(SILENCE if label is None else speech.tokens[label], float(start), float(stop))
                 for label, start, stop in zip(labels, bounds[:-1], bounds[1:])]
    return intervals_to_durations(intervals, num_frames=speech.num_frames, sample_rate=speech.sample_rate,
                                  hop_length=speech.hop_length, reduction_factor=speech.reduction_factor)


def _pauses_into_punctuation(labels: list[int | None], bounds: list[float],
                             tokens: list[str]) -> tuple[list[int | None], list[float]]:
    """Merge each pause into a neighbouring punctuation token (the one before it first), and merge
    consecutive pauses; ``bounds`` has one more entry than ``labels``."""
    def is_mark(label: int | None) -> bool:
        return label is not None and tokens[label] in PUNCTUATION

    merged_labels: list[int | None] = []
    merged_bounds: list[float] = []
    for i, label in enumerate(labels):
        previous = merged_labels[-1] if merged_labels else -1
        if label is None and (previous is None or (merged_labels and is_mark(previous))):
            continue  # absorbed by the preceding pause or mark: its end moves on
        if is_mark(label) and previous is None:
            merged_labels[-1] = label  # the pause before a mark becomes the mark
            continue
        merged_labels.append(label)
        merged_bounds.append(bounds[i])
    merged_bounds.append(bounds[-1])
    return merged_labels, list(np.asarray(merged_bounds, dtype=np.float64))
