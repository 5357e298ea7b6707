"""The report's pictures as inline SVG and PNG: histograms, small multiples, box plots and the alignment picture.

Sizes are CSS pixels. No script and no font file: label widths are estimated from a monospace advance
(``LABEL_CHAR_EM``) and pinned with ``textLength``, so labels the layout keeps apart stay apart in any font.
"""

from __future__ import annotations

import base64
import html
import math
import struct
import unicodedata
import zlib
from typing import Any
from collections.abc import Sequence

import numpy as np

HISTOGRAM_BINS = 40
MINI_BINS = 30  # bins of the per-speaker small multiples
MEL_WIDTH_PX, MEL_HEIGHT_PX = 1000, 240  # the mel image, scaled to this box
F0_AXIS_PX = 52  # right of the mel: the F0 scale (Hz)
LABEL_FONT_PX = 12  # token labels, monospace
LABEL_CHAR_EM = 0.62  # estimated advance of one monospace character, in em (DejaVu Sans Mono: 0.602)
LABEL_GAP_PX = 3.0  # least horizontal space between two labels on one row
LABEL_ROW_PX = 15  # height of one label row under the mel
LABEL_ROWS = 3  # labels are staggered over this many rows; one that fits none is left out
TIME_AXIS_PX = 18  # seconds under the label rows
_MONO = "DejaVu Sans Mono,Menlo,Consolas,monospace"

# Five anchors of matplotlib's viridis colour map, position in [0, 1] -> RGB.
_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def histogram_svg(values: np.ndarray, title: str, unit: str, *, width: int = 520, height: int = 190) -> str:
    """A bar histogram as inline SVG in a captioned figure. ``data-count`` holds the number of finite values."""
    finite = values[np.isfinite(values)]
    left, right, top, bottom = 48, 28, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [(f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
              f'data-title="{html.escape(title)}" data-count="{finite.size}" xmlns="http://www.w3.org/2000/svg" '
              f'font-size="11" font-family="sans-serif">'),
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


def mini_histogram_svg(values: np.ndarray, edges: np.ndarray, *, kind: str, speaker: str,
                       markers: Sequence[float] = (), width: int = 220, height: int = 36) -> str:
    """One small multiple: bars over the shared ``edges`` (values outside go to the end bins), scaled to
    their own tallest bar; ``markers`` (same unit) are dashed lines. ``data-count``: the values drawn."""
    finite = values[np.isfinite(values)]
    parts = [(f'<svg class="mini" width="{width}" height="{height}" data-kind="{kind}" '
              f'data-speaker="{html.escape(speaker, quote=True)}" data-count="{finite.size}" '
              f'xmlns="http://www.w3.org/2000/svg"><rect width="{width}" height="{height}" fill="#fafafa"/>')]
    if finite.size:
        counts, _ = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)
        bar_w = width / len(counts)
        path = "".join(f"M{(index + 0.5) * bar_w:.1f} {height}v{-height * count / counts.max():.1f}"
                       for index, count in enumerate(counts.tolist()) if count)
        parts.append(f'<path d="{path}" stroke="#3b6ea8" stroke-width="{max(bar_w - 1, 1):.1f}"/>')
    for value in markers:
        x = width * (value - edges[0]) / (edges[-1] - edges[0])
        if 0 <= x <= width:
            parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#b3261e" '
                         f'stroke-dasharray="3 2"/>')
    return "".join(parts) + "</svg>"


def axis_svg(low: float, high: float, unit: str, *, width: int = 220, height: int = 16) -> str:
    """The shared x scale under a column of small multiples: low, middle and high value."""
    ticks = [(0.0, "start", low), (0.5, "middle", (low + high) / 2), (1.0, "end", high)]
    texts = "".join(f'<text x="{fraction * width:.1f}" y="12" text-anchor="{anchor}">{value:.4g}'
                    f'{" " + unit if fraction == 1.0 else ""}</text>' for fraction, anchor, value in ticks)
    return (f'<svg width="{width}" height="{height}" font-size="11" font-family="sans-serif" fill="#444" '
            f'xmlns="http://www.w3.org/2000/svg">{texts}</svg>')


def box_svg(quantiles: Sequence[float], high: float, *, width: int = 200, height: int = 14) -> str:
    """A horizontal box plot on the scale 0..``high``: whiskers p10–p90, box p25–p75, median tick.
    ``quantiles`` are (p10, p25, p50, p75, p90); values beyond ``high`` are drawn at the right edge, which
    then carries a red arrowhead."""
    p10, p25, p50, p75, p90 = (min(max(q, 0.0), high) * width / high for q in quantiles)
    mid = height / 2
    beyond = (f'<path d="M{width - 6} 1L{width} {mid}L{width - 6} {height - 1}Z" fill="#b3261e"/>'
              if quantiles[-1] > high else "")
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{beyond}'
            f'<line x1="{p10:.1f}" y1="{mid}" x2="{p90:.1f}" y2="{mid}" stroke="#777"/>'
            f'<rect x="{p25:.1f}" y="2" width="{max(p75 - p25, 1):.1f}" height="{height - 4}" fill="#cfe0f3" '
            f'stroke="#3b6ea8"/><line x1="{p50:.1f}" y1="0" x2="{p50:.1f}" y2="{height}" stroke="#b3261e" '
            f'stroke-width="2"/></svg>')


