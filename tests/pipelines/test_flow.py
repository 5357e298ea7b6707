"""The whole DAG under Prefect: ingest -> shards -> finalize, re-run skipping, artifacts, accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import write_ljspeech
from ttsprep.stages.core.schema import check_row_invariants

TEXTS = {f"T-{i:02d}": f"Sentence number {i} is here." for i in range(6)}


@pytest.fixture
def corpus_config(tmp_path: Path) -> Path:
    write_ljspeech(tmp_path / "LJ", TEXTS, missing=("T-05",))
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {shards: {max_utterances: 2}, filter: {min_snr_db: null}, align: {method: none}}\n")
    return config


def test_run_writes_shards_ledger_index_and_skips_unchanged_work(prefect_harness, corpus_config, tmp_path):
    from ttsprep.pipelines.flows import process_new_data, ttsprep_run

    out = tmp_path / "out"
    counts = ttsprep_run(str(corpus_config), str(out))["tiny"]
    assert counts["inputs"] == 6 and counts["kept"] + counts["rejected"] == 6
    rejects = pq.read_table(out / "tiny" / "rejects.parquet").to_pylist()
    assert [(r["utt_id"], r["stage"], r["reason"]) for r in rejects] == [("tiny:T-05", "ingest", "missing_audio")]
    index = json.loads((out / "tiny" / "index.json").read_text())
    assert [s["num_rows"] for s in index["shards"]] == [2, 2, 1]
    rows = pq.read_table(out / "tiny" / index["shards"][0]["path"]).to_pylist()
    for row in rows:
        check_row_invariants(row, n_mels=80)
        assert row["duration_s"] <= row["source_duration_s"]
    assert json.loads((out / "tiny" / "stats.json").read_text())["global"]
    assert (out / "tiny" / "report.html").is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "tiny" / "shards").iterdir()}
    unchanged = [out / "tiny" / "index.json", out / "tiny" / "report.html", out / "tiny" / "work" / "probes.json",
                 out / "vocab.json", out / "speakers.json"]
    finalized = {path: path.stat().st_mtime_ns for path in unchanged}

    again = ttsprep_run(str(corpus_config), str(out))["tiny"]
    assert again == counts
    assert {p: p.stat().st_mtime_ns for p in (out / "tiny" / "shards").iterdir()} == mtimes
    # nothing changed: neither the shards nor the index, report, probe cache and symbol maps are written again
    assert {path: path.stat().st_mtime_ns for path in unchanged} == finalized
    (out / "speakers.json").unlink()
    ttsprep_run(str(corpus_config), str(out))
    assert json.loads((out / "speakers.json").read_text()) == {"tiny:LJ": 0}  # a missing map is written again

    # new data: the trigger flow finds the added file and processes only a new shard
    assert process_new_data(str(corpus_config), str(out)) == {}
    write_ljspeech(tmp_path / "LJ", {**TEXTS, "T-06": "A late addition."}, missing=("T-05",))
    grown = process_new_data(str(corpus_config), str(out))["tiny"]
    assert grown["inputs"] == 7 and grown["kept"] == counts["kept"] + 1
    assert {p: p.stat().st_mtime_ns for p in (out / "tiny" / "shards").iterdir() if p in mtimes} == mtimes
    assert len(list((out / "tiny" / "shards").iterdir())) == len(mtimes) + 1
    assert json.loads((out / "tiny" / "index.json").read_text())["counts"]["kept"] == grown["kept"]  # finalized again
    assert (out / "vocab.json").stat().st_mtime_ns > finalized[out / "vocab.json"]  # from the new index


def test_pairs_turned_off_removes_the_earlier_pairs_file(tmp_path):
    """The vc-pairs task with ``pairs.mode: none`` removes the ``pairs.parquet`` a run with pairs left: it would
    no longer match the shards."""
    from ttsprep.pipelines.tasks import pairs_task
    from ttsprep.stages.core.layout import DatasetLayout
    from ttsprep.stages.step1_ingest.project import load_project

    (tmp_path / "LJ").mkdir()
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n")
    dataset = load_project(config).datasets[0]
    assert dataset.config.pairs.mode == "none"
    stale = DatasetLayout(tmp_path / "out", "tiny").pairs
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from a run with pairs")
    assert pairs_task.fn(dataset, str(tmp_path / "out")) == 0
    assert not stale.exists()
