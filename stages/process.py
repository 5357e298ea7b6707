"""One shard of utterances from source audio to a training-ready Parquet file.

Per utterance: text front-end, then decode -> condition (trim, split, loudness) -> signal filters ->
features (denoise, mel, F0, energy) -> durations -> per-token prosody -> invariant check. The audio and
feature columns are reused from the shard's previous run when only later stages' settings or code changed
(``acoustic_key``), so changing the text front-end or the aligner does not decode audio again. Any per-utterance
error becomes a rejects row naming the stage; the shard file, its ledger part and its partial
statistics are written atomically, then the summary file that marks the shard complete.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from stages import alignment, pitch, text_stage
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
from stages.quality import DNSMOS_COLUMNS, dnsmos_columns
from stages.signal_quality import clipping_fraction, estimate_snr_db
from stages.shard_state import ShardSummary, completed_summary, read_utterances
from stages.silence import segment_frames
from stages.splits import assign_split
from stages.stats import RunningStats
from stages.versions import acoustic_code_version, tool_versions


#: Shard columns computed from the audio alone (``acoustic_row``), and the stages that compute them.
ACOUSTIC_LIST_COLUMNS = ("mel", "f0", "voiced", "energy", "snt_duration")
ACOUSTIC_COLUMNS = ("audio", "sample_rate", "num_samples", "duration_s", "num_frames", *ACOUSTIC_LIST_COLUMNS,
                    "snr_db", "clipping_fraction", "source_duration_s", "trim_start_s", "trim_end_s", *DNSMOS_COLUMNS)
ACOUSTIC_STAGES = ("decode", "condition", "features")


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
    quality = dnsmos_columns(conditioned.samples, config.audio.sample_rate, enabled=config.features.dnsmos)
    if config.filter.min_dnsmos is not None and quality["dnsmos_ovrl"] is not None \
            and quality["dnsmos_ovrl"] < config.filter.min_dnsmos:
        raise Rejected(f"DNSMOS overall {quality['dnsmos_ovrl']:.2f} < min_dnsmos={config.filter.min_dnsmos} "
                       f"(signal {quality['dnsmos_sig']:.2f}, background {quality['dnsmos_bak']:.2f})",
                       reason="low_dnsmos")
    measures = {"snr_db": snr_db, "clipping_fraction": clipping, "source_duration_s": samples.size / config.audio.sample_rate,
                "trim_start_s": conditioned.trim_start_s, "trim_end_s": conditioned.trim_end_s, **quality}
    return measures, conditioned


def acoustic_row(utt: Utterance, config: StageConfig) -> dict[str, Any]:
    """The audio and frame-feature columns of ``utt``'s shard row: the costly part, reusable while the
    filter, audio and feature settings and ``ACOUSTIC_MODULES`` are unchanged. Alone, the F0 range is the
    utterance's own (``acoustic_rows`` does the shard's speaker pass)."""
    result = acoustic_rows([utt], config)[0][utt.utt_id]
    if isinstance(result, Exception):
        raise result
    return result


def acoustic_rows(utterances: list[Utterance], config: StageConfig,
                  known_ranges: dict[str, dict[str, Any]] | None = None
                  ) -> tuple[dict[str, dict[str, Any] | Exception], dict[str, dict[str, Any]]]:
    """``acoustic_row`` of each utterance (or the exception that rejects it), by ``utt_id``, with F0 in two
    passes over them all: a first pass per utterance, each speaker's range from its first-pass F0
    (``features.f0_range_mode``), then the final F0 in that range. ``known_ranges`` (a previous run's
    record) fixes the range of the speakers it lists as ``speaker``-wide. Also returns the ranges used per
    speaker: ``{speaker: {"floor_hz", "ceil_hz", "source", "utterances"}}``, source ``explicit`` (from
    ``speaker_f0_range``), ``speaker``, ``utterance`` (floor/ceil: the widest over them) or ``configured``."""
    features_cfg = config.features
    first: dict[str, Any] = {}
    for utt in utterances:
        try:
            first[utt.utt_id] = _acoustic_first_pass(utt, config)
        except Exception as error:  # noqa: BLE001 - rejected by the caller
            first[utt.utt_id] = error
    passes_by_speaker: dict[str, list[np.ndarray]] = {}
    for utt in utterances:
        if not isinstance(first[utt.utt_id], Exception) and first[utt.utt_id][1] is not None:
            passes_by_speaker.setdefault(utt.speaker, []).append(first[utt.utt_id][1].f0)
    floor, ceil = features_cfg.f0_floor, features_cfg.f0_ceil
    min_utterances = features_cfg.f0_speaker_min_utterances if features_cfg.f0_range_mode == "speaker" else 10**9
    by_speaker = pitch.speaker_ranges(passes_by_speaker, floor, ceil, min_utterances)
    for speaker, known in (known_ranges or {}).items():
        if known.get("source") == "speaker" and speaker in by_speaker:
            by_speaker[speaker] = (known["floor_hz"], known["ceil_hz"])
    results: dict[str, dict[str, Any] | Exception] = {}
    used: dict[str, dict[str, Any]] = {}
    for utt in utterances:
        if isinstance(first[utt.utt_id], Exception):
            results[utt.utt_id] = first[utt.utt_id]
            continue
        row, pitch_pass = first[utt.utt_id]
        explicit = features_cfg.speaker_f0_range.get(utt.speaker)
        if pitch_pass is not None:
            if explicit:
                f0_range, source = tuple(explicit), "explicit"
            elif features_cfg.f0_range_mode == "configured":
                f0_range, source = (floor, ceil), "configured"
            elif by_speaker.get(utt.speaker) is not None:
                f0_range, source = by_speaker[utt.speaker], "speaker"
            else:
                f0_range, source = pitch.two_pass_range(pitch_pass.f0, floor, ceil), "utterance"
            try:
                with stage("features"):
                    f0, voiced = pitch.final_pass(pitch_pass, f0_range, pitch.PitchSettings.from_config(features_cfg),
                                                  pitch_pass.raw.size)
            except Exception as error:  # noqa: BLE001 - rejected by the caller
                results[utt.utt_id] = error
                continue
            record = used.setdefault(utt.speaker, {"floor_hz": f0_range[0], "ceil_hz": f0_range[1],
                                                   "source": source, "utterances": 0})
            record["floor_hz"] = min(record["floor_hz"], float(f0_range[0]))
            record["ceil_hz"] = max(record["ceil_hz"], float(f0_range[1]))
            record["utterances"] += 1
            r = config.align.reduction_factor
            row["f0"], row["voiced"] = pad_to_multiple(f0, r), pad_to_multiple(voiced, r)
        results[utt.utt_id] = row
    return results, used


def _acoustic_first_pass(utt: Utterance, config: StageConfig) -> tuple[dict[str, Any], pitch.FirstPass | None]:
    """The acoustic row of ``utt`` with zero F0 (final F0 to come), and its F0 first pass (None: no F0)."""
    features_cfg = config.features
    measures, conditioned = _condition_and_measure(utt, config)
    f0_range = features_cfg.speaker_f0_range.get(utt.speaker)
    with stage("features"):
        features = extract_features(conditioned.samples, config.audio.sample_rate, features_cfg,
                                    config.audio.denoise, f0_range=tuple(f0_range) if f0_range else None,
                                    snr_db=measures["snr_db"], f0_first_pass=True)
    r = config.align.reduction_factor
    mel, f0, voiced, energy = (pad_to_multiple(a, r) for a in (features.mel, features.f0, features.voiced, features.energy))
    segments = segment_frames(conditioned.pause_boundaries, conditioned.samples.size, features_cfg.hop_length)
    segments[-1] += mel.shape[0] - features.num_frames
    return {
        "audio": encode_flac(features.samples, config.audio.sample_rate), "sample_rate": config.audio.sample_rate,
        "num_samples": int(features.samples.size), "duration_s": features.samples.size / config.audio.sample_rate,
        "num_frames": mel.shape[0], "mel": mel, "f0": f0, "voiced": voiced, "energy": energy,
        "snt_duration": segments, **measures,
    }, features.pitch_pass


def finish_row(acoustic: dict[str, Any], utt: Utterance, config: StageConfig, tokens: list[str] | None,
               normalized: str | None, textgrid_dir: Path | None) -> dict[str, Any]:
    """The full shard row (see ``stages.schema``): labels, text, durations and per-token prosody added to
    ``acoustic``; raises ``TtsprepError`` subclasses when alignment fails or an invariant does not hold."""
    r = config.align.reduction_factor
    with stage("align"):
        # trim_start_s as stored (float32), so reused and fresh features give the same durations
        found = alignment.durations_for(utt.utt_id, utt.language, config, audio_flac=acoustic["audio"],
                                        num_frames=int(acoustic["num_frames"]),
                                        trim_start_s=float(np.float32(acoustic["trim_start_s"])),
                                        text=normalized, tokens=tokens, textgrid_dir=textgrid_dir)
    aligned, method = found if found is not None else (None, None)
    row: dict[str, Any] = {
        **acoustic,
        "utt_id": utt.utt_id, "dataset": utt.dataset, "speaker": utt.speaker, "language": utt.language,
        "accent": utt.accent, "gender": utt.gender, "split": assign_split(utt, config.splits), "text": utt.text,
        "text_normalized": normalized, "pinyin": utt.pinyin, "checksum": utt.checksum,
        "phonemes": aligned.tokens if aligned else tokens, "alignment_method": method,
        "durations": None, "token_pitch": None, "token_energy": None,
    }
    if aligned is not None:
        row["durations"] = aligned.durations
        with stage("prosody"):
            row["token_pitch"], row["token_energy"] = alignment.token_prosody(
                aligned.durations, row["f0"], row["voiced"], row["energy"], reduction_factor=r,
                interpolate=config.align.token_pitch == "interpolated_log")
    with stage("write"):
        check_row_invariants(row, n_mels=config.features.n_mels, reduction_factor=r)
    return row


def acoustic_key(utterances: list[Utterance], config: StageConfig) -> str:
    """What ``acoustic_row`` depends on: the inputs, the acoustic settings, code and tool versions."""
    payload = json.dumps([[(u.utt_id, u.checksum) for u in utterances], config.fingerprint("filter", "audio", "features"),
                          config.align.reduction_factor, acoustic_code_version(), sorted(tool_versions().items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _column_arrays(table: pa.Table, name: str) -> list[np.ndarray]:
    """A list column as one numpy view per row (``[T]``, or ``[T, C]`` for fixed-size inner lists)."""
    column = table.column(name).combine_chunks()
    offsets = column.offsets.to_numpy()
    values = column.values
    if pa.types.is_fixed_size_list(values.type):
        flat = values.values.to_numpy(zero_copy_only=False).reshape(-1, values.type.list_size)
    else:
        flat = values.to_numpy(zero_copy_only=False)
    return [flat[start:stop] for start, stop in zip(offsets[:-1], offsets[1:])]


def reusable_acoustics(layout: DatasetLayout, name: str, key: str) -> tuple[dict[str, dict], dict[str, Reject]]:
    """Acoustic columns by ``utt_id``, and the audio-stage rejects, of the shard ``name`` as last written,
    if it was written with acoustic key ``key``; else two empty dicts."""
    summary_path = layout.shard_summary(name)
    if not (summary_path.is_file() and layout.shard(name).is_file()
            and json.loads(summary_path.read_text(encoding="utf-8")).get("acoustic_key") == key):
        return {}, {}
    table = pq.read_table(layout.shard(name), columns=["utt_id", *ACOUSTIC_COLUMNS])
    arrays = {c: _column_arrays(table, c) for c in ACOUSTIC_LIST_COLUMNS}
    scalars = table.drop_columns(list(ACOUSTIC_LIST_COLUMNS)).to_pylist()
    rows = {row.pop("utt_id"): {**row, **{c: arrays[c][i] for c in ACOUSTIC_LIST_COLUMNS}}
            for i, row in enumerate(scalars)}
    old_rejects = pq.read_table(layout.shard_rejects(name)).to_pylist() if layout.shard_rejects(name).is_file() else []
    rejects = {r["utt_id"]: Reject(r["utt_id"], r["dataset"], r["stage"], r["reason"], r["detail"], r["audio_path"])
               for r in old_rejects if r["stage"] in ACOUSTIC_STAGES}
    return rows, rejects


def _reject(utt: Utterance, default_stage: str, error: Exception) -> Reject:
    where = getattr(error, "stage", default_stage)
    if isinstance(error, TtsprepError):
        return Reject(utt.utt_id, utt.dataset, where, error.reason, str(error), utt.audio_path)
    frame = traceback.extract_tb(error.__traceback__)[-1]
    detail = f"{type(error).__name__}: {error} (at {Path(frame.filename).name}:{frame.lineno})"
    return Reject(utt.utt_id, utt.dataset, where, "internal_error", detail, utt.audio_path)


@threadpool_limits.wrap(limits=1)
def process_shard(layout: DatasetLayout, name: str, key: str, config: StageConfig,
                  *, textgrid_dir: Path | None = None) -> ShardSummary:
    """Process the utterances listed in ``layout.shard_inputs(name)``; skip if already done with ``key``.

    Numerics run on one thread, BLAS included: a multi-threaded matrix product rounds differently, and the
    shard must be bit-identical whoever runs it (a pool worker, a Dask worker, a test in-process).
    Parallelism comes from one process per shard.
    """
    if (done := completed_summary(layout, name, key)) is not None:
        return done
    utterances = read_utterances(layout.shard_inputs(name))
    sound_key = acoustic_key(utterances, config)
    reused_rows, reused_rejects = reusable_acoustics(layout, name, sound_key)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    stats = RunningStats()
    text_results = text_stage.front_end(utterances, config.text)
    alignment.start_shard()
    known_ranges = RunningStats.load(layout.shard_stats(name)).f0_ranges \
        if reused_rows and layout.shard_stats(name).is_file() else {}
    fresh, f0_ranges = acoustic_rows([u for u in utterances if not isinstance(text_results[u.utt_id], Exception)
                                      and u.utt_id not in reused_rejects and u.utt_id not in reused_rows],
                                     config, known_ranges)
    stats.f0_ranges = {**known_ranges, **f0_ranges}
    for utt in utterances:
        text_result = text_results[utt.utt_id]
        if isinstance(text_result, Exception):
            rejects.append(_reject(utt, "text", text_result))
            continue
        if utt.utt_id in reused_rejects:
            rejects.append(reused_rejects[utt.utt_id])
            continue
        normalized, tokens = text_result
        try:
            acoustic = reused_rows.get(utt.utt_id) or fresh[utt.utt_id]
            if isinstance(acoustic, Exception):
                raise acoustic
            row = finish_row(acoustic, utt, config, tokens, normalized, textgrid_dir)
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
                           audio_seconds=float(sum(r["duration_s"] for r in rows)), rejects_by_reason=by_reason,
                           acoustic_key=sound_key, reused_acoustics=len(reused_rows) + len(reused_rejects))
    write_json(layout.shard_summary(name), summary.to_json())
    return summary
