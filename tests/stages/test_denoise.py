"""Spectral gate on the shared STFT vs the noisereduce package: both clean up noisy speech, alike."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from noisereduce.spectralgate.base import _smoothing_filter
from scipy.signal import fftconvolve

from stages.config import DenoiseConfig, FeatureConfig
from stages.denoise import _smooth, denoise_with_noisereduce, spectral_gate
from stages.features import istft, stft
from tests.helpers import tone_bursts

CONFIG = FeatureConfig()  # n_fft 1024, hop 256: noisereduce's own STFT at every sample rate
SPEECH = {"ljspeech": "ljspeech/LJSpeech-1.1/wavs/LJ001-0002.wav",
          "cmu_arctic": "cmu_arctic/cmu_us_slt_arctic/wav/arctic_a0009.wav"}


@pytest.fixture(scope="module", params=["ljspeech", "cmu_arctic", "espeak"])
def speech(request, tmp_path_factory) -> tuple[np.ndarray, int]:
    """Clean speech: real recordings from ../shared, or espeak-ng (tone bursts where espeak-ng is missing)."""
    if request.param == "espeak":
        path = tmp_path_factory.mktemp("espeak") / "speech.wav"
        try:
            subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), "Pack my box with five dozen liquor jugs."],
                           check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return tone_bursts(22050, noise_dbfs=-90), 22050
        samples, sample_rate = sf.read(path, dtype="float32")
        return samples, sample_rate
    corpora = request.getfixturevalue("shared_corpora")
    samples, sample_rate = sf.read(Path(corpora) / SPEECH[request.param], dtype="float32")
    return samples, sample_rate


def with_white_noise(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 1, clean.size)
    noise *= np.sqrt(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)


def snr_db(clean: np.ndarray, estimate: np.ndarray) -> float:
    clean, estimate = clean.astype(np.float64), estimate.astype(np.float64)
    return float(10 * np.log10(np.sum(clean**2) / np.sum((estimate - clean) ** 2)))


def gate(noisy: np.ndarray, sample_rate: int, cfg: DenoiseConfig) -> np.ndarray:
    spectrum = stft(noisy, CONFIG)
    return istft(spectrum * spectral_gate(np.abs(spectrum), cfg, sample_rate, CONFIG.hop_length), CONFIG, noisy.size)


@pytest.mark.parametrize("input_snr_db", [5.0, 10.0])
def test_stationary_gate_and_noisereduce_raise_the_snr_alike(speech, input_snr_db):
    clean, sample_rate = speech
    noisy = with_white_noise(clean, input_snr_db)
    assert snr_db(clean, noisy) == pytest.approx(input_snr_db, abs=0.01)
    cfg = DenoiseConfig()
    gated, reduced = gate(noisy, sample_rate, cfg), denoise_with_noisereduce(noisy, sample_rate, cfg)
    assert gated.shape == reduced.shape == clean.shape
    assert snr_db(clean, gated) > input_snr_db + 3
    assert snr_db(clean, reduced) > input_snr_db + 3
    assert np.corrcoef(gated, reduced)[0, 1] > 0.99


def test_nonstationary_gate_follows_noisereduce(speech):
    clean, sample_rate = speech
    noisy = with_white_noise(clean, 5.0)
    cfg = DenoiseConfig(stationary=False)
    gated, reduced = gate(noisy, sample_rate, cfg), denoise_with_noisereduce(noisy, sample_rate, cfg)
    assert snr_db(clean, gated) > 5.5
    assert snr_db(clean, reduced) > 5.5
    assert np.corrcoef(gated, reduced)[0, 1] > 0.9


def test_noisereduce_defaults_gate_speech_away(speech):
    """Statistics over every frame and 500 Hz x 50 ms smoothing (noisereduce's defaults) lose the speech:
    why ``noise_frame_fraction`` and the narrower smoothing are the defaults here."""
    clean, sample_rate = speech
    noisy = with_white_noise(clean, 10.0)
    stock = DenoiseConfig(noise_frame_fraction=1.0, freq_mask_smooth_hz=500, time_mask_smooth_ms=50)
    gated = gate(noisy, sample_rate, stock)
    assert snr_db(clean, gated) < 10.0
    assert np.corrcoef(gated, denoise_with_noisereduce(noisy, sample_rate, stock))[0, 1] > 0.99


@pytest.mark.parametrize("order", ["C", "F"])  # F: the STFT's own layout ([T, n_freq] in C order, transposed)
@pytest.mark.parametrize("sample_rate, hop_length", [(22050, 256), (16000, 160)])
def test_separable_smoothing_equals_noisereduce_2d_filter(sample_rate, hop_length, order):
    mask = np.asarray(np.random.default_rng(3).random((513, 120)) > 0.6, dtype=np.float32, order=order)
    cfg = DenoiseConfig(freq_mask_smooth_hz=500, time_mask_smooth_ms=50)
    n_freq, n_time = int(500 / (sample_rate / 512)), int(50 / (hop_length / sample_rate * 1000))
    expected = fftconvolve(mask, _smoothing_filter(n_freq, n_time), mode="same")
    np.testing.assert_allclose(_smooth(mask, cfg, sample_rate, 1024, hop_length), expected, atol=1e-6)


def test_mask_bounds_and_prop_decrease():
    noisy = with_white_noise(tone_bursts(22050), 10.0)
    spectrum = stft(noisy, CONFIG)
    full = spectral_gate(np.abs(spectrum), DenoiseConfig(), 22050, CONFIG.hop_length)
    half = spectral_gate(np.abs(spectrum), DenoiseConfig(prop_decrease=0.5), 22050, CONFIG.hop_length)
    assert full.dtype == np.float32 and full.shape == spectrum.shape
    assert full.min() >= 0 and full.max() <= 1 + 1e-6
    assert full.min() < 0.01 and full.max() > 0.99  # noise bins closed, tone bins open
    interior = (slice(10, -10), slice(5, -5))  # away from the zero padding of the smoothing
    np.testing.assert_allclose(half[interior], 0.5 + 0.5 * full[interior], atol=1e-5)
