"""Labelled time intervals (a TextGrid tier) to token durations on the feature frame grid.

Frame rule. Frames are centred (``ttsprep.stages.core.frames``): frame ``t`` sits at sample ``t * hop_length`` and stands
for the cell ``[t * hop - hop / 2, t * hop + hop / 2)``. A token owns the frames whose centres fall inside
its interval, which is also the token covering the larger part of each frame's cell. A boundary at time
``b`` therefore becomes the frame index ``ceil(b * sample_rate / hop_length)`` (the number of centres before
``b``), and the boundary is recovered from that index to within half a frame as ``(k - 1/2) * hop / sr``
(``token_edges_s``). The same rule splits pause segments (``ttsprep.stages.step2_audio.silence.segment_frames``).

Durations are differences of these CUMULATIVE boundary indices, with the first forced to 0 and the last to
``num_frames``, so they sum to ``num_frames`` exactly; rounding each token's length on its own (as
ming024/FastSpeech2 does) lets the sum drift from the mel length. The last token absorbs the frames the
features add beyond the audio (the final centred frame and the padding to a multiple of ``r``).

Reduction factor ``r``: boundary frame ``k`` becomes decoder step ``floor((k + r // 2) / r)``, the nearest
multiple of ``r`` (halfway: the later one), so a group of ``r`` frames cut by one boundary goes to the token
owning most of it; durations in steps sum to ``num_frames / r``.

Trimming. The audio was cut at ``offset_s`` (``trim_start_s``) before the features were computed, while the
intervals are in the source file's time base: they are shifted by ``-offset_s``; intervals entirely
outside the frame grid ``[0, num_frames * hop / sr)`` are dropped (what trimming removed: normally edge
silence); intervals cut by an edge keep the part inside. Tokens that end with 0 frames are kept
(FastSpeech2 allows 0-duration phones) except silence at either edge, which trimming shortened to
nothing and which is dropped.
"""

from __future__ import annotations

import numpy as np

from ttsprep.aligners.base import SILENCE, Alignment, Interval
from ttsprep.stages.core.errors import AlignmentFailed, InvariantViolation
from ttsprep.stages.core.reasons import Reason

#: TextGrid times are decimal strings: frame positions are rounded to this many decimals before the ceiling,
#: so a boundary exactly on a frame centre does not move by a frame with floating-point noise.
_FRAME_TOLERANCE_DECIMALS = 6


def _frame_positions(times_s: np.ndarray, sample_rate: int, hop_length: int) -> np.ndarray:
    """Times in units of frames (``t * sample_rate / hop_length``), rounded to the tolerance."""
    return np.round(np.asarray(times_s, dtype=np.float64) * sample_rate / hop_length, _FRAME_TOLERANCE_DECIMALS)


def boundary_frames(times_s: np.ndarray, *, sample_rate: int, hop_length: int) -> np.ndarray:
    """Number of frame centres strictly before each time: int64 ``ceil(t * sample_rate / hop_length)``."""
    return np.ceil(_frame_positions(times_s, sample_rate, hop_length)).astype(np.int64)


def token_edges_s(durations: np.ndarray, *, sample_rate: int, hop_length: int, reduction_factor: int = 1) -> np.ndarray:
    """Times in seconds of the ``N - 1`` boundaries between consecutive tokens, float64 ``[N - 1]``.

    The inverse of the frame rule: a boundary before frame ``k`` lies halfway between the centres of frames
    ``k - 1`` and ``k``, at ``(k - 1/2) * hop / sr`` (clipped at 0), within half a frame of the true boundary.
    """
    frames = np.cumsum(np.asarray(durations, dtype=np.int64))[:-1] * reduction_factor
    return np.maximum((frames - 0.5) * hop_length / sample_rate, 0.0)


def intervals_to_durations(intervals: list[Interval], *, num_frames: int, sample_rate: int, hop_length: int,
                           offset_s: float = 0.0, reduction_factor: int = 1) -> Alignment:
    """Tokens and int32 durations in units of ``reduction_factor`` frames, summing to ``num_frames / r``.

    ``intervals`` tile a span in the source file's time base (as ``ttsprep.aligners.textgrid.read_tier`` returns
    them); see the module docstring for the frame rule, trimming and edge silence. Raises
    ``AlignmentFailed`` when no interval overlaps the frame grid (reason ``alignment_outside_audio``) or when
    the intervals end more than ``r`` frames before the audio does (``alignment_too_short``: a TextGrid of
    another file); ``InvariantViolation`` when ``num_frames`` is not a positive multiple of ``r``.
    """
    r = reduction_factor
    if num_frames <= 0 or r < 1 or num_frames % r:
        raise InvariantViolation(f"num_frames={num_frames} is not a positive multiple of r={r}")
    if not intervals:
        raise AlignmentFailed("the alignment has no intervals", reason=Reason.EMPTY_ALIGNMENT)
    starts = np.array([i.start_s for i in intervals], dtype=np.float64) - offset_s
    ends = np.array([i.end_s for i in intervals], dtype=np.float64) - offset_s
    if np.any(ends < starts) or not np.allclose(ends[:-1], starts[1:], rtol=0, atol=1e-6):
        raise ValueError("intervals must tile a span: each non-negative and starting where the previous ends")

    start_positions = _frame_positions(starts, sample_rate, hop_length)
    end_positions = _frame_positions(ends, sample_rate, hop_length)
    kept = np.flatnonzero((end_positions > 0) & (start_positions < num_frames))
    if kept.size == 0:
        grid_end_s = offset_s + num_frames * hop_length / sample_rate
        raise AlignmentFailed(f"no interval overlaps the audio [{offset_s:.3f}, {grid_end_s:.3f}] s "
                              f"(intervals span [{starts[0] + offset_s:.3f}, {ends[-1] + offset_s:.3f}] s)",
                              reason=Reason.ALIGNMENT_OUTSIDE_AUDIO)
    edges = np.append(start_positions[kept], end_positions[kept[-1]])
    frames = np.clip(np.ceil(edges).astype(np.int64), 0, num_frames)
    if frames[-1] < num_frames - r:
        raise AlignmentFailed(f"the alignment ends at {ends[-1] + offset_s:.3f} s, {num_frames - frames[-1]} frames "
                              f"before the audio does", reason=Reason.ALIGNMENT_TOO_SHORT)
    frames[0], frames[-1] = 0, num_frames
    durations = np.diff((frames + r // 2) // r).astype(np.int32)

    tokens = [intervals[i].label for i in kept]
    droppable = (durations == 0) & np.array([token == SILENCE for token in tokens])
    first = int(np.argmin(droppable))  # some token has frames: the durations sum to num_frames / r > 0
    last = len(tokens) - int(np.argmin(droppable[::-1]))
    return Alignment(tokens=tokens[first:last], durations=durations[first:last])
