"""F0 on the shared frame grid with pyworld: DIO + StoneMask (fast) or Harvest (slow, ~20x the cost).

Frame ``t`` of pyworld's output is centred on ``t * frame_period``; with ``frame_period = hop_length /
sample_rate`` (in ms) that is the centre of STFT frame ``t``, so F0 and the mel share one grid, whatever
rate the F0 is analysed at. pyworld rounds the frame count on its own, and ``fit_to_frames`` reconciles it
with ``num_frames``.

DIO + StoneMask run on the waveform resampled to ``analysis_rate`` (soxr HQ) when that is below the
input's rate: DIO's FFTs and StoneMask's per-frame FFTs shrink with the rate, and an F0 of 800 Hz keeps
its first four harmonics at 8 kHz. Harvest always gets the input: it decimates to ~8 kHz on its own, and
resampling first made it ~25 % slower, not faster.

Harvest's cost grows steeply with its search range (LJ001-0001: 2.7x realtime at 71-800 Hz, 4.5x at
100-400, 15x at 120-240). With ``harvest_range="per_utterance"`` a DIO pass sets the range first
(``two_pass_range``, the two-pass method of De Looze & Hirst 2008, as used with Praat).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import soxr

from stages.errors import ConfigError
from stages.frames import fit_to_frames

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # pyworld 0.3.5 imports the deprecated pkg_resources
    import pyworld

F0Method = Literal["dio", "harvest", "none"]
HarvestRange = Literal["configured", "per_utterance"]
#: Fewer voiced frames than this in the DIO pass: Harvest searches the configured range.
MIN_VOICED_FRAMES = 10
#: DIO's decimated rate stays at or above this multiple of ``f0_ceil``: ``dio_speed`` is lowered where needed
#: (8 kHz and the default 800 Hz ceiling allow up to 4, i.e. DIO at 2 kHz).
DIO_MIN_RATE_PER_CEIL = 2.5


def extract_f0(samples: np.ndarray, sample_rate: int, hop_length: int, num_frames: int, *,
               method: F0Method = "dio", f0_floor: float = 71.0, f0_ceil: float = 800.0,
               dio_speed: int = 3, analysis_rate: int | None = None,
               harvest_range: HarvestRange = "configured") -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz per frame and the voiced mask: ``(f0 float32[num_frames], voiced bool[num_frames])``.

    ``samples`` is float32[N] at ``sample_rate`` Hz; frame ``t`` is centred on sample ``t * hop_length``.
    Unvoiced frames have f0 = 0. ``method="none"`` returns zeros and an all-False mask without analysing
    the signal. ``analysis_rate`` (Hz, None = ``sample_rate``) caps the rate DIO and StoneMask run at;
    ``dio_speed`` is DIO's decimation factor below that rate (1 = none), at most ``dio_decimation`` allows.
    Harvest searches ``f0_floor`` to ``f0_ceil``, or with ``harvest_range="per_utterance"`` the
    ``two_pass_range`` of a DIO pass within them.
    """
    if method == "none":
        return np.zeros(num_frames, np.float32), np.zeros(num_frames, bool)
    frame_period_ms = 1000.0 * hop_length / sample_rate
    if method == "harvest":
        if harvest_range == "per_utterance":
            first_pass = _dio_stonemask(samples, sample_rate, frame_period_ms, f0_floor, f0_ceil, dio_speed,
                                        analysis_rate)
            f0_floor, f0_ceil = two_pass_range(first_pass, f0_floor, f0_ceil)
        f0_hz, _ = pyworld.harvest(np.ascontiguousarray(samples, dtype=np.float64), sample_rate, f0_floor=f0_floor,
                                   f0_ceil=f0_ceil, frame_period=frame_period_ms)
    elif method == "dio":
        f0_hz = _dio_stonemask(samples, sample_rate, frame_period_ms, f0_floor, f0_ceil, dio_speed, analysis_rate)
    else:
        raise ConfigError(f"unknown f0 method {method!r}; expected 'dio', 'harvest' or 'none'")
    f0_hz = fit_to_frames(f0_hz.astype(np.float32), num_frames, what=f"{method} f0")
    return f0_hz, f0_hz > 0


def _dio_stonemask(samples: np.ndarray, sample_rate: int, frame_period_ms: float, f0_floor: float,
                   f0_ceil: float, dio_speed: int, analysis_rate: int | None) -> np.ndarray:
    """DIO + StoneMask F0 (Hz, float64, pyworld's frame count) at ``min(sample_rate, analysis_rate)``."""
    rate = sample_rate if analysis_rate is None else min(sample_rate, analysis_rate)
    if samples.size * rate < sample_rate:  # under one sample at the analysis rate: soxr would return none
        rate = sample_rate
    if rate != sample_rate:
        samples = soxr.resample(samples, sample_rate, rate, quality="HQ")
    signal = np.ascontiguousarray(samples, dtype=np.float64)
    coarse_hz, times_s = pyworld.dio(signal, rate, f0_floor=f0_floor, f0_ceil=f0_ceil,
                                     frame_period=frame_period_ms, speed=dio_decimation(rate, dio_speed, f0_ceil))
    return pyworld.stonemask(signal, coarse_hz, times_s, rate)


def dio_decimation(rate: int, dio_speed: int, f0_ceil: float) -> int:
    """DIO's decimation factor at ``rate`` Hz: ``dio_speed``, lowered so that the decimated rate stays at or
    above ``DIO_MIN_RATE_PER_CEIL * f0_ceil`` (an F0 near the ceiling keeps its band below Nyquist); >= 1."""
    return max(1, min(dio_speed, int(rate // (DIO_MIN_RATE_PER_CEIL * f0_ceil))))


def two_pass_range(first_pass_f0: np.ndarray, f0_floor: float, f0_ceil: float) -> tuple[float, float]:
    """The speaker-adapted F0 search range of De Looze & Hirst (2008): 0.75 x the first quartile to 1.5 x
    the third quartile of a first pass's voiced F0 (Hz, 0 = unvoiced), kept within ``[f0_floor, f0_ceil]``.
    The configured range when the first pass has fewer than ``MIN_VOICED_FRAMES`` voiced frames."""
    voiced = first_pass_f0[first_pass_f0 > 0]
    if voiced.size < MIN_VOICED_FRAMES:
        return f0_floor, f0_ceil
    first_quartile, third_quartile = np.percentile(voiced, [25, 75])
    return max(f0_floor, 0.75 * float(first_quartile)), min(f0_ceil, 1.5 * float(third_quartile))
