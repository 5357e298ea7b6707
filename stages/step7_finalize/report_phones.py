"""Phone durations per language, in milliseconds, from the shards' ``phonemes`` and ``durations`` columns.

``durations`` count units of ``reduction_factor`` (r) frames; a frame is ``hop_length / sample_rate`` s.
Those come from ``index.json``'s ``features``; an index without them (older runs) gets them estimated from
the shards (``frame_timing``), and the report says which.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ttsprep.stages.step7_finalize.report_html import Raw, fixed, table
from ttsprep.stages.step7_finalize.report_plots import box_svg

IMPLAUSIBLE_MS = 500.0  # a token longer than this is flagged (pause tokens are listed, not marked red)
MAX_PHONES = 30  # rows per language table: the most frequent phones
MAX_FLAG_ROWS = 40
FLAG_EXAMPLES = 3  # utt_ids listed per flagged phone
_QUANTILES = (10, 25, 50, 75, 90)
_PAUSES = {"sil", "sp", "spn", "pau", "sil_s", "sil_e"}
_PAUSE_NOTE = "pause or punctuation: 0 frames (no pause heard) and long pauses are expected"


@dataclass(frozen=True)
class FrameTiming:
    """The shard frame grid: ``hop_length`` samples per frame at ``sample_rate`` Hz, durations in units of
    ``reduction_factor`` frames; ``source`` says where the numbers came from."""

    hop_length: float
    sample_rate: int
    reduction_factor: int
    source: str

    @property
    def frame_s(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def unit_ms(self) -> float:
        """Milliseconds per ``durations`` unit."""
        return 1000.0 * self.reduction_factor * self.frame_s


@dataclass
class PhoneTokens:
    """Every aligned token of the kept rows, flattened: codes into ``languages``/``phones``, its duration
    (units of r frames) and its kept-row index; ``unit_sums`` is per kept row (0: no durations)."""

    language: np.ndarray
    phone: np.ndarray
    units: np.ndarray
    row: np.ndarray
    languages: list[str]
    phones: list[str]
    unit_sums: np.ndarray


def read_phone_tokens(shard_paths: list[Path]) -> PhoneTokens:
    """Read ``language``, ``phonemes`` and ``durations`` batch by batch (rows in shard order, as the report's
    kept table); rows without durations, or whose token and duration counts differ, contribute no token."""
    languages: dict[str, int] = {}
    phone_chunks, language_parts, unit_parts, row_parts, sums = [], [], [], [], []
    offset = 0
    for path in shard_paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024, columns=["language", "phonemes", "durations"]):
            phonemes, durations = batch.column("phonemes"), batch.column("durations")
            counts = pc.list_value_length(durations).fill_null(-1).to_numpy(zero_copy_only=False)
            valid = counts == pc.list_value_length(phonemes).fill_null(-2).to_numpy(zero_copy_only=False)
            units = pc.list_flatten(durations).to_numpy(zero_copy_only=False).astype(np.int64)
            parents = pc.list_parent_indices(durations).to_numpy(zero_copy_only=False)
            sums.append(np.bincount(parents, weights=units, minlength=batch.num_rows).astype(np.int64))
            keep = np.flatnonzero(valid)
            if keep.size:
                picked = pa.array(keep)
                chosen = pc.take(durations, picked)
                phone_chunks.append(pc.list_flatten(pc.take(phonemes, picked)))
                rows = keep[pc.list_parent_indices(chosen).to_numpy(zero_copy_only=False)]
                codes = np.array([languages.setdefault(name or "—", len(languages))
                                  for name in batch.column("language").to_pylist()], np.int32)
                language_parts.append(codes[rows])
                unit_parts.append(pc.list_flatten(chosen).to_numpy(zero_copy_only=False).astype(np.int64))
                row_parts.append(rows + offset)
            offset += batch.num_rows
    empty = np.zeros(0, np.int64)
    if phone_chunks:
        encoded = pc.dictionary_encode(pa.concat_arrays([chunk.cast(pa.string()) for chunk in phone_chunks]))
        phone, phones = encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()
    else:
        phone, phones = empty, []
    return PhoneTokens(np.concatenate(language_parts or [empty]), phone, np.concatenate(unit_parts or [empty]),
                       np.concatenate(row_parts or [empty]), list(languages), phones,
                       np.concatenate(sums or [empty]))


def frame_timing(features: dict, light: pa.Table, unit_sums: np.ndarray) -> FrameTiming | None:
    """The frame grid from ``index.json``'s ``features`` or, where absent, from the kept rows.

    The estimate: r is the median of ``num_frames // sum(durations)``; ``num_frames = 1 + num_samples //
    hop`` rounded up to a multiple of r bounds the hop per row to (num_samples / num_frames,
    num_samples / (num_frames - r)]; the integer in every row's bound nearest their middle is taken.
    """
    num_frames = light["num_frames"].to_numpy().astype(np.float64)
    aligned = unit_sums > 0
    estimated_r = int(np.median(num_frames[aligned] // unit_sums[aligned])) if aligned.any() else 1
    if features.get("hop_length") and features.get("sample_rate"):
        return FrameTiming(float(features["hop_length"]), int(features["sample_rate"]),
                           int(features.get("reduction_factor") or estimated_r), "index.json features")
    if light.num_rows == 0:
        return None
    num_samples = light["num_samples"].to_numpy().astype(np.float64)
    rate = int(np.median(light["sample_rate"].to_numpy()))
    r = max(estimated_r, 1)
    lower = float(np.max(num_samples / num_frames))
    upper = float(np.min(num_samples / np.maximum(num_frames - r, 1)))
    integers = np.arange(np.floor(lower) + 1, np.floor(upper) + 1)
    middle = (lower + upper) / 2
    hop = float(integers[np.argmin(np.abs(integers - middle))]) if integers.size else middle
    return FrameTiming(hop, rate, r, "estimated from the shards' num_samples and num_frames "
                                     "(index.json records no hop_length)")


def is_pause(phone: str) -> bool:
    """``sil``-like tokens and punctuation marks, whose long durations are pauses."""
    return phone.lower() in _PAUSES or bool(phone) and all(
        unicodedata.category(char)[0] in "PZ" for char in phone)


@dataclass
class PhoneRow:
    language: str
    phone: str
    count: int
    quantiles_ms: tuple[float, ...]  # p10, p25, p50, p75, p90
    max_ms: float
    zero: int  # tokens of 0 frames
    long: int  # tokens over IMPLAUSIBLE_MS
    examples: list[str]  # utt_ids of flagged tokens


def phone_rows(tokens: PhoneTokens, unit_ms: float, utt_ids: list[str]) -> list[PhoneRow]:
    """Per (language, phone): count, duration quantiles and maximum (ms), and the flagged tokens."""
    if tokens.units.size == 0:
        return []
    key = tokens.language.astype(np.int64) * max(len(tokens.phones), 1) + tokens.phone
    order = np.lexsort((tokens.units, key))
    keys, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    ms = tokens.units[order] * unit_ms
    quantiles = []
    for q in _QUANTILES:  # linear interpolation between order statistics, as np.percentile
        position = starts + q / 100 * (counts - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, starts + counts - 1)
        quantiles.append(ms[low] + (position - low) * (ms[high] - ms[low]))
    flagged = (tokens.units == 0) | (tokens.units * unit_ms > IMPLAUSIBLE_MS)
    group = np.searchsorted(keys, key)
    zero = np.bincount(group[tokens.units == 0], minlength=keys.size)
    long = np.bincount(group[tokens.units * unit_ms > IMPLAUSIBLE_MS], minlength=keys.size)
    examples: dict[int, list[str]] = {}
    for index in np.flatnonzero(flagged):
        found = examples.setdefault(int(group[index]), [])
        utt_id = utt_ids[tokens.row[index]]
        if len(found) < FLAG_EXAMPLES and utt_id not in found:
            found.append(utt_id)
    width = max(len(tokens.phones), 1)
    return [PhoneRow(tokens.languages[int(k) // width], tokens.phones[int(k) % width], int(counts[i]),
                     tuple(float(q[i]) for q in quantiles), float(ms[starts[i] + counts[i] - 1]),
                     int(zero[i]), int(long[i]), examples.get(i, []))
            for i, k in enumerate(keys)]


def phones_html(rows: list[PhoneRow], timing: FrameTiming, num_utterances: int) -> str:
    """Per language a table of the most frequent phones with box plots on one ms scale, then the flags."""
    parts = [(f"<p>Durations are counted in units of r = {timing.reduction_factor} frame"
              f"{'s' if timing.reduction_factor > 1 else ''}; 1 unit = {timing.unit_ms:.2f} ms (hop "
              f"{timing.hop_length:g} samples at {timing.sample_rate:,} Hz, {html.escape(timing.source)}). "
              f"{sum(row.count for row in rows):,} tokens in {num_utterances:,} aligned utterances. Plots: whiskers "
              "p10–p90, box p25–p75, red tick the median, on one scale per language set by the speech sounds "
              "(a red arrowhead: beyond the scale, as pauses often are).</p>")]
    by_language: dict[str, list[PhoneRow]] = {}
    for row in rows:
        by_language.setdefault(row.language, []).append(row)
    for language, items in sorted(by_language.items(), key=lambda item: -sum(r.count for r in item[1])):
        items.sort(key=lambda row: (-row.count, row.phone))
        shown = items[:MAX_PHONES]
        p90s = [row.quantiles_ms[4] for row in shown if not is_pause(row.phone)] or [shown[0].quantiles_ms[4]]
        high = _scale_ms(max(p90s))
        table_rows = [[Raw(_phone_html(row.phone)), row.count, fixed(row.quantiles_ms[2]), fixed(row.quantiles_ms[0]),
                       fixed(row.quantiles_ms[4]), fixed(row.max_ms), Raw(box_svg(row.quantiles_ms, high)),
                       _flag(row.zero, row.phone), _flag(row.long, row.phone)] for row in shown]
        more = f"; the {len(items) - MAX_PHONES} less frequent are in the flags below if flagged" \
            if len(items) > MAX_PHONES else ""
        headers = ["phone", "tokens", "median ms", "p10 ms", "p90 ms", "max ms", f"0–{high:g} ms",
                   "0 frames", f"> {IMPLAUSIBLE_MS:g} ms"]
        css = "phones phones-" + re.sub(r"[^A-Za-z0-9_-]", "_", language)
        parts.append(f"<h3>{html.escape(language)}: {sum(r.count for r in items):,} tokens, {len(items)} phones "
                     f"(the {len(shown)} most frequent{more})</h3>" + table(headers, table_rows, css_class=css))
    flagged = sorted((row for row in rows if row.zero or row.long),
                     key=lambda row: (is_pause(row.phone), -(row.zero + row.long), row.language, row.phone))
    parts.append(f"<h3>Implausible durations: 0 frames or over {IMPLAUSIBLE_MS:g} ms</h3>")
    if not flagged:
        parts.append("<p>None.</p>")
        return "".join(parts)
    flag_rows = [[row.language, Raw(_phone_html(row.phone)), row.count, _flag(row.zero, row.phone),
                  _flag(row.long, row.phone), _PAUSE_NOTE if is_pause(row.phone) else "", ", ".join(row.examples)]
                 for row in flagged[:MAX_FLAG_ROWS]]
    if len(flagged) > MAX_FLAG_ROWS:
        flag_rows.append([f"… {len(flagged) - MAX_FLAG_ROWS} more", "", "", "", "", "", ""])
    return "".join(parts) + table(["language", "phone", "tokens", "0 frames", f"> {IMPLAUSIBLE_MS:g} ms", "note",
                                   "examples"], flag_rows, css_class="phone-flags")


def _phone_html(phone: str) -> str:
    note = ' <small class="dim">pause</small>' if is_pause(phone) else ""
    return f"<code>{html.escape(phone if phone.strip() else repr(phone))}</code>{note}"


def _flag(count: int, phone: str) -> Raw:
    """A flag count, in red unless zero or the token is a pause (whose 0 frames and long spans are normal)."""
    return Raw(f"{count:,}", "num bad" if count and not is_pause(phone) else "num")


def _scale_ms(value: float) -> float:
    """A round upper end (ms) for the box plots, at least 50: 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power
    of ten."""
    value = max(value * 1.05, 50.0)
    power = 10 ** np.floor(np.log10(value))
    return float(next(step * power for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if step * power >= value))
