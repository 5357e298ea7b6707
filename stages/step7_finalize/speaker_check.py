"""The speaker-label check: after all shards of a dataset, each utterance's voice against its speaker's others.

Needs ``features.speaker_embedding`` (the shards' ``speaker_embedding`` column). ``check_speakers`` reads that
column of every shard of the dataset (a light read), computes each utterance's leave-one-out cosine to the mean of
its speaker's other utterances in the dataset (``speaker_similarity``; null for speakers with fewer than
``filter.speaker_min_utterances``: never judged) and writes it into the shards. With
``filter.min_speaker_similarity`` the rows below it move to the shard's ledger part (stage ``speaker_check``,
reason ``speaker_mismatch``, the cosine in ``detail``); the shard's statistics part is recomputed over the kept rows.

A shard is rewritten (through ``step6_shards.writer.write_shard_files``) only when its content changes: the digest
of what it should hold is kept in its Parquet metadata (``SPEAKER_CHECK_KEY``). The rows moved to the ledger are
kept whole in ``work/<shard>.speaker_mismatch.parquet``: a later check (another threshold, utterances added to
the speaker) judges them again and may put them back. A row of that file counts only while it is neither in the
shard nor in the ledger part for another reason (``process_shard`` rewrites both and so retires the file), which
also makes every crash point safe: the file is written as a superset before the shard, and trimmed after it.
The whole check is skipped when the shards, their ledger parts and the settings are those of its last run
(``work/speaker_check.key``).

``speaker_profiles`` (per speaker: centroid of the kept rows' embeddings, mean and spread of their
``speaker_similarity``; ``stats.json``) and ``near_duplicate_speakers`` (speakers whose centroids have cosine
>= ``NEAR_DUPLICATE_COSINE``: ``index.json``, and across datasets ``OUT/similar_speakers.json``) summarise them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ttsprep.stages.core.arrow_lists import flat_list
from ttsprep.stages.core.atomic import write_json, write_parquet, write_text
from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import Reject
from ttsprep.stages.core.versions import code_version
from ttsprep.stages.step1_ingest.plan import load_plan
from ttsprep.stages.step4_features.speaker_embedding import leave_one_out_similarity
from ttsprep.stages.step6_shards.stats import RunningStats
from ttsprep.stages.step6_shards.writer import write_shard_files

#: Parquet metadata key of a checked shard: the digest of its kept rows, their similarities and the rows moved out.
SPEAKER_CHECK_KEY = b"ttsprep.speaker_check"
STAGE = "speaker_check"
#: Two speakers whose centroids are at least this close are reported as possibly one voice. On the shared clips
#: (``bench/bench_speaker_embedding.py``) centroids of different speakers reach 0.78 (cosine of single clips:
#: 0.78 at most), halves of one speaker's clips 0.95-0.99 (from 9 clips each).
NEAR_DUPLICATE_COSINE = 0.85
#: The output-level list of near-duplicate voices over every dataset of ``OUT`` (``update_similar_speakers``).
SIMILAR_SPEAKERS_FILE = "similar_speakers.json"
LIGHT = ["utt_id", "speaker", "speaker_embedding"]
EMBEDDING_DIM = 256


@dataclass(frozen=True)
class SpeakerCheck:
    """What ``check_speakers`` returns: small and JSON-friendly."""

    dataset: str
    judged: int  # rows with a speaker_similarity
    rejected: int  # rows moved to the ledger as speaker_mismatch
    rewritten: tuple[str, ...]  # shards rewritten by this check
    skipped: bool = False  # the feature is off, or nothing changed since the last check

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def mismatch_rows_path(layout: DatasetLayout, name: str) -> Path:
    """The whole rows of shard ``name`` that the check moved to the ledger."""
    return layout.root / "work" / f"{name}.speaker_mismatch.parquet"


def _key_path(layout: DatasetLayout) -> Path:
    return layout.root / "work" / "speaker_check.key"


def check_key(layout: DatasetLayout, config: StageConfig) -> str:
    """The check's inputs: the settings, our code, and the stamps of every shard, ledger part and moved-rows file."""
    digest = hashlib.sha256(json.dumps([config.fingerprint(), code_version()]).encode())
    for spec in load_plan(layout.plan):
        for path in (layout.shard(spec.name), layout.shard_rejects(spec.name), mismatch_rows_path(layout, spec.name)):
            try:
                stat = os.stat(path)
                digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino}".encode())
            except FileNotFoundError:
                digest.update(f"{path.name} missing".encode())
    return digest.hexdigest()


