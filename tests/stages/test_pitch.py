"""F0 two passes and clean-up (stages/step4_features/pitch.py, stages/step4_features/pitch_refine.py) on synthetic voices of known F0."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.frames import num_frames_for
from ttsprep.stages.core.records import Utterance
from ttsprep.stages.step4_features import acoustic_row
from ttsprep.stages.step4_features.pitch import PitchSettings, extract_f0, final_pass, first_pass, speaker_ranges
from ttsprep.stages.step4_features.pitch_refine import periodicity, refine_f0

RATE, HOP = 22050, 256


def voice(f0_track: np.ndarray, *, harmonics: int = 8, weak_fundamental: bool = False, seed: int = 0) -> np.ndarray:
    """A harmonic voice following ``f0_track`` (Hz per sample) with a little noise; with ``weak_fundamental``
    the second harmonic dominates (what drives trackers an octave up)."""
    phase = 2 * np.pi * np.cumsum(f0_track) / RATE
    gains = [1.0 / k for k in range(1, harmonics + 1)]
    if weak_fundamental:
        gains[0], gains[1] = 0.15, 1.0
    samples = sum(g * np.sin(k * phase) for k, g in enumerate(gains, start=1))
    samples = samples / np.max(np.abs(samples)) * 0.3
    return (samples + 0.002 * np.random.default_rng(seed).standard_normal(samples.size)).astype(np.float32)


def with_fricatives(samples: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` with three 120 ms bursts of loud high-pass noise (unvoiced); the burst mask per sample."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(samples.size, bool)
    out = samples.copy()
    for centre in (0.25, 0.5, 0.75):
        start = int(centre * samples.size)
        stop = start + int(0.12 * RATE)
        noise = np.diff(rng.standard_normal(stop - start + 1)).astype(np.float32) * 0.1
        out[start:stop] = noise
        mask[start:stop] = True
    return out, mask


def frames_of(per_sample: np.ndarray, num_frames: int) -> np.ndarray:
    return per_sample[np.minimum(np.arange(num_frames) * HOP, per_sample.size - 1)]


def check_track(samples: np.ndarray, truth: np.ndarray, f0: np.ndarray, voiced: np.ndarray) -> None:
    frames = f0.size
    expected = frames_of(truth, frames)
    inner = np.zeros(frames, bool)
    inner[frames // 10: frames - frames // 10] = True
    both = voiced & (expected > 0)
    ratio = f0[both] / expected[both]
    assert np.all(np.abs(ratio - 1) < 0.2), f"gross errors at {np.round(f0[both][np.abs(ratio - 1) >= 0.2])}"
    assert voiced[inner & (expected > 0)].mean() > 0.85


@pytest.mark.parametrize("method", ["dio", "swift_f0"])
@pytest.mark.parametrize("low, high, weak", [(80.0, 120.0, False), (80.0, 120.0, True), (180.0, 350.0, False),
                                             (180.0, 350.0, True), (100.0, 300.0, False)])
def test_synthetic_voices_have_no_octave_errors(low, high, weak, method):
    """A low male voice, a high female one (each also with a dominant second harmonic) and a wide glide,
    with unvoiced noise bursts: every voiced frame within 20 % of the truth, the bursts unvoiced."""
    t = np.arange(int(2.0 * RATE)) / RATE
    truth = low + (high - low) * (0.5 - 0.5 * np.cos(2 * np.pi * t / 2.0))  # up and down again
    samples, bursts = with_fricatives(voice(truth, weak_fundamental=weak))
    truth = np.where(bursts, 0.0, truth)
    frames = num_frames_for(samples.size, HOP)
    f0, voiced = extract_f0(samples, RATE, HOP, frames, method=method, analysis_rate=8000)
    check_track(samples, truth, f0, voiced)
    in_burst = frames_of(bursts, frames)
    core = in_burst & np.roll(in_burst, 2) & np.roll(in_burst, -2)
    assert not voiced[core].any()


@pytest.mark.parametrize("method", ["dio", "harvest", "swift_f0"])
@pytest.mark.parametrize("f0_range", [(71.0, 800.0), (150.0, 220.0), (60.0, 240.0)])
def test_no_voiced_value_outside_the_range(method, f0_range):
    t = np.arange(int(1.5 * RATE)) / RATE
    truth = 140 * 2 ** (1.2 * t / 1.5)  # 140 -> 320 Hz: partly outside the narrow ranges
    samples, _ = with_fricatives(voice(truth))
    frames = num_frames_for(samples.size, HOP)
    for range_mode in ("utterance", "configured"):
        f0, voiced = extract_f0(samples, RATE, HOP, frames, method=method, f0_floor=f0_range[0], f0_ceil=f0_range[1],
                                analysis_rate=8000, range_mode=range_mode, harvest_range="per_utterance")
        assert np.array_equal(voiced, f0 > 0)
        assert np.all((f0[voiced] >= f0_range[0]) & (f0[voiced] <= f0_range[1]))


def test_refine_folds_octave_jumps_and_stonemask_drift_into_the_range():
    t = np.arange(int(1.5 * RATE)) / RATE
    samples = voice(np.full(t.size, 110.0))
    rate, frames = 22050, num_frames_for(samples.size, HOP)
    analysis = periodicity(samples, rate, HOP, frames, 71.0)
    track = np.full(frames, 110.0)
    track[40:46] = 220.0  # an octave jump
    track[60:62] = 65.0  # below the floor (StoneMask drift)
    track[80] = 110.0 * 3.9  # far out
    f0 = refine_f0(track, analysis, 71.0, 800.0)
    voiced = f0 > 0
    assert np.all(np.abs(f0[40:46] / 110 - 1) < 0.05)
    assert np.all((f0[voiced] >= 71) & (f0[voiced] <= 800))
    assert np.all(np.abs(f0[voiced] / 110 - 1) < 0.2)


def _utterance(tmp_path, utt_id: str, speaker: str, hz: float, seed: int) -> Utterance:
    t = np.arange(int(1.8 * RATE)) / RATE
    truth = hz * (1 + 0.15 * np.sin(2 * np.pi * t / 1.2 + seed))
    samples = voice(truth, seed=seed)
    for pause in (0.5, 1.1):  # pauses: the SNR filter needs some quiet
        samples[int(pause * RATE):int((pause + 0.25) * RATE)] *= 0.001
    path = tmp_path / f"{utt_id}.wav"
    sf.write(path, samples, RATE)
    return Utterance(utt_id=utt_id, dataset="synthetic", speaker=speaker, language="en", text="a", audio_path=str(path),
                     sample_rate=RATE, channels=1, num_samples=t.size, duration_s=1.8, checksum=utt_id,
                     audio_format="wav")


def test_speaker_pass_narrows_a_speakers_range_and_falls_back_per_utterance(tmp_path):
    """Five utterances of a 120 Hz speaker get one range from all five (narrower than the configured one);
    a speaker with one utterance gets that utterance's own range; explicit ranges win; all are recorded."""
    many = [_utterance(tmp_path, f"m{i}", "low", 120.0, i) for i in range(5)]
    single = _utterance(tmp_path, "s0", "high", 260.0, 9)
    explicit = _utterance(tmp_path, "e0", "fixed", 200.0, 11)
    config = StageConfig.model_validate({"features": {"f0_speaker_min_utterances": 5,
                                                      "speaker_f0_range": {"fixed": [150.0, 300.0]}},
                                         })
    rows, ranges = acoustic_row.acoustic_rows([*many, single, explicit], config)
    assert ranges["low"]["source"] == "speaker" and ranges["low"]["utterances"] == 5
    low_floor, low_ceil = ranges["low"]["floor_hz"], ranges["low"]["ceil_hz"]
    assert 71.0 < low_floor < 110.0 and 130.0 < low_ceil < 300.0
    assert ranges["high"]["source"] == "utterance" and 150.0 < ranges["high"]["floor_hz"] < 260.0 < ranges["high"]["ceil_hz"]
    assert ranges["fixed"] == {"floor_hz": 150.0, "ceil_hz": 300.0, "source": "explicit", "utterances": 1}
    for utt in [*many, single, explicit]:
        row = rows[utt.utt_id]
        f0, voiced = np.asarray(row["f0"]), np.asarray(row["voiced"])
        spk = ranges[utt.speaker]
        assert voiced.mean() > 0.7
        assert np.all((f0[voiced] >= spk["floor_hz"]) & (f0[voiced] <= spk["ceil_hz"]))
    single_alone = acoustic_row.acoustic_row(single, config)
    np.testing.assert_array_equal(single_alone["f0"], rows["s0"]["f0"])


def test_speaker_ranges_need_enough_utterances():
    tracks = {"a": [np.linspace(100, 140, 50)] * 3, "b": [np.linspace(200, 300, 50)]}
    ranges = speaker_ranges(tracks, 71.0, 800.0, min_utterances=3)
    assert ranges["b"] is None
    assert ranges["a"] == pytest.approx((0.75 * 110, 1.5 * 130), rel=0.01)  # quartiles of 100-140 Hz


def test_first_and_final_pass_equal_extract_f0():
    t = np.arange(int(1.0 * RATE)) / RATE
    samples = voice(150 + 30 * np.sin(2 * np.pi * t))
    frames = num_frames_for(samples.size, HOP)
    settings = PitchSettings(analysis_rate=8000)
    first = first_pass(samples, RATE, HOP, frames, settings)
    f0, voiced = final_pass(first, (100.0, 250.0), settings, frames)
    assert np.all((f0[voiced] >= 100) & (f0[voiced] <= 250)) and voiced.mean() > 0.8
