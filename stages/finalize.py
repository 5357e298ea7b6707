"""After all shards of a dataset: the rejects ledger, stats.json, index.json and the accounting check.

The index is written last, so a reader that finds ``index.json`` finds every shard it lists complete.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stages.atomic import write_json, write_parquet
from stages.config import StageConfig
from stages.errors import InvariantViolation
from stages.layout import DatasetLayout
from stages.plan import ShardSpec
from stages.schema import REJECTS_SCHEMA, SCHEMA_VERSION
from stages.splits import split_overlap
from stages.stats import RunningStats
from stages.versions import code_version, tool_versions

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


def finalize_dataset(layout: DatasetLayout, config: StageConfig, specs: list[ShardSpec],
                     *, num_inputs: int, extra_reject_parts: list[Path]) -> dict[str, Any]:
    """Write rejects.parquet, stats.json and index.json for ``specs``; return the index as a dict.

    Raises ``InvariantViolation`` when inputs != kept + rejected (an utterance was lost).
    """
    rejects = merge_rejects(layout, extra_reject_parts + [layout.shard_rejects(s.name) for s in specs])
    shard_paths = [layout.shard(s.name) for s in specs]
    light = (pa.concat_tables([pq.read_table(p, columns=LIGHT_COLUMNS) for p in shard_paths])
             if shard_paths else pa.table({c: pa.array([], pa.string()) for c in LIGHT_COLUMNS[:6]}
                                           | {"duration_s": pa.array([], pa.float32()),
                                              "num_frames": pa.array([], pa.int32())}))
    kept = light.num_rows
    if kept + rejects.num_rows != num_inputs:
        raise InvariantViolation(f"{layout.name}: {num_inputs} input utterances but {kept} kept + "
                                 f"{rejects.num_rows} rejected = {kept + rejects.num_rows}")
    stats = RunningStats()
    for spec in specs:
        stats = stats.merge(RunningStats.load(layout.shard_stats(spec.name)))
    write_json(layout.stats, stats.to_json_dict())
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
        "hours": {"total": round(sum(light.column("duration_s").to_pylist()) / 3600, 6),
                  "by_speaker": _hours_by(light, "speaker"), "by_language": _hours_by(light, "language"),
                  "by_split": _hours_by(light, "split")},
        "alignment": _alignment_counts(light, config.align.method),
        "split_overlap": split_overlap(zip(*(light.column(c).to_pylist() for c in ("split", "speaker", "text")))),
        "features": {**config.features.model_dump(mode="json"), "sample_rate": config.audio.sample_rate,
                     "reduction_factor": config.align.reduction_factor, "token_pitch": config.align.token_pitch},
        "config_hash": config.fingerprint(),
        "code_version": code_version(),
        "tool_versions": tool_versions(),
        "maps": {"vocab": "vocab.json", "speakers": "speakers.json", "languages": "languages.json"},
    }
    write_json(layout.index, index)
    return index