# ---------------------------------------------------------------- alignment picture


def label_width_px(label: str) -> float:
    """Estimated width of ``label`` at LABEL_FONT_PX monospace: combining marks take no room, East Asian
    wide characters two cells."""
    cells = sum(0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
                for char in label)
    return math.ceil(cells * LABEL_CHAR_EM * LABEL_FONT_PX * 10) / 10  # 0.1 px steps: written exactly


def place_labels(centres: Sequence[float], choices: Sequence[Sequence[str]], *, width_px: float,
                 rows: int = LABEL_ROWS) -> list[tuple[str, float, float, int] | None]:
    """Lay labels out left to right on ``rows`` rows without overlap.

    Label ``i`` is centred on ``centres[i]`` (moved inside 0..``width_px``); of its ``choices`` (full form
    first, then shorter ones) the first that fits on some row, in the first row where it clears the
    previous label by LABEL_GAP_PX, is kept. Returns per label ``(text, x_centre, width, row)`` or None.
    """
    row_right = [-np.inf] * rows
    placed: list[tuple[str, float, float, int] | None] = []
    for centre, options in zip(centres, choices):
        found = None
        for text in options:
            width = label_width_px(text)
            if not text or width > width_px:
                continue
            x = min(max(centre, width / 2), width_px - width / 2)
            row = next((r for r in range(rows) if x - width / 2 >= row_right[r] + LABEL_GAP_PX), None)
            if row is not None:
                found = (text, x, width, row)
                row_right[row] = x + width / 2
                break
        placed.append(found)
    return placed


def _nice_step(span: float, target: int) -> float:
    """A 1-2-5 step giving about ``target`` ticks over ``span``."""
    raw = span / max(target, 1)
    power = 10 ** np.floor(np.log10(raw))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= raw))


def alignment_figure(row: dict[str, Any], *, frame_s: float, spans: list[int], labels: list[list[str]],
                     hints: list[str], what: str) -> str:
    """The mel of one utterance (PNG) with, in one SVG over and under it: span boundaries (white lines),
    the F0 contour (Hz scale at the right), staggered non-overlapping labels and a time axis (s).

    ``spans`` are frames per token, ``labels`` each token's label choices, ``hints`` each token's hover text,
    ``frame_s`` the frame period in seconds.
    """
    mel = np.asarray(row["mel"], dtype=np.float32)  # [T, n_mels]
    num_frames = mel.shape[0]
    scale_x = MEL_WIDTH_PX / num_frames
    ends = np.cumsum(spans).tolist()
    starts = [0, *ends[:-1]]
    strip_top = MEL_HEIGHT_PX + 2
    axis_top = strip_top + LABEL_ROWS * LABEL_ROW_PX
    total_w, total_h = MEL_WIDTH_PX + F0_AXIS_PX, axis_top + TIME_AXIS_PX
    parts = [(f'<line class="b" x1="{end * scale_x:.1f}" y1="0" x2="{end * scale_x:.1f}" y2="{MEL_HEIGHT_PX}" '
              f'stroke="#fff" stroke-opacity="0.75"/>') for end in ends[:-1]]
    ticks = "".join(f"M{end * scale_x:.1f} {strip_top}V{axis_top}" for end in ends[:-1])
    parts.append(f'<path d="{ticks}" stroke="#ddd"/>')
    parts += _f0_contour(np.asarray(row["f0"], np.float64), np.asarray(row["voiced"], bool), scale_x)
    placed = place_labels([(s + e) / 2 * scale_x for s, e in zip(starts, ends)], labels, width_px=MEL_WIDTH_PX)
    for start, end, hint, place in zip(starts, ends, hints, placed):
        parts.append(f'<rect x="{start * scale_x:.1f}" y="{strip_top}" width="{(end - start) * scale_x:.1f}" '
                     f'height="{axis_top - strip_top}" fill="transparent"><title>{html.escape(hint)}</title></rect>')
        if place is not None:
            text, x, width, label_row = place
            parts.append(f'<text class="lab" x="{x:.2f}" y="{strip_top + (label_row + 1) * LABEL_ROW_PX - 3}" '
                         f'text-anchor="middle" textLength="{width:.1f}" lengthAdjust="spacingAndGlyphs" '
                         f'data-w="{width:.1f}">{html.escape(text)}</text>')
    parts += _time_axis(num_frames * frame_s, MEL_WIDTH_PX / (num_frames * frame_s), axis_top)
    png = base64.b64encode(png_bytes(colour_mel(mel))).decode("ascii")
    utt_id = html.escape(row["utt_id"])
    shown = sum(place is not None for place in placed)
    left_out = len(spans) - shown
    skipped = f"; {left_out} label{'s' if left_out != 1 else ''} left out where they would overlap (hover the strip)" \
        if shown < len(spans) else ""
    return (f'<figure class="align"><div class="mel" data-utt-id="{utt_id}" data-boundaries="{len(ends) - 1}" '
            f'data-labels="{shown}" style="width:{total_w}px;height:{total_h}px">'
            f'<img alt="mel spectrogram of {utt_id}" width="{MEL_WIDTH_PX}" height="{MEL_HEIGHT_PX}" '
            f'src="data:image/png;base64,{png}">'
            f'<svg width="{total_w}" height="{total_h}" xmlns="http://www.w3.org/2000/svg" '
            f'font-size="{LABEL_FONT_PX}" font-family="{_MONO}" fill="#222">{"".join(parts)}</svg></div>'
            f"<figcaption>{utt_id}: mel spectrogram, {num_frames} frames × {mel.shape[1]} bins (low frequencies "
            f"at the bottom); white lines are {what} ({len(spans)} span{'s' if len(spans) != 1 else ''}){skipped}; orange: F0 of voiced frames "
            f"(Hz, right scale).</figcaption></figure>")


