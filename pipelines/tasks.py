"""Thin Prefect tasks over the pure stages: a validated ``Dataset`` and paths in, small stats out.

Caching is our own (each shard's key covers inputs, config, code and tool versions, and the shard's
summary file records it), so Prefect's result persistence is off.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from ttsprep.pipelines import shard_pool
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step1_ingest.plan import IngestSummary, ingest_and_plan
from ttsprep.stages.step1_ingest.project import Dataset
from ttsprep.stages.step5_durations.mfa_corpus import align_with_mfa
from ttsprep.stages.step7_finalize.finalize import finalize_dataset
from ttsprep.stages.step7_finalize.report import write_report
from ttsprep.stages.step7_finalize.speaker_check import check_speakers

TASK_OPTIONS = {"cache_policy": NONE, "persist_result": False}


# No tags on the tasks every run makes: a tagged task run asks the server for a concurrency slot per tag
# (a write transaction; 0.1 s, stalls of 2.3 s seen on SQLite), even where no tag limit exists.
@task(name="ingest", **TASK_OPTIONS)
def ingest_task(dataset: Dataset, out_dir: str) -> IngestSummary:
    return ingest_and_plan(dataset, Path(out_dir))


@task(name="process-shard", retries=1, **TASK_OPTIONS)
def process_shard_task(dataset: Dataset, out_dir: str, shard: str, key: str) -> dict:
    """In the local shard pool's worker processes (``shard_pool``), or here on a Dask worker."""
    if (pool := shard_pool.current()) is not None:
        return pool.run(shard_pool.run_shard, dataset, out_dir, shard, key)
    return shard_pool.run_shard(dataset, out_dir, shard, key)


@task(name="mfa-align", tags=["cpu"], **TASK_OPTIONS)
def mfa_task(dataset: Dataset, out_dir: str, jobs: int) -> str:
    return str(align_with_mfa(dataset, Path(out_dir), jobs))


@task(name="speaker-check", tags=["cpu"], **TASK_OPTIONS)
def speaker_check_task(dataset: Dataset, out_dir: str) -> dict:
    return check_speakers(DatasetLayout(Path(out_dir), dataset.name), dataset.config).to_json()


@task(name="finalize", **TASK_OPTIONS)
def finalize_task(dataset: Dataset, out_dir: str, num_inputs: int) -> dict:
    return finalize_dataset(DatasetLayout(Path(out_dir), dataset.name), dataset.config, num_inputs=num_inputs)


@task(name="vc-pairs", **TASK_OPTIONS)
def pairs_task(dataset: Dataset, out_dir: str) -> int:
    from ttsprep.stages.step7_finalize.vc_pairs import write_pairs  # imports DTW and librosa only to pair

    return write_pairs(DatasetLayout(Path(out_dir), dataset.name), dataset.config.pairs)


@task(name="report", **TASK_OPTIONS)
def report_task(out_dir: str, dataset: str) -> str:
    return str(write_report(DatasetLayout(Path(out_dir), dataset).root))
