"""A shard whose task failed outright is accounted for in the ledger and retried by the next run."""

from __future__ import annotations

import pyarrow.parquet as pq

from tests.helpers import write_ljspeech
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step1_ingest.plan import ingest_and_plan
from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step6_shards.process import process_shard
from ttsprep.stages.step6_shards.shard_state import completed_summary, record_failed_shard
from ttsprep.stages.step7_finalize.finalize import finalize_dataset


def test_failed_shard_goes_to_the_ledger_and_is_retried(tmp_path):
    write_ljspeech(tmp_path / "LJ", {f"F-{i}": f"Failure number {i}." for i in range(3)})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {filter: {min_snr_db: null}, align: {method: none}, shards: {max_utterances: 2}}\n")
    dataset = load_project(config).datasets[0]
    out = tmp_path / "out"
    planned = ingest_and_plan(dataset, out)
    layout = DatasetLayout(out, "tiny")
    (first, first_key), (second, second_key) = planned.shards
    process_shard(layout, first, first_key, dataset.config)
    failed = record_failed_shard(layout, second, dataset.config, "MemoryError('worker killed')")
    assert failed.num_rejected == 1 and failed.rejects_by_reason == {"shard_failed": 1}

    index = finalize_dataset(layout, dataset.config, num_inputs=3)
    assert index["counts"] == {"inputs": 3, "kept": 2, "rejected": 1, "rejected_by_reason": {"shard_failed": 1}}
    (row,) = pq.read_table(layout.rejects).to_pylist()
    assert row["utt_id"] == "tiny:F-2" and "worker killed" in row["detail"]

    assert completed_summary(layout, second, second_key) is None  # not marked done: the next run retries it
    retried = process_shard(layout, second, second_key, dataset.config)
    assert retried.num_rows == 1 and not retried.skipped
    index = finalize_dataset(layout, dataset.config, num_inputs=3)
    assert index["counts"]["kept"] == 3 and index["counts"]["rejected"] == 0
