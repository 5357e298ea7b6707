"""Glue between the pure stages and the Prefect tasks: each function here is what one task does.

Kept free of Prefect so the same steps run in tests and benchmarks without a server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from aligners.mfa import export_mfa_corpus, run_mfa_align
from stages.alignment import local_id
from stages.atomic import rows_to_table, write_parquet, write_text
from stages.config import Dataset, load_project
from stages.filters import apply_metadata_filters
from stages.ingest import ingest_dataset
from stages.layout import DatasetLayout
from stages.plan import ShardSpec, load_plan, plan_shards, save_plan
from stages.shard_state import ShardSummary, read_utterances, record_failed_shard
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
    num_cached_probes: int = 0  # audio files not re-read: unchanged since the last ingest


def load_dataset(config_path: str, name: str) -> Dataset:
    return load_project(Path(config_path)).select([name])[0]


def ingest_and_plan(config_path: str, name: str, out_dir: str) -> IngestSummary:
    """Ingest, filter on metadata, write the manifest and the shard plan with each shard's input list."""
    dataset = load_dataset(config_path, name)
    layout = DatasetLayout(Path(out_dir), name)
    ingested = ingest_dataset(dataset, cache_path=layout.probe_cache)
    manifest = rows_to_table([u.to_row() for u in ingested.utterances], MANIFEST_SCHEMA)
    write_parquet(layout.manifest, manifest)
    kept, filtered = apply_metadata_filters(ingested.utterances, dataset.config.filter)
    rejects = ingested.rejects + filtered
    write_parquet(layout.ingest_rejects, rows_to_table([r.to_row() for r in rejects], REJECTS_SCHEMA))
    specs = plan_shards(kept, load_plan(layout.plan), dataset.config.shards)
    row_of = {u.utt_id: row for row, u in enumerate(ingested.utterances)}
    fingerprint = dataset.config.fingerprint("filter", "audio", "features", "text", "align", "splits")
    shards = []
    for spec in specs:
        write_parquet(layout.shard_inputs(spec.name), manifest.take([row_of[utt_id] for utt_id, _ in spec.members]))
        shards.append((spec.name, spec.key(fingerprint, code_version(), tool_versions())))
    save_plan(layout.plan, specs)
    _remove_stale_shards(layout, {s.name for s in specs})
    return IngestSummary(name, ingested.num_inputs, len(ingested.utterances), len(rejects), shards,
                         ingested.num_cached_probes)


def _remove_stale_shards(layout: DatasetLayout, current: set[str]) -> None:
    """Delete shard files the plan no longer lists (their members were re-planned)."""
    if not layout.shards_dir.is_dir():
        return
    for path in layout.shards_dir.glob("part-*.parquet"):
        if path.stem not in current:
            for stale in (path, layout.shard_summary(path.stem), layout.shard_rejects(path.stem),
                          layout.shard_stats(path.stem)):
                stale.unlink(missing_ok=True)


def textgrid_dir(dataset: Dataset, out_dir: str) -> Path | None:
    """Where the dataset's TextGrids are: the user's folder, or this pipeline's MFA output."""
    align = dataset.config.align
    if align.method == "mfa":
        return DatasetLayout(Path(out_dir), dataset.name).mfa_dir / "textgrids"
    return align.textgrid_dir


def align_with_mfa(config_path: str, name: str, out_dir: str, jobs: int) -> str:
    """Export the planned utterances in MFA's layout and run ``mfa align`` (or ``mfa train``) over them.

    Skipped when the TextGrids exist for the same utterances (checksums and text) and MFA settings.
    Returns the TextGrid folder.
    """
    dataset = load_dataset(config_path, name)
    layout = DatasetLayout(Path(out_dir), name)
    align = dataset.config.align
    utterances = [u for spec in load_plan(layout.plan) for u in read_utterances(layout.shard_inputs(spec.name))]
    digest = hashlib.sha256(json.dumps([align.mfa_dictionary, align.mfa_acoustic_model, tool_versions()["mfa"]]
                                       + sorted((u.utt_id, u.checksum, u.text) for u in utterances)).encode())
    key_path, textgrids = layout.mfa_dir / "key.txt", textgrid_dir(dataset, out_dir)
    if key_path.is_file() and key_path.read_text() == digest.hexdigest():
        return str(textgrids)
    corpus = layout.mfa_dir / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    export_mfa_corpus([(u.speaker, local_id(u.utt_id), Path(u.audio_path), u.text) for u in utterances], corpus)
    run_mfa_align(corpus, align.mfa_dictionary, align.mfa_acoustic_model, textgrids, jobs=jobs)
    key_path.write_text(digest.hexdigest())
    return str(textgrids)


def fail_shard(config_path: str, name: str, out_dir: str, shard: str, detail: str) -> ShardSummary:
    """Put every utterance of a shard whose task failed into the ledger (see ``record_failed_shard``)."""
    dataset = load_dataset(config_path, name)
    return record_failed_shard(DatasetLayout(Path(out_dir), name), shard, dataset.config, detail)


def plan_specs(out_dir: str, name: str) -> list[ShardSpec]:
    return load_plan(DatasetLayout(Path(out_dir), name).plan)


def finalize_key(config_path: str, name: str, out_dir: str, num_inputs: int) -> str:
    """What finalize (ledger, stats, index, pairs, report) reads: the config, our code, the input count, the
    ingest ledger's bytes (rewritten by every ingest) and the stamps of the shard files and their ledger and
    statistics parts (rewritten only when a shard is, by ``ttsprep run`` or the Tacotron 2 aligner)."""
    layout = DatasetLayout(Path(out_dir), name)
    digest = hashlib.sha256(json.dumps([load_dataset(config_path, name).config.fingerprint(), code_version(),
                                        num_inputs]).encode())
    digest.update(layout.ingest_rejects.read_bytes())
    for spec in plan_specs(out_dir, name):
        for path in (layout.shard(spec.name), layout.shard_rejects(spec.name), layout.shard_stats(spec.name)):
            try:
                stat = os.stat(path)
            except FileNotFoundError:  # finalize then runs, and says what is missing
                digest.update(f"{path.name} missing".encode())
                continue
            digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino}".encode())
    return digest.hexdigest()


def finalized_index(out_dir: str, name: str, key: str) -> dict | None:
    """``index.json`` when the last finalize of ``name`` completed (report included) with ``key``, else None."""
    layout = DatasetLayout(Path(out_dir), name)
    try:
        if layout.finalize_key.read_text() != key:
            return None
        return json.loads(layout.index.read_text())
    except (OSError, ValueError):
        return None


def record_finalized(out_dir: str, name: str, key: str) -> None:
    write_text(DatasetLayout(Path(out_dir), name).finalize_key, key)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))
