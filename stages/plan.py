"""Shard planning: which utterances go into which shard, stable across re-runs.

A shard keeps its members while all of them are unchanged (same audio checksum and text, still kept), so adding files
only creates new shards and a re-run finds every old shard's key unchanged. A shard that lost or
changed a member is dissolved and its members are re-planned with the new ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from stages.atomic import write_json
from stages.config import ShardConfig
from stages.records import Utterance

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
    """Keep previous shards whose members are all present and unchanged; put the rest in new shards."""
    current = {u.utt_id: content_key(u) for u in utterances}
    kept: list[ShardSpec] = []
    placed: set[str] = set()
    for spec in previous:
        if all(current.get(utt_id) == checksum for utt_id, checksum in spec.members):
            kept.append(spec)
            placed.update(utt_id for utt_id, _ in spec.members)
    used = {spec.name for spec in kept}
    pending = sorted((u for u in utterances if u.utt_id not in placed), key=lambda u: u.utt_id)
    index = 0
    for chunk in _chunks(pending, cfg):
        while shard_name(index) in used:
            index += 1
        kept.append(ShardSpec(shard_name(index), tuple((u.utt_id, content_key(u)) for u in chunk)))
        used.add(shard_name(index))
    return sorted(kept, key=lambda s: s.name)


def save_plan(path: Path, specs: list[ShardSpec]) -> None:
    write_json(path, {"shards": [{"name": s.name, "members": [list(m) for m in s.members]} for s in specs]})


def load_plan(path: Path) -> list[ShardSpec]:
    if not Path(path).is_file():
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [ShardSpec(item["name"], tuple(tuple(m) for m in item["members"])) for item in data["shards"]]
