"""The Prefect flows: one per stage, composed by ``ttsprep_run``.

    ttsprep_run ─┬─ ingest   (per dataset: importer, header probe, metadata filters, shard plan)
                 ├─ shards   (every dataset's changed shards: one task each, in one process pool or on Dask)
                 └─ finalize (per dataset: ledger, stats.json, index.json, report.html; then symbol maps)
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, \
    update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner

from pipelines import notify, prepare, progress, watch
from pipelines.lock import output_lock
from pipelines.tasks import (finalize_task, ingest_task, mfa_task, pairs_task, process_shard_task, report_task,
                             single_threaded_numerics)
from stages.config import load_project
from stages.layout import DatasetLayout
from stages.maps import update_symbol_maps
from stages.shard_state import completed_summary

STAGES = ("ingest", "shards", "finalize")


def _artifact_key(*parts: str) -> str:
    return "-".join(parts).replace("_", "-").lower()


@flow(name="ingest")
def ingest_flow(config_path: str, datasets: list[str], out_dir: str) -> list[prepare.IngestSummary]:
    """Ingest and plan every dataset, concurrently (the work is file I/O and header probes)."""
    logger = get_run_logger()
    futures = [ingest_task.with_options(task_run_name=f"ingest-{name}").submit(config_path, name, out_dir)
               for name in datasets]
    summaries = [future.result() for future in futures]
    for summary in summaries:
        logger.info("%s: %d inputs, %d ingested (%d unchanged files not re-read), %d rejected so far, %d shards "
                    "planned", summary.dataset, summary.num_inputs, summary.num_ingested, summary.num_cached_probes,
                    summary.num_rejected, len(summary.shards))
    return summaries


@flow(name="shards")
def shards_flow(config_path: str, out_dir: str, work: list[tuple[str, str, str]]) -> list[dict]:
    """Process shards ``(dataset, shard, key)`` of every dataset in one parallel pool (the flow's task runner).

    A shard whose task fails after its retry does not stop the run: its utterances go to the ledger as
    ``shard_failed`` (with the error) and the next run tries the shard again.
    """
    logger = get_run_logger()
    artifact = create_progress_artifact(progress=0.0, key="shards-progress", description="shards written")
    futures = {process_shard_task.submit(config_path, dataset, out_dir, name, key): (dataset, name)
               for dataset, name, key in work}
    summaries = []
    with progress.bar(total=len(futures), desc="shards", unit="shard") as bar:
        for future in as_completed(list(futures)):
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                dataset, name = futures[future]
                logger.error("%s/%s failed: %r; its utterances go to the ledger as shard_failed", dataset, name, outcome)
                outcome = prepare.fail_shard(config_path, dataset, out_dir, name, repr(outcome)).to_json()
            summaries.append(outcome)
            bar.update(1)
            update_progress_artifact(artifact, progress=100.0 * len(summaries) / len(futures))
    return summaries


@flow(name="finalize")
def finalize_flow(config_path: str, out_dir: str, num_inputs: dict[str, int]) -> dict[str, dict]:
    """Per dataset (``num_inputs``: dataset -> its input count): ledger, statistics and index, voice-conversion
    pairs, report and artifacts. Returns each dataset's ``index.json``."""
    indexes = {}
    for dataset, inputs in num_inputs.items():
        key = prepare.finalize_key(config_path, dataset, out_dir, inputs)
        indexes[dataset] = finalize_task.with_options(task_run_name=f"finalize-{dataset}")(config_path, dataset,
                                                                                           out_dir, inputs)
        pairs_task.with_options(task_run_name=f"vc-pairs-{dataset}")(config_path, dataset, out_dir)
        report_task.with_options(task_run_name=f"report-{dataset}")(out_dir, dataset)
        prepare.record_finalized(out_dir, dataset, key)
        _dataset_artifacts(dataset, out_dir, indexes[dataset])
    return indexes


def finalize_changed(config_path: str, out_dir: str, num_inputs: dict[str, int]) -> dict[str, dict]:
    """``finalize_flow`` for the datasets whose shards, ledger or settings changed since their last finalize
    (``prepare.finalize_key``; no subflow when none did); the others keep their index, pairs and report and
    get this run's artifacts. Returns each dataset's ``index.json``."""
    indexes = {dataset: prepare.finalized_index(out_dir, dataset,
                                                prepare.finalize_key(config_path, dataset, out_dir, inputs))
               for dataset, inputs in num_inputs.items()}
    changed = {dataset: num_inputs[dataset] for dataset, index in indexes.items() if index is None}
    if changed:
        indexes.update(finalize_flow(config_path, out_dir, changed))
    for dataset in num_inputs.keys() - changed.keys():
        get_run_logger().info("%s: shards, ledger and settings unchanged: index, pairs and report kept", dataset)
        _dataset_artifacts(dataset, out_dir, indexes[dataset])
    return indexes


def _dataset_artifacts(dataset: str, out_dir: str, index: dict) -> None:
    """The rejects table and the markdown summary (with the report's link) of one dataset."""
    layout = DatasetLayout(Path(out_dir), dataset)
    num_pairs = pq.ParquetFile(layout.pairs).metadata.num_rows if layout.pairs.is_file() else 0
    counts = index["counts"]
    create_table_artifact(key=_artifact_key(dataset, "rejects"), description=f"{dataset}: rejects by reason",
                          table=[{"reason": r, "count": n} for r, n in counts["rejected_by_reason"].items()]
                          or [{"reason": "(none)", "count": 0}])
    create_markdown_artifact(key=_artifact_key(dataset, "summary"), markdown=(
        f"# {dataset}\n\n* inputs: {counts['inputs']}\n* kept: {counts['kept']} "
        f"({index['hours']['total']:.3f} h)\n* rejected: {counts['rejected']}\n"
        f"* shards: {len(index['shards'])}\n* voice-conversion pairs: {num_pairs}\n"
        f"* report: [report.html]({layout.report.resolve().as_uri()})\n"))


def _task_runner(workers: int | None, dask_address: str | None):
    """A process pool on this machine, or the Dask cluster at ``dask_address`` (``tcp://host:port``)."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ProcessPoolTaskRunner(max_workers=workers or prepare.default_workers(),
                                 initializer=single_threaded_numerics)


def _pending(out_dir: str, ingested: list[prepare.IngestSummary]) -> list[tuple[str, str, str]]:
    """``(dataset, shard, key)`` of the planned shards not already complete with the same key."""
    return [(summary.dataset, name, key) for summary in ingested for name, key in summary.shards
            if completed_summary(DatasetLayout(Path(out_dir), summary.dataset), name, key) is None]


@flow(name="ttsprep-run", on_completion=[notify.flow_state_hook], on_failure=[notify.flow_state_hook])
def ttsprep_run(config_path: str, out_dir: str, datasets: list[str] | None = None,
                stages: list[str] | None = None, workers: int | None = None,
                dask_address: str | None = None) -> dict[str, dict]:
    """Run the chosen ``stages`` (default all) for the chosen ``datasets`` (default all in the config).

    Shards of every dataset share one pool of ``workers`` processes (default: every core), or the Dask
    cluster at ``dask_address``; shards already complete with the same key are not resubmitted. The run
    holds ``out_dir``'s lock: another run on the same output fails at once, naming the holder.
    """
    with output_lock(Path(out_dir)):  # re-entrant: the CLI holds it already; served runs take it here
        return _run_stages(config_path, out_dir, datasets, list(stages or STAGES), workers, dask_address)


def _run_stages(config_path: str, out_dir: str, datasets: list[str] | None, chosen: list[str],
                workers: int | None, dask_address: str | None) -> dict[str, dict]:
    """The body of ``ttsprep_run``, run inside it while it holds the output's lock."""
    logger = get_run_logger()
    project = load_project(Path(config_path))
    names = [dataset.name for dataset in project.select(datasets)]
    ingested = ingest_flow(config_path, names, out_dir)
    table = [{"dataset": i.dataset, "inputs": i.num_inputs, "ingested": i.num_ingested,
              "rejected_before_audio": i.num_rejected, "shards": len(i.shards)} for i in ingested]
    if "shards" in chosen:
        for dataset in project.select(names):
            if dataset.config.align.method == "mfa":
                mfa_task(config_path, dataset.name, out_dir, workers or prepare.default_workers())
        work = _pending(out_dir, ingested)
        logger.info("%d shards to process, %d unchanged", len(work), sum(len(i.shards) for i in ingested) - len(work))
        if work:
            shards_flow.with_options(task_runner=_task_runner(workers, dask_address))(config_path, out_dir, work)
    results: dict[str, dict] = {row["dataset"]: row for row in table}
    if "finalize" in chosen and "shards" in chosen:
        indexes = finalize_changed(config_path, out_dir, {s.dataset: s.num_inputs for s in ingested})
        roots = {dataset.name: dataset.root for dataset in project.datasets}
        for row in table:
            index = indexes[row["dataset"]]
            row.update(kept=index["counts"]["kept"], rejected=index["counts"]["rejected"],
                       hours=index["hours"]["total"])
            results[row["dataset"]] = index["counts"]
            watch.record_snapshot(roots[row["dataset"]], Path(out_dir), row["dataset"])
        update_symbol_maps(Path(out_dir))
    create_table_artifact(key="ttsprep-counts", table=table, description="utterances per dataset and stage")
    return results


@flow(name="process-new-data", on_failure=[notify.flow_state_hook])
def process_new_data(config_path: str, out_dir: str, workers: int | None = None,
                     dask_address: str | None = None) -> dict[str, dict]:
    """Run the pipeline only for datasets whose files changed since their last complete run.

    Within such a dataset only new or changed utterances are processed: unchanged shards keep their keys.
    """
    project = load_project(Path(config_path))
    changed = {d.name: watch.changed_files(d.root, Path(out_dir), d.name) for d in project.datasets}
    pending = [name for name, files in changed.items() if files]
    get_run_logger().info("changed files per dataset: %s", {n: len(f) for n, f in changed.items()})
    if not pending:
        return {}
    return ttsprep_run(config_path, out_dir, pending, None, workers, dask_address)
