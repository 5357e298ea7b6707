"""Parallel-utterance pairing and DTW: a real VCTK pair, and a generated signal against a time-warped copy."""

from __future__ import annotations

import random

import librosa
import numpy as np
import pytest

from ttsprep.aligners.dtw import (dtw_align, match_segments, mel_cepstral_distortion, mel_cepstrum,
                                  pair_parallel_utterances, source_to_target_durations)

SAMPLE_RATE, HOP, N_MELS = 22050, 256, 80


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Natural-log mel magnitude [T, 80] on the pipeline's frame grid (centred frames, hop 256)."""
    mel = librosa.feature.melspectrogram(y=samples, sr=SAMPLE_RATE, n_fft=1024, hop_length=HOP, n_mels=N_MELS,
                                         fmax=8000, power=1.0)
    return np.log(np.maximum(mel, 1e-5)).T


def assert_valid_path(path: np.ndarray, num_source: int, num_target: int) -> None:
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [num_source - 1, num_target - 1]
    steps = np.diff(path, axis=0)
    assert np.all((steps >= 0) & (steps <= 1)) and np.all(steps.sum(axis=1) >= 1)


def linear_path(num_source: int, num_target: int) -> np.ndarray:
    """The naive alignment: a uniform time stretch of the source onto the target."""
    targets = np.arange(num_target)
    return np.stack([np.rint(targets * (num_source - 1) / (num_target - 1)).astype(np.int64), targets], axis=1)


# --- pairing -------------------------------------------------------------------------------------------

def test_pairs_need_the_same_sentence_and_different_speakers():
    records = [("a1", "A", "Please call Stella."), ("b1", "B", "please  call stella"),
               ("a2", "A", "Please call Stella"), ("c1", "C", "Please call Stella!"),
               ("b2", "B", "Something else."), ("c2", "C", "...")]
    pairs = pair_parallel_utterances(records)
    assert pairs == [("a1", "b1"), ("a1", "c1"), ("a2", "b1"), ("a2", "c1"), ("b1", "a1"), ("b1", "a2"), ("b1", "c1"),
                     ("c1", "a1"), ("c1", "a2"), ("c1", "b1")]
    random.Random(0).shuffle(records)
    assert pair_parallel_utterances(records) == pairs


def test_pairs_real_vctk_transcripts(shared_corpora):
    txt_root = shared_corpora / "vctk" / "VCTK-Corpus-0.92" / "txt"
    records = [(p.stem, p.parent.name, p.read_text(encoding="utf-8")) for p in sorted(txt_root.glob("*/*.txt"))]
    assert ("p225_001", "p226_001") in pair_parallel_utterances(records)
    assert all({src[:4], tgt[:4]} == {"p225", "p226"} for src, tgt in pair_parallel_utterances(records))


# --- features and path helpers -------------------------------------------------------------------------

def test_mel_cepstrum_is_the_cepstral_dct_without_c0():
    log_mel_frames = np.random.default_rng(0).normal(size=(5, N_MELS))
    bins = np.arange(N_MELS)
    basis = np.cos(np.pi * np.outer(np.arange(1, 25), bins + 0.5) / N_MELS) / N_MELS
    np.testing.assert_allclose(mel_cepstrum(log_mel_frames), log_mel_frames @ basis.T, atol=1e-12)
    constant_offset = mel_cepstrum(log_mel_frames + 3.0)  # loudness lives in c0 only
    np.testing.assert_allclose(constant_offset, mel_cepstrum(log_mel_frames), atol=1e-12)
    with pytest.raises(ValueError):
        mel_cepstrum(log_mel_frames[:, :20], order=24)


def test_source_to_target_durations_counts_each_target_frame_once():
    path = np.array([[0, 0], [0, 1], [1, 2], [2, 2], [3, 3], [3, 4], [3, 5]])
    assert source_to_target_durations(path, 4, 6).tolist() == [2, 1, 0, 3]
    with pytest.raises(ValueError):
        source_to_target_durations(path[:-1], 4, 6)


def test_match_segments_requires_equal_counts_and_agreement():
    path = np.stack([np.arange(10), np.arange(10)], axis=1)
    assert match_segments([4, 6], [4, 6], path).tolist() == [[4, 4], [6, 6]]
    assert match_segments([4, 6], [10], path) is None
    assert match_segments([2, 8], [8, 2], path) is None  # same count, but the pause is elsewhere


# --- DTW on real speech ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vctk_pair(shared_corpora) -> tuple[np.ndarray, np.ndarray]:
    root = shared_corpora / "vctk" / "VCTK-Corpus-0.92" / "wav48_silence_trimmed"
    source = librosa.load(root / "p225" / "p225_001_mic1.flac", sr=SAMPLE_RATE)[0]
    target = librosa.load(root / "p226" / "p226_001_mic1.flac", sr=SAMPLE_RATE)[0]
    return mel_cepstrum(log_mel(source)), mel_cepstrum(log_mel(target))


def test_dtw_on_a_real_parallel_pair(vctk_pair):
    source, target = vctk_pair  # "Please call Stella." by p225 (177 frames) and p226 (242 frames)
    path = dtw_align(source, target)
    assert_valid_path(path, len(source), len(target))
    durations = source_to_target_durations(path, len(source), len(target))
    assert durations.dtype == np.int32 and durations.sum() == len(target)
    aligned_mcd = mel_cepstral_distortion(source, target, path)
    naive_mcd = mel_cepstral_distortion(source, target, linear_path(len(source), len(target)))
    assert aligned_mcd < naive_mcd - 0.5  # measured: 3.13 dB against 4.77 dB


# --- DTW recovers a known time warp ----------------------------------------------------------------------

def warped_harmonic_sweep(duration_s: float, position) -> np.ndarray:
    """A 5-harmonic tone whose F0 follows a fixed contour over ``position(t)`` in [0, 1]."""
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    u = position(t)
    f0 = 150 + 120 * np.sin(2 * np.pi * 1.5 * u) + 200 * u
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    return sum(np.sin(k * phase) / k for k in range(1, 6)).astype(np.float32) * 0.2


def test_dtw_recovers_a_nonuniform_time_stretch():
    source_s, target_s, split_s = 1.5, 2.4, 1.32
    stretch = split_s / (0.5 * source_s), (target_s - split_s) / (0.5 * source_s)  # 1.76, then 1.44

    def target_position(t):
        return np.where(t < split_s, 0.5 * t / split_s, 0.5 + 0.5 * (t - split_s) / (target_s - split_s))

    source = mel_cepstrum(log_mel(warped_harmonic_sweep(source_s, lambda t: t / source_s)))
    target = mel_cepstrum(log_mel(warped_harmonic_sweep(target_s, target_position)))
    path = dtw_align(source, target)
    assert_valid_path(path, len(source), len(target))
    expected_source = target_position(path[:, 1] * HOP / SAMPLE_RATE) * source_s * SAMPLE_RATE / HOP
    error = np.abs(path[:, 0] - expected_source)
    assert np.median(error) <= 0.5 and error.max() <= 2.0  # a uniform stretch is off by up to 7 frames
    durations = source_to_target_durations(path, len(source), len(target))
    half = len(source) // 2
    assert np.mean(durations[2:half - 2]) == pytest.approx(stretch[0], abs=0.1)
    assert np.mean(durations[half + 2:-2]) == pytest.approx(stretch[1], abs=0.1)
