"""F0 clean-up on the frame grid: octave-jump correction, range folding and a periodicity voicing decision.

Measured on every clip of ``../shared/corpora`` against SPTK RAPT on each row's own audio (hop 256 at
22.05 kHz, ``bench/bench_f0_accuracy.py``), DIO + StoneMask alone voice ~10 % of frames RAPT calls unvoiced
(fricatives, breath, noise at 300-500 Hz in a male voice) and miss ~8 %, and put whole stretches of low,
creaky voices an octave up. The fix rests on what RAPT's voicing rests on, the normalised cross-correlation
(NCCF) at the F0 period, computed on the analysis-rate signal (8 kHz by default) only at the lags each
step asks for (``nccf_search``: direct dot products over a 20 ms window, compiled with numba; ~3 lags per
voiced frame, the +-17 % search for unvoiced frames near voiced ones):

1. halving: a frame whose NCCF at twice the period beats the NCCF at the period by ``HALVING_MARGIN`` is an
   octave too high (a periodic signal correlates equally at T and 2T; only a true 2T loses at T);
2. contour: a frame more than ``OCTAVE_JUMP`` octaves off the median-filtered log-F0 contour is halved or
   doubled toward it;
3. range: a value outside ``[f0_floor, f0_ceil]`` (StoneMask drifts out of DIO's range) is folded by an
   octave into it, or unvoiced; the result never holds a voiced value outside the range;
4. voicing: every frame gets a candidate (its F0, or the contour interpolated across gaps, searched within
   ``SEARCH_RATIO`` for the best-correlating lag; unvoiced ones within ``GROW_FRAMES`` of a voiced one only)
   and is voiced where the NCCF there reaches
   ``voicing_threshold`` and its energy is within ``ENERGY_RANGE_DB`` of the utterance's voiced level;
   voiced runs shorter than ``min_voiced_run`` frames are removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

#: NCCF window (s): 20 ms, two periods of a 100 Hz voice.
NCCF_WINDOW_S = 0.02
#: Halve a frame whose NCCF at 2T exceeds that at T by more than this.
HALVING_MARGIN = 0.15
#: Octaves off the median-filtered contour that count as a jump; median filter length in frames (~0.36 s).
OCTAVE_JUMP = 0.6
CONTOUR_FRAMES = 31
#: Unvoiced frames search the lags of F0 / 1.17 to F0 x 1.17 around the interpolated contour.
SEARCH_RATIO = 1.17
#: Unvoiced frames are voiced (step 4) only within this many frames of a voiced one of the track.
GROW_FRAMES = 4
#: A voiced frame's energy is at least the voiced frames' 90th percentile minus this (dB). 25 rather than 30:
#: pooled VDE vs RAPT -0.25 points, lower on 7 of 10 datasets (bench/bench_f0_accuracy.py).
ENERGY_RANGE_DB = 25.0
#: Fewer voiced frames than this: nothing to build a contour from; the track is range-checked only.
MIN_CONTOUR_FRAMES = 3


@dataclass(frozen=True)
class Periodicity:
    """What the NCCF of any frame at any lag up to ``max_lag`` is computed from (``nccf_search``): the
    analysis-rate signal, zero-padded, and where each frame's window starts in it; each frame's window energy."""

    padded: np.ndarray  # float32, the signal with ``max_lag + window`` zeros before and after
    starts: np.ndarray  # int64[T], the first sample of each frame's window in ``padded``
    window: int
    energy: np.ndarray  # float32[T], mean square of the window
    rate: int
    max_lag: int


def periodicity(signal: np.ndarray, rate: int, hop: float, num_frames: int, f0_floor: float,
                typical_f0: float | None = None) -> Periodicity:
    """``Periodicity`` of ``signal`` (``rate`` Hz; frame t centred on sample t * hop) for F0 down to
    ``f0_floor``. The windows of all lags start at one sample per frame, placed so that the lag of
    ``typical_f0`` (default: the floor's) is centred on the frame. Nothing is correlated here: ``refine_f0``
    asks ``nccf_search`` for the few lags per frame it needs."""
    max_lag = int(np.ceil(rate / f0_floor)) + 2
    window = max(8, round(NCCF_WINDOW_S * rate))
    centre_lag = max_lag if typical_f0 is None else min(max_lag, round(rate / typical_f0))
    span = window + max_lag
    padded = np.pad(np.asarray(signal, np.float32), (span, span + 1))
    starts = np.clip(np.round(np.arange(num_frames) * hop).astype(np.int64) - (window + centre_lag) // 2 + span,
                     0, padded.size - span)
    running = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    energy = (running[starts + window] - running[starts]) / window
    return Periodicity(padded, starts, window, energy.astype(np.float32), rate, max_lag)


def nccf_search(analysis: Periodicity, frames: np.ndarray, lag_lo: np.ndarray, lag_hi: np.ndarray, *,
                peaks: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``frames`` (int[n]), the lag in ``[lag_lo, lag_hi]`` (clipped to 1..max_lag - 1) with the
    highest NCCF (the first of equals), that NCCF, and with ``peaks`` the sub-sample peak lag (parabola through
    it and its neighbours; else the lag); an empty interval gives lag 0, NCCF -1. Direct dot products on the
    analysis-rate signal, only at the lags asked for (``_search``)."""
    lo = np.clip(np.asarray(lag_lo, np.int64), 1, analysis.max_lag - 1)
    hi = np.clip(np.asarray(lag_hi, np.int64), 1, analysis.max_lag - 1)
    return _search(analysis.padded, analysis.starts[np.asarray(frames, np.int64)], analysis.window, lo, hi, peaks)


@numba.njit(cache=True, nogil=True)
def _search(padded, starts, window, lo, hi, peaks):  # pragma: no cover - compiled
    n = starts.size
    best_lag = np.zeros(n, np.int64)
    best = np.full(n, -1.0)
    peak = np.zeros(n)
    for j in range(n):
        s = starts[j]
        e0 = 0.0
        for i in range(window):
            e0 += np.float64(padded[s + i]) * padded[s + i]
        previous = -1.0  # NCCF at lag - 1 while scanning
        left = -1.0
        right = -1.0
        for lag in range(lo[j], hi[j] + 1):
            value = _nccf(padded, s, window, e0, lag)
            if value > best[j]:
                best[j] = value
                best_lag[j] = lag
                left = previous
                right = -2.0  # not yet known
            elif right == -2.0:
                right = value
            previous = value
        if best_lag[j] == 0:
            continue
        peak[j] = best_lag[j]
        if peaks:
            if best_lag[j] == lo[j]:
                left = _nccf(padded, s, window, e0, lo[j] - 1)
            if right == -2.0:
                right = _nccf(padded, s, window, e0, best_lag[j] + 1)
            curvature = left - 2 * best[j] + right
            offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
            peak[j] = best_lag[j] + min(0.5, max(-0.5, offset))
    return best_lag, best, peak


@numba.njit(cache=True, nogil=True, inline="always")
def _nccf(padded, s, window, e0, lag):  # pragma: no cover - compiled
    # Four interleaved partial sums: independent chains the CPU overlaps, in a fixed order (deterministic).
    n0 = n1 = n2 = n3 = 0.0
    e_0 = e_1 = e_2 = e_3 = 0.0
    t = s + lag
    quads = window - window % 4
    for i in range(0, quads, 4):
        a0 = np.float64(padded[t + i])
        a1 = np.float64(padded[t + i + 1])
        a2 = np.float64(padded[t + i + 2])
        a3 = np.float64(padded[t + i + 3])
        n0 += padded[s + i] * a0
        n1 += padded[s + i + 1] * a1
        n2 += padded[s + i + 2] * a2
        n3 += padded[s + i + 3] * a3
        e_0 += a0 * a0
        e_1 += a1 * a1
        e_2 += a2 * a2
        e_3 += a3 * a3
    for i in range(quads, window):
        a0 = np.float64(padded[t + i])
        n0 += padded[s + i] * a0
        e_0 += a0 * a0
    return ((n0 + n1) + (n2 + n3)) / np.sqrt(max(e0 * ((e_0 + e_1) + (e_2 + e_3)), 1e-20))


def refine_f0(f0: np.ndarray, analysis: Periodicity, f0_floor: float, f0_ceil: float, *,
              voicing_threshold: float | None = 0.5, min_voiced_run: int = 3) -> np.ndarray:
    """``f0`` (Hz per frame, 0 = unvoiced) cleaned up (module docstring), every voiced value within
    ``[f0_floor, f0_ceil]``, with the ``periodicity`` of its signal (whose floor must not exceed ``f0_floor``
    by more than an octave). ``voicing_threshold=None`` skips the voicing decision. Returns float32[T]."""
    f0 = np.asarray(f0, np.float64).copy()
    f0[~np.isfinite(f0) | (f0 < 0)] = 0.0
    if not (f0 > 0).any():
        return f0.astype(np.float32)
    rate = analysis.rate

    def at(frames: np.ndarray, frequency: np.ndarray) -> np.ndarray:  # NCCF at the period, best of +-1 lag
        lag = np.clip(np.round(rate / np.maximum(frequency, 1e-3)).astype(np.int64), 1, analysis.max_lag - 1)
        return nccf_search(analysis, frames, lag - 1, lag + 1, peaks=False)[1]

    # Step 1, and the NCCF at each voiced frame's period, kept for step 4 where the F0 is not changed since.
    score = np.full(f0.size, -1.0)
    voiced = np.flatnonzero(f0 > 0)
    score[voiced] = at(voiced, f0[voiced])
    frames = voiced[f0[voiced] / 2 >= f0_floor]
    if frames.size:
        at_half = at(frames, f0[frames] / 2)
        halve = at_half > score[frames] + HALVING_MARGIN
        f0[frames[halve]] /= 2
        score[frames[halve]] = at_half[halve]
    before = f0.copy()
    _fix_octave_jumps(f0, f0_floor, f0_ceil)
    _fold_into_range(f0, f0_floor, f0_ceil)
    voiced = f0 > 0
    if voicing_threshold is not None and voiced.sum() >= MIN_CONTOUR_FRAMES:
        changed = np.flatnonzero(voiced & (f0 != before))
        score[changed] = at(changed, f0[changed])
        score[~voiced] = -1.0
        near = np.convolve(voiced, np.ones(2 * GROW_FRAMES + 1), mode="same") > 0
        off = np.flatnonzero(~voiced & near)
        if off.size:
            candidate = _interpolate_log(f0)[off]
            lag_lo = np.ceil(rate / np.minimum(candidate * SEARCH_RATIO, f0_ceil))
            lag_hi = np.floor(rate / np.maximum(candidate / SEARCH_RATIO, f0_floor))
            _, best, peak = nccf_search(analysis, off, lag_lo, lag_hi)
            gain = best > score[off]
            f0[off[gain]] = rate / peak[gain]
            score[off[gain]] = best[gain]
        level_db = 10 * np.log10(analysis.energy.astype(np.float64) + 1e-12)
        loud = level_db > np.percentile(level_db[voiced], 90) - ENERGY_RANGE_DB
        f0[~((score >= voicing_threshold) & loud)] = 0.0
        _fold_into_range(f0, f0_floor, f0_ceil)
    _remove_short_runs(f0, min_voiced_run)
    voiced = f0 > 0
    f0[voiced] = np.clip(f0[voiced], f0_floor, f0_ceil)
    return f0.astype(np.float32)


def _interpolate_log(f0: np.ndarray) -> np.ndarray:
    """Voiced values kept, unvoiced frames filled by log-linear interpolation (ends held)."""
    voiced = np.flatnonzero(f0 > 0)
    return np.exp(np.interp(np.arange(f0.size), voiced, np.log(f0[voiced])))


def _median_filter(values: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(values, size, mode="nearest")`` for 1-D ``values`` and an odd ``size``, value
    for value (the median of an odd window is one of its values), without importing scipy.ndimage (~0.2 CPU-s
    per worker)."""
    half = size // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(values, half, mode="edge"), size)
    return np.partition(windows, half, axis=1)[:, half]


def _fix_octave_jumps(f0: np.ndarray, f0_floor: float, f0_ceil: float) -> None:
    """Halve or double (in place) frames more than ``OCTAVE_JUMP`` octaves off the median-filtered contour."""
    if (f0 > 0).sum() < MIN_CONTOUR_FRAMES:
        return
    for _ in range(2):
        voiced = f0 > 0
        contour = _median_filter(np.log2(_interpolate_log(f0)), CONTOUR_FRAMES)
        deviation = np.log2(np.where(voiced, f0, 1.0)) - contour
        down = voiced & (deviation > OCTAVE_JUMP) & (f0 / 2 >= f0_floor)
        up = voiced & (deviation < -OCTAVE_JUMP) & (f0 * 2 <= f0_ceil)
        if not (down.any() or up.any()):
            return
        f0[down] /= 2
        f0[up] *= 2


def _fold_into_range(f0: np.ndarray, f0_floor: float, f0_ceil: float) -> None:
    """Values above the ceiling halved, below the floor doubled where that lands in range; else unvoiced."""
    voiced = f0 > 0
    high = voiced & (f0 > f0_ceil)
    f0[high & (f0 / 2 >= f0_floor) & (f0 / 2 <= f0_ceil)] /= 2
    low = voiced & (f0 < f0_floor)
    f0[low & (f0 * 2 >= f0_floor) & (f0 * 2 <= f0_ceil)] *= 2
    f0[voiced & ((f0 < f0_floor) | (f0 > f0_ceil))] = 0.0


def _remove_short_runs(f0: np.ndarray, min_run: int) -> None:
    if min_run <= 1:
        return
    edges = np.diff(np.concatenate(([0], (f0 > 0).astype(np.int8), [0])))
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        if stop - start < min_run:
            f0[start:stop] = 0.0
