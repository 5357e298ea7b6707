"""Monotonic alignment search against brute force, and durations/quality from attention matrices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ttsprep.aligners.attention_durations import attention_quality, durations_from_attention
from ttsprep.aligners.mas import monotonic_alignment_search
from ttsprep.stages.core.config import AlignConfig
from ttsprep.stages.core.errors import AlignmentFailed


def path_score(log_probs: np.ndarray, durations: np.ndarray) -> float:
    """Summed log-probability of the monotonic path that gives token n ``durations[n]`` frames."""
    token_of_frame = np.repeat(np.arange(len(durations)), durations)
    return float(log_probs[token_of_frame, np.arange(log_probs.shape[1])].sum())


def brute_force_best_score(log_probs: np.ndarray) -> float:
    """Best score over every way of cutting T frames into N non-empty runs (all monotonic paths)."""
    num_tokens, num_frames = log_probs.shape
    best = -np.inf
    for cuts in itertools.combinations(range(1, num_frames), num_tokens - 1):
        durations = np.diff((0, *cuts, num_frames))
        best = max(best, path_score(log_probs, durations))
    return best


@st.composite
def log_prob_matrices(draw) -> np.ndarray:
    num_tokens = draw(st.integers(1, 5))
    num_frames = draw(st.integers(num_tokens, 9))
    return draw(arrays(np.float64, (num_tokens, num_frames), elements=st.floats(-10, 0, allow_nan=False)))


@settings(max_examples=200, deadline=None)
@given(log_probs=log_prob_matrices())
def test_mas_finds_the_best_monotonic_path(log_probs):
    durations = monotonic_alignment_search(log_probs)
    assert durations.dtype == np.int32
    assert durations.shape == (log_probs.shape[0],)
    assert durations.sum() == log_probs.shape[1]
    assert durations.min() >= 1
    assert path_score(log_probs, durations) == pytest.approx(brute_force_best_score(log_probs), abs=1e-9)


def test_mas_recovers_a_planted_path_through_noise():
    rng = np.random.default_rng(3)
    true_durations = rng.integers(1, 12, size=40)
    token_of_frame = np.repeat(np.arange(40), true_durations)
    probs = rng.uniform(0.0, 0.3, size=(40, token_of_frame.size))
    probs[token_of_frame, np.arange(token_of_frame.size)] = 0.9
    np.testing.assert_array_equal(monotonic_alignment_search(np.log(probs)), true_durations)


def test_mas_rejects_fewer_frames_than_tokens_and_non_finite_input():
    with pytest.raises(AlignmentFailed) as failure:
        monotonic_alignment_search(np.zeros((5, 4)))
    assert failure.value.reason == "too_few_frames"
    with pytest.raises(ValueError, match="finite"):
        monotonic_alignment_search(np.full((2, 4), -np.inf))


def block_attention(durations: np.ndarray, *, sharpness: float = 0.9, seed: int = 0) -> np.ndarray:
    """Attention [T_dec, N] putting ``sharpness`` of each step's mass on its token (by ``durations``)."""
    rng = np.random.default_rng(seed)
    token_of_step = np.repeat(np.arange(len(durations)), durations)
    noise = rng.uniform(size=(token_of_step.size, len(durations)))
    noise[np.arange(token_of_step.size), token_of_step] = 0
    attention = noise / noise.sum(axis=1, keepdims=True) * (1 - sharpness)
    attention[np.arange(token_of_step.size), token_of_step] = sharpness
    return attention


def test_durations_from_sharp_padded_attention():
    durations = np.array([3, 1, 4, 2, 5])
    padded = np.zeros((20, 8))
    padded[:15, :5] = block_attention(durations)
    result, quality = durations_from_attention(padded, token_length=5, frame_length_r=15)
    np.testing.assert_array_equal(result, durations)
    assert result.dtype == np.int32
    assert quality["focus_rate"] == pytest.approx(0.9)
    assert quality["diagonality"] > 0.9


@pytest.mark.parametrize("attention, measure", [
    (np.full((30, 10), 0.1), "focus_rate"),  # blurred: max weight 0.1 everywhere
    (block_attention(np.full(10, 3))[::-1], "diagonality"),  # sharp but running backwards
])
def test_low_quality_attention_goes_to_the_ledger(attention, measure):
    quality = attention_quality(attention)
    with pytest.raises(AlignmentFailed, match=f"{measure}={quality[measure]:.3f}") as failure:
        durations_from_attention(attention, token_length=10, frame_length_r=30)
    assert failure.value.reason == "attention_low_quality"
    lenient = AlignConfig(attention_min_focus_rate=0.0, attention_min_diagonality=-1.0)
    durations, _ = durations_from_attention(attention, token_length=10, frame_length_r=30, config=lenient)
    assert durations.sum() == 30 and durations.min() >= 1


def test_quality_measures():
    sharp = attention_quality(block_attention(np.array([2, 2, 2, 2]), sharpness=1.0))
    assert sharp == {"focus_rate": 1.0, "diagonality": pytest.approx(np.corrcoef(np.arange(8), np.arange(8) // 2)[0, 1])}
    stuck = np.zeros((6, 4))
    stuck[:, 1] = 1.0
    assert attention_quality(stuck)["diagonality"] == 0.0
