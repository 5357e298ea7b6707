"""What a shard's files say, without the signal-processing stack: its inputs, whether it is complete with a
given key (``completed_summary``), and the ledger entries of a shard whose task failed outright.

Imported by the flow's process (which plans and skips shards); ``ttsprep.stages.step6_shards.process`` computes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import Reject
from ttsprep.stages.core.schema import shard_schema
from ttsprep.stages.step1_ingest.plan import read_utterances
from ttsprep.stages.step6_shards.stats import RunningStats
from ttsprep.stages.step6_shards.writer import write_shard_files


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
    #: CPU seconds the shard took (this process), for the x-realtime log line; 0 when skipped.
    cpu_s: float = 0.0
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


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
    rejects = [Reject(u.utt_id, u.dataset, "shard", Reason.SHARD_FAILED, detail, u.audio_path) for u in utterances]
    write_shard_files(layout, name, shard_schema(config.features.n_mels).empty_table(),
                      [r.to_row() for r in rejects], RunningStats(), config.shards)
    layout.shard_summary(name).unlink(missing_ok=True)
    return ShardSummary(name=name, key="", num_rows=0, num_rejected=len(rejects), audio_seconds=0.0,
                        rejects_by_reason={Reason.SHARD_FAILED: len(rejects)})
