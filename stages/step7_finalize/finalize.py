"""After all shards of a dataset: the rejects ledger, stats.json, index.json and the accounting check.

The index is written last, so a reader that finds ``index.json`` finds every shard it lists complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ttsprep.stages.core.atomic import write_json, write_parquet, write_text
from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.schema import REJECTS_SCHEMA, SCHEMA_VERSION
from ttsprep.stages.core.versions import code_version, tool_versions
from ttsprep.stages.step1_ingest.plan import load_plan
from ttsprep.stages.step1_ingest.splits import split_overlap
from ttsprep.stages.step6_shards.stats import RunningStats
from ttsprep.stages.step7_finalize.self_checks import accounting_checks
from ttsprep.stages.step7_finalize.speaker_check import NEAR_DUPLICATE_COSINE, near_duplicate_speakers, speaker_profiles

LIGHT_COLUMNS = ["utt_id", "speaker", "language", "split", "text", "alignment_method", "duration_s", "num_frames"]


def merge_rejects(layout: DatasetLayout, parts: list[Path]) -> pa.Table:
    """Concatenate the ledger parts that exist into ``rejects.parquet``; returns the table."""
    tables = [pq.read_table(p, schema=REJECTS_SCHEMA) for p in parts if p.is_file()]
    table = pa.concat_tables(tables) if tables else REJECTS_SCHEMA.empty_table()
    write_parquet(layout.rejects, table)
    return table


def _hours_by(light: pa.Table, column: str) -> dict[str, float]:
    hours: dict[str, float] = defaultdict(float)
    for key, seconds in zip(light.column(column).to_pylist(), light.column("duration_s").to_pylist()):
        hours[key or "unknown"] += seconds / 3600
    return {k: round(v, 6) for k, v in sorted(hours.items())}


def _alignment_counts(light: pa.Table, method: str) -> dict[str, Any]:
    """The configured ``align.method``, and how many kept rows each aligner gave durations (``none``: no
    durations, e.g. ``tacotron2`` before ``extract-durations``)."""
    by_aligner: dict[str, int] = defaultdict(int)
    for aligner in light.column("alignment_method").to_pylist():
        by_aligner[aligner or "none"] += 1
    return {"method": method, "rows_by_aligner": dict(sorted(by_aligner.items()))}


def finalize_dataset(layout: DatasetLayout, config: StageConfig, *, num_inputs: int) -> dict[str, Any]:
    """Write rejects.parquet (the ingest ledger and every planned shard's), stats.json and index.json for the
    shards of the dataset's plan; return the index as a dict.

    ``index["checks"]`` holds the accounting self-checks (``self_checks.accounting_checks``); the caller fails the
    run with ``self_checks.raise_if_failed`` once the report is written.
    """
    specs = load_plan(layout.plan)
    rejects = merge_rejects(layout, [layout.ingest_rejects] + [layout.shard_rejects(s.name) for s in specs])
    shard_paths = [layout.shard(s.name) for s in specs]
    light = (pa.concat_tables([pq.read_table(p, columns=LIGHT_COLUMNS) for p in shard_paths])
             if shard_paths else pa.table({c: pa.array([], pa.string()) for c in LIGHT_COLUMNS[:6]}
                                           | {"duration_s": pa.array([], pa.float32()),
                                              "num_frames": pa.array([], pa.int32())}))
    kept = light.num_rows
    manifest_ids = pq.read_table(layout.manifest, columns=["utt_id"]).column("utt_id").to_pylist()
    checks = accounting_checks(num_inputs, manifest_ids, light.column("utt_id").to_pylist(),
                               rejects.column("utt_id").to_pylist())
    stats = RunningStats()
    for spec in specs:
        stats = stats.merge(RunningStats.load(layout.shard_stats(spec.name)))
    stats_json = stats.to_json_dict()
    voices = _speaker_embeddings(shard_paths, config, stats_json)
    write_json(layout.stats, stats_json)
    by_reason: dict[str, int] = defaultdict(int)
    for reason in rejects.column("reason").to_pylist():
        by_reason[reason] += 1
    index = {
        "dataset": layout.name,
        "schema_version": SCHEMA_VERSION,
        "shards": [{"path": f"shards/{s.name}.parquet", "num_rows": pq.ParquetFile(p).metadata.num_rows}
                   for s, p in zip(specs, shard_paths)],
        "counts": {"inputs": num_inputs, "kept": kept, "rejected": rejects.num_rows,
                   "rejected_by_reason": dict(sorted(by_reason.items()))},
        "checks": checks,
        "hours": {"total": round(sum(light.column("duration_s").to_pylist()) / 3600, 6),
                  "by_speaker": _hours_by(light, "speaker"), "by_language": _hours_by(light, "language"),
                  "by_split": _hours_by(light, "split")},
        "alignment": _alignment_counts(light, config.align.method),
        "split_overlap": split_overlap(zip(*(light.column(c).to_pylist() for c in ("split", "speaker", "text")))),
        "features": {**config.features.model_dump(mode="json"), "sample_rate": config.audio.sample_rate,
                     "reduction_factor": config.align.reduction_factor, "token_pitch": config.align.token_pitch},
        "speaker_embedding": voices,
        "config_hash": config.fingerprint(),
        "code_version": code_version(),
        "tool_versions": tool_versions(),
        "maps": {"vocab": "vocab.json", "speakers": "speakers.json", "languages": "languages.json"},
    }
    write_json(layout.index, index)
    return index


def _speaker_embeddings(shard_paths: list[Path], config: StageConfig, stats_json: dict[str, Any]) -> dict | None:
    """With ``features.speaker_embedding``: each speaker's ``speaker_embedding`` profile into ``stats_json``
    (``speaker_check.speaker_profiles``), and index.json's record: the encoder, the check's settings and counts,
    and the near-duplicate voices of the dataset. None when the feature is off."""
    if not config.features.speaker_embedding:
        return None
    from ttsprep.stages.step4_features.speaker_embedding import encoder_version

    profiles = speaker_profiles(shard_paths)
    for speaker, profile in profiles.items():
        stats_json["speakers"].setdefault(speaker, {})["speaker_embedding"] = profile
    judged = sum(p["utterances"] for p in profiles.values() if p["similarity_mean"] is not None)
    return {"encoder": encoder_version(), "torch": metadata.version("torch"),
            "min_speaker_similarity": config.filter.min_speaker_similarity,
            "speaker_min_utterances": config.filter.speaker_min_utterances,
            "speakers": len(profiles), "judged_rows": judged,
            "near_duplicate_threshold": NEAR_DUPLICATE_COSINE,
            "near_duplicates": near_duplicate_speakers({s: p["centroid"] for s, p in profiles.items()})}


def finalize_key(config: StageConfig, layout: DatasetLayout, num_inputs: int) -> str:
    """What finalize (ledger, stats, index, pairs, report) reads: the config, our code, the input count, the
    ingest ledger's bytes (rewritten by every ingest) and the stamps of the shard files and their ledger and
    statistics parts (rewritten only when a shard is, by ``ttsprep run`` or the Tacotron 2 aligner)."""
    digest = hashlib.sha256(json.dumps([config.fingerprint(), code_version(), num_inputs]).encode())
    digest.update(layout.ingest_rejects.read_bytes())
    for spec in load_plan(layout.plan):
        for path in (layout.shard(spec.name), layout.shard_rejects(spec.name), layout.shard_stats(spec.name)):
            try:
                stat = os.stat(path)
            except FileNotFoundError:  # finalize then runs, and says what is missing
                digest.update(f"{path.name} missing".encode())
                continue
            digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino}".encode())
    return digest.hexdigest()


def finalized_index(layout: DatasetLayout, key: str) -> dict | None:
    """``index.json`` when the last finalize of the dataset completed (report included) with ``key``, else None."""
    try:
        if layout.finalize_key.read_text() != key:
            return None
        return json.loads(layout.index.read_text())
    except (OSError, ValueError):
        return None


def record_finalized(layout: DatasetLayout, key: str) -> None:
    """Mark the dataset's finalize (report included) complete with ``key``."""
    write_text(layout.finalize_key, key)
