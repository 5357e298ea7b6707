"""One shard of utterances from source audio to a training-ready Parquet file.

Per utterance: decode -> condition (trim, split, loudness) -> signal filters -> features (denoise, mel,
F0, energy) -> text front-end -> durations -> per-token prosody -> invariant check. Any per-utterance
error becomes a rejects row naming the stage; the shard file, its ledger part and its partial
statistics are written atomically, then the summary file that marks the shard complete.
"""

from __future__ import annotations

import json
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from stages import alignment, text_stage
from stages.atomic import rows_to_table, write_json, write_parquet
from stages.audio_io import encode_flac, load_audio
from stages.conditioning import condition_audio
from stages.config import StageConfig
from stages.errors import Rejected, TtsprepError
from stages.features import extract_features
from stages.frames import pad_to_multiple
from stages.layout import DatasetLayout
from stages.records import Reject, Utterance
from stages.schema import REJECTS_SCHEMA, check_row_invariants, shard_schema
from stages.signal_quality import clipping_fraction, estimate_snr_db
from stages.silence import segment_frames
from stages.splits import assign_split
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


@contextmanager
def stage(name: str):
    """Label any exception raised inside with the pipeline stage ``name`` (for the rejects ledger)."""
    try:
        yield
    except Exception as error:
        if not hasattr(error, "stage"):
            error.stage = name  # type: ignore[attr-defined]
        raise


def _condition_and_measure(utt: Utterance, config: StageConfig) -> tuple[dict[str, Any], Any]:
    with stage("decode"):
        samples = load_audio(Path(utt.audio_path), config.audio.sample_rate)
    with stage("condition"):
        return _condition(samples, config)


def _condition(samples: np.ndarray, config: StageConfig) -> tuple[dict[str, Any], Any]:
    clipping = clipping_fraction(samples)
    if clipping > config.filter.max_clipping_fraction:
        raise Rejected(f"clipping_fraction={clipping:.4f} > {config.filter.max_clipping_fraction}", reason="clipping")
    conditioned = condition_audio(samples, config.audio.sample_rate, config.audio)
    duration_s = conditioned.samples.size / config.audio.sample_rate
    if duration_s < config.filter.min_duration_s:
        raise Rejected(f"duration after trimming {duration_s:.3f}s < min_duration_s={config.filter.min_duration_s}",
                       reason="too_short_after_trim")
    if duration_s > config.filter.max_gpu_duration_s:
        raise Rejected(f"duration after trimming {duration_s:.3f}s > max_gpu_duration_s="
                       f"{config.filter.max_gpu_duration_s}", reason="too_long_for_gpu")
    snr_db = estimate_snr_db(conditioned.samples, config.audio.sample_rate)
    if config.filter.min_snr_db is not None and snr_db < config.filter.min_snr_db:
        raise Rejected(f"estimated snr_db={snr_db:.1f} < min_snr_db={config.filter.min_snr_db}", reason="low_snr")
    measures = {"snr_db": snr_db, "clipping_fraction": clipping, "source_duration_s": samples.size / config.audio.sample_rate,
                "trim_start_s": conditioned.trim_start_s, "trim_end_s": conditioned.trim_end_s}
    return measures, conditioned


