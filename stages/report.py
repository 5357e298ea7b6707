"""The per-dataset HTML report: one self-contained file (inline SVG, PNG and audio; no network, no JS library).

Sections: utterance accounting (input = kept + rejected, with consistency checks), hours per speaker,
language and split, rejects by reason with example ids, histograms of per-utterance and per-frame values,
the mel of one utterance with its token (or pause-segment) boundaries, and before/after audio players.

Shards are read column by column: histograms use the light columns only; audio and mel are read for the
few example utterances.
"""

from __future__ import annotations

import base64
import html
import json
import struct
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stages.atomic import atomic_path
from stages.audio_io import decode_bytes, encode_flac, load_audio
from stages.errors import InvalidAudio
from stages.layout import DatasetLayout
from stages.schema import shard_schema

MAX_CLIP_S = 15.0  # longest audio clip embedded per player
MAX_HISTOGRAM_FRAMES = 500_000  # per-frame values are subsampled to at most this many for the histograms
MAX_GROUP_ROWS = 30  # rows shown per hours table (largest groups first)
REJECT_EXAMPLES = 3  # example utt_ids listed per reject reason
HISTOGRAM_BINS = 40
MEL_WIDTH_PX, MEL_HEIGHT_PX = 1000, 240
_LABEL_CHAR_PX = 8  # width of one label character (13 px bold sans-serif)

_LIGHT_COLUMNS = ["utt_id", "speaker", "language", "split", "text", "alignment_method", "duration_s", "snr_db",
                  "num_frames", "dnsmos_ovrl"]
_EXAMPLE_COLUMNS = ["utt_id", "speaker", "language", "split", "text", "audio", "sample_rate", "duration_s",
                    "source_duration_s", "trim_start_s", "trim_end_s", "num_frames", "mel", "snt_duration",
                    "phonemes", "durations"]
_GROUP_KEYS = ("speaker", "language", "split")

