"""ttsprep.stages.step2_audio.conditioning and ttsprep.stages.step2_audio.signal_quality on generated signals and real speech."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import tone_bursts
from ttsprep.stages.core.config import AudioConfig, LoudnessConfig, PauseConfig, TrimConfig
from ttsprep.stages.core.errors import Rejected
from ttsprep.stages.step2_audio.conditioning import (_loudness_lufs, condition_audio, highpass, normalize_loudness,
                                                     remove_dc)
from ttsprep.stages.step2_audio.signal_quality import clipping_fraction, estimate_snr_db

LJ_CLIP = "ljspeech/LJSpeech-1.1/wavs/LJ001-0045.wav"
ARCTIC_CLIP = "cmu_arctic/cmu_us_slt_arctic/wav/arctic_a0009.wav"


def _lufs(samples: np.ndarray, sample_rate: int) -> float:
    return pyloudnorm.Meter(sample_rate).integrated_loudness(samples.astype(np.float64))


def _peak_dbfs(samples: np.ndarray) -> float:
    return 20 * math.log10(float(np.max(np.abs(samples))))


def _with_white_noise(samples: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``samples`` plus white noise whose power is ``snr_db`` below the clip's mean power."""
    power = np.mean(samples.astype(np.float64) ** 2)
    noise = np.random.default_rng(seed).normal(0, math.sqrt(power / 10 ** (snr_db / 10)), samples.size)
    return (samples + noise).astype(np.float32)


@pytest.fixture(scope="module")
def lj_speech(shared_corpora: Path) -> tuple[np.ndarray, int]:
    samples, sample_rate = sf.read(shared_corpora / LJ_CLIP, dtype="float32")
    return samples, sample_rate


