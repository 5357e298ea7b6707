"""HTML building blocks of the report: sections, tables, shortened ids and inline audio players.

Everything is escaped unless it is wrapped in ``Raw`` (markup this package built itself).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from ttsprep.stages.core.audio_io import encode_flac

SHORT_ID_CHARS = 8  # characters kept of a long id (Common Voice's 128-character client ids)
SHORT_ID_ABOVE = 24  # ids longer than this many characters are shortened
PREVIEW_CLIP_S = 6.0  # seconds per listening-check player (rejected, low-SNR, least similar clips)
PREVIEW_RATE = 16000  # Hz: listening-check players are resampled down to this rate (a lighter page)


@dataclass(frozen=True)
class Raw:
    """A table cell's trusted inner HTML; ``css`` is the cell's class (``num``: right-aligned)."""

    html: str
    css: str = ""


def section(heading: str, body: str) -> str:
    return f"<section><h2>{html.escape(heading)}</h2>\n{body}</section>"


def table(headers: list[str], rows: list[list[Any]], *, css_class: str = "") -> str:
    """An HTML table; numbers are right-aligned, ``Raw`` cells are kept, everything else is escaped text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(value) for value in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


def cell(value: Any) -> str:
    if isinstance(value, Raw):
        return f'<td class="{value.css}">{value.html}</td>' if value.css else f"<td>{value.html}</td>"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape(str(value))}</td>"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.3f}"
    return f'<td class="num">{text}</td>'


def fixed(value: float | None, digits: int = 1) -> Raw:
    """A right-aligned number with ``digits`` decimals ("—" for None or NaN)."""
    if value is None or not np.isfinite(value):
        return Raw("—", "num")
    return Raw(f"{value:,.{digits}f}", "num")


def short_id(name: str | None) -> str:
    """HTML of an id: ids over SHORT_ID_ABOVE characters become their first SHORT_ID_CHARS + "…", with the
    full id in the title attribute (hover) and in ``data-full``."""
    text = "—" if name is None else str(name)
    if len(text) <= SHORT_ID_ABOVE:
        return html.escape(text)
    full = html.escape(text, quote=True)
    return f'<span class="id" title="{full}" data-full="{full}">{html.escape(shortened(text))}</span>'


def shortened(text: str) -> str:
    """``text`` as a table shows it: over SHORT_ID_ABOVE characters, its first SHORT_ID_CHARS + "…"."""
    return text if len(text) <= SHORT_ID_ABOVE else f"{text[:SHORT_ID_CHARS]}…"


def player_html(samples: np.ndarray, sample_rate: int, utt_id: str, kind: str, caption: str, *,
                max_s: float, caption_html: str = "") -> str:
    """A figure with an <audio> player of the first ``max_s`` seconds of ``samples`` (FLAC data URI)."""
    clip = samples[: int(max_s * sample_rate)]
    data = base64.b64encode(encode_flac(clip, sample_rate)).decode("ascii")
    note = f" (first {max_s:g} s in the player)" if clip.size < samples.size else ""
    return (f'<figure><audio controls preload="auto" data-utt-id="{html.escape(utt_id)}" data-kind="{kind}" '
            f'src="data:audio/flac;base64,{data}"></audio>'
            f"<figcaption>{html.escape(caption + note)}{caption_html}</figcaption></figure>")


def preview_player(samples: np.ndarray, sample_rate: int, utt_id: str, kind: str, caption: str, *,
                   total_s: float | None = None) -> str:
    """A listening-check player: the first PREVIEW_CLIP_S of ``samples``, resampled to at most PREVIEW_RATE.

    ``total_s`` is the whole clip's duration when ``samples`` holds only its beginning.
    """
    clip = samples[: int(PREVIEW_CLIP_S * sample_rate)]
    total_s = samples.size / sample_rate if total_s is None else total_s
    rate = min(sample_rate, PREVIEW_RATE)
    if rate != sample_rate:
        clip = soxr.resample(clip, sample_rate, rate, quality="HQ").astype(np.float32, copy=False)
    note = f" (first {PREVIEW_CLIP_S:g} of {total_s:.1f} s)" if total_s > PREVIEW_CLIP_S + 1e-3 else ""
    return player_html(clip, rate, utt_id, kind, caption + note, max_s=PREVIEW_CLIP_S + 1.0)


def load_preview(path: Path, seconds: float = PREVIEW_CLIP_S) -> tuple[np.ndarray, int, float]:
    """The first ``seconds`` of an audio file as mono float32, its rate and the file's whole duration (s).

    Reads only what it plays, so a rejected hour-long file costs nothing. Raises ``OSError`` or
    ``RuntimeError`` (soundfile's) when the file is missing or not decodable.
    """
    with sf.SoundFile(str(path)) as audio_file:
        rate, frames = audio_file.samplerate, audio_file.frames
        samples = audio_file.read(int(seconds * rate) + 1, dtype="float32", always_2d=True)
    if samples.size == 0 or not np.all(np.isfinite(samples)):
        raise RuntimeError(f"{path}: no finite samples")
    return samples.mean(axis=1), rate, frames / rate
