"""Tacotron 2 durations for finished datasets: an aligner trained on their shards, then each shard rewritten
with ``durations``, ``token_pitch`` and ``token_energy``, the utterances whose attention is not trustworthy
moved to the rejects ledger.

Run after ``ttsprep run`` on datasets whose ``align.method`` is ``tacotron2`` (their shards then hold
phonemes but no durations; ``check_ready``). ``train_on_shards`` trains (or resumes) the aligner in its own
folder, where its vocabulary is pinned (``pin_vocab``) so token ids cannot drift when datasets are added
later. Per shard (``add_shard_durations``):

* every utterance is teacher-forced; its attention [T / r, N] gives monotonic durations summing to
  ``num_frames / r`` and the quality measures ``focus_rate`` and ``diagonality``
  (``ttsprep.aligners.attention_durations``). Utterances below ``align.attention_min_*`` go to the shard's ledger
  part (stage ``align``, reason ``attention_low_quality``, the measured values in ``detail``), as do those
  with more phonemes than decoder steps (``too_few_frames``);
* the kept rows get per-token prosody (``ttsprep.stages.step5_durations.alignment.token_prosody``), pass ``check_row_invariants``,
  and the shard's statistics part is recomputed over them;
* ``work/<shard>.attention.parquet`` keeps every utterance's measures; the shard itself is written last,
  atomically, with the checkpoint's digest in its Parquet metadata (``CHECKPOINT_KEY``). That marker
  travels with the rewritten file: a shard carrying the same digest is skipped, and one rewritten by
  ``ttsprep run`` has none. After a crash before the shard write the ledger part's rows for utterances
  still in the shard are discarded and recomputed.

Utterances rejected with one checkpoint stay in the ledger when extracting with another (their rows are gone
from the shard); ``ttsprep run`` after a config change rebuilds shards with every utterance. Afterwards
``ttsprep.stages.step7_finalize.finalize.finalize_dataset`` merges the ledger parts and rewrites ``index.json`` (inputs = kept +
rejected) and ``stats.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ttsprep.models.tacotron2 import Tacotron2, Tacotron2Config
from ttsprep.stages.core.arrow_lists import flat_list, list_array
from ttsprep.stages.core.atomic import rows_to_table, write_json, write_parquet
from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.errors import AlignmentFailed, ConfigError, TtsprepError, stage
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import Reject
from ttsprep.stages.core.schema import check_row_invariants
from ttsprep.stages.step5_durations.alignment import token_prosody
from ttsprep.stages.step6_shards.stats import RunningStats
from ttsprep.stages.step6_shards.writer import write_shard_files
from ttsprep.train.collate import Batch, Collate, TrainItem
from ttsprep.train.dataset import rows_to_items
from ttsprep.train.shards import SymbolMaps, load_shard_set, load_symbol_maps
from ttsprep.train.tacotron2_trainer import (TrainConfig, TrainResult, extract_durations, resolve_device, shard_batches,
                                             train_tacotron2)

#: Parquet metadata key of a rewritten shard: the digest of the checkpoint that aligned it.
CHECKPOINT_KEY = b"ttsprep.durations_checkpoint"
VOCAB_FILE = "vocab.json"
ATTENTION_SCHEMA = pa.schema([("utt_id", pa.string()), ("focus_rate", pa.float32()), ("diagonality", pa.float32()),
                              ("kept", pa.bool_())])


@dataclass(frozen=True)
class ShardDurations:
    """What one shard's extraction returns: small and JSON-friendly."""

    name: str
    num_rows: int  # rows kept, with durations
    num_rejected: int  # utterances of this shard in the ledger at stage "align"
    focus_rate_median: float | None  # over the utterances aligned with this checkpoint
    diagonality_median: float | None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def checkpoint_digest(checkpoint: Path) -> str:
    """SHA-256 (16 hex) of a checkpoint file: the marker of shards aligned with it."""
    with open(checkpoint, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def check_ready(layout: DatasetLayout, config: StageConfig) -> dict[str, Any]:
    """The dataset's ``index.json``; ``ConfigError`` unless the dataset is finalized with this ``config`` and
    its ``align.method`` is ``tacotron2`` with the text front-end on."""
    if config.align.method != "tacotron2":
        raise ConfigError(f"{layout.name}: align.method is {config.align.method!r}; set it to 'tacotron2' and run "
                          "`ttsprep run` before aligning with Tacotron 2")
    if not config.text.enabled:
        raise ConfigError(f"{layout.name}: the Tacotron 2 aligner needs phonemes (text.enabled: true)")
    if not layout.index.is_file():
        raise ConfigError(f"{layout.name}: no {layout.index} (run `ttsprep run` first)")
    index = json.loads(layout.index.read_text(encoding="utf-8"))
    if index["config_hash"] != config.fingerprint():
        raise ConfigError(f"{layout.name}: the shards were written with another configuration (config hash "
                          f"{index['config_hash']}, now {config.fingerprint()}); run `ttsprep run` first")
    return index


def pin_vocab(aligner_dir: Path, vocab: dict[str, int]) -> None:
    """Record the vocabulary an aligner is trained with; ``ConfigError`` if its folder holds another one."""
    path = Path(aligner_dir) / VOCAB_FILE
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")) != dict(vocab):
            raise ConfigError(f"{path} differs from the output's vocab.json (datasets were added or changed since "
                              "this aligner was trained): train in another aligner folder")
        return
    write_json(path, dict(vocab))


def aligner_maps(maps: SymbolMaps, aligner_dir: Path) -> SymbolMaps:
    """``maps`` with the vocabulary the aligner in ``aligner_dir`` was trained with (``pin_vocab``)."""
    path = Path(aligner_dir) / VOCAB_FILE
    if not path.is_file():
        raise ConfigError(f"{path} missing: {aligner_dir} holds no trained aligner")
    return SymbolMaps(json.loads(path.read_text(encoding="utf-8")), maps.speakers, maps.languages, maps.accents)


def train_on_shards(roots: Sequence[Path], aligner_dir: Path, *, steps: int, batch_size: int, device: str = "auto",
                    model_sizes: dict[str, Any] | None = None, train_options: dict[str, Any] | None = None,
                    on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train, or resume from the latest checkpoint in ``aligner_dir``, until ``steps`` batches of
    ``batch_size`` utterances from the shards of the dataset folders ``roots`` have been consumed.

    ``device``: ``auto`` (CUDA when present, with mixed precision; else the CPU), ``cpu`` or ``cuda``.
    ``model_sizes`` override ``Tacotron2Config``'s sizes (symbols, mel bins and r come from the shards),
    ``train_options`` the other fields of ``TrainConfig``; ``on_step`` is ``train_tacotron2``'s.
    """
    shard_set = load_shard_set([str(root) for root in roots])
    maps = load_symbol_maps(shard_set)
    pin_vocab(aligner_dir, maps.vocab)
    model = Tacotron2Config(n_symbols=len(maps.vocab), n_mels=shard_set.n_mels,
                            reduction_factor=shard_set.reduction_factor, **(model_sizes or {}))
    config = TrainConfig(model=model, max_steps=steps, **(train_options or {}))
    return train_tacotron2(shard_batches(shard_set, maps, batch_size=batch_size, seed=config.seed), config,
                           aligner_dir, device=resolve_device(device), on_step=on_step)


def _attention_path(layout: DatasetLayout, name: str) -> Path:
    return layout.root / "work" / f"{name}.attention.parquet"


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def aligned_summary(layout: DatasetLayout, name: str, digest: str) -> ShardDurations | None:
    """The summary of shard ``name`` if it was already rewritten with the checkpoint of ``digest``, else None."""
    path = layout.shard(name)
    metadata = pq.read_schema(path).metadata or {}
    if metadata.get(CHECKPOINT_KEY) != digest.encode() or not _attention_path(layout, name).is_file():
        return None
    attention = pq.read_table(_attention_path(layout, name))
    rejects = pq.read_table(layout.shard_rejects(name), columns=["stage"])
    return ShardDurations(name, pq.ParquetFile(path).metadata.num_rows,
                          rejects.filter(pc.equal(rejects["stage"], "align")).num_rows,
                          _median(attention["focus_rate"].to_pylist()), _median(attention["diagonality"].to_pylist()),
                          skipped=True)


def _batches(items: list[TrainItem], reduction_factor: int, batch_size: int) -> list[Batch]:
    """Items with phonemes in batches of similar length (less padding, the same durations)."""
    order = sorted((i for i, item in enumerate(items) if item.tokens is not None and item.tokens.size),
                   key=lambda i: items[i].num_frames)
    collate = Collate(reduction_factor=reduction_factor)
    return [collate([items[i] for i in order[start:start + batch_size]]) for start in range(0, len(order), batch_size)]


def _teacher_force(model: Tacotron2, items: list[TrainItem], config: StageConfig, *, batch_size: int,
                   seed: int) -> dict[str, tuple[np.ndarray | AlignmentFailed, dict[str, float]]]:
    """``{utt_id: (durations or the failure, quality)}``; the prenet dropout draws from a fixed ``seed``."""
    device = next(model.parameters()).device
    r = config.align.reduction_factor
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return {utt_id: (outcome, quality) for utt_id, outcome, quality in extract_durations(
            model, _batches(items, r, batch_size), r, config=config.align)}


def _replace_columns(table: pa.Table, columns: dict[str, list[np.ndarray]]) -> pa.Table:
    for name, arrays in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), list_array(arrays, table.schema.field(index).type))
    return table


def _finish(outcome: np.ndarray | AlignmentFailed, utt_id: str, num_frames: int, frames: dict[str, np.ndarray],
            labels: dict[str, Any], config: StageConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(durations, token pitch, token energy) of one row; raises the ``TtsprepError`` that rejects it,
    labelled with its stage. ``frames``: mel, f0, voiced, energy; ``labels``: phonemes, snt_duration."""
    r = config.align.reduction_factor
    with stage("align"):
        if isinstance(outcome, AlignmentFailed):
            raise outcome
    with stage("prosody"):
        pitch, energy = token_prosody(outcome, frames["f0"], frames["voiced"], frames["energy"], reduction_factor=r,
                                      interpolate=config.align.token_pitch == "interpolated_log")
    with stage("write"):
        check_row_invariants({"utt_id": utt_id, "num_frames": num_frames, **frames, **labels, "durations": outcome},
                             n_mels=config.features.n_mels, reduction_factor=r)
    return outcome, pitch, energy


def add_shard_durations(layout: DatasetLayout, name: str, model: Tacotron2, maps: SymbolMaps, config: StageConfig,
                        digest: str, *, batch_size: int = 16, seed: int = 0) -> ShardDurations:
    """Rewrite shard ``name`` with Tacotron 2 durations (see the module docstring); skipped when the shard
    already carries ``digest``. ``maps`` must hold the aligner's vocabulary (``aligner_maps``)."""
    if (done := aligned_summary(layout, name, digest)) is not None:
        return done
    path = layout.shard(name)
    table = pq.read_table(path)
    items = rows_to_items(table, maps, ("mel", "tokens"))
    aligned = _teacher_force(model, items, config, batch_size=batch_size, seed=seed)
    inputs = pq.read_table(layout.shard_inputs(name), columns=["utt_id", "audio_path"])
    audio_paths = dict(zip(inputs["utt_id"].to_pylist(), inputs["audio_path"].to_pylist()))
    frame_columns = {c: flat_list(table[c]) for c in ("mel", "f0", "voiced", "energy")}
    labels = table.select(["phonemes", "snt_duration"]).to_pylist()
    speakers = table["speaker"].to_pylist()
    kept: list[int] = []
    columns: dict[str, list[np.ndarray]] = {"durations": [], "token_pitch": [], "token_energy": []}
    rejects: list[Reject] = []
    attention_rows: list[dict[str, Any]] = []
    stats = RunningStats()
    if layout.shard_stats(name).is_file():  # the F0 ranges the shard's F0 was computed in stay recorded
        stats.f0_ranges = RunningStats.load(layout.shard_stats(name)).f0_ranges
    for row, item in enumerate(items):
        outcome, quality = aligned.get(item.utt_id) or (AlignmentFailed("no phonemes", reason=Reason.NO_PHONEMES), None)
        frames = {c: values[offsets[row]:offsets[row + 1]] for c, (values, offsets, _) in frame_columns.items()}
        try:
            finished = _finish(outcome, item.utt_id, item.num_frames, frames, labels[row], config)
        except TtsprepError as error:
            where = error.stage  # type: ignore[attr-defined]  # set by ``stage``
            rejects.append(Reject(item.utt_id, layout.name, where, error.reason, str(error),
                                  audio_paths.get(item.utt_id, "")))
            is_kept = False
        else:
            kept.append(row)
            for values, finished_values in zip(columns.values(), finished):
                values.append(finished_values)
            stats.add(speakers[row], **frames)
            is_kept = True
        if quality is not None:
            attention_rows.append({"utt_id": item.utt_id, **quality, "kept": is_kept})

    in_shard = set(table["utt_id"].to_pylist())
    previous = pq.read_table(layout.shard_rejects(name)).to_pylist() if layout.shard_rejects(name).is_file() else []
    ledger = [entry for entry in previous if entry["utt_id"] not in in_shard] + [r.to_row() for r in rejects]
    write_parquet(_attention_path(layout, name), rows_to_table(attention_rows, ATTENTION_SCHEMA))
    rewritten = _replace_columns(table.take(np.asarray(kept, dtype=np.int64)), columns)
    method_index = rewritten.schema.get_field_index("alignment_method")
    rewritten = rewritten.set_column(method_index, rewritten.schema.field(method_index),
                                     pa.array(["tacotron2"] * len(kept), pa.string()))
    rewritten = rewritten.replace_schema_metadata({**(table.schema.metadata or {}), CHECKPOINT_KEY: digest.encode()})
    write_shard_files(layout, name, rewritten, ledger, stats, config.shards)
    return ShardDurations(name, len(kept), sum(entry["stage"] == "align" for entry in ledger),
                          _median([q["focus_rate"] for q in attention_rows]),
                          _median([q["diagonality"] for q in attention_rows]))
