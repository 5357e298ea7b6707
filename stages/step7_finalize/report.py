"""The per-dataset HTML report: one self-contained file (inline SVG, PNG and audio; no network, no JS library).

Sections: utterance accounting (input = kept + rejected, with consistency checks), hours per speaker,
language and split, rejects by reason with example ids and players, histograms of per-utterance and
per-frame values, per-speaker small multiples, phone durations per language and alignment pictures (where
there are durations), the lowest-SNR kept clips, the least speaker-similar utterances (where the shards
have ``speaker_similarity``), voice-conversion pairs (where ``pairs.parquet`` exists), before/after players.

Shards are read column by column: histograms and tables use the light columns only; audio and mel are
read for the few utterances shown. Pictures live in ``report_plots``, table and player helpers in
``report_html``, the other sections in ``report_phones``, ``report_speakers``, ``report_audio`` and
``report_pairs``.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ttsprep.stages.core.atomic import atomic_path
from ttsprep.stages.core.audio_io import decode_bytes, load_audio
from ttsprep.stages.core.errors import InvalidAudio
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.schema import shard_schema
from ttsprep.stages.step1_ingest.splits import corpus_split
from ttsprep.stages.step7_finalize.report_audio import low_snr_html, lowest_snr, rejected_audio_html
from ttsprep.stages.step7_finalize.report_html import Raw, player_html, section, short_id, table
from ttsprep.stages.step7_finalize.report_pairs import pairs_html
from ttsprep.stages.step7_finalize.report_phones import (FrameTiming, frame_timing, phone_rows, phones_html,
                                                         read_phone_tokens)
from ttsprep.stages.step7_finalize.report_plots import alignment_figure, histogram_svg
from ttsprep.stages.step7_finalize.report_speakers import (least_similar, near_duplicates_html, similarity_html,
                                                            speakers_html)
from ttsprep.stages.step7_finalize.self_checks import accounting_checks

MAX_CLIP_S = 15.0  # longest audio clip embedded per example player
MAX_HISTOGRAM_FRAMES = 500_000  # per-frame values are subsampled to at most this many for the histograms
MAX_GROUP_ROWS = 30  # rows shown per hours table (largest groups first)
REJECT_EXAMPLES = 3  # example utt_ids listed per reject reason
ALIGNMENT_PICTURES = 3  # aligned utterances drawn with their tokens
PREFERRED_PICTURE_S = 8.0  # alignment pictures prefer utterances up to this long (legible labels)

_LIGHT_COLUMNS = ["utt_id", "speaker", "language", "split", "text", "alignment_method", "duration_s", "snr_db",
                  "num_frames", "num_samples", "sample_rate", "dnsmos_ovrl"]
_SIMILARITY = pa.field("speaker_similarity", pa.float32())  # optional shard column
_EXAMPLE_COLUMNS = ["utt_id", "speaker", "language", "split", "text", "audio", "sample_rate", "duration_s",
                    "source_duration_s", "trim_start_s", "trim_end_s", "num_frames", "mel", "f0", "voiced",
                    "snt_duration", "phonemes", "durations", "alignment_method"]
_CLIP_COLUMNS = ["utt_id", "audio", "duration_s", "text"]
_GROUP_KEYS = ("speaker", "language")

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1080px;color:#222;padding:0 12px}
h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
.ok{color:#17803d}.bad{color:#b3261e;font-weight:bold}.plots{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:12px;color:#555}.mel{position:relative}figure.align{margin:6px 0 22px}
.mel img,.mel svg{position:absolute;left:0;top:0}.mel img{image-rendering:pixelated}
.clip{display:flex;gap:24px;flex-wrap:wrap}.clip figure{min-width:300px;max-width:480px}
.dim{color:#777}span.id{border-bottom:1px dotted #888;cursor:help}svg.mini{display:block}
table.speakers td{padding:1px 6px;vertical-align:middle}table.low-snr td,table.similarity td{vertical-align:top}
table.rejects td:last-child{max-width:520px;overflow-wrap:anywhere}
details td{overflow-wrap:anywhere}details td:first-child{max-width:440px}details td:last-child{max-width:560px}
td audio{width:260px}
"""

