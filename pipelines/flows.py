"""The Prefect flows: one per stage, composed by ``ttsprep_run``.

    ttsprep_run ─┬─ ingest   (per dataset: importer, header probe, metadata filters, shard plan)
                 ├─ shards   (every dataset's changed shards: one task each, in one process pool or on Dask)
                 ├─ speaker-check (per dataset with features.speaker_embedding: speaker labels against the voices)
                 └─ finalize (per dataset: ledger, stats.json, index.json, report.html; then symbol maps)
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Completed, State

from ttsprep.pipelines import notify, progress, watch
from ttsprep.pipelines.artifacts import dataset_artifacts, run_name
from ttsprep.pipelines.lock import output_lock
from ttsprep.pipelines.prefect_api import subflow_heartbeats_off
from ttsprep.pipelines.preflight import check_project
from ttsprep.pipelines.task_runners import ShardPoolTaskRunner
from ttsprep.pipelines.tasks import (finalize_task, ingest_task, mfa_task, pairs_task, process_shard_task, report_task,
                                     speaker_check_task)
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step1_ingest.plan import IngestSummary
from ttsprep.stages.step1_ingest.project import Dataset, load_project
from ttsprep.stages.step6_shards.shard_state import completed_summary, record_failed_shard
from ttsprep.stages.step7_finalize.finalize import finalize_key, finalized_index, record_finalized
from ttsprep.stages.step7_finalize.maps import update_symbol_maps
from ttsprep.stages.step7_finalize.self_checks import raise_if_failed
from ttsprep.stages.step7_finalize.speaker_check import update_similar_speakers

STAGES = ("ingest", "shards", "finalize")


def _of_this_run(subflow: Flow, stage: str, **options) -> Flow:
    """``subflow`` with a run name after the run calling it (``shards of datasets 2026-12-06 03:00:00``) and any
    other ``with_options`` ``options``, in one copy (each copy builds its parameters' schema anew); the caller's
    name comes from its run context, no API call."""
    return subflow.with_options(flow_run_name=f"{stage} of {flow_run.name}", **options)


def _run_name() -> str:
    """``<config file name> <start time>``: the runs of different configs tell apart in the UI."""
    return run_name(flow_run.parameters.get("config_path", "ttsprep"))


@flow(name="ingest")
def ingest_flow(datasets: list[Dataset], out_dir: str) -> list[IngestSummary]:
    """Ingest and plan every dataset, concurrently (the work is file I/O and header probes)."""
    logger = get_run_logger()
    futures = [ingest_task.with_options(task_run_name=f"ingest-{dataset.name}").submit(dataset, out_dir)
               for dataset in datasets]
    with progress.bar(total=len(futures), desc="ingest", unit="dataset") as bar:
        summaries = []
        for future in futures:
            summaries.append(future.result())
            bar.update(1)
    for summary in summaries:
        logger.info("%s: %d inputs, %d ingested (%d unchanged files not re-read), %d rejected so far, %d shards "
                    "planned", summary.dataset, summary.num_inputs, summary.num_ingested, summary.num_cached_probes,
                    summary.num_rejected, len(summary.shards))
    return summaries


@flow(name="shards")
def shards_flow(datasets: list[Dataset], out_dir: str, work: list[tuple[str, str, str]]) -> list[dict]:
    """Process shards ``(dataset, shard, key)`` of every dataset in one parallel pool (the flow's task runner).

    A shard whose task fails after its retry does not stop the run: its utterances go to the ledger as
    ``shard_failed`` (with the error) and the next run tries the shard again.
    """
    logger = get_run_logger()
    artifact = create_progress_artifact(progress=0.0, key="shards-progress", description="shards written")
    by_name = {dataset.name: dataset for dataset in datasets}
    futures = {process_shard_task.with_options(task_run_name=f"{dataset}/{name}").submit(by_name[dataset], out_dir,
                                                                                     name, key): (dataset, name)
               for dataset, name, key in work}
    summaries = []
    with progress.bar(total=len(futures), desc="shards", unit="shard") as bar:
        for future in as_completed(list(futures)):
            dataset, name = futures[future]
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                logger.error("%s/%s failed: %r; its utterances go to the ledger as shard_failed", dataset, name,
                             outcome)
                outcome = record_failed_shard(DatasetLayout(Path(out_dir), dataset), name, by_name[dataset].config,
                                              repr(outcome)).to_json()
                outcome["failed"] = True
            else:
                logger.info("%s", shard_line(dataset, outcome))
            summaries.append({**outcome, "dataset": dataset})
            bar.update(1)
            update_progress_artifact(artifact, progress=100.0 * len(summaries) / len(futures))
    return summaries


def shard_line(dataset: str, summary: dict) -> str:
    """``ljspeech/part-00003: 500 in, 493 kept, 7 rejected (low_snr 5, clipping 2), 3012.4 s of audio, 85x realtime``"""
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary["rejects_by_reason"].items()))
    cpu_s = summary.get("cpu_s") or 0.0
    speed = f", {summary['audio_seconds'] / cpu_s:.0f}x realtime" if cpu_s > 0 else ""
    return (f"{dataset}/{summary['name']}: {summary['num_rows'] + summary['num_rejected']} in, {summary['num_rows']} "
            f"kept, {summary['num_rejected']} rejected{f' ({reasons})' if reasons else ''}, "
            f"{summary['audio_seconds']:.1f} s of audio{speed}")


@flow(name="finalize")
def finalize_flow(datasets: list[Dataset], out_dir: str, num_inputs: dict[str, int]) -> dict[str, dict]:
    """Per dataset (``num_inputs``: dataset -> its input count): ledger, statistics and index, voice-conversion
    pairs, report and artifacts. Returns each dataset's ``index.json``."""
    indexes = {}
    with progress.bar(total=len(datasets), desc="finalize", unit="dataset") as bar:
        for dataset in datasets:
            indexes[dataset.name] = _finalize_one(dataset, out_dir, num_inputs[dataset.name])
            bar.update(1)
    for name, index in indexes.items():
        raise_if_failed(name, index["checks"])  # after every dataset's report: the run fails, as its report says
    return indexes


def _finalize_one(dataset: Dataset, out_dir: str, num_inputs: int) -> dict:
    """Ledger, statistics, index, pairs, report and artifacts of one dataset; returns its ``index.json``."""
    name, layout = dataset.name, DatasetLayout(Path(out_dir), dataset.name)
    key = finalize_key(dataset.config, layout, num_inputs)
    index = finalize_task.with_options(task_run_name=f"finalize-{name}")(dataset, out_dir, num_inputs)
    counts = index["counts"]
    reasons = ", ".join(f"{reason} {count}" for reason, count in counts["rejected_by_reason"].items())
    get_run_logger().info("%s: %d inputs = %d kept + %d rejected (%s); %.3f h kept", name, counts["inputs"],
                          counts["kept"], counts["rejected"], reasons or "none", index["hours"]["total"])
    pairs_task.with_options(task_run_name=f"vc-pairs-{name}")(dataset, out_dir)
    report_task.with_options(task_run_name=f"report-{name}")(out_dir, name)
    if not any(check["violations"] for check in index["checks"]):
        record_finalized(layout, key)  # a failed self-check is checked again by the next run
    dataset_artifacts(name, out_dir, index)
    return index


def finalize_changed(datasets: list[Dataset], out_dir: str, num_inputs: dict[str, int]) -> dict[str, dict]:
    """``finalize_flow`` for the datasets whose shards, ledger or settings changed since their last finalize
    (``finalize_key``; no subflow when none did); the others keep their index, pairs and report and get this
    run's artifacts. Returns each dataset's ``index.json``."""
    indexes = {}
    for dataset in datasets:
        layout = DatasetLayout(Path(out_dir), dataset.name)
        indexes[dataset.name] = finalized_index(layout, finalize_key(dataset.config, layout, num_inputs[dataset.name]))
    changed = [dataset for dataset in datasets if indexes[dataset.name] is None]
    if changed:
        indexes.update(_of_this_run(finalize_flow, "finalize")(changed, out_dir, num_inputs))
    for dataset in datasets:
        if dataset not in changed:
            get_run_logger().info("%s: shards, ledger and settings unchanged: index, pairs and report kept",
                                  dataset.name)
            dataset_artifacts(dataset.name, out_dir, indexes[dataset.name])
    return indexes


def _task_runner(workers: int | None, dask_address: str | None):
    """Task runs on threads here and shards in a pool of Prefect-free processes (``task_runners``), or both on
    the Dask cluster at ``dask_address`` (``tcp://host:port``)."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ShardPoolTaskRunner(max_workers=workers or default_workers())


def default_workers() -> int:
    """Every core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def _pending(out_dir: str, ingested: list[IngestSummary]) -> list[tuple[str, str, str]]:
    """``(dataset, shard, key)`` of the planned shards not already complete with the same key."""
    return [(summary.dataset, name, key) for summary in ingested for name, key in summary.shards
            if completed_summary(DatasetLayout(Path(out_dir), summary.dataset), name, key) is None]


@flow(name="ttsprep-run", flow_run_name=_run_name, on_completion=[notify.flow_state_hook],
      on_failure=[notify.flow_state_hook])
def ttsprep_run(config_path: str, out_dir: str, datasets: list[str] | None = None,
                stages: list[str] | None = None, workers: int | None = None,
                dask_address: str | None = None) -> dict[str, dict]:
    """Run the chosen ``stages`` (default all) for the chosen ``datasets`` (default all in the config).

    Shards of every dataset share one pool of ``workers`` processes (default: every core), or the Dask
    cluster at ``dask_address``; shards already complete with the same key are not resubmitted. The run
    holds ``out_dir``'s lock: another run on the same output fails at once, naming the holder (a deployment
    run is skipped instead: ``_lock_or_skip``).
    """
    with ExitStack() as held:  # the lock is re-entrant: the CLI holds it already; deployment runs take it here
        if skipped := _lock_or_skip(held, out_dir):
            return skipped
        with subflow_heartbeats_off():  # this run's heartbeat is the one that tells it is alive
            return _run_stages(config_path, out_dir, datasets, list(stages or STAGES), workers, dask_address)


def _lock_or_skip(held: ExitStack, out_dir: str) -> State | None:
    """Take ``out_dir``'s lock into ``held``. If another process holds it and this is a deployment's run (a
    schedule that came due during a run), a Completed state named Skipped to end the run with, logged: a
    schedule whose interval is shorter than a run then builds no backlog. (Not Cancelled: Prefect 3.8.8 logs
    a returned Cancelled state of a deployment run as an error with a traceback.) Other runs raise
    ``ConfigError``."""
    scheduled = FlowRunContext.get().flow_run.deployment_id is not None
    try:
        held.enter_context(output_lock(Path(out_dir), notify_refusal=not scheduled))  # a skip notifies as Skipped
        return None
    except ConfigError as locked:
        if not scheduled:
            raise
        get_run_logger().warning("skipped: previous run still running (%s)", locked)
        return Completed(name="Skipped", message=f"skipped: previous run still running ({locked})")


def _run_stages(config_path: str, out_dir: str, datasets: list[str] | None, chosen: list[str],
                workers: int | None, dask_address: str | None) -> dict[str, dict]:
    """The body of ``ttsprep_run``, run inside it while it holds the output's lock."""
    logger = get_run_logger()
    project = load_project(Path(config_path))
    chosen_datasets = project.select(datasets)
    check_project(project, chosen_datasets, layout=False)  # the CLI read the layouts before starting Prefect
    ingested = _of_this_run(ingest_flow, "ingest")(chosen_datasets, out_dir)
    table = [{"dataset": i.dataset, "inputs": i.num_inputs, "ingested": i.num_ingested,
              "rejected_before_audio": i.num_rejected, "shards": len(i.shards)} for i in ingested]
    failed_shards: list[str] = []
    if "shards" in chosen:
        for dataset in chosen_datasets:
            if dataset.config.align.method == "mfa":
                mfa_task(dataset, out_dir, workers or default_workers())
        work = _pending(out_dir, ingested)
        logger.info("%d shards to process, %d unchanged", len(work), sum(len(i.shards) for i in ingested) - len(work))
        if work:
            shards = _of_this_run(shards_flow, "shards", task_runner=_task_runner(workers, dask_address))
            done = shards(chosen_datasets, out_dir, work)
            failed_shards = [f"{s['dataset']}/{s['name']}" for s in done if s.get("failed")]
    results: dict[str, dict] = {row["dataset"]: row for row in table}
    if "finalize" in chosen and "shards" in chosen:
        for dataset in chosen_datasets:
            if dataset.config.features.speaker_embedding:
                speaker_check_task.with_options(task_run_name=f"speaker-check-{dataset.name}")(dataset, out_dir)
        indexes = finalize_changed(chosen_datasets, out_dir, {s.dataset: s.num_inputs for s in ingested})
        roots = {dataset.name: dataset.root for dataset in project.datasets}
        for row in table:
            index = indexes[row["dataset"]]
            row.update(kept=index["counts"]["kept"], rejected=index["counts"]["rejected"],
                       hours=index["hours"]["total"])
            results[row["dataset"]] = index["counts"]
            watch.record_snapshot(roots[row["dataset"]], Path(out_dir), row["dataset"])
        update_symbol_maps(Path(out_dir))
        update_similar_speakers(Path(out_dir))
        notify.write_run_summary(Path(out_dir), indexes, failed_shards)
    create_table_artifact(key="ttsprep-counts", table=table, description="utterances per dataset and stage")
    return results


@flow(name="process-new-data", flow_run_name=_run_name, on_failure=[notify.flow_state_hook])
def process_new_data(config_path: str, out_dir: str, workers: int | None = None,
                     dask_address: str | None = None) -> dict[str, dict]:
    """Run the pipeline only for datasets whose files changed since their last complete run.

    Within such a dataset only new or changed utterances are processed: unchanged shards keep their keys.
    Holds ``out_dir``'s lock throughout, as ``ttsprep_run`` does (and is skipped the same way).
    """
    with ExitStack() as held:
        if skipped := _lock_or_skip(held, out_dir):
            return skipped
        project = load_project(Path(config_path))
        changed = {d.name: watch.changed_files(d.root, Path(out_dir), d.name) for d in project.datasets}
        pending = [name for name, files in changed.items() if files]
        get_run_logger().info("changed files per dataset: %s", {n: len(f) for n, f in changed.items()})
        if not pending:
            return {}
        return ttsprep_run(config_path, out_dir, pending, None, workers, dask_address)
