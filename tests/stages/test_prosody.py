"""Per-token means, continuous log-F0 and normalisation against straightforward loop references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttsprep.stages.core.errors import InvariantViolation, Rejected
from ttsprep.stages.step5_durations.token_prosody import interpolate_f0, normalise, token_means


def loop_token_means(values, durations, voiced, r):
    means, frame = [], 0
    for duration in durations:
        chosen = [values[t] for t in range(frame, frame + duration * r) if voiced is None or voiced[t]]
        means.append(sum(chosen) / len(chosen) if chosen else 0.0)
        frame += duration * r
    return means


@st.composite
def token_tracks(draw):
    r = draw(st.integers(1, 4))
    durations = draw(st.lists(st.integers(0, 6), min_size=1, max_size=15))
    num_frames = sum(durations) * r
    values = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=num_frames, max_size=num_frames))
    voiced = draw(st.none() | st.lists(st.booleans(), min_size=num_frames, max_size=num_frames))
    return np.array(values), np.array(durations), None if voiced is None else np.array(voiced, dtype=bool), r


@settings(max_examples=300, deadline=None)
@given(token_tracks())
def test_token_means_match_the_loop_reference(track):
    values, durations, voiced, r = track
    means = token_means(values, durations, voiced=voiced, reduction_factor=r)
    assert means.dtype == np.float32 and means.shape == durations.shape
    np.testing.assert_allclose(means, loop_token_means(values, durations, voiced, r), rtol=1e-5, atol=1e-3)


def test_token_means_on_a_hand_case():
    values = np.array([1.0, 3.0, 100.0, 5.0, 7.0, 9.0])
    voiced = np.array([True, True, False, True, False, False])
    # r = 2: durations [1, 0, 2] cover frames [0, 2), nothing, [2, 6)
    assert token_means(values, [1, 0, 2], reduction_factor=2).tolist() == [2.0, 0.0, 30.25]
    assert token_means(values, [1, 0, 2], voiced=voiced, reduction_factor=2).tolist() == [2.0, 0.0, 5.0]
    assert token_means(values, [2, 1], voiced=voiced, reduction_factor=2)[1] == 0.0  # no voiced frame left


def test_token_means_reject_durations_that_do_not_cover_the_frames():
    with pytest.raises(InvariantViolation):
        token_means(np.zeros(7), [3, 4], reduction_factor=2)
    with pytest.raises(InvariantViolation):
        token_means(np.zeros(4), [5, -1])


def loop_interpolate_hz(f0, voiced):
    known = [t for t in range(len(f0)) if voiced[t] and f0[t] > 0]
    filled = []
    for t in range(len(f0)):
        before = [k for k in known if k <= t]
        after = [k for k in known if k >= t]
        if not before:
            filled.append(f0[after[0]])
        elif not after:
            filled.append(f0[before[-1]])
        elif before[-1] == after[0]:
            filled.append(f0[t])
        else:
            left, right = before[-1], after[0]
            filled.append(f0[left] + (f0[right] - f0[left]) * (t - left) / (right - left))
    return filled


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(60, 500), st.booleans()), min_size=1, max_size=40).filter(
    lambda frames: any(v for _, v in frames)))
def test_interpolate_f0_matches_the_loop_reference(frames):
    f0 = np.array([hz if v else 0.0 for hz, v in frames])
    voiced = np.array([v for _, v in frames])
    log_f0 = interpolate_f0(f0, voiced)
    assert log_f0.dtype == np.float32 and np.all(np.isfinite(log_f0))
    np.testing.assert_allclose(log_f0, np.log(loop_interpolate_hz(f0, voiced)), rtol=1e-6)


def test_interpolate_f0_holds_edges_and_rejects_unvoiced_utterances():
    f0 = np.array([0.0, 0.0, 100.0, 0.0, 200.0, 0.0])
    log_f0 = interpolate_f0(f0, f0 > 0)
    np.testing.assert_allclose(np.exp(log_f0), [100, 100, 100, 150, 200, 200], rtol=1e-6)
    with pytest.raises(Rejected) as unvoiced:
        interpolate_f0(np.zeros(5), np.zeros(5, dtype=bool))
    assert unvoiced.value.reason == "no_voiced_frames"


def test_normalise():
    normalised = normalise(np.array([1.0, 3.0, 5.0]), 3.0, 2.0)
    assert normalised.dtype == np.float32 and normalised.tolist() == [-1.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        normalise(np.ones(3), 0.0, 0.0)


def test_token_prosody_is_normalised_with_the_speaker_or_global_statistics():
    from ttsprep.stages.step5_durations.token_prosody import normalise_token_prosody

    stats = {"global": {"log_f0": {"mean": np.log(100.0), "std": 0.5}, "energy": {"mean": 2.0, "std": 4.0}},
             "speakers": {"a": {"log_f0": {"mean": np.log(200.0), "std": 0.25}, "energy": {"mean": 1.0, "std": 1.0}},
                          "silent": {"log_f0": {"mean": None, "std": None}, "energy": {"mean": 1.0, "std": 1.0}}}}
    pitch_hz, energy = np.array([200.0, 0.0, 100.0]), np.array([2.0, 6.0, 10.0])
    pitch_z, energy_z = normalise_token_prosody(pitch_hz, energy, stats, speaker=None, pitch_is_log=False)
    np.testing.assert_allclose(pitch_z, [np.log(2.0) / 0.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(energy_z, [0.0, 1.0, 2.0], atol=1e-6)
    pitch_z, energy_z = normalise_token_prosody(pitch_hz, energy, stats, speaker="a", pitch_is_log=False)
    np.testing.assert_allclose(pitch_z, [0.0, 0.0, -np.log(2.0) / 0.25], atol=1e-6)
    np.testing.assert_allclose(energy_z, [1.0, 5.0, 9.0], atol=1e-6)
    log_pitch = np.log(np.array([100.0, 200.0]))
    pitch_z, _ = normalise_token_prosody(log_pitch, energy[:2], stats, speaker=None, pitch_is_log=True)
    np.testing.assert_allclose(pitch_z, [0.0, np.log(2.0) / 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="silent"):
        normalise_token_prosody(pitch_hz, energy, stats, speaker="silent", pitch_is_log=False)
