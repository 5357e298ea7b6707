"""One shard of utterances from source audio to a training-ready Parquet file.

Per utterance: text front-end, then the acoustic row (``step4_features.acoustic_row``: decode -> condition
(trim, split, loudness) -> signal filters -> features) -> durations -> per-token prosody -> invariant check.
The audio and feature columns are reused from the shard's previous run when only later stages' settings or code
changed (``acoustic_key``), so changing the text front-end or the aligner does not decode audio again. Any
per-utterance error becomes a rejects row naming the stage; the shard file, its ledger part and its partial
statistics are written atomically, then the summary file that marks the shard complete.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from ttsprep.stages.core.arrow_lists import flat_list, row_views
from ttsprep.stages.core.atomic import rows_to_table, write_json
from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.errors import TtsprepError, stage
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import Reject, Utterance
from ttsprep.stages.core.schema import check_row_invariants, shard_schema
from ttsprep.stages.step1_ingest.splits import assign_split
from ttsprep.stages.step3_text import front_end as text_stage
from ttsprep.stages.step4_features.acoustic_row import (ACOUSTIC_COLUMNS, ACOUSTIC_LIST_COLUMNS, ACOUSTIC_STAGES,
                                                        acoustic_key, acoustic_rows)
from ttsprep.stages.step5_durations import alignment
from ttsprep.stages.step6_shards.shard_state import ShardSummary, completed_summary, read_utterances
from ttsprep.stages.step6_shards.stats import RunningStats
from ttsprep.stages.step6_shards.writer import write_shard_files


def finish_row(acoustic: dict[str, Any], utt: Utterance, config: StageConfig, tokens: list[str] | None,
               normalized: str | None, textgrid_dir: Path | None) -> dict[str, Any]:
    """The full shard row (see ``ttsprep.stages.core.schema``): labels, text, durations and per-token prosody added to
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


def reusable_acoustics(layout: DatasetLayout, name: str, key: str) -> tuple[dict[str, dict], dict[str, Reject]]:
    """Acoustic columns by ``utt_id``, and the audio-stage rejects, of the shard ``name`` as last written,
    if it was written with acoustic key ``key``; else two empty dicts."""
    summary_path = layout.shard_summary(name)
    if not (summary_path.is_file() and layout.shard(name).is_file()
            and json.loads(summary_path.read_text(encoding="utf-8")).get("acoustic_key") == key):
        return {}, {}
    table = pq.read_table(layout.shard(name), columns=["utt_id", *ACOUSTIC_COLUMNS])
    arrays = {c: row_views(*flat_list(table.column(c))) for c in ACOUSTIC_LIST_COLUMNS}
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
    return Reject(utt.utt_id, utt.dataset, where, Reason.INTERNAL_ERROR, detail, utt.audio_path)


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
    started_cpu_s = time.process_time()
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
    write_shard_files(layout, name, rows_to_table(rows, shard_schema(config.features.n_mels)),
                      [r.to_row() for r in rejects], stats, config.shards)
    by_reason: dict[str, int] = {}
    for reject in rejects:
        by_reason[reject.reason] = by_reason.get(reject.reason, 0) + 1
    summary = ShardSummary(name=name, key=key, num_rows=len(rows), num_rejected=len(rejects),
                           audio_seconds=float(sum(r["duration_s"] for r in rows)), rejects_by_reason=by_reason,
                           acoustic_key=sound_key, reused_acoustics=len(reused_rows) + len(reused_rejects),
                           cpu_s=round(time.process_time() - started_cpu_s, 3))
    write_json(layout.shard_summary(name), summary.to_json())
    return summary
