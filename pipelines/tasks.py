"""Thin Prefect tasks over ``pipelines.prepare`` and the pure stages: paths and small stats in and out.

Caching is our own (each shard's key covers inputs, config, code and tool versions, and the shard's
summary file records it), so Prefect's result persistence is off.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from pipelines import prepare
from stages.finalize import finalize_dataset
from stages.layout import DatasetLayout
from stages.report import write_report

TASK_OPTIONS = {"cache_policy": NONE, "persist_result": False}


def single_threaded_numerics() -> None:
    """Process-pool initializer: one BLAS/OpenMP thread per worker process, so workers don't oversubscribe.

    (``process_shard`` also limits the thread pools already loaded, for bit-identical output.)
    """
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[variable] = "1"


@task(name="ingest", tags=["io"], **TASK_OPTIONS)
def ingest_task(config_path: str, dataset: str, out_dir: str) -> prepare.IngestSummary:
    return prepare.ingest_and_plan(config_path, dataset, out_dir)


@task(name="process-shard", tags=["cpu"], retries=1, **TASK_OPTIONS)
def process_shard_task(config_path: str, dataset: str, out_dir: str, shard: str, key: str) -> dict:
    from stages.process import process_shard  # the signal-processing stack: in the workers, not the flow's process

    single_threaded_numerics()
    loaded = prepare.load_dataset(config_path, dataset)
    summary = process_shard(DatasetLayout(Path(out_dir), dataset), shard, key, loaded.config,
                                          textgrid_dir=prepare.textgrid_dir(loaded, out_dir))
    return summary.to_json()


@task(name="mfa-align", tags=["cpu"], **TASK_OPTIONS)
def mfa_task(config_path: str, dataset: str, out_dir: str, jobs: int) -> str:
    return prepare.align_with_mfa(config_path, dataset, out_dir, jobs)


@task(name="finalize", **TASK_OPTIONS)
def finalize_task(config_path: str, dataset: str, out_dir: str, num_inputs: int) -> dict:
    loaded = prepare.load_dataset(config_path, dataset)
    layout = DatasetLayout(Path(out_dir), dataset)
    return finalize_dataset(layout, loaded.config, prepare.plan_specs(out_dir, dataset), num_inputs=num_inputs,
                            extra_reject_parts=[layout.ingest_rejects])


@task(name="vc-pairs", **TASK_OPTIONS)
def pairs_task(config_path: str, dataset: str, out_dir: str) -> int:
    from stages.vc_pairs import write_pairs  # DTW and librosa (~0.5 s to import): only when pairs are made

    loaded = prepare.load_dataset(config_path, dataset)
    return write_pairs(DatasetLayout(Path(out_dir), dataset), loaded.config.pairs)


@task(name="report", **TASK_OPTIONS)
def report_task(out_dir: str, dataset: str) -> str:
    return str(write_report(DatasetLayout(Path(out_dir), dataset).root))
