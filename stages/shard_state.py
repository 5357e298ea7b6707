"""What a shard's files say, without the signal-processing stack: its inputs, whether it is complete with a
given key (``completed_summary``), and the ledger entries of a shard whose task failed outright.

Imported by the flow's process (which plans and skips shards); ``stages.process`` computes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from stages.atomic import rows_to_table, write_parquet
from stages.config import StageConfig
from stages.layout import DatasetLayout
from stages.records import Reject, Utterance
from stages.schema import REJECTS_SCHEMA, shard_schema
from stages.stats import RunningStats


@dataclass(frozen=True)
class ShardSummary:
    """What a shard task returns to the flow: small, JSON-serialisable."""

    name: str
    key: str
    num_rows: int
    num_rejected: int
    audio_seconds: float
    rejects_by_reason: dict[str, int]
    #: Key of the audio and feature columns; a later run with the same one reuses them (``reusable_acoustics``).
    acoustic_key: str = ""
    #: Utterances whose audio and features came from the previous run of this shard.
    reused_acoustics: int = 0
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def read_utterances(path: Path) -> list[Utterance]:
    return [Utterance.from_row(row) for row in pq.read_table(path).to_pylist()]


def completed_summary(layout: DatasetLayout, name: str, key: str) -> ShardSummary | None:
    """The stored summary if shard ``name`` was already written with this ``key`` (and still exists)."""
    path = layout.shard_summary(name)
    if not path.is_file() or not layout.shard(name).is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("key") != key:
        return None
    return ShardSummary(**{**data, "skipped": True})


def record_failed_shard(layout: DatasetLayout, name: str, config: StageConfig, detail: str) -> ShardSummary:
    """Account for a shard whose task failed outright (e.g. its worker was killed): every input goes to the
    ledger with reason ``shard_failed`` and an empty shard is written. No summary is stored, so the next
    run processes the shard again."""
    utterances = read_utterances(layout.shard_inputs(name))
    rejects = [Reject(u.utt_id, u.dataset, "shard", "shard_failed", detail, u.audio_path) for u in utterances]
    write_parquet(layout.shard(name), shard_schema(config.features.n_mels).empty_table())
    write_parquet(layout.shard_rejects(name), rows_to_table([r.to_row() for r in rejects], REJECTS_SCHEMA))
    RunningStats().save(layout.shard_stats(name))
    layout.shard_summary(name).unlink(missing_ok=True)
    return ShardSummary(name=name, key="", num_rows=0, num_rejected=len(rejects), audio_seconds=0.0,
                        rejects_by_reason={"shard_failed": len(rejects)})
