"""Listening checks: rejected clips per reason (from the ledger's source audio path) and the lowest-SNR
kept clips (their conditioned shard audio). Players hold at most PREVIEW_CLIP_S seconds at <= 16 kHz."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ttsprep.stages.core.audio_io import decode_bytes
from ttsprep.stages.step7_finalize.report_html import Raw, fixed, load_preview, preview_player, short_id, table

REJECT_CLIPS_PER_REASON = 2  # decodable clips played per reject reason
REJECT_TRIES_PER_REASON = 5  # ledger rows tried per reason before giving up on finding decodable ones
MAX_REJECT_REASONS = 8  # reasons with players (the most frequent)
LOW_SNR_CLIPS = 3


def rejected_audio_html(rejects: pa.Table) -> str:
    """Per reject reason (most frequent first) players of its first decodable source files, and a line
    for each tried file that would not decode (missing, unreadable)."""
    by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rejects.select(["utt_id", "stage", "reason", "detail", "audio_path"]).to_pylist():
        by_reason[row["reason"]].append(row)
    if not by_reason:
        return "<p>No rejects.</p>"
    parts = []
    reasons = sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))
    for reason, items in reasons[:MAX_REJECT_REASONS]:
        players, failures = [], []
        for item in items[:REJECT_TRIES_PER_REASON]:
            if len(players) == REJECT_CLIPS_PER_REASON:
                break
            detail = (item["detail"] or "")[:160]
            try:
                if not item["audio_path"]:
                    raise OSError("no audio path in the ledger")
                samples, rate, total_s = load_preview(Path(item["audio_path"]))
            except (OSError, RuntimeError, ValueError) as exc:
                failures.append(f"{item['utt_id']}: not decodable ({str(exc)[:120]})")
                continue
            players.append(preview_player(samples, rate, item["utt_id"], "rejected",
                                          f"{item['utt_id']} ({item['stage']}): {detail}", total_s=total_s))
        failed = "".join(f"<li>{html.escape(line)}</li>" for line in failures)
        parts.append(f'<h3 data-reason="{html.escape(reason, quote=True)}">{html.escape(reason)}: '
                     f"{len(items):,} rejected</h3>"
                     + (f'<div class="clip">{"".join(players)}</div>' if players else "")
                     + (f'<ul class="dim">{failed}</ul>' if failed else ""))
    if len(reasons) > MAX_REJECT_REASONS:
        parts.append(f"<p>{len(reasons) - MAX_REJECT_REASONS} less frequent reasons have no players.</p>")
    return ("<p>Source files as the corpus has them (before any conditioning), the first ones of each "
            "reason in the ledger.</p>" + "".join(parts))


def lowest_snr(kept: pa.Table) -> list[int]:
    """Kept-row indices of the LOW_SNR_CLIPS lowest finite ``snr_db`` values, lowest first."""
    snr = kept["snr_db"].to_numpy(zero_copy_only=False).astype(np.float64)
    order = [int(index) for index in np.argsort(snr, kind="stable") if np.isfinite(snr[index])]
    return order[:LOW_SNR_CLIPS]


def low_snr_html(kept: pa.Table, picks: list[int], rows: dict[str, dict[str, Any]]) -> str:
    """A table of the ``picks`` (from ``lowest_snr``) with players of their conditioned shard audio;
    ``rows`` maps utt_id to its shard row (audio, duration_s, text)."""
    utt_ids, speakers = kept["utt_id"].to_pylist(), kept["speaker"].to_pylist()
    snr = kept["snr_db"].to_numpy(zero_copy_only=False).astype(np.float64)
    table_rows = []
    for index in picks:
        row = rows[utt_ids[index]]
        samples, rate = decode_bytes(row["audio"])
        player = preview_player(samples, rate, utt_ids[index], "low-snr", f"{row['duration_s']:.2f} s, kept audio")
        table_rows.append([utt_ids[index], Raw(short_id(speakers[index])), fixed(snr[index], 1), row["text"] or "",
                           Raw(player)])
    return ("<p>SNR is estimated before denoising; the players hold the kept audio (after trimming and "
            "denoising, as it trains).</p>"
            + table(["utt_id", "speaker", "SNR dB", "text", "audio"], table_rows, css_class="low-snr"))
