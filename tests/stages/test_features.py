"""Features on one frame grid: librosa parity, frame counts, STFT round trip, and F0 against references."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import tone_bursts
from ttsprep.stages.core.config import DenoiseConfig, FeatureConfig
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.frames import num_frames_for
from ttsprep.stages.step4_features.extract import extract_features, istft, stft
from ttsprep.stages.step4_features.pitch import MIN_VOICED_FRAMES, dio_decimation, extract_f0, two_pass_range

NO_PITCH = FeatureConfig(f0_method="none")
OFF = DenoiseConfig(method="none", mel_dither_lsb=0.0)  # librosa's mel exactly
ARCTIC_WAV = "cmu_arctic/cmu_us_awb_arctic/wav/arctic_a0007.wav"
ARCTIC_F0 = "cmu_arctic/reference_f0/sptk_pitch/arctic_a0007_p16_L60_H240_o0_{}.txt"


def librosa_log_mel(samples: np.ndarray, sample_rate: int, cfg: FeatureConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=samples, sr=sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window=cfg.window, center=True, pad_mode="reflect", power=1.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=cfg.fmax)
    return np.log(np.maximum(mel, 1e-5)).T


def assert_log_mel_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within 1e-4 for bands less than 60 dB under their frame's loudest band; far below it the float32
    FFT's rounding reaches ~1e-3 relative, where librosa's float64 FFT does not."""
    audible = expected > expected.max(axis=1, keepdims=True) - np.log(1e3)
    assert audible.mean() > 0.5
    np.testing.assert_allclose(actual[audible], expected[audible], atol=1e-4)
    np.testing.assert_allclose(actual, expected, atol=5e-3)


@pytest.mark.parametrize("cfg, sample_rate", [
    (NO_PITCH, 22050),
    (FeatureConfig(f0_method="none", n_fft=1024, win_length=800, hop_length=200, window="hamming", n_mels=64,
                   fmin=50.0, fmax=None), 16000),
])
def test_mel_and_energy_match_librosa(cfg, sample_rate):
    samples = librosa.resample(tone_bursts(22050, noise_dbfs=-50), orig_sr=22050, target_sr=sample_rate)
    features = extract_features(samples, sample_rate, cfg, OFF)
    expected = librosa_log_mel(samples, sample_rate, cfg)
    assert features.mel.shape == expected.shape and features.mel.dtype == np.float32
    assert_log_mel_close(features.mel, expected)
    magnitude = np.abs(librosa.stft(samples, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                    window=cfg.window, pad_mode="reflect"))
    np.testing.assert_allclose(features.energy, np.linalg.norm(magnitude, axis=0), rtol=1e-4)
    np.testing.assert_array_equal(features.samples, samples)  # denoising off: the input, unchanged


def test_real_speech_mel_matches_librosa(shared_corpora):
    samples, sample_rate = sf.read(shared_corpora / "ljspeech/LJSpeech-1.1/wavs/LJ001-0001.wav", dtype="float32")
    features = extract_features(samples, sample_rate, NO_PITCH, OFF)
    expected = librosa_log_mel(samples, sample_rate, NO_PITCH)
    assert_log_mel_close(features.mel, expected)


@settings(max_examples=25, deadline=None)
@given(num_samples=st.integers(1, 6000), method=st.sampled_from(["none", "gate"]),
       f0_method=st.sampled_from(["dio", "none"]))
def test_every_array_is_on_the_frame_grid(num_samples, method, f0_method):
    samples = np.random.default_rng(num_samples).normal(0, 0.1, num_samples).astype(np.float32)
    features = extract_features(samples, 16000, FeatureConfig(f0_method=f0_method), DenoiseConfig(method=method))
    frames = num_frames_for(num_samples, 256)
    assert features.num_frames == frames
    assert features.mel.shape == (frames, 80)
    assert features.f0.shape == features.voiced.shape == features.energy.shape == (frames,)
    assert features.samples.shape == (num_samples,) and features.samples.dtype == np.float32
    assert all(np.isfinite(a).all() for a in (features.mel, features.f0, features.energy, features.samples))