# Record script errors (registered first, in <head>) and each player's readiness in data attributes.
_ERROR_SCRIPT = """
window.addEventListener("error", e => { document.documentElement.dataset.errors += e.message + ";"; });
"""
_PLAYER_SCRIPT = """
for (const a of document.querySelectorAll("audio")) {
  const mark = () => { a.dataset.state = a.error ? "error " + a.error.code : "ok"; };
  if (a.readyState >= 3 || a.error) mark();
  a.addEventListener("canplay", mark);
  a.addEventListener("error", mark);
}
"""

_CSP = ("default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")


def write_report(dataset_dir: Path, *, examples: int = 3, seed: int = 0,
                 alignment_pictures: int = ALIGNMENT_PICTURES) -> Path:
    """Write ``dataset_dir/report.html`` atomically from the dataset's manifest, rejects, shards and JSONs.

    ``examples`` utterances, drawn from the kept ones with ``seed``, get before/after audio players;
    ``alignment_pictures`` aligned utterances (examples first) get the mel with F0 and token labels.
    Returns the report's path.
    """
    dataset_dir = Path(dataset_dir)
    layout = DatasetLayout(dataset_dir.parent, dataset_dir.name)
    shard_paths = sorted(layout.shards_dir.glob("part-*.parquet"))
    manifest = pq.read_table(layout.manifest, columns=["utt_id", "speaker", "language", "split", "duration_s",
                                                       "audio_path"])
    rejects = pq.read_table(layout.rejects)
    index, stats = _read_json(layout.index), _read_json(layout.stats)
    kept = _read_kept(shard_paths)
    speaker_names = sorted({name or "—" for name in kept["speaker"].to_pylist()})
    f0_hz, f0_speaker, energy = _frame_values(shard_paths, int(pc.sum(kept["num_frames"]).as_py() or 0),
                                              speaker_names)
    tokens = read_phone_tokens(shard_paths)
    timing = frame_timing(index.get("features") or {}, kept, tokens.unit_sums)
    aligned = np.flatnonzero(tokens.unit_sums > 0)

    example_picks = _pick(kept.num_rows, examples, seed)
    picture_picks = _picture_picks(kept, aligned, example_picks, alignment_pictures, seed)
    rows = _read_rows(shard_paths, kept, example_picks + picture_picks, _EXAMPLE_COLUMNS)
    snr_picks, similar_picks = lowest_snr(kept), least_similar(kept)
    clips = _read_rows(shard_paths, kept, snr_picks + similar_picks, _CLIP_COLUMNS)
    utt_ids = kept["utt_id"].to_pylist()
    audio_paths = dict(zip(manifest["utt_id"].to_pylist(), manifest["audio_path"].to_pylist()))
    examples_html = "".join(_example_html(rows[utt_ids[i]], audio_paths.get(utt_ids[i])) for i in example_picks)
    if example_picks and not aligned.size:  # no durations: the first example's mel with its pause segments
        examples_html += _picture_html(rows[utt_ids[example_picks[0]]], timing, pauses=True)

    no_rows = f"<p>{'No kept utterances' if kept.num_rows == 0 else 'No examples requested'}.</p>"
    sections = [
        section("Utterances", _counts_html(manifest, kept, rejects, index)),
        section("Hours", "".join(_hours_html(key, manifest, kept) for key in _GROUP_KEYS)
                + _split_html(manifest, kept, rejects)),
        section("Rejects by reason", _rejects_html(rejects, manifest)),
        section("Rejected audio", rejected_audio_html(rejects)) if rejects.num_rows else "",
        section("Distributions", _distributions_html(kept, f0_hz, energy)),
        section("Per speaker", speakers_html(kept, f0_hz, f0_speaker, speaker_names, stats)),
        section("Phone durations", phones_html(phone_rows(tokens, timing.unit_ms, utt_ids), timing, aligned.size))
        if aligned.size and timing else "",
        section("Alignment", _aligners_html(kept) + "".join(_picture_html(rows[utt_ids[i]], timing)
                                                             for i in picture_picks)) if aligned.size else "",
        section("Lowest-SNR kept clips", low_snr_html(kept, snr_picks, clips)) if snr_picks else "",
        section("Speaker similarity", (similarity_html(kept, similar_picks, clips) if similar_picks else "")
                + near_duplicates_html(index)) if similar_picks or index.get("speaker_embedding") else "",
        section("Voice-conversion pairs", pairs_html(layout.pairs, set(utt_ids))) if layout.pairs.is_file() else "",
        section("Examples", examples_html or no_rows),
        section("Run files", _json_html("index.json", layout.index) + _json_html("stats.json", layout.stats)),
    ]
    title = html.escape(f"ttsprep report: {dataset_dir.name}")
    page = (f'<!DOCTYPE html>\n<html lang="en" data-errors=""><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"><title>{title}</title>'
            f"<style>{_STYLE}</style><script>{_ERROR_SCRIPT}</script></head>\n<body><h1>{title}</h1>\n"
            + "\n".join(part for part in sections if part) + f"\n<script>{_PLAYER_SCRIPT}</script></body></html>\n")
    with atomic_path(layout.report) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return layout.report


