"""Frame features and the DTW that carries synthetic phoneme boundaries over to real speech.

Features: log-mel spectra (floored ``FLOOR_DB`` below the utterance's loudest bin, so digital silence
and room noise look alike) plus their deltas, each dimension normalised to zero mean and unit variance
over the utterance (speaker normalisation). DTW runs twice: on a coarse grid (``COARSE`` fine frames
averaged) over the whole matrix, then on the fine grid inside a band around the coarse path. Steps are
diagonal, synthetic-only (vertical) and real-only (horizontal); a step that stays on a silent frame of
its own signal costs ``PAUSE_WEIGHT`` of a normal step, so pauses of one signal that the other lacks are
skipped cheaply. Whether the transcript fits the audio is judged by ``Match`` (a second DTW against the
time-reversed synthetic speech gives each utterance its own baseline) and ``shape_change_db`` (is it speech).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft

from ttsprep.stages.step4_features.extract import mel_filters

N_MELS = 40
FLOOR_DB = 60.0
COARSE = 8  # fine frames per coarse frame
BAND = 8  # fine frames of slack either side of the coarse path
COARSE_RADIUS = 0.25  # the coarse pass keeps within this fraction of the longer signal of the diagonal
PAUSE_WEIGHT = 0.3
CHANGE_S = 0.05  # seconds between the frames ``shape_change_db`` compares
RANDOM_PAIRS = 2000  # frame pairs for ``Match.ratio``'s baseline
_SILENT_DB = 40.0  # a frame this far below the utterance's loudest is silent


def features(samples: np.ndarray, sample_rate: int, hop: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Normalised features float32 ``[T, 2 * N_MELS]`` of frames centred on samples ``t * hop``
    (``T = len(samples) // hop + 1``), which frames are silent (bool ``[T]``) and the signal's
    ``shape_change_db``."""
    n_fft = 1 << int(np.ceil(np.log2(0.02 * sample_rate)))
    padded = np.pad(samples.astype(np.float32), n_fft // 2)
    count = len(samples) // hop + 1
    frames = np.lib.stride_tricks.as_strided(padded, (count, n_fft), (padded.strides[0] * hop, padded.strides[0]))
    power = np.abs(scipy.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    mel_db = 10.0 * np.log10(power @ mel_filters(sample_rate, n_fft, N_MELS, 50.0, min(8000.0, sample_rate / 2)).T + 1e-12)
    mel_db = np.maximum(mel_db, mel_db.max() - FLOOR_DB)
    energy_db = 10.0 * np.log10(power.sum(axis=1) + 1e-12)
    silent = energy_db < energy_db.max() - _SILENT_DB
    feats = np.concatenate([mel_db, np.gradient(mel_db, axis=0) * 2.0], axis=1)
    feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-3)
    return feats.astype(np.float32), silent, shape_change_db(mel_db, silent, int(CHANGE_S * sample_rate / hop))


def shape_change_db(mel_db: np.ndarray, silent: np.ndarray, lag: int) -> float:
    """Median RMS change, dB per band, of the spectral shape (log-mel ``[T, N_MELS]`` less each frame's mean
    level) between sounding frames ``lag`` frames apart; 0 without such a pair. Speech reshapes its spectrum
    with every phone; a steady tone or noise keeps its shape (measured: real speech 4.2-9.6 dB, tone
    bursts 2.4-2.5, white noise 3.7-3.8)."""
    if len(mel_db) <= lag:
        return 0.0
    shape = mel_db - mel_db.mean(axis=1, keepdims=True)
    pairs = ~silent[:-lag] & ~silent[lag:]
    change = np.sqrt(((shape[lag:] - shape[:-lag]) ** 2).mean(axis=1))
    return float(np.median(change[pairs])) if pairs.any() else 0.0


@dataclass(frozen=True)
class Match:
    """How well synthetic and real speech fit along the DTW path (dimensionless; higher is worse).

    ``mismatch``: ``mismatch_score``. ``contrast``: the mean log-mel distance of the steps where both
    signals sound, over the same for the time-reversed synthetic speech (same phones, wrong order): the
    utterance's own baseline for unrelated speech. ``ratio``: that distance over the mean distance between
    sounding frames paired at random (``RANDOM_PAIRS``, fixed seed): near 1 when nothing in the real
    signal tracks the synthetic (noise, tones)."""

    mismatch: float
    contrast: float
    ratio: float


def align(synth: np.ndarray, real: np.ndarray, synth_silent: np.ndarray,
          real_silent: np.ndarray) -> tuple[np.ndarray, Match]:
    """The DTW path between features ``synth [Ns, D]`` and ``real [Nr, D]``: int64 ``[L, 2]`` pairs
    ``(i, j)`` from ``(0, 0)`` to ``(Ns - 1, Nr - 1)``, and how well they match (``Match``)."""
    path = _path(synth, real, synth_silent, real_silent)
    backwards = np.concatenate([synth[::-1, :N_MELS], -synth[::-1, N_MELS:]], axis=1)
    backwards_silent = synth_silent[::-1].copy()
    backwards_path = _path(backwards, real, backwards_silent, real_silent)
    sounding = _sounding_distance(path, synth, real, synth_silent, real_silent)
    return path, Match(
        mismatch=mismatch_score(path, synth, real, synth_silent[path[:, 0]] | real_silent[path[:, 1]]),
        contrast=sounding / _sounding_distance(backwards_path, backwards, real, backwards_silent, real_silent),
        ratio=sounding / _random_pair_distance(synth, real, synth_silent, real_silent))


def _path(synth: np.ndarray, real: np.ndarray, synth_silent: np.ndarray, real_silent: np.ndarray) -> np.ndarray:
    """The two-pass DTW path (module docstring), int64 ``[L, 2]``."""
    coarse_s, coarse_r = _pool(synth), _pool(real)
    coarse_path = _dtw(coarse_s, coarse_r, *_diagonal_band(len(coarse_s), len(coarse_r)),
                       _pool_any(synth_silent), _pool_any(real_silent))
    lo, hi = _band(coarse_path, len(synth), len(real))
    return _dtw(synth, real, lo, hi, synth_silent, real_silent)


def _mel_distance(synth: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per row pair, the log-mel distance per band (standardised units), float ``[L]``."""
    return np.sqrt(((synth[:, :N_MELS] - real[:, :N_MELS]) ** 2).sum(axis=1) / N_MELS)


def _sounding_distance(path: np.ndarray, synth: np.ndarray, real: np.ndarray, synth_silent: np.ndarray,
                       real_silent: np.ndarray) -> float:
    """Mean ``_mel_distance`` along ``path`` over the steps where both frames sound (all steps if none)."""
    distance = _mel_distance(synth[path[:, 0]], real[path[:, 1]])
    both = ~(synth_silent[path[:, 0]] | real_silent[path[:, 1]])
    return float(distance[both].mean() if both.any() else distance.mean())


def _random_pair_distance(synth: np.ndarray, real: np.ndarray, synth_silent: np.ndarray,
                          real_silent: np.ndarray) -> float:
    """Mean ``_mel_distance`` of ``RANDOM_PAIRS`` random (seeded) pairs of sounding frames."""
    rng = np.random.default_rng(0)
    rows = rng.choice(_sounding(synth_silent), RANDOM_PAIRS)
    cols = rng.choice(_sounding(real_silent), RANDOM_PAIRS)
    return float(_mel_distance(synth[rows], real[cols]).mean())


def _sounding(silent: np.ndarray) -> np.ndarray:
    """Indices of the frames that sound (of all frames if none does)."""
    return np.flatnonzero(~silent) if not silent.all() else np.arange(silent.size)


def mismatch_score(path: np.ndarray, synth: np.ndarray, real: np.ndarray, silent: np.ndarray) -> float:
    """How unlike the two signals are along ``path`` (``silent``: bool ``[L]``, a step with a silent frame):
    the mean log-mel distance per band (standardised units) plus half the fraction of steps off the
    diagonal where both frames sound. Measured over ../shared/corpora (bench/bench_alignment_check.py):
    right transcripts 0.86-1.35, another clip's transcript 0.97-1.59, white noise 1.37-1.50."""
    mel = _mel_distance(synth[path[:, 0]], real[path[:, 1]]).mean()
    sounding = ~silent[1:]
    off_diagonal = ~(np.diff(path, axis=0) == 1).all(axis=1)
    return float(mel + 0.5 * (off_diagonal[sounding].mean() if sounding.any() else 0.0))


def _pool(feats: np.ndarray) -> np.ndarray:
    usable = len(feats) // COARSE * COARSE
    head = feats[:usable].reshape(-1, COARSE, feats.shape[1]).mean(axis=1)
    return np.concatenate([head, feats[usable:].mean(axis=0, keepdims=True)]) if usable < len(feats) else head


def _pool_any(flags: np.ndarray) -> np.ndarray:
    return _pool(flags[:, None].astype(np.float32))[:, 0] > 0.5


def _diagonal_band(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns ``[lo, hi)`` within ``COARSE_RADIUS * max(rows, cols)`` of the diagonal."""
    radius = int(np.ceil(COARSE_RADIUS * max(rows, cols))) + 1
    centre = np.arange(rows) * (cols - 1) // max(rows - 1, 1)
    return np.clip(centre - radius, 0, cols - 1), np.clip(centre + radius + 1, 1, cols)


def _band(coarse_path: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per fine row ``i``, the allowed fine columns ``[lo[i], hi[i])``: the coarse path's columns of row
    ``i // COARSE`` (and its neighbours), widened by ``BAND``."""
    n_coarse = coarse_path[:, 0].max() + 1
    first = np.full(n_coarse, np.iinfo(np.int64).max)
    last = np.zeros(n_coarse, np.int64)
    np.minimum.at(first, coarse_path[:, 0], coarse_path[:, 1])
    np.maximum.at(last, coarse_path[:, 0], coarse_path[:, 1])
    first = np.minimum(first, np.concatenate([first[1:], first[-1:]]))
    last = np.maximum(last, np.concatenate([last[:1], last[:-1]]))
    row = np.arange(rows) // COARSE
    lo = np.clip(first[row] * COARSE - BAND, 0, cols - 1)
    hi = np.clip((last[row] + 1) * COARSE + BAND, 1, cols)
    lo[0], hi[-1] = 0, cols
    return np.minimum.accumulate(lo[::-1])[::-1], np.maximum.accumulate(hi)


@numba.njit(cache=True)
def _dtw(x, y, lo, hi, x_silent, y_silent):  # pragma: no cover - compiled
    """Banded DTW (module docstring): ``x [N, D]`` rows, ``y [M, D]`` columns, row ``i`` limited to
    columns ``[lo[i], hi[i])`` (``lo``, ``hi`` non-decreasing). Returns the path, int64 ``[L, 2]``."""
    n, m, dims = x.shape[0], y.shape[0], x.shape[1]
    width = np.max(hi - lo)
    acc = np.full((n, width), np.inf)
    move = np.zeros((n, width), np.int8)  # 0 diagonal, 1 from the row above, 2 from the left
    for i in range(n):
        for j in range(lo[i], hi[i]):
            d = 0.0
            for k in range(dims):
                d += (x[i, k] - y[j, k]) ** 2
            d = np.sqrt(d)
            if i == 0 and j == 0:
                acc[0, 0] = d
                continue
            best, step = np.inf, 0
            if i > 0 and lo[i - 1] <= j - 1 < hi[i - 1]:
                best = acc[i - 1, j - 1 - lo[i - 1]] + d
            if i > 0 and lo[i - 1] <= j < hi[i - 1]:
                up = acc[i - 1, j - lo[i - 1]] + d * (PAUSE_WEIGHT if x_silent[i] else 1.0)
                if up < best:
                    best, step = up, 1
            if j > lo[i]:
                left = acc[i, j - 1 - lo[i]] + d * (PAUSE_WEIGHT if y_silent[j] else 1.0)
                if left < best:
                    best, step = left, 2
            acc[i, j - lo[i]] = best
            move[i, j - lo[i]] = step
    path = np.zeros((n + m, 2), np.int64)
    i, j, k = n - 1, m - 1, 0
    while True:
        path[k, 0], path[k, 1] = i, j
        k += 1
        if i == 0 and j == 0:
            break
        step = move[i, j - lo[i]]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return path[:k][::-1].copy()
