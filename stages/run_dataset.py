"""The whole pipeline for one dataset in this process, without Prefect: for tests, benchmarks and debugging.

The Prefect flows (``pipelines/flows.py``) run the same steps, with shards in parallel and the UI's records:

    step1_ingest.plan.ingest_and_plan -> [step5_durations.mfa_corpus.align_with_mfa] ->
    step6_shards.process.process_shard (per shard) -> [step7_finalize.speaker_check.check_speakers] ->
    step7_finalize: finalize_dataset, write_pairs, write_report
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step1_ingest.plan import IngestSummary, ingest_and_plan
from ttsprep.stages.step1_ingest.project import Dataset
from ttsprep.stages.step5_durations.mfa_corpus import align_with_mfa, textgrid_dir
from ttsprep.stages.step6_shards.process import process_shard
from ttsprep.stages.step6_shards.shard_state import ShardSummary
from ttsprep.stages.step7_finalize.finalize import finalize_dataset
from ttsprep.stages.step7_finalize.self_checks import raise_if_failed
from ttsprep.stages.step7_finalize.speaker_check import check_speakers


@dataclass(frozen=True)
class DatasetRun:
    """What ``run_dataset`` did: the ingest summary, each shard's summary and the index (None: not finalized)."""

    ingest: IngestSummary
    shards: list[ShardSummary]
    index: dict | None


def run_dataset(dataset: Dataset, out_dir: Path, *, finalize: bool = True, pairs: bool = False,
                report: bool = False) -> DatasetRun:
    """Ingest and plan ``dataset``, process every planned shard in this process, then (``finalize``) check the
    speaker labels (with ``features.speaker_embedding``), write its ledger, statistics and index, and optionally its
    voice-conversion pairs and report."""
    layout = DatasetLayout(Path(out_dir), dataset.name)
    ingest = ingest_and_plan(dataset, out_dir)
    if dataset.config.align.method == "mfa":
        align_with_mfa(dataset, out_dir, jobs=1)
    shards = [process_shard(layout, name, key, dataset.config, textgrid_dir=textgrid_dir(dataset, out_dir))
              for name, key in ingest.shards]
    if finalize:
        check_speakers(layout, dataset.config)
    index = finalize_dataset(layout, dataset.config, num_inputs=ingest.num_inputs) if finalize else None
    if finalize and pairs:
        from ttsprep.stages.step7_finalize.vc_pairs import write_pairs

        write_pairs(layout, dataset.config.pairs)
    if finalize and report:
        from ttsprep.stages.step7_finalize.report import write_report

        write_report(layout.root)
    if index is not None:
        raise_if_failed(dataset.name, index["checks"])
    return DatasetRun(ingest, shards, index)
