"""The Prefect flows: one per stage, composed by ``ttsprep_run``.

    ttsprep_run ─┬─ ingest  (per dataset: importer, header probe, metadata filters, shard plan)
                 ├─ shards  (per dataset: one process-pool task per shard of utterances)
                 └─ finalize (per dataset: ledger, stats.json, index.json, report.html; then symbol maps)
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, \
    update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner

from pipelines import notify, prepare, progress, watch
from pipelines.tasks import finalize_task, ingest_task, process_shard_task, report_task, single_threaded_numerics
from stages.config import load_project
from stages.maps import write_symbol_maps

STAGES = ("ingest", "shards", "finalize")


def _artifact_key(*parts: str) -> str:
    return "-".join(parts).replace("_", "-").lower()


@flow(name="ingest")
def ingest_flow(config_path: str, dataset: str, out_dir: str) -> prepare.IngestSummary:
    summary = ingest_task(config_path, dataset, out_dir)
    get_run_logger().info("%s: %d inputs, %d ingested, %d rejected so far, %d shards planned", dataset,
                          summary.num_inputs, summary.num_ingested, summary.num_rejected, len(summary.shards))
    return summary


@flow(name="shards")
def shards_flow(config_path: str, dataset: str, out_dir: str, shards: list[tuple[str, str]]) -> list[dict]:
    """Process every planned shard in parallel (process pool); shards already done are skipped."""
    logger = get_run_logger()
    artifact = create_progress_artifact(progress=0.0, key=_artifact_key(dataset, "shards"),
                                        description=f"{dataset}: shards written")
    futures = [process_shard_task.submit(config_path, dataset, out_dir, name, key) for name, key in shards]
    summaries = []
    with progress.bar(total=len(futures), desc=f"{dataset} shards", unit="shard") as bar:
        for future in as_completed(futures):
            summaries.append(future.result())
            bar.update(1)
            update_progress_artifact(artifact, progress=100.0 * len(summaries) / max(len(futures), 1))
    skipped = sum(1 for s in summaries if s["skipped"])
    logger.info("%s: %d shards (%d unchanged, skipped)", dataset, len(summaries), skipped)
    return sorted(summaries, key=lambda s: s["name"])


@flow(name="finalize")
def finalize_flow(config_path: str, dataset: str, out_dir: str, num_inputs: int) -> dict:
    index = finalize_task(config_path, dataset, out_dir, num_inputs)
    report = report_task(out_dir, dataset)
    counts = index["counts"]
    create_table_artifact(key=_artifact_key(dataset, "rejects"), description=f"{dataset}: rejects by reason",
                          table=[{"reason": r, "count": n} for r, n in counts["rejected_by_reason"].items()]
                          or [{"reason": "(none)", "count": 0}])
    create_markdown_artifact(key=_artifact_key(dataset, "summary"), markdown=(
        f"# {dataset}\n\n* inputs: {counts['inputs']}\n* kept: {counts['kept']} "
        f"({index['hours']['total']:.3f} h)\n* rejected: {counts['rejected']}\n"
        f"* shards: {len(index['shards'])}\n* report: [report.html]({Path(report).resolve().as_uri()})\n"))
    return index


@flow(name="ttsprep-run", on_completion=[notify.flow_state_hook], on_failure=[notify.flow_state_hook])
def ttsprep_run(config_path: str, out_dir: str, datasets: list[str] | None = None,
                stages: list[str] | None = None, workers: int | None = None) -> dict[str, dict]:
    """Run the chosen ``stages`` (default all) for the chosen ``datasets`` (default all in the config)."""
    chosen = list(stages or STAGES)
    project = load_project(Path(config_path))
    shard_runner = ProcessPoolTaskRunner(max_workers=workers or prepare.default_workers(),
                                         initializer=single_threaded_numerics)
    results: dict[str, dict] = {}
    table = []
    for dataset in project.select(datasets):
        ingested = ingest_flow(config_path, dataset.name, out_dir)
        row = {"dataset": dataset.name, "inputs": ingested.num_inputs, "ingested": ingested.num_ingested,
               "rejected_before_audio": ingested.num_rejected}
        if "shards" in chosen:
            summaries = shards_flow.with_options(task_runner=shard_runner)(
                config_path, dataset.name, out_dir, ingested.shards)
            row["rejected_in_shards"] = sum(s["num_rejected"] for s in summaries)
        if "finalize" in chosen and "shards" in chosen:
            index = finalize_flow(config_path, dataset.name, out_dir, ingested.num_inputs)
            row["kept"] = index["counts"]["kept"]
            row["hours"] = index["hours"]["total"]
            results[dataset.name] = index["counts"]
        else:
            results[dataset.name] = row
        table.append(row)
        if "finalize" in chosen and "shards" in chosen:
            watch.record_snapshot(dataset.root, Path(out_dir), dataset.name)
    if "finalize" in chosen and "shards" in chosen:
        write_symbol_maps(Path(out_dir))
    create_table_artifact(key="ttsprep-counts", table=table, description="utterances per dataset and stage")
    return results


@flow(name="process-new-data", on_failure=[notify.flow_state_hook])
def process_new_data(config_path: str, out_dir: str, workers: int | None = None) -> dict[str, dict]:
    """Run the pipeline only for datasets whose files changed since their last complete run.

    Within such a dataset only new or changed utterances are processed: unchanged shards keep their keys.
    """
    project = load_project(Path(config_path))
    changed = {d.name: watch.changed_files(d.root, Path(out_dir), d.name) for d in project.datasets}
    pending = [name for name, files in changed.items() if files]
    get_run_logger().info("changed files per dataset: %s", {n: len(f) for n, f in changed.items()})
    if not pending:
        return {}
    return ttsprep_run(config_path, out_dir, pending, None, workers)