# ---------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _read_kept(shard_paths: list[Path]) -> pa.Table:
    """Light columns of every kept utterance, ``speaker_similarity`` (null where a shard has none) and
    ``shard`` (index into ``shard_paths``)."""
    fields = [shard_schema(1).field(name) for name in _LIGHT_COLUMNS] + [_SIMILARITY, pa.field("shard", pa.int32())]
    tables = []
    for index, path in enumerate(shard_paths):
        has_similarity = _SIMILARITY.name in pq.ParquetFile(path).schema_arrow.names
        table = pq.read_table(path, columns=_LIGHT_COLUMNS + [_SIMILARITY.name] * has_similarity)
        similarity = (table[_SIMILARITY.name].cast(pa.float32()) if has_similarity
                      else pa.nulls(table.num_rows, pa.float32()))
        table = table.select(_LIGHT_COLUMNS).append_column(_SIMILARITY, similarity)
        tables.append(table.append_column("shard", pa.array(np.full(table.num_rows, index, np.int32))))
    return pa.concat_tables(tables) if tables else pa.schema(fields).empty_table()


def _frame_values(shard_paths: list[Path], total_frames: int,
                  speaker_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F0 of voiced frames (Hz) with each value's speaker (index into ``speaker_names``), and energy of all
    frames; every k-th frame, so at most ~MAX_HISTOGRAM_FRAMES."""
    stride = max(1, -(-total_frames // MAX_HISTOGRAM_FRAMES))
    code = {name: number for number, name in enumerate(speaker_names)}
    f0_parts, owner_parts, energy_parts = [], [], []
    for path in shard_paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["speaker", "f0", "voiced", "energy"]):
            lengths = pc.list_value_length(batch.column("f0")).fill_null(0).to_numpy(zero_copy_only=False)
            owners = np.array([code[name or "—"] for name in batch.column("speaker").to_pylist()], np.int32)
            f0 = _flatten(batch.column("f0"))[::stride]
            voiced = _flatten(batch.column("voiced"))[::stride].astype(bool)
            f0_parts.append(f0[voiced])
            owner_parts.append(np.repeat(owners, lengths)[::stride][voiced])
            energy_parts.append(_flatten(batch.column("energy"))[::stride])
    empty = np.zeros(0, np.float32)
    return (np.concatenate(f0_parts or [empty]), np.concatenate(owner_parts or [np.zeros(0, np.int32)]),
            np.concatenate(energy_parts or [empty]))


def _flatten(column: pa.Array) -> np.ndarray:
    return pc.list_flatten(column).to_numpy(zero_copy_only=False)


def _pick(num_rows: int, examples: int, seed: int) -> list[int]:
    """Sorted row indices of ``min(examples, num_rows)`` kept utterances, drawn with ``seed``."""
    count = min(max(examples, 0), num_rows)
    return sorted(np.random.default_rng(seed).choice(num_rows, size=count, replace=False).tolist())


def _picture_picks(kept: pa.Table, aligned: np.ndarray, examples: list[int], count: int, seed: int) -> list[int]:
    """Up to ``count`` aligned kept rows to draw: aligned examples first, then others drawn with ``seed``;
    utterances up to PREFERRED_PICTURE_S long before longer ones (whose labels crowd)."""
    aligned_set = set(aligned.tolist())
    first = [index for index in examples if index in aligned_set]
    others = np.random.default_rng(seed).permutation(np.array(sorted(aligned_set - set(first)), np.int64))
    seconds = kept["duration_s"].to_numpy().astype(np.float64)
    candidates = sorted(first + others.tolist(), key=lambda index: seconds[index] > PREFERRED_PICTURE_S)
    return candidates[:max(count, 0)]


def _read_rows(shard_paths: list[Path], kept: pa.Table, picks: list[int], columns: list[str]) -> dict[str, dict]:
    """``columns`` of the picked kept rows, by utt_id, read only from their shards."""
    utt_ids = kept["utt_id"].to_pylist()
    shards = kept["shard"].to_pylist()
    wanted: dict[int, set[str]] = defaultdict(set)
    for index in picks:
        wanted[shards[index]].add(utt_ids[index])
    by_id: dict[str, dict] = {}
    for shard, ids in sorted(wanted.items()):
        table = pq.read_table(shard_paths[shard], columns=columns, filters=pc.field("utt_id").isin(sorted(ids)))
        by_id.update({row["utt_id"]: row for row in table.to_pylist()})
    return by_id


# ---------------------------------------------------------------- sections


def _counts_html(manifest: pa.Table, kept: pa.Table, rejects: pa.Table, index: dict[str, Any]) -> str:
    """Input = kept + rejected, and the self-checks that make that sum an honest count of the input: as
    ``index.json`` recorded them (``self_checks``; the run failed if one did), else computed here."""
    checks = index.get("checks") or accounting_checks(
        index.get("counts", {}).get("inputs", kept.num_rows + rejects.num_rows), manifest["utt_id"].to_pylist(),
        kept["utt_id"].to_pylist(), rejects["utt_id"].to_pylist())
    rows = [(c["check"], c["violations"], "ok" if c["violations"] == 0 else
             f"FAILED: {c['violations']} utterance" + ("s" if c["violations"] != 1 else "")) for c in checks]
    status = "".join(
        f'<tr><td>{html.escape(name)}</td><td class="{"ok" if bad == 0 else "bad"}" data-violations="{bad}">'
        f'{result}</td></tr>' for name, bad, result in rows)
    kept_hours = _hours(kept["duration_s"])
    source_hours = _hours(manifest["duration_s"])
    return (f'<p id="counts" data-input="{kept.num_rows + rejects.num_rows}" data-kept="{kept.num_rows}" '
            f'data-rejected="{rejects.num_rows}">Input utterances: <b>{kept.num_rows + rejects.num_rows:,}</b> '
            f"= kept {kept.num_rows:,} + rejected {rejects.num_rows:,} "
            f"(manifest: {manifest.num_rows:,} utterances that passed ingest, {source_hours:,.3f} h of source "
            f"audio; kept: {kept_hours:,.3f} h after trimming).</p>\n"
            f"<table><tr><th>check</th><th>result</th></tr>{status}</table>")


def _hours(seconds: pa.ChunkedArray) -> float:
    return float(pc.sum(seconds).as_py() or 0.0) / 3600.0


def _hours_html(key: str, manifest: pa.Table, kept: pa.Table) -> str:
    """Utterances and hours per ``key`` value: in the manifest (source) and kept (after trimming)."""
    source = _group_sums(manifest, key)
    after = _group_sums(kept, key)
    names = sorted(source.keys() | after.keys(), key=lambda name: (-after.get(name, (0, 0.0))[1], name))
    rows = [[Raw(short_id(name)), *source.get(name, (0, 0.0)), *after.get(name, (0, 0.0))]
            for name in names[:MAX_GROUP_ROWS]]
    if len(names) > MAX_GROUP_ROWS:
        rows.append([f"… {len(names) - MAX_GROUP_ROWS} more", "", "", "", ""])
    headers = [key, "input utterances", "input hours", "kept utterances", "kept hours"]
    return f"<h3>Per {html.escape(key)}</h3>" + table(headers, rows, css_class=f"hours-{key}")


def _split_html(manifest: pa.Table, kept: pa.Table, rejects: pa.Table) -> str:
    """Kept utterances and hours per split; rejected ones per split only where the corpus gave their split
    (the split of the others is assigned when shards are written, which rejected utterances never reach)."""
    after = _group_sums(kept, "split")
    rejected_ids = set(rejects["utt_id"].to_pylist())
    known: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for utt_id, split, seconds in zip(*(manifest[c].to_pylist() for c in ("utt_id", "split", "duration_s"))):
        if utt_id in rejected_ids and (name := corpus_split(split)) is not None:
            known[name][0] += 1
            known[name][1] += seconds / 3600.0
    names = sorted(after.keys() | known.keys(), key=lambda name: (-after.get(name, (0, 0.0))[1], name))
    rows = [[name, *after.get(name, (0, 0.0))] + ([int(known[name][0]), known[name][1]] if known else [])
            for name in names]
    headers = ["split", "kept utterances", "kept hours"] + (["rejected utterances", "rejected source hours"]
                                                            if known else [])
    unknown = rejects.num_rows - sum(int(count) for count, _ in known.values())
    note = (f"{unknown:,} rejected utterances have no split: the corpus gave none, and splits are assigned "
            "when shards are written." if unknown else "")
    return ("<h3>Per split</h3>" + table(headers, rows, css_class="hours-split")
            + (f'<p class="dim">{note}</p>' if note else ""))


def _group_sums(table_: pa.Table, key: str) -> dict[str, tuple[int, float]]:
    """``key`` value (nulls as "—") -> (utterances, hours)."""
    grouped = table_.group_by(key).aggregate([("duration_s", "count"), ("duration_s", "sum")]).to_pylist()
    return {("—" if row[key] is None else row[key]): (row["duration_s_count"], row["duration_s_sum"] / 3600.0)
            for row in grouped}


def _rejects_html(rejects: pa.Table, manifest: pa.Table) -> str:
    """Per reason: stages, count, source hours (for rejects found in the manifest) and a few examples."""
    seconds = dict(zip(manifest["utt_id"].to_pylist(), manifest["duration_s"].to_pylist()))
    by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rejects.select(["utt_id", "stage", "reason", "detail"]).to_pylist():
        by_reason[row["reason"]].append(row)
    rows = []
    for reason, items in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        stages = ", ".join(sorted({item["stage"] for item in items}))
        hours = sum(seconds.get(item["utt_id"], 0.0) for item in items) / 3600.0
        shown = "; ".join(f"{item['utt_id']}: {(item['detail'] or '')[:200]}" for item in items[:REJECT_EXAMPLES])
        rows.append([reason, stages, len(items), hours, shown])
    if not rows:
        return "<p>No rejects.</p>"
    return table(["reason", "stage", "utterances", "source hours", "examples"], rows, css_class="rejects")


def _distributions_html(kept: pa.Table, f0_hz: np.ndarray, energy: np.ndarray) -> str:
    duration_s = kept["duration_s"].to_numpy().astype(np.float64)
    characters = pc.utf8_length(kept["text"].fill_null("")).to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        chars_per_s = characters / duration_s
        energy_db = 20.0 * np.log10(np.maximum(energy.astype(np.float64), 1e-5))
    snr_db = kept["snr_db"].to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    plots = [
        histogram_svg(duration_s, "duration after trimming", "s"),
        histogram_svg(chars_per_s, "characters per second", "chars/s"),
        histogram_svg(f0_hz.astype(np.float64), "F0 of voiced frames", "Hz"),
        histogram_svg(energy_db, "frame energy, 20·log10(L2 norm)", "dB"),
        histogram_svg(snr_db, "SNR before denoising", "dB"),
    ]
    if kept["dnsmos_ovrl"].null_count < kept.num_rows:  # only where features.dnsmos was on
        dnsmos_ovrl = kept["dnsmos_ovrl"].to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
        plots.append(histogram_svg(dnsmos_ovrl, "DNSMOS P.835 overall before denoising", "MOS"))
    return '<div class="plots">' + "".join(plots) + "</div>"


def _aligners_html(kept: pa.Table) -> str:
    """Kept utterances and hours per aligner that gave their durations (``none``: no durations)."""
    methods = [m or "none" for m in kept["alignment_method"].to_pylist()]
    seconds = kept["duration_s"].to_pylist()
    rows = [[method, methods.count(method), round(sum(s for m, s in zip(methods, seconds) if m == method) / 3600, 3)]
            for method in sorted(set(methods))]
    return table(["aligner", "utterances", "hours"], rows, css_class="aligners")


def _picture_html(row: dict[str, Any], timing: FrameTiming | None, *, pauses: bool = False) -> str:
    """One utterance's mel with F0 and its tokens (``durations``) or, with ``pauses``, its pause segments."""
    num_frames = int(row["num_frames"])
    frame_s = timing.frame_s if timing else row["duration_s"] / num_frames
    if pauses:
        spans = list(row["snt_duration"] or [num_frames])
        labels = [[f"segment {k}", str(k)] for k in range(1, len(spans) + 1)]
        hints = [f"segment {k}: {span * frame_s * 1000:.0f} ms" for k, span in enumerate(spans, 1)]
        what = "pause-segment boundaries (snt_duration)"
    else:
        frames_per_unit = num_frames // max(sum(row["durations"]), 1)  # the reduction factor r
        spans = [count * frames_per_unit for count in row["durations"]]
        labels = [[token] for token in (row["phonemes"] or [""] * len(spans))]
        hints = [f"{choice[0]}: {span} frames, {span * frame_s * 1000:.0f} ms" for choice, span in zip(labels, spans)]
        what = f"token boundaries (durations, {row['alignment_method'] or 'aligner not recorded'})"
    meta = (f"speaker {short_id(row['speaker'])}, {html.escape(row['language'] or '—')}, "
            f"{row['duration_s']:.2f} s: “{html.escape(row['text'] or '')}”")
    return f'<p>{meta}</p>' + alignment_figure(row, frame_s=frame_s, spans=spans, labels=labels, hints=hints,
                                               what=what)


def _example_html(row: dict[str, Any], audio_path: str | None) -> str:
    """Players for the original file (whole, resampled to the shard rate) and the conditioned shard audio."""
    sample_rate = int(row["sample_rate"])
    utt_id = row["utt_id"]
    before_caption = f"before: original file, {row['source_duration_s']:.2f} s"
    if audio_path is None:
        before = f"<figure><p>Original not in the manifest.</p><figcaption>{before_caption}</figcaption></figure>"
    else:
        try:
            original = load_audio(Path(audio_path), sample_rate)
            before = player_html(original, sample_rate, utt_id, "before", before_caption, max_s=MAX_CLIP_S)
        except InvalidAudio as exc:
            before = f"<figure><p>Original not playable: {html.escape(str(exc))}</p></figure>"
    after = player_html(decode_bytes(row["audio"])[0], sample_rate, utt_id, "after",
                        f"after trimming (kept {row['trim_start_s']:.2f}–{row['trim_end_s']:.2f} s of the original) "
                        f"and denoising, {row['duration_s']:.2f} s", max_s=MAX_CLIP_S)
    meta = (f"speaker {short_id(row['speaker'])}, language {html.escape(row['language'] or '—')}, "
            f"split {html.escape(row['split'] or '—')}")
    return (f"<h3>{html.escape(utt_id)}</h3><p>{meta}<br>“{html.escape(row['text'] or '')}”</p>"
            f'<div class="clip">{before}{after}</div>')


def _json_html(name: str, path: Path) -> str:
    """The scalar leaves of a JSON file as a key/value table (lists shown by length)."""
    if not path.exists():
        return f"<p>{html.escape(name)}: not written.</p>"
    rows = [[key, value] for key, value in _flatten_json(json.loads(path.read_text(encoding="utf-8")))]
    summary = f"<summary>{html.escape(name)} ({len(rows)} values)</summary>"
    return f"<details>{summary}{table(['key', 'value'], rows)}</details>"


def _flatten_json(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _flatten_json(item, f"{prefix}{key}.")]
    if isinstance(value, list):
        return [(prefix.rstrip("."), f"[{len(value)} items]")]
    return [(prefix.rstrip("."), value)]