# Five anchors of matplotlib's viridis colour map, position in [0, 1] -> RGB.
_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1080px;color:#222}
h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
.ok{color:#17803d}.bad{color:#b3261e;font-weight:bold}.plots{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:12px;color:#555}.mel{position:relative}
.mel img,.mel svg{position:absolute;left:0;top:0}.mel img{image-rendering:pixelated}
.clip{display:flex;gap:24px;flex-wrap:wrap}.clip figure{min-width:300px}
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


def write_report(dataset_dir: Path, *, examples: int = 3, seed: int = 0) -> Path:
    """Write ``dataset_dir/report.html`` atomically from the dataset's manifest, rejects, shards and JSONs.

    ``examples`` utterances, drawn from the kept ones with ``seed``, get before/after audio players;
    the first of them also gets the alignment picture. Returns the report's path.
    """
    dataset_dir = Path(dataset_dir)
    layout = DatasetLayout(dataset_dir.parent, dataset_dir.name)
    shard_paths = sorted(layout.shards_dir.glob("part-*.parquet"))
    manifest = pq.read_table(layout.manifest, columns=["utt_id", "speaker", "language", "split", "duration_s",
                                                       "audio_path"])
    rejects = pq.read_table(layout.rejects)
    kept = _read_kept(shard_paths)
    f0_hz, energy = _frame_values(shard_paths, int(pc.sum(kept["num_frames"]).as_py() or 0))
    rows = _read_examples(shard_paths, kept, _pick(kept.num_rows, examples, seed))
    audio_paths = dict(zip(manifest["utt_id"].to_pylist(), manifest["audio_path"].to_pylist()))

    no_rows = f"<p>{'No kept utterances' if kept.num_rows == 0 else 'No examples requested'}.</p>"
    sections = [
        _section("Utterances", _counts_html(manifest, kept, rejects)),
        _section("Hours", "".join(_hours_html(key, manifest, kept) for key in _GROUP_KEYS)),
        _section("Rejects by reason", _rejects_html(rejects, manifest)),
        _section("Distributions", _distributions_html(kept, f0_hz, energy)),
        _section("Alignment", _aligners_html(kept) + (_alignment_html(rows[0]) if rows else no_rows)),
        _section("Examples", "".join(_example_html(row, audio_paths.get(row["utt_id"])) for row in rows) or no_rows),
        _section("Run files", _json_html("index.json", layout.index) + _json_html("stats.json", layout.stats)),
    ]
    title = html.escape(f"ttsprep report: {dataset_dir.name}")
    page = (f'<!DOCTYPE html>\n<html lang="en" data-errors=""><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"><title>{title}</title>'
            f"<style>{_STYLE}</style><script>{_ERROR_SCRIPT}</script></head>\n<body><h1>{title}</h1>\n"
            + "\n".join(sections) + f"\n<script>{_PLAYER_SCRIPT}</script></body></html>\n")
    with atomic_path(layout.report) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return layout.report


# ---------------------------------------------------------------- reading


def _read_kept(shard_paths: list[Path]) -> pa.Table:
    """Light columns of every kept utterance plus ``shard`` (index into ``shard_paths``)."""
    fields = [shard_schema(1).field(name) for name in _LIGHT_COLUMNS] + [pa.field("shard", pa.int32())]
    tables = []
    for index, path in enumerate(shard_paths):
        table = pq.read_table(path, columns=_LIGHT_COLUMNS)
        tables.append(table.append_column("shard", pa.array(np.full(table.num_rows, index, np.int32))))
    return pa.concat_tables(tables) if tables else pa.schema(fields).empty_table()


def _frame_values(shard_paths: list[Path], total_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """F0 of voiced frames (Hz) and energy of all frames, every k-th frame so at most ~MAX_HISTOGRAM_FRAMES."""
    stride = max(1, -(-total_frames // MAX_HISTOGRAM_FRAMES))
    f0_parts, energy_parts = [], []
    for path in shard_paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["f0", "voiced", "energy"]):
            f0 = _flatten(batch.column("f0"))[::stride]
            voiced = _flatten(batch.column("voiced"))[::stride].astype(bool)
            f0_parts.append(f0[voiced])
            energy_parts.append(_flatten(batch.column("energy"))[::stride])
    empty = np.zeros(0, np.float32)
    return np.concatenate(f0_parts or [empty]), np.concatenate(energy_parts or [empty])


def _flatten(column: pa.Array) -> np.ndarray:
    return pc.list_flatten(column).to_numpy(zero_copy_only=False)


def _pick(num_rows: int, examples: int, seed: int) -> list[int]:
    """Sorted row indices of ``min(examples, num_rows)`` kept utterances, drawn with ``seed``."""
    count = min(max(examples, 0), num_rows)
    return sorted(np.random.default_rng(seed).choice(num_rows, size=count, replace=False).tolist())


def _read_examples(shard_paths: list[Path], kept: pa.Table, picks: list[int]) -> list[dict[str, Any]]:
    """Full rows (audio, mel, tokens) of the picked utterances, in pick order, read only from their shards."""
    utt_ids = kept["utt_id"].to_pylist()
    shards = kept["shard"].to_pylist()
    wanted: dict[int, list[str]] = defaultdict(list)
    for index in picks:
        wanted[shards[index]].append(utt_ids[index])
    by_id = {}
    for shard, ids in wanted.items():
        table = pq.read_table(shard_paths[shard], columns=_EXAMPLE_COLUMNS, filters=pc.field("utt_id").isin(ids))
        by_id.update({row["utt_id"]: row for row in table.to_pylist()})
    return [by_id[utt_ids[index]] for index in picks]


# ---------------------------------------------------------------- sections


def _section(heading: str, body: str) -> str:
    return f"<section><h2>{html.escape(heading)}</h2>\n{body}</section>"


def _table(headers: list[str], rows: list[list[Any]], *, css_class: str = "") -> str:
    """An HTML table; numbers are right-aligned, everything else is escaped text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


def _cell(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape(str(value))}</td>"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.3f}"
    return f'<td class="num">{text}</td>'


def _counts_html(manifest: pa.Table, kept: pa.Table, rejects: pa.Table) -> str:
    """Input = kept + rejected, and the checks that make that sum an honest count of the input."""
    manifest_ids = set(manifest["utt_id"].to_pylist())
    kept_ids = set(kept["utt_id"].to_pylist())
    rejected_ids = set(rejects["utt_id"].to_pylist())
    checks = [
        ("kept utt_ids are unique", kept.num_rows - len(kept_ids)),
        ("rejected utt_ids are unique", rejects.num_rows - len(rejected_ids)),
        ("no utterance is both kept and rejected", len(kept_ids & rejected_ids)),
        ("every manifest utterance is kept or rejected", len(manifest_ids - kept_ids - rejected_ids)),
        ("every kept utterance is in the manifest", len(kept_ids - manifest_ids)),
    ]
    status = "".join(
        f'<tr><td>{html.escape(name)}</td><td class="{"ok" if bad == 0 else "bad"}" data-violations="{bad}">'
        f'{"ok" if bad == 0 else f"FAILED: {bad} utterances"}</td></tr>' for name, bad in checks)
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
    rows = [[name, *source.get(name, (0, 0.0)), *after.get(name, (0, 0.0))] for name in names[:MAX_GROUP_ROWS]]
    if len(names) > MAX_GROUP_ROWS:
        rows.append([f"… {len(names) - MAX_GROUP_ROWS} more", "", "", "", ""])
    headers = [key, "input utterances", "input hours", "kept utterances", "kept hours"]
    return f"<h3>Per {html.escape(key)}</h3>" + _table(headers, rows, css_class=f"hours-{key}")


def _group_sums(table: pa.Table, key: str) -> dict[str, tuple[int, float]]:
    """``key`` value (nulls as "—") -> (utterances, hours)."""
    grouped = table.group_by(key).aggregate([("duration_s", "count"), ("duration_s", "sum")]).to_pylist()
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
    return _table(["reason", "stage", "utterances", "source hours", "examples"], rows, css_class="rejects")


def _distributions_html(kept: pa.Table, f0_hz: np.ndarray, energy: np.ndarray) -> str:
    duration_s = kept["duration_s"].to_numpy().astype(np.float64)
    characters = pc.utf8_length(kept["text"].fill_null("")).to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        chars_per_s = characters / duration_s
        energy_db = 20.0 * np.log10(np.maximum(energy.astype(np.float64), 1e-5))
    snr_db = kept["snr_db"].to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    plots = [
        _histogram_svg(duration_s, "duration after trimming", "s"),
        _histogram_svg(chars_per_s, "characters per second", "chars/s"),
        _histogram_svg(f0_hz.astype(np.float64), "F0 of voiced frames", "Hz"),
        _histogram_svg(energy_db, "frame energy, 20·log10(L2 norm)", "dB"),
        _histogram_svg(snr_db, "SNR before denoising", "dB"),
    ]
    if kept["dnsmos_ovrl"].null_count < kept.num_rows:  # only where features.dnsmos was on
        dnsmos_ovrl = kept["dnsmos_ovrl"].to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
        plots.append(_histogram_svg(dnsmos_ovrl, "DNSMOS P.835 overall before denoising", "MOS"))
    return '<div class="plots">' + "".join(plots) + "</div>"


def _histogram_svg(values: np.ndarray, title: str, unit: str, *, width: int = 520, height: int = 190) -> str:
    """A bar histogram as inline SVG. ``data-count`` holds the number of finite values drawn."""
    finite = values[np.isfinite(values)]
    left, right, top, bottom = 48, 28, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'data-title="{html.escape(title)}" data-count="{finite.size}" xmlns="http://www.w3.org/2000/svg" '
             f'font-size="11" font-family="sans-serif">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#bbb"/>']
    if finite.size:
        counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
        bar_w = plot_w / len(counts)
        for index, count in enumerate(counts.tolist()):
            bar_h = plot_h * count / counts.max()
            parts.append(f'<rect x="{left + index * bar_w:.1f}" y="{top + plot_h - bar_h:.1f}" '
                         f'width="{max(bar_w - 1, 1):.1f}" height="{bar_h:.1f}" fill="#3b6ea8">'
                         f"<title>{edges[index]:.4g}–{edges[index + 1]:.4g} {unit}: {count}</title></rect>")
        for fraction in (0.0, 0.5, 1.0):
            parts.append(f'<text x="{left + fraction * plot_w:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                         f"{edges[0] + fraction * (edges[-1] - edges[0]):.4g}</text>")
        parts.append(f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{counts.max()}</text>')
        parts.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>')
    else:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">no values</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">{unit}</text></svg>')
    median = f", median {np.median(finite):.4g} {unit}" if finite.size else ""
    excluded = values.size - finite.size
    note = f", {excluded:,} non-finite left out" if excluded else ""
    return (f"<figure>{''.join(parts)}<figcaption>{html.escape(title)}: {finite.size:,} values{median}{note}"
            "</figcaption></figure>")


def _aligners_html(kept: pa.Table) -> str:
    """Kept utterances and hours per aligner that gave their durations (``none``: no durations)."""
    methods = [m or "none" for m in kept["alignment_method"].to_pylist()]
    seconds = kept["duration_s"].to_pylist()
    rows = [[method, methods.count(method), round(sum(s for m, s in zip(methods, seconds) if m == method) / 3600, 3)]
            for method in sorted(set(methods))]
    return _table(["aligner", "utterances", "hours"], rows, css_class="aligners")


def _alignment_html(row: dict[str, Any]) -> str:
    """The utterance's mel as a PNG with token boundaries (or pause-segment boundaries) drawn over it."""
    mel = np.asarray(row["mel"], dtype=np.float32)  # [T, n_mels]
    num_frames = mel.shape[0]
    if row["durations"] is not None:
        frames_per_unit = num_frames // max(sum(row["durations"]), 1)  # the reduction factor r
        spans = [count * frames_per_unit for count in row["durations"]]
        labels = row["phonemes"] or [""] * len(spans)
        what = "token boundaries (durations)"
    else:
        spans = list(row["snt_duration"] or [num_frames])
        labels = [f"segment {index + 1}" for index in range(len(spans))]
        what = "pause-segment boundaries (snt_duration)"
    scale_x = MEL_WIDTH_PX / num_frames
    ends = np.cumsum(spans).tolist()
    starts = [0, *ends[:-1]]
    lines = "".join(f'<line x1="{end * scale_x:.1f}" y1="0" x2="{end * scale_x:.1f}" y2="{MEL_HEIGHT_PX}" '
                    f'stroke="#fff" stroke-width="1"/>' for end in ends[:-1])
    # Labels alternate between two rows; one that would overlap its neighbours in its row is left out.
    texts = "".join(f'<text x="{(start + end) / 2 * scale_x:.1f}" y="{14 + 15 * (index % 2)}" '
                    f'text-anchor="middle">{html.escape(label)}</text>'
                    for index, (start, end, label) in enumerate(zip(starts, ends, labels))
                    if 2 * (end - start) * scale_x >= _LABEL_CHAR_PX * (len(label) + 1))
    png = base64.b64encode(_png_bytes(_colour_mel(mel))).decode("ascii")
    utt_id = html.escape(row["utt_id"])
    return (f'<div class="mel" data-utt-id="{utt_id}" data-boundaries="{len(ends) - 1}" '
            f'style="width:{MEL_WIDTH_PX}px;height:{MEL_HEIGHT_PX}px">'
            f'<img alt="mel spectrogram of {utt_id}" width="{MEL_WIDTH_PX}" height="{MEL_HEIGHT_PX}" '
            f'src="data:image/png;base64,{png}">'
            f'<svg width="{MEL_WIDTH_PX}" height="{MEL_HEIGHT_PX}" xmlns="http://www.w3.org/2000/svg" '
            f'font-size="13" font-weight="bold" font-family="sans-serif" fill="#fff">'
            f"{lines}{texts}</svg></div>"
            f"<p>{utt_id}: mel spectrogram, {num_frames} frames × {mel.shape[1]} bins "
            f"(low frequencies at the bottom), {len(spans)} spans; white lines are {what}.</p>")


def _colour_mel(mel: np.ndarray) -> np.ndarray:
    """[T, n_mels] log-mel -> [n_mels, T, 3] uint8 image, low bins at the bottom, 1st–99th percentile range."""
    low, high = np.percentile(mel, [1.0, 99.0])
    level = np.clip((mel.T[::-1] - low) / max(high - low, 1e-6), 0.0, 1.0)
    anchors = np.linspace(0.0, 1.0, len(_VIRIDIS))
    channels = [np.interp(level, anchors, _VIRIDIS[:, channel]) for channel in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an 8-bit RGB image ``[height, width, 3]`` as PNG (no filtering, zlib-compressed)."""
    height, width, _ = rgb.shape
    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9)) + chunk(b"IEND", b""))


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
            before = _player_html(original, sample_rate, utt_id, "before", before_caption)
        except InvalidAudio as exc:
            before = f"<figure><p>Original not playable: {html.escape(str(exc))}</p></figure>"
    after = _player_html(decode_bytes(row["audio"])[0], sample_rate, utt_id, "after",
                         f"after trimming (kept {row['trim_start_s']:.2f}–{row['trim_end_s']:.2f} s of the original) "
                         f"and denoising, {row['duration_s']:.2f} s")
    meta = f"speaker {row['speaker']}, language {row['language']}, split {row['split'] or '—'}"
    return (f"<h3>{html.escape(utt_id)}</h3><p>{html.escape(meta)}<br>“{html.escape(row['text'] or '')}”</p>"
            f'<div class="clip">{before}{after}</div>')


def _player_html(samples: np.ndarray, sample_rate: int, utt_id: str, kind: str, caption: str) -> str:
    """A figure with an <audio> player of the first MAX_CLIP_S of ``samples`` (FLAC data URI)."""
    clip = samples[: int(MAX_CLIP_S * sample_rate)]
    data = base64.b64encode(encode_flac(clip, sample_rate)).decode("ascii")
    note = f" (first {MAX_CLIP_S:g} s in the player)" if clip.size < samples.size else ""
    return (f'<figure><audio controls preload="auto" data-utt-id="{html.escape(utt_id)}" data-kind="{kind}" '
            f'src="data:audio/flac;base64,{data}"></audio>'
            f"<figcaption>{html.escape(caption + note)}</figcaption></figure>")


def _json_html(name: str, path: Path) -> str:
    """The scalar leaves of a JSON file as a key/value table (lists shown by length)."""
    if not path.exists():
        return f"<p>{html.escape(name)}: not written.</p>"
    rows = [[key, value] for key, value in _flatten_json(json.loads(path.read_text(encoding="utf-8")))]
    summary = f"<summary>{html.escape(name)} ({len(rows)} values)</summary>"
    return f"<details>{summary}{_table(['key', 'value'], rows)}</details>"


def _flatten_json(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _flatten_json(item, f"{prefix}{key}.")]
    if isinstance(value, list):
        return [(prefix.rstrip("."), f"[{len(value)} items]")]
    return [(prefix.rstrip("."), value)]
