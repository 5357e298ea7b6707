"""Per-speaker small multiples (duration and F0 histograms) and the least speaker-similar utterances.

``speaker_similarity`` (float32, nullable) is the cosine of an utterance's speaker embedding to its
speaker's leave-one-out centroid; shards written before that column existed simply have none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ttsprep.stages.core.audio_io import decode_bytes
from ttsprep.stages.step7_finalize.report_html import Raw, fixed, preview_player, short_id, table
from ttsprep.stages.step7_finalize.report_plots import MINI_BINS, axis_svg, histogram_svg, mini_histogram_svg

MAX_SPEAKER_PLOTS = 16  # speakers drawn as small multiples: the largest by kept hours
MAX_SIMILARITY_SPEAKERS = 6  # speakers listed: those whose least similar utterance is least similar
LEAST_SIMILAR_PER_SPEAKER = 2  # utterances listed (with players) per listed speaker


def largest_speakers(kept: pa.Table) -> tuple[list[str], int]:
    """Up to MAX_SPEAKER_PLOTS speakers by kept hours (then name), and how many speakers there are."""
    totals: dict[str, float] = {}
    for speaker, seconds in zip(kept["speaker"].to_pylist(), kept["duration_s"].to_pylist()):
        totals[speaker or "—"] = totals.get(speaker or "—", 0.0) + seconds
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    return ranked[:MAX_SPEAKER_PLOTS], len(ranked)


def speakers_html(kept: pa.Table, f0_hz: np.ndarray, f0_speaker: np.ndarray, speaker_names: list[str],
                  stats: dict[str, Any]) -> str:
    """One table row per large speaker: utterances, hours, and duration and voiced-F0 histograms on shared
    scales. ``f0_speaker[i]`` indexes ``speaker_names`` for ``f0_hz[i]``; ``stats`` is stats.json."""
    shown, total = largest_speakers(kept)
    if not shown:
        return "<p>No kept utterances.</p>"
    speakers = [name or "—" for name in kept["speaker"].to_pylist()]
    seconds = kept["duration_s"].to_numpy().astype(np.float64)
    names = np.array(speakers, dtype=object)
    by_speaker = {name: seconds[names == name] for name in shown}
    f0_by_speaker = {name: f0_hz[f0_speaker == index] for index, name in enumerate(speaker_names) if name in shown}
    all_durations = np.concatenate(list(by_speaker.values()))
    duration_edges = np.linspace(0.0, max(float(np.percentile(all_durations, 99)), 0.1), MINI_BINS + 1)
    voiced = np.concatenate([f0_by_speaker.get(name, np.zeros(0)) for name in shown]).astype(np.float64)
    f0_low, f0_high = np.percentile(voiced, [0.5, 99.5]) if voiced.size else (50.0, 400.0)
    f0_edges = np.linspace(np.floor(f0_low), max(np.ceil(f0_high), np.floor(f0_low) + 10), MINI_BINS + 1)
    rows = []
    for name in shown:
        durations = by_speaker[name]
        f0 = f0_by_speaker.get(name, np.zeros(0)).astype(np.float64)
        f0_range = (stats.get("speakers", {}).get(name) or {}).get("f0_range") or {}
        markers = [f0_range[key] for key in ("floor_hz", "ceil_hz") if isinstance(f0_range.get(key), (int, float))]
        rows.append([Raw(short_id(name)), int(durations.size), float(durations.sum() / 3600),
                     Raw(mini_histogram_svg(durations, duration_edges, kind="duration", speaker=name)),
                     fixed(float(np.median(durations)), 2),
                     Raw(mini_histogram_svg(f0, f0_edges, kind="f0", speaker=name, markers=markers)),
                     fixed(float(np.median(f0)) if f0.size else None, 0),
                     "–".join(f"{value:.0f}" for value in markers) + (" Hz" if markers else "")])
    rows.append([Raw("<small>scale</small>"), "", "", Raw(axis_svg(0.0, duration_edges[-1], "s")), "",
                 Raw(axis_svg(f0_edges[0], f0_edges[-1], "Hz")), "", ""])
    note = (f"The {len(shown)} largest of {total:,} speakers by kept hours (all of them are in the Hours table)."
            if total > len(shown) else f"All {total:,} speakers.")
    return (f"<p>{note} Each row's bars are scaled to its own tallest bar; the x scales are shared (last row), "
            "values beyond them fall in the end bins. Dashed red: the speaker's F0 search range "
            "(stats.json <code>speakers.&lt;id&gt;.f0_range</code>).</p>"
            + table(["speaker", "utterances", "hours", "duration after trimming", "median s",
                     "F0 of voiced frames", "median Hz", "F0 range"], rows, css_class="speakers"))


def least_similar(kept: pa.Table) -> list[int]:
    """Kept-row indices to list: per speaker its LEAST_SIMILAR_PER_SPEAKER least similar utterances, for the
    MAX_SIMILARITY_SPEAKERS speakers whose least similar utterance is least similar (nulls and NaN skipped)."""
    if "speaker_similarity" not in kept.column_names:
        return []
    similarity = kept["speaker_similarity"].to_numpy(zero_copy_only=False).astype(np.float64)
    per_speaker: dict[str, list[int]] = {}
    for index in np.argsort(similarity, kind="stable"):
        if np.isfinite(similarity[index]):
            per_speaker.setdefault(kept["speaker"][int(index)].as_py() or "—", []).append(int(index))
    ranked = sorted(per_speaker.values(), key=lambda indices: similarity[indices[0]])
    return [index for indices in ranked[:MAX_SIMILARITY_SPEAKERS] for index in indices[:LEAST_SIMILAR_PER_SPEAKER]]


def similarity_html(kept: pa.Table, picks: list[int], rows: dict[str, dict[str, Any]]) -> str:
    """Histogram of ``speaker_similarity`` and the ``picks`` (from ``least_similar``) with players;
    ``rows`` maps utt_id to its shard row (audio, sample_rate, duration_s, text)."""
    similarity = kept["speaker_similarity"].to_numpy(zero_copy_only=False).astype(np.float64)
    speakers = [name or "—" for name in kept["speaker"].to_pylist()]
    scored: dict[str, list[float]] = {}
    for name, value in zip(speakers, similarity.tolist()):
        if np.isfinite(value):
            scored.setdefault(name, []).append(value)
    utt_ids = kept["utt_id"].to_pylist()
    table_rows = []
    for index in picks:
        row, name = rows[utt_ids[index]], speakers[index]
        samples, rate = decode_bytes(row["audio"])
        player = preview_player(samples, rate, utt_ids[index], "least-similar", f"{row['duration_s']:.2f} s")
        table_rows.append([Raw(short_id(name)), len(scored[name]), fixed(float(np.median(scored[name])), 3),
                           utt_ids[index], fixed(similarity[index], 3), row["text"] or "", Raw(player)])
    listed = len({speakers[index] for index in picks})
    return (histogram_svg(similarity, "speaker similarity (cosine to the leave-one-out speaker centroid)", "cos")
            + f"<p>{len(scored):,} speakers scored. Listed: the {listed} speaker{'s' if listed != 1 else ''} whose "
            f"least similar utterance is least similar, with their {LEAST_SIMILAR_PER_SPEAKER} least similar "
            "utterances (a wrong speaker label, a second voice or a very different recording sounds here).</p>"
            + table(["speaker", "scored utterances", "speaker median", "utt_id", "similarity", "text", "audio"],
                    table_rows, css_class="similarity"))


def near_duplicates_html(index: dict[str, Any]) -> str:
    """The dataset's speakers whose embedding centroids are nearly the same voice (``index.json``'s
    ``speaker_embedding.near_duplicates``); empty without speaker embeddings."""
    record = index.get("speaker_embedding") or {}
    if not record:
        return ""
    pairs = record.get("near_duplicates") or []
    heading = (f"<h3>Nearly the same voice</h3><p>Speaker pairs whose centroids have cosine &ge; "
               f"{record.get('near_duplicate_threshold', 0):.2f} (one reader under two labels, or two labels for one "
               f"voice; across datasets: <code>similar_speakers.json</code> beside the datasets).</p>")
    if not pairs:
        return heading + "<p>None.</p>"
    return heading + table(["speaker", "speaker", "cosine"],
                           [[Raw(short_id(a)), Raw(short_id(b)), fixed(p["cosine"], 3)]
                            for p in pairs for a, b in [p["speakers"]]], css_class="near-duplicates")
