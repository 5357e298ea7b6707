"""DNSMOS P.835 (``ttsprep.stages.step2_audio.dnsmos``): scores of real speech, the windows it scores, the ``min_dnsmos`` filter
and its configuration, and null columns when it is off (the default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import write_ljspeech
from ttsprep.stages.core.audio_io import load_audio
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step1_ingest.plan import ingest_and_plan
from ttsprep.stages.step1_ingest.project import build_project, load_project
from ttsprep.stages.step2_audio import dnsmos as quality
from ttsprep.stages.step6_shards import process

LJ_CLIP = "ljspeech/LJSpeech-1.1/wavs/LJ001-0001.wav"  # 9.66 s: one window, as in speechmos
TEXTS = {f"Q-{i:02d}": f"Quality check number {i}." for i in range(3)}


@pytest.fixture(scope="module")
def clean_clip(shared_corpora: Path) -> np.ndarray:
    return load_audio(shared_corpora / LJ_CLIP, quality.SAMPLE_RATE)


def test_real_clip_scores_in_range_and_drop_with_heavy_noise(clean_clip):
    clean = quality.dnsmos(clean_clip, quality.SAMPLE_RATE)
    noise = np.random.default_rng(0).normal(0.0, np.sqrt(np.mean(clean_clip ** 2)), clean_clip.size)  # 0 dB SNR
    noisy = quality.dnsmos((clean_clip + noise).astype(np.float32), quality.SAMPLE_RATE)
    for scores in (clean, noisy):
        assert all(1.0 <= value <= 5.0 for value in (scores.sig, scores.bak, scores.ovrl)), scores
    assert clean.ovrl > noisy.ovrl + 0.5 and clean.bak > noisy.bak + 1.0, (clean, noisy)
    assert clean.ovrl > 3.0  # LJSpeech is studio-clean speech
    assert quality.dnsmos(clean_clip, quality.SAMPLE_RATE) == clean  # one thread: the same bits every time


def test_long_clip_scores_as_speechmos_does(clean_clip):
    dnsmos = pytest.importorskip("speechmos.dnsmos")
    stock = dnsmos.run(clean_clip, quality.SAMPLE_RATE)
    ours = quality.dnsmos(clean_clip, quality.SAMPLE_RATE)
    # speechmos runs on onnxruntime's default thread pool, which rounds differently in the last bits
    assert ours.sig == pytest.approx(stock["sig_mos"], abs=1e-4)
    assert ours.bak == pytest.approx(stock["bak_mos"], abs=1e-4)
    assert ours.ovrl == pytest.approx(stock["ovrl_mos"], abs=1e-4)


def test_windows_short_clip_tiled_once_long_clip_hops_like_speechmos():
    rng = np.random.default_rng(1)
    short = rng.uniform(-0.5, 0.5, 3 * quality.SAMPLE_RATE).astype(np.float32)
    (window,) = quality.dnsmos_windows(short)
    assert window.size == quality.WINDOW_SAMPLES
    np.testing.assert_array_equal(window, np.tile(short, 4)[:quality.WINDOW_SAMPLES])  # speechmos's first window
    long = rng.uniform(-0.5, 0.5, int(11.66 * quality.SAMPLE_RATE)).astype(np.float32)
    windows = quality.dnsmos_windows(long)  # speechmos: int(floor(11.66) - 9.01) + 1 = 2 hops of 1 s
    assert windows.shape == (2, quality.WINDOW_SAMPLES)
    np.testing.assert_array_equal(windows[1], long[quality.SAMPLE_RATE:quality.SAMPLE_RATE + quality.WINDOW_SAMPLES])
    assert quality.dnsmos_windows(long[:quality.WINDOW_SAMPLES]).shape == (1, quality.WINDOW_SAMPLES)
    with pytest.raises(ValueError):
        quality.dnsmos_windows(np.zeros(0, np.float32))


def test_min_dnsmos_needs_dnsmos_on(tmp_path):
    entry = {"name": "lj", "importer": "ljspeech", "root": str(tmp_path), "stages": {"filter": {"min_dnsmos": 3.0}}}
    with pytest.raises(ConfigError, match="stages.filter.min_dnsmos needs stages.features.dnsmos: true"):
        build_project({"datasets": [entry]}, base_dir=tmp_path)
    entry["stages"]["features"] = {"dnsmos": True}
    config = build_project({"datasets": [entry]}, base_dir=tmp_path).datasets[0].config
    assert config.filter.min_dnsmos == 3.0 and config.features.dnsmos
    with pytest.raises(ConfigError, match="min_dnsmos"):  # a MOS is 1-5
        build_project({"datasets": [{**entry, "stages": {"filter": {"min_dnsmos": 7}, "features": {"dnsmos": True}}}]},
                      base_dir=tmp_path)


# ---------------------------------------------------------------- through process_shard


def _run(tmp_path: Path, features: str, filters: str = "") -> tuple[list[dict], list[dict], pa.Schema]:
    """Process the tone-burst corpus; return its shard rows (utt_id + DNSMOS columns), ledger rows and schema."""
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n    stages: {filter: "
                      f"{{min_snr_db: null{filters}}}, text: {{enabled: false}}, align: {{method: none}}, "
                      f"features: {{{features}}}}}\n")
    dataset = load_project(config).datasets[0]
    planned = ingest_and_plan(dataset, tmp_path / "out")
    layout = DatasetLayout(tmp_path / "out", "tiny")
    ((name, key),) = planned.shards
    process.process_shard(layout, name, key, dataset.config)
    table = pq.read_table(layout.shard(name), columns=["utt_id", *quality.DNSMOS_COLUMNS])
    rejects = pq.read_table(layout.shard_rejects(name)).to_pylist()
    return table.to_pylist(), rejects, table.schema


@pytest.fixture
def corpus(tmp_path):
    write_ljspeech(tmp_path / "LJ", TEXTS)
    return tmp_path


def test_off_by_default_writes_nulls(corpus):
    rows, rejects, schema = _run(corpus, "")
    assert len(rows) == 3 and not rejects
    assert all(row[column] is None for row in rows for column in quality.DNSMOS_COLUMNS)
    assert all(schema.field(column).type == pa.float32() for column in quality.DNSMOS_COLUMNS)


def test_low_scoring_row_goes_to_the_ledger(corpus):
    rows, rejects, _ = _run(corpus, "dnsmos: true")
    assert len(rows) == 3 and not rejects
    scores = sorted((row["dnsmos_ovrl"], row["utt_id"]) for row in rows)
    assert all(1.0 <= row[column] <= 5.0 for row in rows for column in quality.DNSMOS_COLUMNS)
    (lowest, lowest_id), (second, _) = scores[0], scores[1]
    assert lowest < second, scores
    threshold = round((lowest + second) / 2, 6)
    rows, rejects, _ = _run(corpus, "dnsmos: true", f", min_dnsmos: {threshold}")
    assert sorted(row["utt_id"] for row in rows) == sorted(utt for _, utt in scores[1:])
    (reject,) = rejects
    assert reject["utt_id"] == lowest_id and reject["reason"] == "low_dnsmos" and reject["stage"] == "condition"
    assert f"min_dnsmos={threshold}" in reject["detail"] and "\n" not in reject["detail"]
