"""Ingest and shard planning: which utterances go into which shard, stable across re-runs.

``ingest_and_plan`` is the whole step for one dataset: ingest, metadata filters, the manifest, the ingest
ledger, the plan and each shard's input list, with each shard's cache key.

A shard keeps its members while all of them are unchanged (same audio checksum and text, still kept), so adding files
only creates new shards and a re-run finds every old shard's key unchanged. A shard that lost or
changed a member is dissolved and its members are re-planned with the new ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ttsprep.stages.core.atomic import rows_to_table, write_json, write_parquet
from ttsprep.stages.core.config import ShardConfig
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.records import Utterance
from ttsprep.stages.core.schema import MANIFEST_SCHEMA, REJECTS_SCHEMA
from ttsprep.stages.core.versions import code_version, tool_versions
from ttsprep.stages.step1_ingest.filters import apply_metadata_filters
from ttsprep.stages.step1_ingest.ingest import ingest_dataset
from ttsprep.stages.step1_ingest.project import Dataset

#: Bytes per second of audio in a shard, for size targeting: FLAC (~35 KB/s at 22.05 kHz)
#: plus 80 float32 mel bins, f0, energy at ~86 frames/s (~30 KB/s).
BYTES_PER_AUDIO_SECOND = 65_000


@dataclass(frozen=True)
class ShardSpec:
    name: str  # "part-00000"
    members: tuple[tuple[str, str], ...]  # (utt_id, content_key), in processing order

    def key(self, config_fingerprint: str, code_version: str, tools: dict[str, str]) -> str:
        """Cache key: inputs' content, the stage config, our code and the tools' versions."""
        payload = json.dumps([self.members, config_fingerprint, code_version, sorted(tools.items())])
        return hashlib.sha256(payload.encode()).hexdigest()[:24]


def content_key(utt: Utterance) -> str:
    """What a shard row is computed from: the audio's checksum plus every text and label field."""
    fields = [utt.checksum, utt.text, utt.text_normalized, utt.pinyin, utt.speaker, utt.language, utt.split,
              utt.accent, utt.gender]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:32]


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


def _chunks(utterances: list[Utterance], cfg: ShardConfig) -> list[list[Utterance]]:
    """Consecutive chunks bounded by ``max_utterances`` and by ``target_mb`` of estimated output."""
    chunks: list[list[Utterance]] = []
    current: list[Utterance] = []
    current_bytes = 0.0
    for utt in utterances:
        size = utt.duration_s * BYTES_PER_AUDIO_SECOND
        if current and (len(current) >= cfg.max_utterances or current_bytes + size > cfg.target_mb * 1e6):
            chunks.append(current)
            current, current_bytes = [], 0.0
        current.append(utt)
        current_bytes += size
    if current:
        chunks.append(current)
    return chunks


def plan_shards(utterances: list[Utterance], previous: list[ShardSpec], cfg: ShardConfig) -> list[ShardSpec]:
    """Keep previous shards whose members are all present and unchanged; put the rest in new shards.

    Small shards are compacted: when a kept shard under ``cfg.compact_below`` of the size limits has company
    (another small shard, or new utterances to place), the small shards are dissolved and their members
    planned with the new ones, so data arriving a few files a day does not become one-row shards. A plan that
    compaction left alone has at most one small shard, so a re-run without new data keeps every shard (and
    its key); only the dissolved shards' utterances are processed again.
    """
    by_id = {u.utt_id: u for u in utterances}
    kept: list[ShardSpec] = []
    for spec in previous:
        if all(utt_id in by_id and content_key(by_id[utt_id]) == key for utt_id, key in spec.members):
            kept.append(spec)
    placed = {utt_id for spec in kept for utt_id, _ in spec.members}
    pending = [u for u in utterances if u.utt_id not in placed]
    small = [spec for spec in kept if _is_small(spec, by_id, cfg)]
    if len(small) > 1 or (small and pending):
        kept = [spec for spec in kept if spec not in small]
        pending += [by_id[utt_id] for spec in small for utt_id, _ in spec.members]
    used = {spec.name for spec in kept}
    index = 0
    for chunk in _chunks(sorted(pending, key=lambda u: u.utt_id), cfg):
        while shard_name(index) in used:
            index += 1
        kept.append(ShardSpec(shard_name(index), tuple((u.utt_id, content_key(u)) for u in chunk)))
        used.add(shard_name(index))
    return sorted(kept, key=lambda s: s.name)


def _is_small(spec: ShardSpec, by_id: dict[str, Utterance], cfg: ShardConfig) -> bool:
    """Whether ``spec`` fills less than ``cfg.compact_below`` of both size limits."""
    size_mb = sum(by_id[utt_id].duration_s for utt_id, _ in spec.members) * BYTES_PER_AUDIO_SECOND / 1e6
    return len(spec.members) < cfg.compact_below * cfg.max_utterances and size_mb < cfg.compact_below * cfg.target_mb


def save_plan(path: Path, specs: list[ShardSpec]) -> None:
    write_json(path, {"shards": [{"name": s.name, "members": [list(m) for m in s.members]} for s in specs]})


def load_plan(path: Path) -> list[ShardSpec]:
    if not Path(path).is_file():
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [ShardSpec(item["name"], tuple(tuple(m) for m in item["members"])) for item in data["shards"]]


def read_utterances(path: Path) -> list[Utterance]:
    """The utterances of a manifest-layout Parquet file (a shard's input list)."""
    with pq.ParquetFile(path) as file:  # not pq.read_table: its dataset layer costs a shard worker ~0.1 s to import
        return [Utterance.from_row(row) for row in file.read().to_pylist()]


@dataclass(frozen=True)
class IngestSummary:
    """Small and JSON-friendly: what the ingest step hands to the shard step."""

    dataset: str
    num_inputs: int
    num_ingested: int
    num_rejected: int
    shards: list[tuple[str, str]]  # (shard name, cache key)
    num_cached_probes: int = 0  # audio files not re-read: unchanged since the last ingest


def ingest_and_plan(dataset: Dataset, out_dir: Path) -> IngestSummary:
    """Ingest, filter on metadata, write the manifest and the shard plan with each shard's input list."""
    layout = DatasetLayout(Path(out_dir), dataset.name)
    ingested = ingest_dataset(dataset, cache_path=layout.probe_cache)
    manifest = rows_to_table([u.to_row() for u in ingested.utterances], MANIFEST_SCHEMA)
    write_parquet(layout.manifest, manifest)
    kept, filtered = apply_metadata_filters(ingested.utterances, dataset.config.filter)
    rejects = ingested.rejects + filtered
    write_parquet(layout.ingest_rejects, rows_to_table([r.to_row() for r in rejects], REJECTS_SCHEMA))
    specs = plan_shards(kept, load_plan(layout.plan), dataset.config.shards)
    row_of = {u.utt_id: row for row, u in enumerate(ingested.utterances)}
    fingerprint = dataset.config.fingerprint("filter", "audio", "features", "text", "align", "splits",
                                             shard_level=True)
    shards = []
    for spec in specs:
        write_parquet(layout.shard_inputs(spec.name), manifest.take([row_of[utt_id] for utt_id, _ in spec.members]))
        shards.append((spec.name, spec.key(fingerprint, code_version(), tool_versions())))
    save_plan(layout.plan, specs)
    _remove_stale_shards(layout, {s.name for s in specs})
    return IngestSummary(dataset.name, ingested.num_inputs, len(ingested.utterances), len(rejects), shards,
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
