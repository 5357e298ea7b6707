"""Glue between the pure stages and the Prefect tasks: each function here is what one task does.

Kept free of Prefect so the same steps run in tests and benchmarks without a server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stages.atomic import rows_to_table, write_parquet
from stages.config import Dataset, load_project
from stages.filters import apply_metadata_filters
from stages.ingest import ingest_dataset
from stages.layout import DatasetLayout
from stages.plan import ShardSpec, load_plan, plan_shards, save_plan
from stages.schema import MANIFEST_SCHEMA, REJECTS_SCHEMA
from stages.versions import code_version, tool_versions


@dataclass(frozen=True)
class IngestSummary:
    """Small and JSON-friendly: what the ingest flow hands to the shard flow."""

    dataset: str
    num_inputs: int
    num_ingested: int
    num_rejected: int
    shards: list[tuple[str, str]]  # (shard name, cache key)


def load_dataset(config_path: str, name: str) -> Dataset:
    return load_project(Path(config_path)).select([name])[0]


def ingest_and_plan(config_path: str, name: str, out_dir: str) -> IngestSummary:
    """Ingest, filter on metadata, write the manifest and the shard plan with each shard's input list."""
    dataset = load_dataset(config_path, name)
    layout = DatasetLayout(Path(out_dir), name)
    ingested = ingest_dataset(dataset)
    write_parquet(layout.manifest, rows_to_table([u.to_row() for u in ingested.utterances], MANIFEST_SCHEMA))
    kept, filtered = apply_metadata_filters(ingested.utterances, dataset.config.filter)
    rejects = ingested.rejects + filtered
    write_parquet(layout.ingest_rejects, rows_to_table([r.to_row() for r in rejects], REJECTS_SCHEMA))
    specs = plan_shards(kept, load_plan(layout.plan), dataset.config.shards)
    by_id = {u.utt_id: u for u in kept}
    fingerprint = dataset.config.fingerprint("filter", "audio", "features", "text", "align", "splits")
    shards = []
    for spec in specs:
        write_parquet(layout.shard_inputs(spec.name),
                      rows_to_table([by_id[utt_id].to_row() for utt_id, _ in spec.members], MANIFEST_SCHEMA))
        shards.append((spec.name, spec.key(fingerprint, code_version(), tool_versions())))
    save_plan(layout.plan, specs)
    _remove_stale_shards(layout, {s.name for s in specs})
    return IngestSummary(name, ingested.num_inputs, len(ingested.utterances), len(rejects), shards)


def _remove_stale_shards(layout: DatasetLayout, current: set[str]) -> None:
    """Delete shard files the plan no longer lists (their members were re-planned)."""
    if not layout.shards_dir.is_dir():
        return
    for path in layout.shards_dir.glob("part-*.parquet"):
        if path.stem not in current:
            for stale in (path, layout.shard_summary(path.stem), layout.shard_rejects(path.stem),
                          layout.shard_stats(path.stem)):
                stale.unlink(missing_ok=True)


def plan_specs(out_dir: str, name: str) -> list[ShardSpec]:
    return load_plan(DatasetLayout(Path(out_dir), name).plan)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))
