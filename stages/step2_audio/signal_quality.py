"""Signal-quality measures for the signal filters: an SNR estimate and the fraction of clipped samples."""

from __future__ import annotations

import math

import numpy as np

from ttsprep.stages.core.errors import InvalidAudio
from ttsprep.stages.core.reasons import Reason

FRAME_S = 0.020
NOISE_PERCENTILE = 10.0
SPEECH_PERCENTILE = 90.0
#: Power floor (-100 dB re full scale) that bounds the estimate to [-100, 100] dB for digital silence.
POWER_FLOOR = 1e-10
CLIP_LEVEL = 0.999
MIN_CLIP_RUN = 3


def estimate_snr_db(samples: np.ndarray, sample_rate: int) -> float:
    """SNR in dB from the distribution of 20 ms frame powers (a percentile estimator, no VAD needed).

    The mean-removed signal is cut into non-overlapping 20 ms frames; the 10th percentile of frame power
    stands for the noise floor (pauses and silences hold stationary noise only), the 90th for speech plus
    noise, so ``snr = 10 log10((p90 - p10) / p10)``, powers floored at -100 dB. It rises as stationary
    noise is removed and falls as white noise is added. ``samples``: float ``[num_samples]`` in [-1, 1].
    """
    if samples.size == 0:
        raise InvalidAudio("cannot estimate the SNR of an empty signal", reason=Reason.EMPTY_AUDIO)
    centred = samples - float(samples.mean(dtype=np.float64))  # in the input's precision
    frame_len = min(max(1, round(FRAME_S * sample_rate)), centred.size)  # one frame for clips under 20 ms
    num_frames = centred.size // frame_len
    frames = centred[:num_frames * frame_len].reshape(num_frames, frame_len)
    powers = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame_len
    noise_power, speech_power = np.percentile(powers, [NOISE_PERCENTILE, SPEECH_PERCENTILE])
    signal_power = max(speech_power - noise_power, POWER_FLOOR)
    return 10 * math.log10(signal_power / max(noise_power, POWER_FLOOR))


def _samples_in_long_runs(mask: np.ndarray, min_run: int) -> int:
    """How many True entries of ``mask`` lie in runs of at least ``min_run`` (work in the True count)."""
    positions = np.flatnonzero(mask)
    if positions.size == 0:
        return 0
    run_starts = np.flatnonzero(np.diff(positions, prepend=-2) != 1)
    run_lengths = np.diff(run_starts, append=positions.size)
    return int(run_lengths[run_lengths >= min_run].sum())


def clipping_fraction(samples: np.ndarray) -> float:
    """Fraction of samples inside runs of >= 3 consecutive samples at one extreme (x >= 0.999 or
    x <= -0.999 of full scale 1.0). ``samples``: float ``[num_samples]``; 0.0 for an empty array."""
    if samples.size == 0:
        return 0.0
    clipped = _samples_in_long_runs(samples >= CLIP_LEVEL, MIN_CLIP_RUN) \
        + _samples_in_long_runs(samples <= -CLIP_LEVEL, MIN_CLIP_RUN)
    return clipped / samples.size
