"""Denoised waveform, log-mel, F0 and energy of one utterance on one frame grid, from one float32 STFT.

The STFT is centred (reflect padding of ``n_fft // 2``), so a signal of N samples has
``T = 1 + N // hop_length`` frames (``ttsprep.stages.core.frames``). With ``denoise.method == "gate"`` the spectral-gate
mask is applied to that STFT once: the mel and the energy are computed from the masked magnitude and the
denoised waveform is its inverse (windowed overlap-add, exactly N samples). ``"noisereduce"`` denoises the
waveform with the noisereduce package first. F0 is always measured on the (denoised) waveform.
Utterances whose estimated SNR is at or above ``denoise.snr_threshold_db`` are not denoised
(``ttsprep.stages.step2_audio.denoise.denoise_method``). The mel and the energy include a fixed ``denoise.mel_dither_lsb`` noise,
added in power (after the gate's mask): digital silence and codec-emptied bands then read as a -90 dBFS noise floor
instead of a plateau at ``LOG_MEL_FLOOR``. The returned waveform carries no dither.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from threadpoolctl import threadpool_limits

from ttsprep.stages.core.audio_io import check_audio
from ttsprep.stages.core.config import DenoiseConfig, FeatureConfig
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.frames import num_frames_for
from ttsprep.stages.step2_audio.denoise import denoise_method, denoise_with_noisereduce, spectral_gate
from ttsprep.stages.step4_features.pitch import FirstPass, PitchSettings, extract_f0, first_pass

LOG_MEL_FLOOR = 1e-5
#: One 16-bit LSB. ``denoise.mel_dither_lsb`` of them (Kaldi's ``dither=1``: -90 dBFS) is the standard deviation
#: of a Gaussian dither whose mel and energy are added in power to the utterance's: ``mel = log(sqrt(M**2 +
#: D**2))``, ``D`` the mel of a fixed realisation of that noise on the same frame grid (``dither_power``) --
#: what adding it to the waveform gives in expectation (the cross terms average out), without a second STFT,
#: and within 1e-4 of the plain mel wherever the signal is 40 dB above it. Without it digital silence
#: (AISHELL-3's lead-ins) and bands a codec left empty (Common Voice mp3) sit at LOG_MEL_FLOOR. It is far below
#: any recording's own noise floor (the corpora's pauses: -60 to -75 dBFS).
LSB = 2.0**-15
#: Seed of the dither's realisation (``DITHER_FRAMES`` frames, repeated): the same samples give the same features.
DITHER_SEED = 20240613
DITHER_FRAMES = 1024
#: STFT frames transformed per FFT call: the block stays in cache (about 3x faster here than one call).
BLOCK_FRAMES = 64


@dataclass(frozen=True)
class Features:
    """Per-utterance features; every per-frame array has ``num_frames`` rows."""

    samples: np.ndarray  # float32 [N], the denoised waveform (the input when denoising is off)
    mel: np.ndarray  # float32 [T, n_mels], natural log of the mel magnitude, floored at LOG_MEL_FLOOR
    f0: np.ndarray  # float32 [T], Hz, 0 where unvoiced
    voiced: np.ndarray  # bool [T]
    energy: np.ndarray  # float32 [T], L2 norm over frequency of the STFT magnitude
    num_frames: int
    #: With ``f0_first_pass``: the F0 first pass (``ttsprep.stages.step4_features.pitch.final_pass`` gives f0/voiced, here zeros).
    pitch_pass: FirstPass | None = None


def extract_features(samples: np.ndarray, sample_rate: int, cfg: FeatureConfig, denoise: DenoiseConfig, *,
                     f0_range: tuple[float, float] | None = None, snr_db: float | None = None,
                     f0_first_pass: bool = False) -> Features:
    """Denoise ``samples`` (float32[N], ``sample_rate`` Hz) and compute its features on one frame grid.

    ``f0_range`` = (floor_hz, ceil_hz) overrides ``cfg.f0_floor`` / ``cfg.f0_ceil`` (per-speaker ranges) and is
    the final range; else the range follows ``cfg.f0_range_mode`` within this utterance (``speaker`` needs the
    shard: ``f0_first_pass=True`` returns the first pass in ``pitch_pass`` and zero F0 for the caller's
    ``ttsprep.stages.step4_features.pitch.final_pass``).
    ``snr_db``: ``estimate_snr_db(samples, sample_rate)`` where the caller has it (else computed when needed).
    """
    _check_frame_config(cfg, denoise)
    samples = np.ascontiguousarray(check_audio(samples, "features input"), dtype=np.float32)
    method = denoise_method(denoise, samples, sample_rate, snr_db)
    if method == "noisereduce":
        samples = denoise_with_noisereduce(samples, sample_rate, denoise)
    spectrum = stft(samples, cfg)
    magnitude = np.abs(spectrum)
    if method == "gate":
        mask = spectral_gate(magnitude, denoise, sample_rate, cfg.hop_length)
        magnitude *= mask
        samples = istft(spectrum, cfg, samples.size, gain=mask)
    dither = dither_power(sample_rate, cfg, magnitude.shape[1], denoise.mel_dither_lsb * LSB)
    mel, energy = mel_and_energy(magnitude, mel_filters(sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax),
                                 dither=dither)
    num_frames = num_frames_for(samples.size, cfg.hop_length)
    f0_floor, f0_ceil = f0_range or (cfg.f0_floor, cfg.f0_ceil)
    if f0_first_pass and cfg.f0_method != "none":
        settings = PitchSettings.from_config(cfg.model_copy(update={"f0_floor": f0_floor, "f0_ceil": f0_ceil}))
        return Features(samples=samples, mel=mel, f0=np.zeros(num_frames, np.float32),
                        voiced=np.zeros(num_frames, bool), energy=energy, num_frames=num_frames,
                        pitch_pass=first_pass(samples, sample_rate, cfg.hop_length, num_frames, settings))
    range_mode = "configured" if f0_range or cfg.f0_range_mode == "configured" else "utterance"
    f0, voiced = extract_f0(samples, sample_rate, cfg.hop_length, num_frames, method=cfg.f0_method,
                            f0_floor=f0_floor, f0_ceil=f0_ceil, dio_speed=cfg.dio_speed,
                            analysis_rate=cfg.f0_sample_rate, harvest_range=cfg.harvest_range,
                            refine=cfg.f0_refine, range_mode=range_mode, voicing_threshold=cfg.f0_voicing_threshold,
                            min_voiced_run=cfg.f0_min_voiced_run)
    return Features(samples=samples, mel=mel, f0=f0, voiced=voiced, energy=energy, num_frames=num_frames)


def dither_power(sample_rate: int, cfg: FeatureConfig, num_frames: int,
                 level: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Squared mel float32[num_frames, n_mels] and squared energy float32[num_frames] of Gaussian noise of
    standard deviation ``level`` on ``cfg``'s frame grid (a fixed realisation of ``DITHER_FRAMES`` frames,
    repeated); None for ``level`` 0."""
    if level == 0:
        return None
    mel_power, energy_power = _dither_table(sample_rate, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.window,
                                            cfg.n_mels, cfg.fmin, cfg.fmax, float(level))
    if num_frames > DITHER_FRAMES:
        rows = np.arange(num_frames) % DITHER_FRAMES
        return mel_power[rows], energy_power[rows]
    return mel_power[:num_frames], energy_power[:num_frames]


