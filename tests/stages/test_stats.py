"""Normalisation statistics: exact merging, robust trimming, save/load round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ttsprep.stages.core.errors import InvariantViolation
from ttsprep.stages.step6_shards import stats
from ttsprep.stages.step6_shards.stats import TRIM_QUANTILE, RunningStats


def utterance(rng: np.random.Generator, num_frames: int, f0_hz: float, n_mels: int = 4) -> dict[str, np.ndarray]:
    voiced = rng.random(num_frames) < 0.6
    f0 = np.where(voiced, f0_hz * np.exp(rng.normal(0, 0.1, num_frames)), 0.0).astype(np.float32)
    energy = rng.lognormal(1.0, 0.8, num_frames).astype(np.float32)
    mel = rng.normal(np.linspace(-6, 1, n_mels), 1.5, (num_frames, n_mels)).astype(np.float32)
    return {"f0": f0, "voiced": voiced, "energy": energy, "mel": mel}


@pytest.fixture
def corpus() -> list[tuple[str, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(7)
    return [(speaker, utterance(rng, int(rng.integers(200, 600)), f0_hz))
            for speaker, f0_hz in [("f1", 210.0), ("m1", 110.0)] * 6]


def accumulate(items) -> RunningStats:
    stats = RunningStats()
    for speaker, arrays in items:
        stats.add(speaker, **arrays)
    return stats


def test_merging_two_halves_equals_the_whole(corpus):
    whole = accumulate(corpus).to_json_dict()
    merged = accumulate(corpus[:5]).merge(accumulate(corpus[5:])).to_json_dict()
    assert merged["speakers"].keys() == whole["speakers"].keys() == {"f1", "m1"}
    assert merged["global"]["log_f0"]["count"] == whole["global"]["log_f0"]["count"]
    for section in ("log_f0", "energy"):
        for key in ("mean", "std"):
            assert merged["global"][section][key] == pytest.approx(whole["global"][section][key], rel=1e-12)
            for speaker in ("f1", "m1"):
                assert merged["speakers"][speaker][section][key] == pytest.approx(
                    whole["speakers"][speaker][section][key], rel=1e-12)
    np.testing.assert_allclose(merged["global"]["mel"]["mean"], whole["global"]["mel"]["mean"], rtol=1e-12)
    np.testing.assert_allclose(merged["global"]["mel"]["std"], whole["global"]["mel"]["std"], rtol=1e-12)


def test_statistics_match_numpy_on_the_kept_values(corpus):
    stats = accumulate(corpus).to_json_dict()
    f1_f0 = np.concatenate([a["f0"][a["voiced"]] for s, a in corpus if s == "f1"])
    log_f0 = np.log(f1_f0.astype(np.float64))
    summary = stats["speakers"]["f1"]["log_f0"]
    assert summary["count"] + summary["excluded"] == log_f0.size
    # Whole-bin trimming cuts about TRIM_QUANTILE of each tail: a little more than 0 and at most ~2x that.
    assert 0 < summary["excluded"] <= 4 * TRIM_QUANTILE * log_f0.size
    assert summary["mean"] == pytest.approx(log_f0.mean(), abs=0.005)
    assert summary["mean"] == pytest.approx(np.log(210.0), abs=0.01)
    assert summary["std"] == pytest.approx(0.1, rel=0.1)
    mel = np.concatenate([a["mel"] for _, a in corpus])
    np.testing.assert_allclose(stats["global"]["mel"]["mean"], mel.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(stats["global"]["mel"]["std"], mel.std(axis=0), rtol=0.05)
    assert len(stats["global"]["mel"]["mean"]) == 4


def test_injected_outliers_barely_move_the_mean(corpus):
    clean = accumulate(corpus).to_json_dict()["global"]
    rng = np.random.default_rng(1)
    dirty_corpus = []
    for speaker, arrays in corpus:
        f0, voiced, energy = arrays["f0"].copy(), arrays["voiced"].copy(), arrays["energy"].copy()
        spikes = rng.choice(f0.size, 1, replace=False)  # ~0.2 % of the frames
        f0[spikes], voiced[spikes], energy[spikes] = 5000.0, True, 1e6
        dirty_corpus.append((speaker, {**arrays, "f0": f0, "voiced": voiced, "energy": energy}))
    dirty = accumulate(dirty_corpus).to_json_dict()["global"]
    naive_log_f0 = np.log(np.concatenate([a["f0"][a["voiced"]] for _, a in dirty_corpus]).astype(np.float64))
    naive_energy = np.concatenate([a["energy"] for _, a in dirty_corpus]).astype(np.float64)
    assert abs(naive_log_f0.mean() - clean["log_f0"]["mean"]) > 0.01  # the outliers matter without trimming
    assert dirty["log_f0"]["mean"] == pytest.approx(clean["log_f0"]["mean"], abs=0.003)
    assert dirty["log_f0"]["std"] == pytest.approx(clean["log_f0"]["std"], rel=0.05)
    assert naive_energy.mean() > 100 * clean["energy"]["mean"]
    assert dirty["energy"]["mean"] == pytest.approx(clean["energy"]["mean"], rel=0.02)


def test_save_load_round_trip(corpus, tmp_path):
    stats = accumulate(corpus)
    stats.save(tmp_path / "part.stats.npz")
    loaded = RunningStats.load(tmp_path / "part.stats.npz")
    assert loaded.to_json_dict() == stats.to_json_dict()
    json.dumps(loaded.to_json_dict(), allow_nan=False)


def test_empty_and_unvoiced_statistics_are_json_null(tmp_path):
    empty = RunningStats()
    empty.save(tmp_path / "empty.npz")
    assert RunningStats.load(tmp_path / "empty.npz").to_json_dict() == empty.to_json_dict()
    assert empty.to_json_dict()["global"]["mel"]["mean"] == []
    silent = RunningStats()
    silent.add("s", f0=np.zeros(10, np.float32), voiced=np.zeros(10, bool), energy=np.ones(10, np.float32),
               mel=np.zeros((10, 3), np.float32))
    summary = silent.to_json_dict()
    assert summary["speakers"]["s"]["log_f0"] == {"mean": None, "std": None, "count": 0, "excluded": 0}
    assert summary["global"]["energy"]["mean"] == pytest.approx(1.0)
    json.dumps(summary, allow_nan=False)


def test_mel_bin_mismatch_is_refused():
    a, b = RunningStats(), RunningStats()
    frames = {"f0": np.zeros(5, np.float32), "voiced": np.zeros(5, bool), "energy": np.ones(5, np.float32)}
    a.add("s", **frames, mel=np.zeros((5, 80), np.float32))
    b.add("s", **frames, mel=np.zeros((5, 40), np.float32))
    with pytest.raises(InvariantViolation):
        a.merge(b)
    with pytest.raises(InvariantViolation):
        a.add("s", **frames, mel=np.zeros((5, 40), np.float32))


@pytest.mark.parametrize("name", ["log_f0", "energy", "mel"])
def test_arithmetic_bins_equal_a_search_of_the_edges(name):
    edges = stats.EDGES[name]
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(edges[0] - 1, edges[-1] + 1, 100_000),  # inside, below and above
                             (edges[:-1] + edges[1:]) / 2, [-np.inf, np.inf, edges[-1] * 2]])
    if name == "energy":
        values = np.abs(values)
    slots = stats._slots(name, values)
    assert np.array_equal(slots, np.searchsorted(edges, values, side="right"))
    assert stats._slots(name, np.array([np.nan]))[0] == edges.size  # NaN: the overflow slot, as searchsorted