def _embeddings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``speaker_embedding`` column -> float32 [n, 256], NaN rows where null."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    out = np.full((len(array), EMBEDDING_DIM), np.nan, np.float32)
    if len(array) and array.null_count < len(array):
        valid = ~array.is_null().to_numpy(zero_copy_only=False)
        values = array.flatten().to_numpy(zero_copy_only=False).reshape(-1, EMBEDDING_DIM)  # flatten skips nulls
        out[valid] = values
    return out


@dataclass
class _Shard:
    """One shard's population: the rows it holds plus the valid moved-out rows, in the shard inputs' order."""

    name: str
    utt_ids: list[str]
    speakers: list[str]
    embeddings: np.ndarray  # float32 [n, 256], NaN rows: no embedding
    restored: list[str]  # utt_ids taken from the moved-rows file (not in the shard now)
    similarity: np.ndarray | None = None  # float64 [n], NaN: not judged
    metadata_digest: bytes | None = None
    current_similarity: np.ndarray | None = None  # float32 [rows in the shard], NaN where null


def _population(layout: DatasetLayout, name: str) -> _Shard:
    shard = pq.read_table(layout.shard(name), columns=[*LIGHT, "speaker_similarity"])
    in_shard = set(shard["utt_id"].to_pylist())
    ledger = (pq.read_table(layout.shard_rejects(name), columns=["utt_id", "reason"]).to_pylist()
              if layout.shard_rejects(name).is_file() else [])
    elsewhere = {row["utt_id"] for row in ledger if row["reason"] != Reason.SPEAKER_MISMATCH} | in_shard
    tables = [shard.select(LIGHT)]
    moved_path = mismatch_rows_path(layout, name)
    if moved_path.is_file():
        moved = pq.read_table(moved_path, columns=LIGHT)
        tables.append(moved.filter(pc.invert(pc.is_in(moved["utt_id"], pa.array(sorted(elsewhere), pa.string())))))
    table = pa.concat_tables(tables)
    inputs = pq.read_table(layout.shard_inputs(name), columns=["utt_id"])["utt_id"].to_pylist()
    position = {utt_id: i for i, utt_id in enumerate(inputs)}
    utt_ids = table["utt_id"].to_pylist()
    order = np.argsort([position.get(u, len(position)) for u in utt_ids], kind="stable")
    table = table.take(order)
    current = shard["speaker_similarity"].to_numpy(zero_copy_only=False).astype(np.float32)
    return _Shard(name, table["utt_id"].to_pylist(), table["speaker"].to_pylist(), _embeddings(table["speaker_embedding"]),
                  [u for u in table["utt_id"].to_pylist() if u not in in_shard],
                  metadata_digest=(pq.read_schema(layout.shard(name)).metadata or {}).get(SPEAKER_CHECK_KEY),
                  current_similarity=current)


def _digest(kept: list[str], similarity: np.ndarray, moved: list[str]) -> bytes:
    digest = hashlib.sha256(json.dumps([kept, moved]).encode())
    digest.update(np.ascontiguousarray(similarity, np.float32).tobytes())
    return digest.hexdigest()[:16].encode()


def _unchanged(shard: _Shard, keep: np.ndarray, digest: bytes) -> bool:
    """The shard already holds its target: its digest says so, or (never checked) it has nothing to change."""
    if shard.metadata_digest == digest:
        return True
    return (keep.all() and not shard.restored and np.isnan(shard.similarity).all()
            and np.isnan(shard.current_similarity).all())