@lru_cache(maxsize=8)
@threadpool_limits.wrap(limits=1)  # cached for the process: the same values whatever BLAS threads the first caller had
def _dither_table(sample_rate: int, n_fft: int, hop_length: int, win_length: int, window: str, n_mels: int,
                  fmin: float, fmax: float | None, level: float) -> tuple[np.ndarray, np.ndarray]:
    cfg = FeatureConfig(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, n_mels=n_mels,
                        fmin=fmin, fmax=fmax, f0_method="none")
    noise = np.random.default_rng(DITHER_SEED).standard_normal(DITHER_FRAMES * hop_length) * level
    magnitude = np.abs(stft(noise.astype(np.float32), cfg))[:, :DITHER_FRAMES]
    mel = magnitude.T @ mel_filters(sample_rate, n_fft, n_mels, fmin, fmax).T
    energy_power = np.einsum("ft,ft->t", magnitude, magnitude)
    return _read_only(np.square(mel)), _read_only(energy_power)


def mel_and_energy(magnitude: np.ndarray, mel_basis: np.ndarray,
                   dither: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel float32[T, n_mels] and energy float32[T] (L2 norm over frequency) of the STFT magnitude
    float32[n_freq, T], with ``mel_basis`` float32[n_mels, n_freq]. The product skips the bins no mel band
    covers (above ``fmax = 8 kHz`` at 22.05 kHz: 28 % of them). ``dither``: squared mel [T, n_mels] and
    squared energy [T] added in power (``dither_power``)."""
    covered = np.flatnonzero(mel_basis.any(axis=0))
    bins = slice(covered[0], covered[-1] + 1) if covered.size else slice(0, 0)
    mel = magnitude[bins].T @ mel_basis[:, bins].T
    energy = np.einsum("ft,ft->t", magnitude, magnitude)
    if dither is None:
        return np.log(np.maximum(mel, LOG_MEL_FLOOR)), np.sqrt(energy)
    mel = np.square(mel, out=mel)
    mel += dither[0]
    mel = np.log(mel, out=mel)  # the dither's power is > 0 everywhere
    mel *= np.float32(0.5)
    mel = np.maximum(mel, np.float32(np.log(LOG_MEL_FLOOR)), out=mel)  # the clamp, exactly log(LOG_MEL_FLOOR)
    energy += dither[1]
    return mel, np.sqrt(energy, out=energy)


def stft(samples: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Centred STFT complex64[n_fft // 2 + 1, 1 + N // hop_length] of float32[N] (librosa's ``stft`` with
    ``pad_mode="reflect"``, unscaled). The returned array is the transpose of a C-ordered [T, n_freq] one."""
    padded = np.pad(samples, cfg.n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft)[:: cfg.hop_length]
    window = analysis_window(cfg.window, cfg.win_length, cfg.n_fft)
    spectrum = np.empty((frames.shape[0], cfg.n_fft // 2 + 1), np.complex64)
    for start in range(0, frames.shape[0], BLOCK_FRAMES):
        stop = start + BLOCK_FRAMES
        spectrum[start:stop] = scipy.fft.rfft(frames[start:stop] * window, axis=-1)
    return spectrum.T


def istft(spectrum: np.ndarray, cfg: FeatureConfig, num_samples: int, *,
          gain: np.ndarray | None = None) -> np.ndarray:
    """Inverse of ``stft`` (complex[n_freq, T] -> float32[num_samples]): windowed overlap-add normalised by
    the summed squared window, as librosa's ``istft(center=True, length=num_samples)``. ``gain``
    float32[n_freq, T] (a denoising mask) multiplies the spectrum block by block, without a full copy."""
    window = analysis_window(cfg.window, cfg.win_length, cfg.n_fft)
    num_frames = spectrum.shape[1]
    signal = _OverlapAdd(num_frames, cfg.n_fft, cfg.hop_length)
    for start in range(0, num_frames, BLOCK_FRAMES):
        block = spectrum[:, start:start + BLOCK_FRAMES].T
        if gain is not None:
            block = block * gain[:, start:start + BLOCK_FRAMES].T
        frames = scipy.fft.irfft(block, n=cfg.n_fft, axis=-1)
        frames *= window
        signal.add(start, frames)
    begin = cfg.n_fft // 2
    samples = signal.samples[begin:begin + num_samples]
    power = _window_power(window, cfg.hop_length, num_frames).ravel()[begin:begin + num_samples]
    return np.divide(samples, power, out=samples, where=power > np.finfo(np.float32).tiny)


@lru_cache(maxsize=8)
def analysis_window(window: str, win_length: int, n_fft: int) -> np.ndarray:
    """Periodic ``window`` of ``win_length`` taps, zero-padded on both sides to ``n_fft``: float32[n_fft]
    (``librosa.util.pad_center``'s placement: ``(n_fft - win_length) // 2`` zeros on the left)."""
    left = (n_fft - win_length) // 2
    taps = np.pad(periodic_window(window, win_length), (left, n_fft - win_length - left))
    return _read_only(taps.astype(np.float32))


#: The cosine-sum coefficients of the windows ``FeatureConfig.window`` names, as scipy.signal's ``hann`` and
#: ``hamming`` (``general_hamming(M, 0.54)``) take them.
COSINE_WINDOWS = {"hann": (0.5, 1.0 - 0.5), "hamming": (0.54, 1.0 - 0.54)}


def periodic_window(window: str, length: int) -> np.ndarray:
    """``scipy.signal.get_window(window, length, fftbins=True)`` for ``hann`` and ``hamming``, bit for bit (its
    ``general_cosine`` arithmetic), without importing scipy.signal (~0.65 CPU-s per worker): float64[length]."""
    if length <= 1:
        return np.ones(length)
    extended = length + 1  # DFT-even: the symmetric window of length + 1 without its last tap
    fac = np.linspace(-np.pi, np.pi, extended, dtype=np.float64)
    taps = np.zeros(extended, dtype=np.float64)
    for k, coefficient in enumerate(np.asarray(COSINE_WINDOWS[window], dtype=np.float64)):
        taps += coefficient * np.cos(k * fac)
    return taps[:-1]


@lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """librosa's Slaney-normalised mel filterbank float32[n_mels, n_fft // 2 + 1] (``fmax=None``: Nyquist)."""
    basis = slaney_mel(sample_rate, n_fft, n_mels, fmin, fmax)
    return _read_only(basis.astype(np.float32))


def slaney_mel(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """``librosa.filters.mel(sr=, n_fft=, n_mels=, fmin=, fmax=)`` (0.10-0.11: Slaney mel scale and norm,
    float32) with librosa's own arithmetic, bit for bit, without importing ``librosa.filters``: it imports
    scipy.signal (~0.65 CPU-s per worker process)."""
    if fmax is None:
        fmax = float(sample_rate) / 2
    weights = np.zeros((int(n_mels), int(1 + n_fft // 2)), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    mel_f = _mel_to_hz(mels)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(int(n_mels)):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


_MEL_F_SP, _MEL_MIN_LOG_HZ = 200.0 / 3, 1000.0
_MEL_MIN_LOG_MEL, _MEL_LOGSTEP = (_MEL_MIN_LOG_HZ - 0.0) / _MEL_F_SP, np.log(6.4) / 27.0


def _hz_to_mel(frequency: float) -> float:
    """librosa's Slaney ``hz_to_mel`` of one frequency (its scalar branch)."""
    frequency = np.asanyarray(frequency)
    mel = (frequency - 0.0) / _MEL_F_SP
    if frequency >= _MEL_MIN_LOG_HZ:
        mel = _MEL_MIN_LOG_MEL + np.log(frequency / _MEL_MIN_LOG_HZ) / _MEL_LOGSTEP
    return mel


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """librosa's Slaney ``mel_to_hz`` of an array of mels."""
    freqs = 0.0 + _MEL_F_SP * mels
    log_t = mels >= _MEL_MIN_LOG_MEL
    freqs[log_t] = _MEL_MIN_LOG_HZ * np.exp(_MEL_LOGSTEP * (mels[log_t] - _MEL_MIN_LOG_MEL))
    return freqs


def _window_power(window: np.ndarray, hop_length: int, num_frames: int) -> np.ndarray:
    """The squared ``window`` overlap-added over ``num_frames`` frames, as ``_OverlapAdd`` rows float32[R,
    hop_length]: row ``r`` sums the window's chunks ``c`` of frames ``r - c`` in ``[0, num_frames)``. Built from
    the chunks' running sums (one gather) instead of adding the window ``num_frames`` times."""
    num_chunks = -(-window.size // hop_length)
    chunks = np.zeros(num_chunks * hop_length, np.float32)
    chunks[:window.size] = window * window
    running = np.cumsum(chunks.reshape(num_chunks, hop_length), axis=0)
    num_rows = num_frames + num_chunks - 1
    power = running[np.minimum(np.arange(num_rows), num_chunks - 1)]
    power[num_frames:] -= running[:num_chunks - 1]  # the last rows lack the first chunks' frames
    return power


class _OverlapAdd:
    """A float32 signal built from ``num_frames`` frames of ``frame_length`` placed every ``hop_length``
    samples; ``samples`` holds at least ``frame_length + (num_frames - 1) * hop_length`` of them."""

    def __init__(self, num_frames: int, frame_length: int, hop_length: int) -> None:
        self.hop_length, self.frame_length = hop_length, frame_length
        self.num_chunks = -(-frame_length // hop_length)
        self._rows = np.zeros((num_frames + self.num_chunks - 1, hop_length), np.float32)

    def add(self, first_frame: int, frames: np.ndarray) -> None:
        """Add ``frames`` [n, frame_length], the frames numbered from ``first_frame`` on."""
        hop = self.hop_length
        for chunk in range(self.num_chunks):
            width = min(hop, self.frame_length - chunk * hop)
            rows = slice(first_frame + chunk, first_frame + chunk + frames.shape[0])
            self._rows[rows, :width] += frames[:, chunk * hop:chunk * hop + width]

    @property
    def samples(self) -> np.ndarray:
        return self._rows.ravel()


def _check_frame_config(cfg: FeatureConfig, denoise: DenoiseConfig) -> None:
    if cfg.win_length > cfg.n_fft:
        raise ConfigError(f"features.win_length={cfg.win_length} exceeds n_fft={cfg.n_fft}")
    if denoise.method == "gate" and 2 * cfg.hop_length > cfg.win_length:
        raise ConfigError(f"the spectral gate's inverse STFT needs hop_length <= win_length / 2; got "
                          f"hop_length={cfg.hop_length}, win_length={cfg.win_length}")


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