def _f0_contour(f0: np.ndarray, voiced: np.ndarray, scale_x: float) -> list[str]:
    """Voiced runs of ``f0`` as one orange path with a dark halo over the mel, and the Hz ticks at its right."""
    hz = f0[voiced & (f0 > 0)]
    if hz.size < 2:
        return []
    step = _nice_step(max(hz.max() - hz.min(), 0.5 * float(np.median(hz))), 4)  # small wiggles stay small
    low, high = np.floor(hz.min() / step) * step, np.ceil(hz.max() / step) * step
    high = max(high, low + step)

    def y(value: np.ndarray | float) -> np.ndarray | float:
        return MEL_HEIGHT_PX - 6 - (value - low) / (high - low) * (MEL_HEIGHT_PX - 12)

    good = voiced & (f0 > 0)
    runs = np.flatnonzero(np.diff(np.concatenate([[0], good.astype(np.int8), [0]])))
    path = ""
    for start, stop in zip(runs[::2], runs[1::2]):
        if stop - start >= 2:
            frames = range(start, stop)
            path += "M" + "L".join(f"{(t + 0.5) * scale_x:.1f} {y(f0[t]):.1f}" for t in frames)
    if not path:
        return []
    parts = [f'<path d="{path}" fill="none" stroke="#000" stroke-opacity="0.55" stroke-width="4"/>',
             f'<path class="f0" d="{path}" fill="none" stroke="#ff8c1a" stroke-width="2"/>']
    for tick in np.arange(low, high + step / 2, step):
        parts.append(f'<line x1="{MEL_WIDTH_PX}" y1="{y(tick):.1f}" x2="{MEL_WIDTH_PX + 4}" y2="{y(tick):.1f}" '
                     f'stroke="#444"/><text x="{MEL_WIDTH_PX + 6}" y="{y(tick) + 4:.1f}" font-size="11" '
                     f'font-family="sans-serif">{tick:g} Hz</text>')
    return parts


def _time_axis(duration_s: float, px_per_s: float, top: int) -> list[str]:
    """Ticks every 1-2-5 step of seconds, at least 60 px apart, under the label rows."""
    step = _nice_step(duration_s, max(int(duration_s * px_per_s / 60), 1))
    ticks = np.arange(step, duration_s, step)
    path = "".join(f"M{t * px_per_s:.1f} {top}v4" for t in ticks)
    texts = "".join(f'<text x="{t * px_per_s:.1f}" y="{top + 15}" text-anchor="middle">{t:g} s</text>'
                    for t in ticks)
    return [f'<path d="M0 {top}H{MEL_WIDTH_PX}{path}" stroke="#444"/>',
            f'<g font-size="11" font-family="sans-serif" fill="#444">{texts}</g>']


def colour_mel(mel: np.ndarray) -> np.ndarray:
    """[T, n_mels] log-mel -> [n_mels, T, 3] uint8 image, low bins at the bottom, 1st–99th percentile range."""
    low, high = np.percentile(mel, [1.0, 99.0])
    level = np.clip((mel.T[::-1] - low) / max(high - low, 1e-6), 0.0, 1.0)
    anchors = np.linspace(0.0, 1.0, len(_VIRIDIS))
    channels = [np.interp(level, anchors, _VIRIDIS[:, channel]) for channel in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an 8-bit RGB image ``[height, width, 3]`` as PNG (no filtering, zlib-compressed)."""
    height, width, _ = rgb.shape
    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9)) + chunk(b"IEND", b""))
