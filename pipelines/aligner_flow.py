"""The Tacotron 2 aligner under Prefect: train it on finished shards, then rewrite them with its durations.

    train_aligner ─┬─ train-tacotron2 (one task; progress artifact, loss table every ``log_every`` steps)
                   └─ extract_durations_flow ─┬─ add-durations (one task per shard not yet aligned)
                                              └─ finalize (per dataset: ledger, stats, index.json, report)

The datasets are those of ``datasets.yaml`` whose ``align.method`` is ``tacotron2`` (or the ones named),
already processed by ``ttsprep run``. The aligner lives in ``OUT/tacotron2-aligner/`` (checkpoints and
its pinned vocabulary), shared by those datasets; a second run resumes training from its latest checkpoint
and skips shards already aligned with the same checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from ttsprep.pipelines import progress
from ttsprep.pipelines.flows import finalize_changed
from ttsprep.pipelines.tasks import TASK_OPTIONS
from ttsprep.stages.core.errors import ConfigError, TtsprepError
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.step1_ingest.project import Dataset, load_project
from ttsprep.stages.step7_finalize.tacotron_durations import (add_shard_durations, aligned_summary, aligner_maps,
                                                              check_ready, checkpoint_digest, train_on_shards)
from ttsprep.train.shards import load_shard_set, load_symbol_maps
from ttsprep.train.tacotron2_trainer import load_tacotron2, resolve_device

#: The aligner's folder under the output directory (not a dataset name: those have no dashes).
ALIGNER_DIR = "tacotron2-aligner"
LOSS_COLUMNS = ("total", "mel", "postnet", "gate", "guided_attention", "grad_norm")


def aligner_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / ALIGNER_DIR


def latest_checkpoint(out_dir: str | Path) -> Path:
    """The newest checkpoint of the output's aligner; ``ConfigError`` when none was trained."""
    checkpoints = sorted(aligner_dir(out_dir).glob("checkpoint-*.pt"))
    if not checkpoints:
        raise ConfigError(f"no aligner checkpoint in {aligner_dir(out_dir)}: run `ttsprep train-aligner` first")
    return checkpoints[-1]


def aligner_datasets(config_path: str, out_dir: str, names: list[str] | None) -> list[tuple[Dataset, dict]]:
    """``(dataset, index.json)`` of the named datasets, or of every ``tacotron2`` one; ``ConfigError``
    unless each is ready for the aligner (``check_ready``)."""
    project = load_project(Path(config_path))
    chosen = (project.select(names) if names
              else [d for d in project.datasets if d.config.align.method == "tacotron2"])
    if not chosen:
        raise ConfigError(f"{config_path}: no dataset has align.method 'tacotron2'")
    return [(d, check_ready(DatasetLayout(Path(out_dir), d.name), d.config)) for d in chosen]


@task(name="train-tacotron2", **TASK_OPTIONS)
def train_task(roots: list[str], out_dir: str, steps: int, batch_size: int, device: str,
               model_sizes: dict[str, Any] | None, train_options: dict[str, Any] | None, log_every: int) -> dict:
    """Train (or resume) the aligner; every ``log_every`` steps the mean losses of those steps are logged,
    appended to the ``aligner-losses`` table artifact and the ``aligner-training`` progress is updated."""
    logger = get_run_logger()
    artifact = create_progress_artifact(progress=0.0, key="aligner-training", description="aligner training steps")
    rows: list[dict[str, float]] = []
    window: list[dict[str, float]] = []
    with progress.bar(total=steps, desc="aligner", unit="step") as bar:

        def on_step(step: int, losses: dict[str, float]) -> None:
            bar.set_postfix(loss=f"{losses['total']:.4f}", refresh=False)
            bar.update(step - bar.n)
            window.append(losses)
            if step % log_every and step != steps:
                return
            row = {"step": step, **{k: round(float(np.mean([w[k] for w in window])), 5) for k in LOSS_COLUMNS}}
            rows.append(row)
            window.clear()
            logger.info("step %d: %s", step, ", ".join(f"{k}={row[k]:.4f}" for k in LOSS_COLUMNS))
            update_progress_artifact(artifact, progress=100.0 * step / steps)
            create_table_artifact(key="aligner-losses", table=rows,
                                  description=f"mean losses per {log_every} aligner training steps")

        result = train_on_shards([Path(r) for r in roots], aligner_dir(out_dir), steps=steps, batch_size=batch_size,
                                 device=device, model_sizes=model_sizes, train_options=train_options, on_step=on_step)
    update_progress_artifact(artifact, progress=100.0)
    if result.bad_steps:
        logger.warning("%d of %d steps skipped for a non-finite loss or gradient", result.bad_steps, result.step)
    return {"checkpoint": str(result.checkpoint), "step": result.step, "bad_steps": result.bad_steps,
            "losses": result.losses}


