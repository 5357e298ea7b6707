"""Spectral gate on the shared STFT vs the noisereduce package: both clean up noisy speech, alike; clean
speech passes untouched (per-utterance SNR decision), the attenuation is bounded, and the mel has no floor."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from noisereduce.spectralgate.base import _smoothing_filter
from scipy.signal import fftconvolve

from tests.helpers import tone_bursts
from ttsprep.stages.core.config import DenoiseConfig, FeatureConfig
from ttsprep.stages.step2_audio.denoise import (_smooth, denoise_method, denoise_with_noisereduce, mask_floor,
                                                spectral_gate)
from ttsprep.stages.step2_audio.signal_quality import estimate_snr_db
from ttsprep.stages.step4_features.extract import LOG_MEL_FLOOR, extract_features, istft, stft

CONFIG = FeatureConfig()  # n_fft 1024, hop 256: noisereduce's own STFT at every sample rate
NO_PITCH = FeatureConfig(f0_method="none")
OFF = DenoiseConfig(method="none")
UNBOUNDED = DenoiseConfig(max_attenuation_db=None, snr_threshold_db=None)
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
    full = spectral_gate(np.abs(spectrum), UNBOUNDED, 22050, CONFIG.hop_length)
    half = spectral_gate(np.abs(spectrum), UNBOUNDED.model_copy(update={"prop_decrease": 0.5}), 22050,
                         CONFIG.hop_length)
    assert full.dtype == np.float32 and full.shape == spectrum.shape
    assert full.min() >= 0 and full.max() <= 1 + 1e-6
    assert full.min() < 0.01 and full.max() > 0.99  # noise bins closed, tone bins open
    interior = (slice(10, -10), slice(5, -5))  # away from the zero padding of the smoothing
    np.testing.assert_allclose(half[interior], 0.5 + 0.5 * full[interior], atol=1e-5)


def floor_share(mel: np.ndarray) -> float:
    return float(np.mean(mel <= np.float32(np.log(LOG_MEL_FLOOR))))


def test_clean_speech_passes_untouched_by_default(speech):
    clean, sample_rate = speech
    snr = estimate_snr_db(clean, sample_rate)
    assert snr >= DenoiseConfig().snr_threshold_db
    assert denoise_method(DenoiseConfig(), clean, sample_rate) == "none"
    default, off = (extract_features(clean, sample_rate, NO_PITCH, cfg) for cfg in (DenoiseConfig(), OFF))
    np.testing.assert_array_equal(default.mel, off.mel)
    np.testing.assert_array_equal(default.samples, clean)
    assert floor_share(default.mel) < 0.005  # espeak-ng: untrimmed digital silence, the dither (1 LSB) only
    assert np.all(default.energy > 0)


@pytest.mark.parametrize("method", ["gate", "noisereduce"])
@pytest.mark.parametrize("input_snr_db", [0.0, 10.0])
def test_noisy_speech_gains_snr_under_the_defaults(speech, method, input_snr_db):
    clean, sample_rate = speech
    noisy = with_white_noise(clean, input_snr_db)
    cfg = DenoiseConfig(method=method)
    assert denoise_method(cfg, noisy, sample_rate) == method
    denoised = extract_features(noisy, sample_rate, NO_PITCH, cfg)
    assert snr_db(clean, denoised.samples) > input_snr_db + 3
    assert floor_share(denoised.mel) == 0.0  # bounded attenuation, dither after the mask: no holes


@pytest.mark.parametrize("max_attenuation_db", [6.0, 20.0, 40.0])
@pytest.mark.parametrize("stationary", [True, False])
def test_gate_mask_never_falls_under_the_attenuation_bound(max_attenuation_db, stationary):
    noisy = with_white_noise(tone_bursts(22050), 10.0)
    magnitude = np.abs(stft(noisy, CONFIG))
    cfg = DenoiseConfig(max_attenuation_db=max_attenuation_db, stationary=stationary)
    floor = 10 ** (-max_attenuation_db / 20)
    assert mask_floor(cfg) == pytest.approx(floor)
    mask = spectral_gate(magnitude, cfg, 22050, CONFIG.hop_length)
    assert mask.min() >= np.float32(floor) * (1 - 1e-6)  # the edges included (smoothing's zero padding)
    assert mask.min() < floor + 0.02 and mask.max() <= 1 + 1e-6  # the noise is attenuated down to the bound
    unbounded = spectral_gate(magnitude, UNBOUNDED.model_copy(update={"stationary": stationary}), 22050,
                              CONFIG.hop_length)
    assert unbounded.min() < 1e-3
    assert mask_floor(DenoiseConfig(max_attenuation_db=40.0, prop_decrease=0.5)) == 0.5  # the weaker one wins


@pytest.mark.parametrize("method", ["gate", "noisereduce"])
def test_noise_alone_is_attenuated_by_at_most_the_bound(method):
    noise = np.random.default_rng(4).normal(0, 0.01, 3 * 22050).astype(np.float32)
    kept = {}
    for cap in (10.0, None):
        cfg = DenoiseConfig(method=method, max_attenuation_db=cap, snr_threshold_db=None)
        out = extract_features(noise, 22050, NO_PITCH, cfg).samples
        kept[cap] = 10 * np.log10(np.sum(out.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))
    assert -10.5 < kept[10.0] < -6.0
    assert kept[None] < kept[10.0] - 5


def test_per_utterance_decision_follows_the_threshold():
    clean = tone_bursts(22050, noise_dbfs=-60)
    noisy = with_white_noise(clean, 5.0)
    snr_clean, snr_noisy = estimate_snr_db(clean, 22050), estimate_snr_db(noisy, 22050)
    assert snr_noisy < 18 < snr_clean
    for threshold in (snr_noisy - 1, (snr_noisy + snr_clean) / 2, snr_clean + 1):
        cfg = DenoiseConfig(snr_threshold_db=threshold)
        assert denoise_method(cfg, clean, 22050) == ("gate" if snr_clean < threshold else "none")
        assert denoise_method(cfg, noisy, 22050) == ("gate" if snr_noisy < threshold else "none")
    assert denoise_method(DenoiseConfig(snr_threshold_db=None), clean, 22050) == "gate"
    assert denoise_method(DenoiseConfig(method="none", snr_threshold_db=None), noisy, 22050) == "none"
    # the caller's estimate is used as given (process.py passes the shard's snr_db)
    assert denoise_method(DenoiseConfig(), clean, 22050, snr_db=0.0) == "gate"
    assert denoise_method(DenoiseConfig(), noisy, 22050, snr_db=40.0) == "none"
    passed = extract_features(noisy, 22050, NO_PITCH, DenoiseConfig(), snr_db=40.0)
    np.testing.assert_array_equal(passed.samples, noisy)
    gated = extract_features(noisy, 22050, NO_PITCH, DenoiseConfig(), snr_db=snr_noisy)
    assert snr_db(clean, gated.samples) > 5.0 + 3


def test_digital_silence_stays_above_the_mel_floor():
    """The dither (one 16-bit LSB, added in power) keeps digital silence off LOG_MEL_FLOOR and energy off 0;
    it is fixed (same input, same features) and not in the waveform."""
    samples = tone_bursts(22050, noise_dbfs=-90)
    samples[: 22050 // 4] = 0.0
    features = extract_features(samples, 22050, NO_PITCH, OFF)
    assert floor_share(features.mel) < 0.005
    assert np.all(features.energy > 0)
    np.testing.assert_array_equal(features.samples, samples)
    np.testing.assert_array_equal(extract_features(samples, 22050, NO_PITCH, OFF).mel, features.mel)
    gated = extract_features(samples, 22050, NO_PITCH, DenoiseConfig(snr_threshold_db=None))
    assert floor_share(gated.mel) < 0.005 and np.all(gated.energy > 0)
    loud = features.mel > -5.5  # 40 dB above the dither (its mel: ~-10.6): as without it
    plain = extract_features(samples, 22050, NO_PITCH, OFF.model_copy(update={"mel_dither_lsb": 0.0}))
    assert floor_share(plain.mel) > 0.05 and np.any(plain.energy == 0)
    np.testing.assert_allclose(features.mel[loud], plain.mel[loud], atol=1e-4)