@pytest.fixture(scope="module")
def espeak_speech(tmp_path_factory) -> tuple[np.ndarray, int]:
    """Synthetic speech with 0.5 s of silence on both sides (skips where espeak-ng is missing)."""
    path = tmp_path_factory.mktemp("espeak") / "speech.wav"
    try:
        subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), "The quick brown fox jumps over the lazy dog."],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("espeak-ng is not available")
    samples, sample_rate = sf.read(path, dtype="float32")
    pad = np.zeros(sample_rate // 2, np.float32)
    return np.concatenate((pad, samples, pad)), sample_rate


def test_remove_dc():
    signal = np.sin(np.linspace(0, 40 * np.pi, 8000)).astype(np.float32) * 0.3 + 0.2
    centred = remove_dc(signal)
    assert centred.dtype == np.float32 and centred.shape == signal.shape
    assert abs(float(centred.mean())) < 1e-6
    assert np.allclose(centred, signal - 0.2, atol=2e-3)


def test_highpass_removes_rumble_and_keeps_speech_band():
    sample_rate = 16000
    t = np.arange(sample_rate) / sample_rate
    rumble, tone = np.sin(2 * np.pi * 20 * t), np.sin(2 * np.pi * 1000 * t)
    filtered = highpass((rumble + tone).astype(np.float32), sample_rate, 80.0)
    assert filtered.dtype == np.float32 and filtered.size == t.size
    middle = slice(2000, -2000)
    assert np.sqrt(np.mean((filtered[middle] - tone[middle]) ** 2)) < 0.02  # 20 Hz down by > 30 dB
    assert highpass(np.ones(5, np.float32), sample_rate, 80.0).size == 5  # shorter than the filter's padding


def _pyloudnorm_lufs(samples: np.ndarray, sample_rate: int) -> float:
    return pyloudnorm.Meter(sample_rate).integrated_loudness(samples.astype(np.float64))


def test_loudness_equals_pyloudnorm_on_real_speech(shared_corpora):
    """The vectorised float32 meter against pyloudnorm's own, on whole clips and odd-length cuts of them."""
    for name, sample_rate in ((LJ_CLIP, 22050), (ARCTIC_CLIP, 16000)):
        samples, rate = sf.read(shared_corpora / name, dtype="float32")
        assert rate == sample_rate
        for cut_s in (None, 0.4, 0.45, 1.2345):
            clip = samples if cut_s is None else samples[:int(cut_s * rate) + 1]
            for gain in (1.0, 1e-3):
                assert _loudness_lufs(clip * gain, rate) == pytest.approx(_pyloudnorm_lufs(clip * gain, rate), abs=0.01)


def test_loudness_equals_pyloudnorm_on_espeak_and_noise(espeak_speech):
    samples, sample_rate = espeak_speech
    noise = np.random.default_rng(2).normal(0, 0.1, 12345).astype(np.float32)
    for clip, rate in ((samples, sample_rate), (noise, 16000), (noise[:6400], 16000)):
        assert _loudness_lufs(clip, rate) == pytest.approx(_pyloudnorm_lufs(clip, rate), abs=0.01)
    assert _loudness_lufs(noise[:6399], 16000) == -math.inf  # shorter than one 0.4 s block
    assert _loudness_lufs(np.zeros(16000, np.float32), 16000) == -math.inf  # every block under -70 LUFS


def test_lufs_normalisation_of_real_speech(lj_speech):
    samples, sample_rate = lj_speech
    for target in (-23.0, -18.0):
        normalized = normalize_loudness(samples, sample_rate, LoudnessConfig(target_lufs=target))
        assert normalized.dtype == np.float32 and normalized.size == samples.size
        assert abs(_lufs(normalized, sample_rate) - target) < 0.5
        assert _peak_dbfs(normalized) <= -0.1 + 1e-4


def test_lufs_gain_is_limited_to_avoid_clipping(espeak_speech):
    samples, sample_rate = espeak_speech
    normalized = normalize_loudness(samples, sample_rate, LoudnessConfig(target_lufs=0.0))
    assert _peak_dbfs(normalized) == pytest.approx(-0.1, abs=1e-3)
    assert _lufs(normalized, sample_rate) < 0.0


def test_peak_normalisation_and_short_clip_fallback():
    sample_rate = 22050
    burst = tone_bursts(sample_rate, bursts=1, lead_s=0.0, burst_s=0.2, gap_s=0.0)  # shorter than a 0.4 s block
    for method in ("peak", "lufs"):
        out = normalize_loudness(burst, sample_rate, LoudnessConfig(method=method, target_peak_dbfs=-3.0))
        assert _peak_dbfs(out) == pytest.approx(-3.0, abs=1e-3)
    unchanged = normalize_loudness(burst, sample_rate, LoudnessConfig(method="none"))
    assert np.array_equal(unchanged, burst)
    silence = np.zeros(sample_rate, np.float32)
    assert np.array_equal(normalize_loudness(silence, sample_rate, LoudnessConfig()), silence)


def test_condition_audio_trims_splits_and_normalises_bursts():
    sample_rate = 22050
    samples = tone_bursts(sample_rate, bursts=3, lead_s=0.5, burst_s=0.4, gap_s=0.7) + 0.05  # with a DC offset
    cfg = AudioConfig(pauses=PauseConfig(min_silence_len_ms=500), highpass_hz=60.0)
    result = condition_audio(samples, sample_rate, cfg)
    assert result.samples.dtype == np.float32 and result.sample_rate == sample_rate
    assert result.samples.size == round((result.trim_end_s - result.trim_start_s) * sample_rate)
    assert 0.3 < result.trim_start_s < 0.5 and result.trim_end_s < samples.size / sample_rate - 0.4
    assert len(result.pause_boundaries) == 2
    assert all(0 < b < result.samples.size for b in result.pause_boundaries)
    assert abs(_lufs(result.samples, sample_rate) - cfg.loudness.target_lufs) < 0.5
    assert abs(float(result.samples.mean())) < 1e-3


def test_condition_audio_on_real_speech(lj_speech):
    samples, sample_rate = lj_speech
    result = condition_audio(samples, sample_rate, AudioConfig(sample_rate=sample_rate))
    assert result.samples.size <= samples.size
    assert abs(_lufs(result.samples, sample_rate) + 23.0) < 0.5
    assert _peak_dbfs(result.samples) <= -0.1 + 1e-4


def test_condition_audio_rejects_silence_and_wrong_rate():
    with pytest.raises(Rejected) as error:
        condition_audio(np.zeros(22050, np.float32), 22050, AudioConfig())
    assert error.value.reason == "all_silence"
    with pytest.raises(ValueError):
        condition_audio(np.zeros(16000, np.float32), 16000, AudioConfig())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), lead_s=st.floats(0, 0.8), bursts=st.integers(1, 3), gap_s=st.floats(0.05, 0.9),
       offset=st.floats(-0.2, 0.2), method=st.sampled_from(["energy", "webrtcvad", "none"]),
       keep_silence_ms=st.integers(0, 300))