def process_utterance(utt: Utterance, config: StageConfig, tokens: list[str] | None,
                      normalized: str | None, textgrid_dir: Path | None) -> dict[str, Any]:
    """The shard row for ``utt`` (see ``stages.schema``); raises ``TtsprepError`` subclasses on bad data."""
    features_cfg = config.features
    measures, conditioned = _condition_and_measure(utt, config)
    f0_range = features_cfg.speaker_f0_range.get(utt.speaker)
    with stage("features"):
        features = extract_features(conditioned.samples, config.audio.sample_rate, features_cfg,
                                    config.audio.denoise, f0_range=tuple(f0_range) if f0_range else None)
    r = config.align.reduction_factor
    mel, f0, voiced, energy = (pad_to_multiple(a, r) for a in (features.mel, features.f0, features.voiced, features.energy))
    num_frames = mel.shape[0]
    segments = segment_frames(conditioned.pause_boundaries, conditioned.samples.size, features_cfg.hop_length)
    segments[-1] += num_frames - features.num_frames
    with stage("align"):
        aligned = alignment.durations_for(utt.utt_id, config, num_frames=num_frames,
                                          trim_start_s=measures["trim_start_s"], textgrid_dir=textgrid_dir)
    row: dict[str, Any] = {
        "utt_id": utt.utt_id, "dataset": utt.dataset, "speaker": utt.speaker, "language": utt.language,
        "accent": utt.accent, "gender": utt.gender, "split": assign_split(utt, config.splits), "text": utt.text,
        "text_normalized": normalized, "pinyin": utt.pinyin,
        "audio": encode_flac(features.samples, config.audio.sample_rate), "sample_rate": config.audio.sample_rate,
        "num_samples": int(features.samples.size), "duration_s": features.samples.size / config.audio.sample_rate,
        "num_frames": num_frames, "mel": mel, "f0": f0, "voiced": voiced, "energy": energy,
        "snt_duration": segments, "checksum": utt.checksum, **measures,
        "phonemes": aligned.tokens if aligned else tokens,
    }
    if aligned is not None:
        row["durations"] = aligned.durations
        with stage("prosody"):
            pitch, energy_per_token = alignment.token_prosody(
                aligned.durations, f0, voiced, energy, reduction_factor=r,
                interpolate=config.align.token_pitch == "interpolated_log")
        row["token_pitch"], row["token_energy"] = pitch, energy_per_token
    with stage("write"):
        check_row_invariants(row, n_mels=features_cfg.n_mels, reduction_factor=r)
    return row


def _reject(utt: Utterance, default_stage: str, error: Exception) -> Reject:
    where = getattr(error, "stage", default_stage)
    if isinstance(error, TtsprepError):
        return Reject(utt.utt_id, utt.dataset, where, error.reason, str(error), utt.audio_path)
    frame = traceback.extract_tb(error.__traceback__)[-1]
    detail = f"{type(error).__name__}: {error} (at {Path(frame.filename).name}:{frame.lineno})"
    return Reject(utt.utt_id, utt.dataset, where, "internal_error", detail, utt.audio_path)


def process_shard(layout: DatasetLayout, name: str, key: str, config: StageConfig,
                  *, textgrid_dir: Path | None = None) -> ShardSummary:
    """Process the utterances listed in ``layout.shard_inputs(name)``; skip if already done with ``key``."""
    if (done := completed_summary(layout, name, key)) is not None:
        return done
    utterances = read_utterances(layout.shard_inputs(name))
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    stats = RunningStats()
    text_results = text_stage.front_end(utterances, config.text)
    for utt in utterances:
        text_result = text_results[utt.utt_id]
        if isinstance(text_result, Exception):
            rejects.append(_reject(utt, "text", text_result))
            continue
        normalized, tokens = text_result
        try:
            row = process_utterance(utt, config, tokens, normalized, textgrid_dir)
        except Exception as error:  # noqa: BLE001 - every failure becomes a ledger row, never a crashed run
            rejects.append(_reject(utt, "audio", error))
            continue
        stats.add(utt.speaker, f0=np.asarray(row["f0"]), voiced=np.asarray(row["voiced"]),
                  energy=np.asarray(row["energy"]), mel=np.asarray(row["mel"]))
        rows.append(row)
    cfg = config.shards
    write_parquet(layout.shard(name), rows_to_table(rows, shard_schema(config.features.n_mels)),
                  row_group_size=cfg.row_group_size, compression_level=cfg.compression_level)
    write_parquet(layout.shard_rejects(name), rows_to_table([r.to_row() for r in rejects], REJECTS_SCHEMA))
    stats.save(layout.shard_stats(name))
    by_reason: dict[str, int] = {}
    for reject in rejects:
        by_reason[reject.reason] = by_reason.get(reject.reason, 0) + 1
    summary = ShardSummary(name=name, key=key, num_rows=len(rows), num_rejected=len(rejects),
                           audio_seconds=float(sum(r["duration_s"] for r in rows)), rejects_by_reason=by_reason)
    write_json(layout.shard_summary(name), summary.to_json())
    return summary