def check_speakers(layout: DatasetLayout, config: StageConfig) -> SpeakerCheck:
    """Judge every kept utterance of the dataset against its speaker's others (see the module docstring)."""
    if not config.features.speaker_embedding:
        return SpeakerCheck(layout.name, 0, 0, (), skipped=True)
    key = check_key(layout, config)
    key_path = _key_path(layout)
    if key_path.is_file() and key_path.read_text(encoding="utf-8") == key:
        summary = json.loads((layout.root / "work" / "speaker_check.json").read_text(encoding="utf-8"))
        return SpeakerCheck(layout.name, summary["judged"], summary["rejected"], (), skipped=True)
    shards = [_population(layout, spec.name) for spec in load_plan(layout.plan)]
    embeddings = np.concatenate([s.embeddings for s in shards]) if shards else np.zeros((0, EMBEDDING_DIM), np.float32)
    speakers = np.array([spk for s in shards for spk in s.speakers], dtype=object)
    valid = ~np.isnan(embeddings).any(axis=1)
    similarity = np.full(len(embeddings), np.nan)
    similarity[valid] = leave_one_out_similarity(embeddings[valid], speakers[valid].astype(str),
                                                 config.filter.speaker_min_utterances)
    similarity = similarity.astype(np.float32).astype(np.float64)  # as stored: the threshold sees the column's values
    counts = dict(zip(*np.unique(speakers[valid].astype(str), return_counts=True))) if valid.any() else {}
    threshold = config.filter.min_speaker_similarity
    rewritten, judged, rejected, start = [], 0, 0, 0
    for shard in shards:
        shard.similarity = similarity[start:start + len(shard.utt_ids)]
        start += len(shard.utt_ids)
        keep = ~(shard.similarity < threshold) if threshold is not None else np.ones(len(shard.utt_ids), bool)
        judged += int((~np.isnan(shard.similarity)).sum())
        rejected += int((~keep).sum())
        kept_ids = [u for u, k in zip(shard.utt_ids, keep) if k]
        digest = _digest(kept_ids, shard.similarity[keep], [u for u, k in zip(shard.utt_ids, keep) if not k])
        if not _unchanged(shard, keep, digest):
            _rewrite(layout, config, shard, keep, digest, counts)
            rewritten.append(shard.name)
    write_json(layout.root / "work" / "speaker_check.json", {"judged": judged, "rejected": rejected})
    write_text(key_path, check_key(layout, config))
    return SpeakerCheck(layout.name, judged, rejected, tuple(rewritten))


def _rewrite(layout: DatasetLayout, config: StageConfig, shard: _Shard, keep: np.ndarray, digest: bytes,
             counts: dict[str, int]) -> None:
    """Write shard ``shard.name`` with the kept rows and their similarity, its ledger part with the moved rows."""
    name, path = shard.name, layout.shard(shard.name)
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    moved_path = mismatch_rows_path(layout, name)
    if shard.restored:
        moved = pq.read_table(moved_path)
        moved = moved.filter(pc.is_in(moved["utt_id"], pa.array(shard.restored, pa.string())))
        table = pa.concat_tables([table, moved.cast(table.schema)])
    position = {u: i for i, u in enumerate(table["utt_id"].to_pylist())}
    table = table.take(np.array([position[u] for u in shard.utt_ids], dtype=np.int64))
    index = table.schema.get_field_index("speaker_similarity")
    similarity = pa.array(shard.similarity.astype(np.float32), pa.float32(), mask=np.isnan(shard.similarity))
    table = table.set_column(index, table.schema.field(index), similarity)
    kept, out = table.filter(pa.array(keep)), table.filter(pa.array(~keep))
    # Superset first: a crash before the shard is written loses no row (module docstring).
    restored = set(shard.restored)
    write_parquet(moved_path, pa.concat_tables([out, table.filter(pa.array(
        [u in restored and k for u, k in zip(shard.utt_ids, keep)]))]).replace_schema_metadata(None))
    inputs = pq.read_table(layout.shard_inputs(name), columns=["utt_id", "audio_path"])
    audio_paths = dict(zip(inputs["utt_id"].to_pylist(), inputs["audio_path"].to_pylist()))
    previous = pq.read_table(layout.shard_rejects(name)).to_pylist() if layout.shard_rejects(name).is_file() else []
    threshold = config.filter.min_speaker_similarity
    ledger = [row for row in previous if row["reason"] != Reason.SPEAKER_MISMATCH] + [
        Reject(utt_id, layout.name, STAGE, Reason.SPEAKER_MISMATCH,
               f"speaker_similarity={value:.3f} < min_speaker_similarity={threshold} (leave-one-out cosine to the "
               f"other {counts[speaker] - 1} utterances of speaker {speaker})", audio_paths.get(utt_id, "")).to_row()
        for utt_id, speaker, value in zip(out["utt_id"].to_pylist(), out["speaker"].to_pylist(),
                                          out["speaker_similarity"].to_pylist())]
    old_stats = RunningStats.load(layout.shard_stats(name)) if layout.shard_stats(name).is_file() else RunningStats()
    if keep.all() and not shard.restored:
        stats = old_stats  # the same rows: the same statistics
    else:
        stats = RunningStats()
        stats.f0_ranges = old_stats.f0_ranges  # the ranges the acoustic pass used, reused by a later run
        frames = {c: flat_list(kept[c]) for c in ("f0", "voiced", "energy", "mel")}
        for row, speaker in enumerate(kept["speaker"].to_pylist()):
            stats.add(speaker, **{c: values[offsets[row]:offsets[row + 1]]
                                  for c, (values, offsets, _) in frames.items()})
    kept = kept.replace_schema_metadata({**metadata, SPEAKER_CHECK_KEY: digest})
    write_shard_files(layout, name, kept, ledger, stats, config.shards)
    if len(out):
        write_parquet(moved_path, out.replace_schema_metadata(None))
    else:
        moved_path.unlink(missing_ok=True)


