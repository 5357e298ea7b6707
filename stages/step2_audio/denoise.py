"""Spectral-gate denoising: noisereduce's algorithm as a mask on a shared STFT, or the noisereduce package.

``spectral_gate`` reproduces ``noisereduce.reduce_noise`` (3.0) on an STFT the caller already has, so the
gate, the mel and the energy share one float32 transform:

* stationary: per frequency bin, the noise threshold is ``mean + n_std_thresh * std`` of the bin's level
  in dB over the noise frames; bins above it pass, the rest are attenuated by ``prop_decrease``. The noise
  frames are the quietest ``noise_frame_fraction`` of the utterance's frames (noisereduce's ``y_noise``
  clip, taken from the signal itself); with 1.0 they are all frames (noisereduce with ``y_noise=None``);
* non-stationary: the noise floor of each bin is its magnitude smoothed over time (forward-backward
  one-pole low-pass, time constant ``NOISE_TIME_CONSTANT_S``); the mask is a sigmoid of how far the bin
  rises above that floor.

The mask is smoothed with noisereduce's triangular kernels (``freq_mask_smooth_hz`` x ``time_mask_smooth_ms``,
zero outside the spectrogram) applied separably, which equals its 2-D FFT convolution with their outer
product. The constants below are noisereduce's defaults, passed to it as well.

Two guards keep clean speech intact (``DenoiseConfig``): ``denoise_method`` skips utterances whose estimated
SNR is at or above ``snr_threshold_db``, and ``max_attenuation_db`` bounds the attenuation: the mask is
``prop_decrease * gate + (1 - prop_decrease)`` with ``prop_decrease`` capped at ``1 - mask_floor(cfg)``, blended
after the smoothing (so the smoothing's zero padding cannot pull the edges under the floor either).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ttsprep.stages.core.config import DenoiseConfig
from ttsprep.stages.step2_audio.signal_quality import estimate_snr_db

NOISE_TIME_CONSTANT_S = 2.0
NONSTATIONARY_THRESH_MULT = 2.0
NONSTATIONARY_SIGMOID_SLOPE = 10.0
TOP_DB = 80.0
#: noisereduce's own STFT frame, used to pick the noise clip handed to it.
NOISEREDUCE_N_FFT = 1024
_EPS = np.finfo(np.float64).eps


def mask_floor(cfg: DenoiseConfig) -> float:
    """The lowest gain the denoiser may apply: ``10 ** (-max_attenuation_db / 20)``, or ``1 - prop_decrease``
    where that is higher (0 when both allow a hard zero)."""
    bound = 0.0 if cfg.max_attenuation_db is None else 10.0 ** (-cfg.max_attenuation_db / 20)
    return max(bound, 1.0 - cfg.prop_decrease)


def denoise_method(cfg: DenoiseConfig, samples: np.ndarray, sample_rate: int, snr_db: float | None = None) -> str:
    """The method to apply to this utterance: ``cfg.method``, or ``"none"`` where its estimated SNR is at or
    above ``cfg.snr_threshold_db``. ``snr_db``: the estimate already made on ``samples``
    (``estimate_snr_db``); computed here when None and needed."""
    if cfg.method == "none" or cfg.snr_threshold_db is None:
        return cfg.method
    if snr_db is None:
        snr_db = estimate_snr_db(samples, sample_rate)
    return cfg.method if snr_db < cfg.snr_threshold_db else "none"


def spectral_gate(magnitude: np.ndarray, cfg: DenoiseConfig, sample_rate: int, hop_length: int) -> np.ndarray:
    """Gain mask float32[n_freq, T] in [``mask_floor(cfg)``, 1] for the STFT magnitude float32[n_freq, T].

    ``n_fft`` is taken as ``2 * (n_freq - 1)``; ``hop_length`` is the STFT's hop in samples.
    """
    n_fft = 2 * (magnitude.shape[0] - 1)
    if cfg.stationary:
        noise_frames = _quietest(np.einsum("ft,ft->t", magnitude, magnitude), cfg.noise_frame_fraction)
        # Levels in log10 units (dB / 20), floored TOP_DB under each bin's peak, as noisereduce's. Only the
        # noise frames' levels are computed: every bin is compared with the threshold made linear, i.e.
        # max(log10(m + eps), floor) > threshold  <=>  m + eps > 10 ** threshold  or  floor > threshold.
        floor = np.log10(magnitude.max(axis=1, keepdims=True) + _EPS) - TOP_DB / 20
        noise = np.maximum(np.log10(magnitude[:, noise_frames] + _EPS), floor)
        threshold = noise.mean(axis=1, keepdims=True) + cfg.n_std_thresh * noise.std(axis=1, keepdims=True)
        passed = np.greater(magnitude, (10.0 ** threshold.astype(np.float64) - _EPS).astype(np.float32))
        passed |= floor > threshold
        # blended after the smoothing: the same mask inside (the smoothing is linear and its kernels sum to 1),
        # and the zero padding outside the spectrogram cannot pull the edge frames under the floor
        return _blend(_smooth(passed.astype(np.float32), cfg, sample_rate, n_fft, hop_length), cfg)
    floor = np.maximum(_noise_floor(magnitude, sample_rate, hop_length), _EPS)
    above = np.divide(magnitude - floor, floor, out=floor)
    mask = 1.0 / (1.0 + np.exp(-NONSTATIONARY_SIGMOID_SLOPE * (above - NONSTATIONARY_THRESH_MULT)))
    return _blend(_smooth(mask.astype(np.float32), cfg, sample_rate, n_fft, hop_length), cfg)


def denoise_with_noisereduce(samples: np.ndarray, sample_rate: int, cfg: DenoiseConfig) -> np.ndarray:
    """``noisereduce.reduce_noise`` itself (its own STFT, n_fft 1024, hop 256): float32[N] -> float32[N].

    ``prop_decrease`` is capped at ``1 - mask_floor(cfg)``: noisereduce's mask is ``prop_decrease * gate +
    1 - prop_decrease``, so no bin is attenuated by more than ``max_attenuation_db`` (noisereduce pads the
    signal, so its smoothing's edge effect falls outside it). Stationary: its noise clip is the quietest
    ``noise_frame_fraction`` of the 1024-sample blocks of
    ``samples``, concatenated (none when the fraction is 1, i.e. statistics over the whole signal).
    """
    import noisereduce  # here, not at the top: it imports torch (~3 s, ~400k objects for the GC to scan)

    noise_clip = None
    if cfg.stationary and cfg.noise_frame_fraction < 1 and samples.size >= 2 * NOISEREDUCE_N_FFT:
        blocks = samples[: samples.size // NOISEREDUCE_N_FFT * NOISEREDUCE_N_FFT].reshape(-1, NOISEREDUCE_N_FFT)
        noise_clip = blocks[_quietest(np.einsum("bn,bn->b", blocks, blocks), cfg.noise_frame_fraction)].ravel()
    denoised = noisereduce.reduce_noise(
        y=samples, sr=sample_rate, y_noise=noise_clip, stationary=cfg.stationary,
        prop_decrease=min(cfg.prop_decrease, 1.0 - mask_floor(cfg)), n_std_thresh_stationary=cfg.n_std_thresh,
        time_constant_s=NOISE_TIME_CONSTANT_S, freq_mask_smooth_hz=cfg.freq_mask_smooth_hz or None,
        time_mask_smooth_ms=cfg.time_mask_smooth_ms or None,
        thresh_n_mult_nonstationary=NONSTATIONARY_THRESH_MULT,
        sigmoid_slope_nonstationary=NONSTATIONARY_SIGMOID_SLOPE, n_fft=NOISEREDUCE_N_FFT, n_jobs=1)
    return np.asarray(denoised, dtype=np.float32)


def _quietest(energy: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ``fraction`` of entries with the least ``energy`` (at least one)."""
    count = max(1, int(round(fraction * energy.size)))
    return np.argpartition(energy, count - 1)[:count]


def _blend(mask: np.ndarray, cfg: DenoiseConfig) -> np.ndarray:
    """``mask * (1 - floor) + floor`` with ``floor = mask_floor(cfg)``, in place: ``mask`` in [0, 1] becomes
    [floor, 1] (noisereduce's ``mask * prop_decrease + 1 - prop_decrease``)."""
    floor = mask_floor(cfg)
    if floor == 0.0:
        return mask
    mask *= np.float32(1.0 - floor)
    mask += np.float32(floor)
    return mask


def _noise_floor(magnitude: np.ndarray, sample_rate: int, hop_length: int) -> np.ndarray:
    """Each bin's magnitude low-passed over time, forward and backward (noisereduce's noise floor)."""
    frames = NOISE_TIME_CONSTANT_S * sample_rate / hop_length
    pole = (np.sqrt(1 + 4 * frames**2) - 1) / (2 * frames**2)
    from scipy.signal import filtfilt  # here: only utterances that are denoised pay for scipy.signal (~0.65 CPU-s)

    return filtfilt([pole], [1, pole - 1], magnitude, axis=1, padtype=None)


def _smooth(mask: np.ndarray, cfg: DenoiseConfig, sample_rate: int, n_fft: int, hop_length: int) -> np.ndarray:
    """``mask`` float32[n_freq, T] convolved with the triangular frequency and time kernels, zeros outside."""
    freq_kernel, time_kernel = _kernels(cfg.freq_mask_smooth_hz, cfg.time_mask_smooth_ms, sample_rate, n_fft,
                                        hop_length)
    for axis, kernel in enumerate((freq_kernel, time_kernel)):
        mask = _convolve_axis(mask, kernel, axis)
    return mask


def _convolve_axis(values: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """``values`` [n_freq, T] convolved along ``axis`` with the odd-length symmetric ``kernel``, zeros outside
    (``scipy.ndimage.convolve1d(mode="constant")``): one multiply-add per tap on shifted views, in float32,
    about 1.5x faster than ``convolve1d`` here."""
    half = kernel.size // 2
    if half == 0:
        return values
    length = values.shape[axis]
    shape = list(values.shape)
    shape[axis] += 2 * half
    # in the input's memory layout (the STFT's is [T, n_freq] in C order), so later products stay contiguous
    padded = np.zeros(shape, values.dtype, order="F" if values.flags.f_contiguous else "C")
    if axis == 0:
        padded[half:half + length] = values
    else:
        padded[:, half:half + length] = values

    def shifted(tap: int) -> np.ndarray:
        return padded[tap:tap + length] if axis == 0 else padded[:, tap:tap + length]

    result = np.multiply(shifted(0), kernel[0])
    term = np.empty_like(result)
    for tap in range(1, kernel.size):
        result += np.multiply(shifted(tap), kernel[tap], out=term)
    return result


@lru_cache(maxsize=16)
def _kernels(freq_smooth_hz: float, time_smooth_ms: float, sample_rate: int, n_fft: int,
             hop_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised triangles of 2n+1 taps with n as noisereduce computes it (n = 0: no smoothing)."""
    n_freq = int(freq_smooth_hz / (sample_rate / (n_fft / 2)))
    n_time = int(time_smooth_ms / (hop_length / sample_rate * 1000))
    return tuple((k / k.sum()).astype(np.float32) for k in (_triang(2 * n_freq + 1), _triang(2 * n_time + 1)))


def _triang(taps: int) -> np.ndarray:
    """``scipy.signal.windows.triang(taps)`` for an odd ``taps``, bit for bit: float64[taps]."""
    n = np.arange(1, (taps + 1) // 2 + 1, dtype=np.float64)
    w = 2 * n / (taps + 1.0)
    return np.concatenate([w, np.flip(w[:-1])])