def test_conditioned_audio_is_never_longer(seed, lead_s, bursts, gap_s, offset, method, keep_silence_ms):
    sample_rate = 16000
    samples = tone_bursts(sample_rate, bursts=bursts, lead_s=lead_s, gap_s=gap_s, burst_s=0.3, seed=seed) + offset
    cfg = AudioConfig(sample_rate=sample_rate, highpass_hz=50.0,
                      trim=TrimConfig(method=method, keep_silence_ms=keep_silence_ms))
    result = condition_audio(samples, sample_rate, cfg)
    assert 0 < result.samples.size <= samples.size
    assert 0 <= result.trim_start_s < result.trim_end_s <= samples.size / sample_rate
    assert np.max(np.abs(result.samples)) < 1.0


def _snr_series(samples: np.ndarray, sample_rate: int) -> list[float]:
    return [estimate_snr_db(_with_white_noise(samples, snr_db), sample_rate) for snr_db in (20.0, 10.0, 0.0)]


def test_snr_falls_as_white_noise_is_added_to_real_speech(shared_corpora):
    for name in (LJ_CLIP, ARCTIC_CLIP):
        samples, sample_rate = sf.read(shared_corpora / name, dtype="float32")
        clean = estimate_snr_db(samples, sample_rate)
        at_20, at_10, at_0 = _snr_series(samples, sample_rate)
        assert clean > at_20 > at_10 > at_0, name
        assert at_20 - at_0 > 15  # the estimate follows the added noise, not just its sign
        assert at_0 < 10


def test_snr_falls_as_white_noise_is_added_to_espeak(espeak_speech):
    samples, sample_rate = espeak_speech
    clean = estimate_snr_db(samples, sample_rate)
    at_20, at_10, at_0 = _snr_series(samples, sample_rate)
    assert clean > at_20 > at_10 > at_0


def test_snr_rises_when_stationary_noise_is_reduced(espeak_speech):
    samples, sample_rate = espeak_speech
    noise = np.random.default_rng(1).normal(0, 0.02, samples.size)
    estimates = [estimate_snr_db((samples + scale * noise).astype(np.float32), sample_rate)
                 for scale in (1.0, 0.5, 0.1)]
    assert estimates[0] < estimates[1] < estimates[2]


def test_clipping_fraction_counts_plateaus_only():
    sample_rate = 16000
    t = np.arange(sample_rate) / sample_rate
    sine = 1.5 * np.sin(2 * np.pi * 100 * t)
    clipped = np.clip(sine, -1.0, 1.0).astype(np.float32)
    expected = np.count_nonzero(np.abs(sine) >= 0.999) / sine.size  # every plateau is far longer than 3
    assert clipping_fraction(clipped) == pytest.approx(expected)
    assert 0.4 < expected < 0.6
    assert clipping_fraction((0.5 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)) == 0.0
    spikes = np.zeros(1000, np.float32)
    spikes[[10, 11, 500, 700, 701]] = 1.0  # runs of 2 and 1: not clipping
    spikes[[900, 901, 902]] = -1.0  # a run of 3 at the negative extreme
    spikes[[300, 301, 302]] = [1.0, -1.0, 1.0]  # alternating extremes are not a plateau
    assert clipping_fraction(spikes) == pytest.approx(3 / 1000)
