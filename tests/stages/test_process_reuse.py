"""Stage-level recomputation: a change to the text or aligner settings reuses the shard's audio and
features; a change to the audio or feature settings recomputes them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import write_ljspeech
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step1_ingest.plan import ingest_and_plan
from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step4_features import acoustic_row
from ttsprep.stages.step6_shards import process

TEXTS = {f"R-{i:02d}": f"Reading number {i} of {i * 7} apples." for i in range(4)}


def _write_config(tmp_path: Path, stages: str) -> Path:
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      f"    stages: {{filter: {{min_snr_db: null}}, align: {{method: none}}, {stages}}}\n")
    return config


def _run(config: Path, out: Path) -> list[process.ShardSummary]:
    dataset = load_project(config).datasets[0]
    planned = ingest_and_plan(dataset, out)
    layout = DatasetLayout(out, "tiny")
    return [process.process_shard(layout, name, key, dataset.config) for name, key in planned.shards]


def _columns(out: Path, *names: str) -> list[dict]:
    (shard,) = sorted((out / "tiny" / "shards").glob("*.parquet"))
    return sorted(pq.read_table(shard, columns=["utt_id", *names]).to_pylist(), key=lambda r: r["utt_id"])


@pytest.fixture
def corpus(tmp_path):
    write_ljspeech(tmp_path / "LJ", TEXTS, missing=("R-03",))
    return tmp_path


def test_text_change_reuses_audio_and_features(corpus, monkeypatch):
    out = corpus / "out"
    (first,) = _run(_write_config(corpus, "text: {enabled: false}"), out)
    assert first.num_rows == 3 and first.reused_acoustics == 0
    before = _columns(out, "audio", "mel", "f0", "phonemes")
    assert all(row["phonemes"] is None for row in before)

    def no_audio_work(*args, **kwargs):
        raise AssertionError("audio was processed again")

    monkeypatch.setattr(acoustic_row, "acoustic_row", no_audio_work)
    monkeypatch.setattr(acoustic_row, "_acoustic_first_pass", no_audio_work)  # what the shard's F0 passes call
    (second,) = _run(_write_config(corpus, "text: {enabled: true}"), out)
    assert second.key != first.key and not second.skipped
    assert second.reused_acoustics == 3 and second.num_rows == 3
    after = _columns(out, "audio", "mel", "f0", "phonemes")
    assert [(r["audio"], r["mel"], r["f0"]) for r in after] == [(r["audio"], r["mel"], r["f0"]) for r in before]
    assert all(row["phonemes"] for row in after)


def test_feature_change_recomputes_audio_and_features(corpus):
    out = corpus / "out"
    _run(_write_config(corpus, "features: {n_mels: 80}"), out)
    (second,) = _run(_write_config(corpus, "features: {n_mels: 64}"), out)
    assert second.reused_acoustics == 0 and second.num_rows == 3
    assert all(len(row["mel"][0]) == 64 for row in _columns(out, "mel"))