def speaker_profiles(shard_paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Per speaker of the kept rows with an embedding: ``{"centroid": [256] (unit norm, rounded to 1e-6),
    "similarity_mean", "similarity_std"`` (of their ``speaker_similarity``; None where never judged),
    ``"utterances"}``."""
    tables = [pq.read_table(p, columns=["speaker", "speaker_embedding", "speaker_similarity"]) for p in shard_paths]
    if not tables:
        return {}
    table = pa.concat_tables(tables)
    embeddings = _embeddings(table["speaker_embedding"]).astype(np.float64)
    speakers = np.array(table["speaker"].to_pylist(), dtype=object)
    similarity = table["speaker_similarity"].to_numpy(zero_copy_only=False).astype(np.float64)
    valid = ~np.isnan(embeddings).any(axis=1)
    profiles = {}
    for speaker in sorted(set(speakers[valid].tolist())):
        rows = valid & (speakers == speaker)
        centroid = embeddings[rows].sum(axis=0)
        centroid /= np.linalg.norm(centroid)
        judged = similarity[rows][~np.isnan(similarity[rows])]
        profiles[speaker] = {"centroid": np.round(centroid, 6).tolist(), "utterances": int(rows.sum()),
                             "similarity_mean": round(float(judged.mean()), 6) if judged.size else None,
                             "similarity_std": round(float(judged.std()), 6) if judged.size else None}
    return profiles


def near_duplicate_speakers(centroids: dict[str, list[float]], threshold: float = NEAR_DUPLICATE_COSINE
                            ) -> list[dict[str, Any]]:
    """``[{"speakers": [a, b], "cosine": c}]`` for every two keys whose centroids have cosine >= ``threshold``,
    highest first."""
    names = sorted(centroids)
    if len(names) < 2:
        return []
    matrix = np.array([centroids[n] for n in names], np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    cosine = matrix @ matrix.T
    first, second = np.triu_indices(len(names), 1)
    close = np.flatnonzero(cosine[first, second] >= threshold)
    pairs = [{"speakers": [names[first[i]], names[second[i]]], "cosine": round(float(cosine[first[i], second[i]]), 4)}
             for i in close]
    return sorted(pairs, key=lambda p: (-p["cosine"], p["speakers"]))


def update_similar_speakers(out_dir: Path) -> list[dict[str, Any]]:
    """Write ``OUT/similar_speakers.json``: near-duplicate voices over every finalized dataset of ``out_dir``
    (keys ``dataset:speaker``, pairs within a dataset included), from their ``stats.json`` centroids. Rewritten
    only when its content changes; absent when no dataset has speaker embeddings."""
    centroids = {}
    for index_path in sorted(Path(out_dir).glob("*/index.json")):
        stats_path = index_path.parent / "stats.json"
        if not stats_path.is_file():
            continue
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        for speaker, values in stats.get("speakers", {}).items():
            if "speaker_embedding" in values:
                centroids[f"{index_path.parent.name}:{speaker}"] = values["speaker_embedding"]["centroid"]
    path = Path(out_dir) / SIMILAR_SPEAKERS_FILE
    if not centroids:
        path.unlink(missing_ok=True)
        return []
    pairs = near_duplicate_speakers(centroids)
    content = {"threshold": NEAR_DUPLICATE_COSINE, "speakers": len(centroids), "pairs": pairs}
    if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != content:
        write_json(path, content)
    return pairs