@task(name="add-durations", **TASK_OPTIONS)
def durations_task(dataset: Dataset, out_dir: str, shard: str, checkpoint: str, digest: str, device: str,
                   batch_size: int) -> dict:
    layout = DatasetLayout(Path(out_dir), dataset.name)
    maps = aligner_maps(load_symbol_maps(load_shard_set(str(layout.root))), aligner_dir(out_dir))
    model = load_tacotron2(Path(checkpoint), resolve_device(device))
    return add_shard_durations(layout, shard, model, maps, dataset.config, digest, batch_size=batch_size).to_json()


@flow(name="extract-durations")
def extract_durations_flow(config_path: str, out_dir: str, datasets: list[str] | None = None,
                           checkpoint: str | None = None, device: str = "auto",
                           batch_size: int = 16) -> dict[str, dict]:
    """Rewrite every shard of the datasets with the durations of ``checkpoint`` (default: the latest),
    one task per shard not already aligned with it, then finalize each dataset; returns each dataset's
    counts. Shards run one after another (the model uses the whole device). A failed shard does not stop
    the others; the flow fails at the end, and the next run retries it."""
    logger = get_run_logger()
    chosen = aligner_datasets(config_path, out_dir, datasets)
    checkpoint_path = Path(checkpoint) if checkpoint else latest_checkpoint(out_dir)
    digest = checkpoint_digest(checkpoint_path)
    work: list[tuple[Dataset, str]] = []
    table: list[dict] = []
    for dataset, index in chosen:
        layout = DatasetLayout(Path(out_dir), dataset.name)
        for shard in (Path(s["path"]).stem for s in index["shards"]):
            done = aligned_summary(layout, shard, digest)
            if done is None:
                work.append((dataset, shard))
            else:
                table.append({"dataset": dataset.name, **done.to_json()})
    logger.info("%s: %d shards to align, %d already aligned with it", checkpoint_path.name, len(work), len(table))
    artifact = create_progress_artifact(progress=0.0, key="aligner-durations", description="shards aligned")
    failed: list[str] = []
    with progress.bar(total=len(work), desc="durations", unit="shard") as bar:
        for done_count, (dataset, shard) in enumerate(work, start=1):
            state = durations_task(dataset, out_dir, shard, str(checkpoint_path), digest, device, batch_size,
                                   return_state=True)
            if state.is_completed():
                table.append({"dataset": dataset.name, **state.result()})
            else:
                failed.append(f"{dataset.name}/{shard}")
                logger.error("%s/%s failed: %s", dataset.name, shard, state.message)
            bar.update(1)
            update_progress_artifact(artifact, progress=100.0 * done_count / len(work))
    create_table_artifact(key="aligner-shards", table=table or [{"dataset": "(none)"}],
                          description=f"durations of {checkpoint_path.name}: rows kept and rejected per shard, "
                                      "median attention focus rate and diagonality")
    indexes = finalize_changed([dataset for dataset, _ in chosen], out_dir,
                               {dataset.name: index["counts"]["inputs"] for dataset, index in chosen})
    counts = {name: index["counts"] for name, index in indexes.items()}
    if failed:
        raise TtsprepError(f"{len(failed)} shard(s) failed, their rows keep no durations: {', '.join(failed)}; "
                           "run again to retry them", reason=Reason.SHARD_FAILED)
    return counts


@flow(name="train-aligner")
def train_aligner(config_path: str, out_dir: str, datasets: list[str] | None = None, steps: int = 10_000,
                  batch_size: int = 16, device: str = "auto", model_sizes: dict[str, Any] | None = None,
                  train_options: dict[str, Any] | None = None, log_every: int = 50) -> dict[str, dict]:
    """Train the aligner on the datasets' shards for ``steps`` batches in total (resuming from the latest
    checkpoint), then ``extract_durations_flow`` with the last checkpoint; returns each dataset's counts.

    ``device``: ``auto`` (CUDA with mixed precision when present, else the CPU), ``cpu`` or ``cuda``.
    ``model_sizes`` / ``train_options``: overrides of ``Tacotron2Config`` sizes / ``TrainConfig`` fields.
    """
    chosen = aligner_datasets(config_path, out_dir, datasets)
    roots = [str(DatasetLayout(Path(out_dir), dataset.name).root) for dataset, _ in chosen]
    trained = train_task(roots, out_dir, steps, batch_size, device, model_sizes, train_options, log_every)
    get_run_logger().info("aligner at step %d (%d skipped), checkpoint %s", trained["step"], trained["bad_steps"],
                          trained["checkpoint"])
    return extract_durations_flow(config_path, out_dir, [d.name for d, _ in chosen], trained["checkpoint"], device,
                                  batch_size)