@pytest.mark.parametrize("n_fft, win_length, hop_length", [(1024, 1024, 256), (1024, 800, 200), (512, 400, 160)])
def test_stft_round_trip_is_exact(n_fft, win_length, hop_length):
    cfg = FeatureConfig(n_fft=n_fft, win_length=win_length, hop_length=hop_length)
    samples = tone_bursts(16000, noise_dbfs=-40)[:12345]
    spectrum = stft(samples, cfg)
    assert spectrum.shape == (n_fft // 2 + 1, num_frames_for(samples.size, hop_length))
    assert spectrum.dtype == np.complex64
    reference = librosa.stft(samples, n_fft=n_fft, hop_length=hop_length, win_length=win_length, pad_mode="reflect")
    np.testing.assert_allclose(spectrum, reference, atol=1e-5 * np.abs(reference).max())
    np.testing.assert_allclose(istft(spectrum, cfg, samples.size), samples, atol=1e-5)


def test_gate_denoises_the_waveform_and_the_mel():
    clean = tone_bursts(22050, noise_dbfs=-90)
    noise = np.random.default_rng(0).normal(0, 0.02, clean.size).astype(np.float32)
    gated = extract_features(clean + noise, 22050, NO_PITCH, DenoiseConfig(snr_threshold_db=None))
    raw = extract_features(clean + noise, 22050, NO_PITCH, OFF)
    assert np.sum((gated.samples - clean) ** 2) < 0.25 * np.sum(noise**2)
    silent = raw.energy < np.percentile(raw.energy, 20)  # the gaps between bursts
    drop = np.median(raw.mel[silent]) - np.median(gated.mel[silent])
    assert 1.5 < drop <= np.log(10) + 0.05  # down towards max_attenuation_db = 20 dB (ln 10 in log-mel), no further


def test_noisereduce_method_denoises_before_the_stft():
    clean = tone_bursts(22050, noise_dbfs=-90)
    noisy = clean + np.random.default_rng(1).normal(0, 0.02, clean.size).astype(np.float32)
    features = extract_features(noisy, 22050, NO_PITCH, DenoiseConfig(method="noisereduce", snr_threshold_db=None,
                                                                      mel_dither_lsb=0.0))
    assert features.samples.shape == clean.shape
    assert np.sum((features.samples - clean) ** 2) < 0.25 * np.sum((noisy - clean) ** 2)
    assert_log_mel_close(features.mel, librosa_log_mel(features.samples, 22050, NO_PITCH))


def test_invalid_frame_settings_are_config_errors():
    samples = tone_bursts(22050)
    with pytest.raises(ConfigError):
        extract_features(samples, 22050, FeatureConfig(n_fft=512, win_length=1024), OFF)
    with pytest.raises(ConfigError):
        extract_features(samples, 22050, FeatureConfig(win_length=1024, hop_length=600), DenoiseConfig())


def glide(sample_rate: int, start_hz: float, end_hz: float, duration_s: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Five-harmonic signal with F0 gliding linearly; returns (samples float32, f0 Hz per sample)."""
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    f0 = start_hz + (end_hz - start_hz) * t / duration_s
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    samples = 0.3 * sum(np.sin(k * phase) / k for k in range(1, 6))
    return samples.astype(np.float32), f0


@pytest.mark.parametrize("method, dio_speed, analysis_rate", [
    ("dio", 1, None), ("dio", 2, None), ("dio", 4, None), ("harvest", 1, None), ("harvest", 2, 8000),
    ("dio", 1, 8000), ("dio", 2, 8000), ("dio", 3, 8000), ("dio", 4, 8000)])
@pytest.mark.parametrize("sample_rate, hop_length, start_hz, end_hz", [(22050, 256, 150, 200), (16000, 80, 300, 450)])
def test_synthetic_glide_is_recovered_within_2_percent(method, dio_speed, analysis_rate, sample_rate, hop_length,
                                                      start_hz, end_hz):
    samples, true_f0 = glide(sample_rate, start_hz, end_hz)
    frames = num_frames_for(samples.size, hop_length)
    f0, voiced = extract_f0(samples, sample_rate, hop_length, frames, method=method, dio_speed=dio_speed,
                            analysis_rate=analysis_rate, harvest_range="per_utterance" if analysis_rate else "configured")
    assert f0.shape == voiced.shape == (frames,) and f0.dtype == np.float32
    expected = true_f0[np.minimum(np.arange(frames) * hop_length, samples.size - 1)]
    inner = slice(frames // 10, frames - frames // 10)  # edges: half-filled analysis windows
    assert voiced[inner].all()
    assert np.max(np.abs(f0[inner] / expected[inner] - 1)) < 0.02


@pytest.mark.parametrize("method, dio_speed, analysis_rate, harvest_range, max_cents, min_voicing", [
    ("dio", 1, None, None, 40.0, 0.85), ("dio", 2, None, None, 40.0, 0.85), ("dio", 4, None, None, 40.0, 0.85),
    ("harvest", 1, None, "configured", 40.0, 0.65), ("harvest", 2, 8000, "per_utterance", 40.0, 0.65),
    ("dio", 1, 8000, None, 40.0, 0.85), ("dio", 2, 8000, None, 40.0, 0.85), ("dio", 3, 8000, None, 40.0, 0.85),
    ("dio", 4, 8000, None, 40.0, 0.85)])
def test_f0_agrees_with_sptk_reference_tracks(shared_corpora, method, dio_speed, analysis_rate, harvest_range,
                                              max_cents, min_voicing):
    """arctic_a0007 (16 kHz, hop 80, 60-240 Hz) against SPTK RAPT and SWIPE' (values are 16000 / F0), at the
    file's rate and analysed at 8 kHz (the default ``f0_sample_rate``)."""
    samples, sample_rate = sf.read(shared_corpora / ARCTIC_WAV, dtype="float32")
    frames = num_frames_for(samples.size, 80)
    f0, voiced = extract_f0(samples, sample_rate, 80, frames, method=method, f0_floor=60, f0_ceil=240,
                            dio_speed=dio_speed, analysis_rate=analysis_rate,
                            harvest_range=harvest_range or "configured")
    for tracker in ("rapt", "swipe"):
        period = np.loadtxt(shared_corpora / ARCTIC_F0.format(tracker))
        reference = np.where(period > 0, sample_rate / np.where(period > 0, period, 1), 0.0)
        length = min(reference.size, frames)
        ours, ref = f0[:length], reference[:length]
        both = (ours > 0) & (ref > 0)
        ratio = ours[both] / ref[both]
        assert both.sum() > 250
        assert np.median(np.abs(1200 * np.log2(ratio))) < max_cents
        assert np.mean(np.abs(ratio - 1) > 0.2) < 0.05  # gross pitch errors
        assert np.mean(voiced[:length] == (ref > 0)) > min_voicing


def test_low_analysis_rate_matches_full_rate_on_real_speech(shared_corpora):
    """LJSpeech (22.05 kHz): DIO + StoneMask analysed at 8 kHz and decimated (the defaults) agree with the
    undecimated 22.05 kHz analysis."""
    samples, sample_rate = sf.read(shared_corpora / "ljspeech/LJSpeech-1.1/wavs/LJ001-0001.wav", dtype="float32")
    frames = num_frames_for(samples.size, 256)
    defaults = FeatureConfig()
    full, _ = extract_f0(samples, sample_rate, 256, frames, dio_speed=1)
    low, _ = extract_f0(samples, sample_rate, 256, frames, dio_speed=defaults.dio_speed,
                        analysis_rate=defaults.f0_sample_rate)
    both = (full > 0) & (low > 0)
    assert both.sum() > 300
    assert np.median(np.abs(1200 * np.log2(low[both] / full[both]))) < 5
    assert np.mean(np.abs(low[both] / full[both] - 1) > 0.2) < 0.02
    assert np.mean((full > 0) == (low > 0)) > 0.93


@pytest.mark.parametrize("rate, dio_speed, f0_ceil, expected", [
    (8000, 3, 800.0, 3), (8000, 12, 800.0, 4), (8000, 4, 1000.0, 3), (8000, 3, 4000.0, 1), (22050, 12, 800.0, 11)])
def test_dio_decimation_keeps_the_ceiling_below_nyquist(rate, dio_speed, f0_ceil, expected):
    """DIO's decimated rate stays at or above 2.5 x f0_ceil: the requested speed is lowered, never raised."""
    assert dio_decimation(rate, dio_speed, f0_ceil) == expected
    assert rate / expected >= 2.5 * f0_ceil or expected == 1


@pytest.mark.parametrize("analysis_rate", [None, 16000, 8000])
def test_f0_frames_stay_on_the_grid_at_any_analysis_rate(analysis_rate):
    """A step from 150 to 250 Hz at 0.75 s shows at the same frame whatever rate the F0 is analysed at."""
    sample_rate, hop_length = 22050, 256
    t = np.arange(int(1.5 * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(np.where(t < 0.75, 150.0, 250.0)) / sample_rate
    samples = (0.3 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)
    frames = num_frames_for(samples.size, hop_length)
    f0, _ = extract_f0(samples, sample_rate, hop_length, frames, dio_speed=1, analysis_rate=analysis_rate)
    step_frame = round(0.75 * sample_rate / hop_length)  # frame 65 is centred 4 ms after the step
    assert np.all(np.abs(f0[step_frame - 20:step_frame - 1] - 150) < 3)
    assert np.all(np.abs(f0[step_frame + 1:step_frame + 20] - 250) < 5)


def test_f0_range_override_and_no_pitch():
    samples, _ = glide(22050, 150, 150)
    frames = num_frames_for(samples.size, 256)
    default = extract_features(samples, 22050, FeatureConfig(), OFF)
    narrowed = extract_features(samples, 22050, FeatureConfig(), OFF, f0_range=(200.0, 400.0))
    assert np.median(default.f0[default.voiced]) == pytest.approx(150, rel=0.02)
    assert narrowed.voiced.sum() == 0 or abs(np.median(narrowed.f0[narrowed.voiced]) / 150 - 1) > 0.2
    f0, voiced = extract_f0(samples, 22050, 256, frames, method="none")
    assert not f0.any() and not voiced.any() and f0.shape == (frames,)


def test_two_pass_range_is_hirsts_quartile_rule_within_the_configured_range():
    first_pass = np.array([0.0] * 30 + list(np.linspace(100.0, 200.0, 101)))  # quartiles 125 and 175 Hz
    assert two_pass_range(first_pass, 71.0, 800.0) == pytest.approx((93.75, 262.5))
    assert two_pass_range(first_pass, 120.0, 240.0) == (120.0, 240.0)
    assert two_pass_range(np.array([0.0] * 50 + [150.0] * (MIN_VOICED_FRAMES - 1)), 71.0, 800.0) == (71.0, 800.0)


def test_per_utterance_harvest_range_follows_the_speaker():
    """A 110 Hz voice and a 300 Hz one: each is found with Harvest's range narrowed around it, and a range that
    excludes the voice (what a fixed low range does to the high voice) loses it."""
    for hz in (110.0, 300.0):
        samples, _ = glide(22050, hz, hz * 1.1)
        frames = num_frames_for(samples.size, 256)
        f0, voiced = extract_f0(samples, 22050, 256, frames, method="harvest", harvest_range="per_utterance",
                                analysis_rate=8000)
        assert voiced.mean() > 0.8 and np.median(f0[voiced]) == pytest.approx(hz * 1.05, rel=0.03)
    low_only, voiced = extract_f0(samples, 22050, 256, frames, method="harvest", f0_floor=71.0, f0_ceil=200.0,
                                  harvest_range="per_utterance", analysis_rate=8000)
    assert voiced.mean() < 0.5 or abs(np.median(low_only[voiced]) / (hz * 1.05) - 1) > 0.2
