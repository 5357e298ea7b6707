"""The HTML report: its numbers against the dataset it was built from and its embedded media
(the browser checks are in test_report_browser.py)."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.helpers import tone_bursts
from ttsprep.stages.core.atomic import rows_to_table
from ttsprep.stages.core.audio_io import decode_bytes, encode_flac, load_audio
from ttsprep.stages.core.schema import MANIFEST_SCHEMA, REJECTS_SCHEMA, shard_schema
from ttsprep.stages.step7_finalize import report_speakers
from ttsprep.stages.step7_finalize.report import MAX_CLIP_S, write_report
from ttsprep.stages.step7_finalize.report_html import PREVIEW_RATE
from ttsprep.stages.step7_finalize.report_phones import frame_timing
from ttsprep.stages.step7_finalize.report_plots import LABEL_ROW_PX, label_width_px, place_labels
from ttsprep.stages.step7_finalize.vc_pairs import PAIRS_SCHEMA

SAMPLE_RATE, SOURCE_RATE, HOP_LENGTH, N_MELS = 16000, 22050, 160, 20
# (speaker, language, split, bursts): bursts set the length; 16 bursts make a 16.3 s original (> MAX_CLIP_S).
KEPT = [("s1", "en", "train", 2), ("s1", "en", "train", 3), ("s2", "de", "val", 2),
        ("s2", "en", None, 16), ("s1", "de", "train", 1), ("s2", "de", "train", 2)]


def build_dataset(root: Path, *, with_durations: bool = True, kept: list = KEPT,
                  features: bool = False) -> tuple[Path, list[dict]]:
    """A dataset dir (manifest, rejects, two shards, JSONs) over tone-burst wavs; returns it and the shard rows.

    ``features``: index.json records the frame grid (hop_length, sample_rate, reduction_factor), as real
    runs do; without it the report estimates the grid from the shards."""
    dataset_dir = root / "out" / "toy"
    (dataset_dir / "shards").mkdir(parents=True)
    manifest, shard_rows = [], []
    for index, (speaker, language, split, bursts) in enumerate(kept):
        utt_id = f"toy:{index:03d}"
        wav = root / f"{index}.wav"
        sf.write(wav, tone_bursts(SOURCE_RATE, bursts=bursts, f0_hz=120.0 + 40 * index, seed=index), SOURCE_RATE,
                 subtype="PCM_16")
        manifest.append(_manifest_row(utt_id, speaker, language, split, wav))
        shard_rows.append(_shard_row(manifest[-1], index, with_durations))
    rejected = [("toy:900", "filter", "too_short", "duration 0.20 s < 0.50 s"),
                ("toy:901", "filter", "too_short", "duration 0.31 s < 0.50 s"),
                ("toy:902", "ingest", "missing_audio", "no such file: 902.wav")]
    for utt_id, stage, _, _ in rejected:
        if stage != "ingest":
            wav = root / f"{utt_id[-3:]}.wav"
            sf.write(wav, tone_bursts(SOURCE_RATE, bursts=1, burst_s=0.1, gap_s=0.1, lead_s=0.1), SOURCE_RATE)
            manifest.append(_manifest_row(utt_id, "s3", "en", None, wav))
    rejects = [{"utt_id": utt_id, "dataset": "toy", "stage": stage, "reason": reason, "detail": detail,
                "audio_path": str(root / f"{utt_id[-3:]}.wav")} for utt_id, stage, reason, detail in rejected]
    pq.write_table(rows_to_table(manifest, MANIFEST_SCHEMA), dataset_dir / "manifest.parquet")
    pq.write_table(rows_to_table(rejects, REJECTS_SCHEMA), dataset_dir / "rejects.parquet")
    half = len(shard_rows) // 2
    for number, rows in enumerate([shard_rows[:half], shard_rows[half:]]):
        if rows:
            shard = dataset_dir / "shards" / f"part-{number:05d}.parquet"
            pq.write_table(rows_to_table(rows, shard_schema(N_MELS)), shard)
    index = {"schema_version": 1, "n_mels": N_MELS, "shards": ["a", "b"]}
    if features:
        index["features"] = {"hop_length": HOP_LENGTH, "sample_rate": SAMPLE_RATE, "reduction_factor": 1}
    (dataset_dir / "index.json").write_text(json.dumps(index))
    (dataset_dir / "stats.json").write_text(json.dumps({"f0_hz": {"mean": 180.5, "std": 30.25}}))
    return dataset_dir, shard_rows


def _manifest_row(utt_id: str, speaker: str, language: str, split: str | None, wav: Path) -> dict:
    info = sf.info(str(wav))
    return {"utt_id": utt_id, "dataset": "toy", "speaker": speaker, "language": language,
            "text": f"utterance {utt_id} says something", "audio_path": str(wav), "sample_rate": info.samplerate,
            "channels": 1, "num_samples": info.frames, "duration_s": info.frames / info.samplerate,
            "checksum": "0" * 64, "audio_format": "WAV/PCM_16", "split": split, "extra": []}


def _shard_row(source: dict, index: int, with_durations: bool) -> dict:
    """A conditioned row: 0.2 s trimmed from each end, scaled (a denoising stand-in), log-band spectrum, energy."""
    original = load_audio(Path(source["audio_path"]), SAMPLE_RATE)
    trim_start, trim_end = int(0.2 * SAMPLE_RATE), original.size - int(0.2 * SAMPLE_RATE)
    audio = 0.9 * original[trim_start:trim_end]
    magnitude = _stft_magnitude(audio)
    mel = _log_bands(magnitude)
    num_frames = mel.shape[0]
    energy = np.linalg.norm(magnitude, axis=1)
    voiced = energy > 0.1 * energy.max()
    tokens = [f"p{k}" for k in range(5)]
    durations = [5, 10, 0 if index == 1 else 15, 20]  # p0..p3 (toy:001's p2 has 0 frames); p4 the rest
    durations.append(num_frames - sum(durations))
    return {**{key: source[key] for key in ("utt_id", "dataset", "speaker", "language", "split", "text", "checksum")},
            "audio": encode_flac(audio, SAMPLE_RATE), "sample_rate": SAMPLE_RATE, "num_samples": audio.size,
            "duration_s": audio.size / SAMPLE_RATE, "source_duration_s": source["duration_s"],
            "trim_start_s": trim_start / SAMPLE_RATE, "trim_end_s": trim_end / SAMPLE_RATE,
            "num_frames": num_frames, "mel": mel.astype(np.float32).tolist(),
            "f0": np.where(voiced, 120.0 + 40 * index, 0.0).tolist(), "voiced": voiced.tolist(),
            "energy": energy.tolist(), "snt_duration": [num_frames // 2, num_frames - num_frames // 2],
            "snr_db": None if index == 2 else 20.0 + index, "clipping_fraction": 0.0,
            "phonemes": tokens if with_durations else None, "durations": durations if with_durations else None}


def _stft_magnitude(audio: np.ndarray, n_fft: int = 512) -> np.ndarray:
    """Centred Hann STFT magnitude, [1 + len // HOP_LENGTH, n_fft // 2 + 1] (the shard frame grid)."""
    padded = np.pad(audio, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::HOP_LENGTH]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1))


def _log_bands(magnitude: np.ndarray) -> np.ndarray:
    """Log power in N_MELS equal-width bands: a mel stand-in, [T, N_MELS]."""
    band_starts = np.linspace(0, magnitude.shape[1], N_MELS, endpoint=False).astype(int)
    bands = np.add.reduceat(magnitude ** 2, band_starts, axis=1)
    return np.log(np.maximum(bands, 1e-5))


class _Tables(HTMLParser):
    """Collects every <table class=...> as rows of cell texts, keyed by class."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._current: list[list[str]] | None = None
        self._in_cell = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self._current = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tr" and self._current is not None:
            self._current.append([])
        elif tag in ("td", "th") and self._current is not None:
            self._current[-1].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False
        elif tag == "table":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._current:
            self._current[-1][-1] += data


def attrs_of(page: str, tag: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', match)) for match in re.findall(rf"<{tag}\b([^>]*)>", page)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[dict]]:
    return build_dataset(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(dataset) -> str:
    return write_report(dataset[0], examples=len(KEPT), seed=0).read_text(encoding="utf-8")


def test_counts_add_up_and_checks_pass(dataset, page):
    (counts,) = [attrs for attrs in attrs_of(page, "p") if attrs.get("id") == "counts"]
    rejected = pq.read_table(dataset[0] / "rejects.parquet").num_rows
    assert int(counts["data-kept"]) == len(dataset[1])
    assert int(counts["data-rejected"]) == rejected
    assert int(counts["data-input"]) == len(dataset[1]) + rejected
    violations = [int(attrs["data-violations"]) for attrs in attrs_of(page, "td") if "data-violations" in attrs]
    assert violations == [0] * 6  # the six accounting self-checks (self_checks.accounting_checks)


def test_a_manifest_utterance_neither_kept_nor_rejected_fails_a_check(tmp_path):
    dataset_dir, _ = build_dataset(tmp_path)
    rejects = pq.read_table(dataset_dir / "rejects.parquet")
    pq.write_table(rejects.slice(1), dataset_dir / "rejects.parquet")  # toy:900 is now unaccounted for
    page = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
    checks = {row[0]: row[1] for row in _Tables(page).tables[""][1:] if len(row) == 2}
    assert checks["every manifest utterance is kept or rejected"] == "FAILED: 1 utterance"
    assert checks["no utterance is both kept and rejected"] == "ok"


def test_hours_per_speaker_language_and_split(dataset, page):
    tables = _Tables(page).tables
    manifest = pq.read_table(dataset[0] / "manifest.parquet").to_pylist()
    for key in ("speaker", "language"):
        shown = {row[0]: row[1:] for row in tables[f"hours-{key}"][1:]}
        for name in {row[key] or "—" for row in dataset[1]}:
            kept = [row["duration_s"] for row in dataset[1] if (row[key] or "—") == name]
            source = [row["duration_s"] for row in manifest if (row[key] or "—") == name]
            utterances_in, hours_in, utterances_kept, hours_kept = shown[name]
            assert (int(utterances_in), int(utterances_kept)) == (len(source), len(kept))
            assert float(hours_in) == pytest.approx(sum(source) / 3600, abs=6e-4)
            assert float(hours_kept) == pytest.approx(sum(kept) / 3600, abs=6e-4)
    assert tables["hours-speaker"][1][0] == "s2"  # largest kept hours first (holds the 16 s utterance)
    # splits are assigned at shard time: kept per split only, no input column that reads "input 0"
    split = tables["hours-split"]
    assert split[0] == ["split", "kept utterances", "kept hours"]
    shown = {row[0]: row[1:] for row in split[1:]}
    assert set(shown) == {row["split"] or "—" for row in dataset[1]}
    for name, (utterances, hours) in shown.items():
        kept = [row["duration_s"] for row in dataset[1] if (row["split"] or "—") == name]
        assert int(utterances) == len(kept) and float(hours) == pytest.approx(sum(kept) / 3600, abs=6e-4)
    assert "3 rejected utterances have no split" in page


def test_rejected_per_split_where_the_corpus_gave_it(tmp_path):
    dataset_dir, rows = build_dataset(tmp_path)
    manifest = pq.read_table(dataset_dir / "manifest.parquet")
    splits = ["dev-clean" if utt_id == "toy:900" else split
              for utt_id, split in zip(manifest["utt_id"].to_pylist(), manifest["split"].to_pylist())]
    manifest = manifest.set_column(manifest.schema.get_field_index("split"), "split", pa.array(splits, pa.string()))
    pq.write_table(manifest, dataset_dir / "manifest.parquet")
    page = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
    split = _Tables(page).tables["hours-split"]
    assert split[0] == ["split", "kept utterances", "kept hours", "rejected utterances", "rejected source hours"]
    shown = {row[0]: row[1:] for row in split[1:]}
    assert shown["dev"][:1] == ["0"] and shown["dev"][2] == "1"  # toy:900, in the corpus's dev-clean subset
    assert shown["train"][0] == str(sum(row["split"] == "train" for row in rows)) and shown["train"][2] == "0"
    assert "2 rejected utterances have no split" in page


def test_rejects_by_reason_with_examples(dataset, page):
    rows = {row[0]: row[1:] for row in _Tables(page).tables["rejects"][1:]}
    assert set(rows) == {"too_short", "missing_audio"}
    stage, count, hours, examples = rows["too_short"]
    manifest = {row["utt_id"]: row["duration_s"] for row in pq.read_table(dataset[0] / "manifest.parquet").to_pylist()}
    assert (stage, int(count)) == ("filter", 2)
    assert float(hours) == pytest.approx((manifest["toy:900"] + manifest["toy:901"]) / 3600, abs=6e-4)
    assert "toy:900: duration 0.20 s < 0.50 s" in examples and "toy:901" in examples
    assert rows["missing_audio"][:2] == ["ingest", "1"]
    assert "toy:902: no such file: 902.wav" in rows["missing_audio"][3]


def test_histograms_count_the_values_they_draw(dataset, page):
    counts = {attrs["data-title"]: int(attrs["data-count"]) for attrs in attrs_of(page, "svg") if "data-title" in attrs}
    rows = dataset[1]
    assert counts == {
        "duration after trimming": len(rows),
        "characters per second": len(rows),
        "F0 of voiced frames": sum(sum(row["voiced"]) for row in rows),
        "frame energy, 20·log10(L2 norm)": sum(row["num_frames"] for row in rows),
        "SNR before denoising": sum(row["snr_db"] is not None for row in rows),
    }
    assert "1 non-finite left out" in page  # the null SNR


def test_players_embed_the_original_and_the_conditioned_audio(dataset, page):
    rows = {row["utt_id"]: row for row in dataset[1]}
    manifest = {row["utt_id"]: row for row in pq.read_table(dataset[0] / "manifest.parquet").to_pylist()}
    players = [p for p in attrs_of(page, "audio") if p["data-kind"] in ("before", "after")]
    assert sorted((p["data-utt-id"], p["data-kind"]) for p in players) == sorted(
        (utt_id, kind) for utt_id in rows for kind in ("before", "after"))
    cap = int(MAX_CLIP_S * SAMPLE_RATE)
    for player in players:
        prefix = "data:audio/flac;base64,"
        assert player["src"].startswith(prefix)
        samples, sample_rate = decode_bytes(base64.b64decode(player["src"][len(prefix):]))
        assert sample_rate == SAMPLE_RATE
        if player["data-kind"] == "after":
            expected = decode_bytes(rows[player["data-utt-id"]]["audio"])[0]
        else:
            expected = load_audio(Path(manifest[player["data-utt-id"]]["audio_path"]), SAMPLE_RATE)
        assert samples.size == min(expected.size, cap)
        np.testing.assert_allclose(samples, expected[:cap], atol=1 / 32768 + 1e-6)
    assert page.count("(first 15 s in the player)") == 2  # toy:003: 16.3 s original, 15.9 s after trimming


def test_examples_are_seeded(dataset):
    first = write_report(dataset[0], examples=2, seed=3).read_bytes()
    again = write_report(dataset[0], examples=2, seed=3).read_bytes()
    assert first == again
    assert len([p for p in attrs_of(first.decode(), "audio") if p["data-kind"] in ("before", "after")]) == 4
    assert not [path.name for path in dataset[0].iterdir() if path.name.endswith(".tmp")]


def _png_size_and_pixels(src: str) -> tuple[int, int, bytes]:
    png = base64.b64decode(src.removeprefix("data:image/png;base64,"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    (idat_length,) = struct.unpack(">I", png[33:37])
    assert png[37:41] == b"IDAT"
    return width, height, zlib.decompress(png[41:41 + idat_length])


def _figures(page: str) -> list[tuple[dict[str, str], str]]:
    """Each alignment picture's ``div.mel`` attributes and its markup."""
    found = []
    for match in re.finditer(r'<div class="mel"([^>]*)>(.*?)</div>', page, re.DOTALL):
        found.append((dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1))), match.group(2)))
    return found


def label_boxes(markup: str) -> list[tuple[str, float, float, float, float]]:
    """(text, left, right, top, bottom) of every token label, from its x, y, data-w and the row height."""
    boxes = []
    for attrs, text in re.findall(r'<text class="lab"([^>]*)>([^<]*)</text>', markup):
        values = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        x, y, width = float(values["x"]), float(values["y"]), float(values["data-w"])
        boxes.append((text, x - width / 2, x + width / 2, y - LABEL_ROW_PX + 3, y))
    return boxes


def assert_apart(boxes: list[tuple[str, float, float, float, float]], width_px: float) -> None:
    for index, (text, left, right, top, bottom) in enumerate(boxes):
        assert 0 <= left and right <= width_px + 0.05, text
        for other in boxes[index + 1:]:
            overlaps = left < other[2] and other[1] < right and top < other[4] and other[3] < bottom
            assert not overlaps, f"{text!r} overlaps {other[0]!r}"


def test_alignment_pictures_show_the_mel_f0_and_apart_labels(tmp_path):
    dataset_dir, rows = build_dataset(tmp_path, kept=KEPT[:4])
    page = write_report(dataset_dir, examples=4, seed=0).read_text(encoding="utf-8")
    by_id = {row["utt_id"]: row for row in rows}
    figures = _figures(page)
    assert len(figures) == 3 == len({attrs["data-utt-id"] for attrs, _ in figures})
    # aligned examples first, those up to 8 s before longer ones: toy:003 (15.9 s) is left out
    assert [attrs["data-utt-id"] for attrs, _ in figures] == ["toy:000", "toy:001", "toy:002"]
    for attrs, markup in figures:
        row = by_id[attrs["data-utt-id"]]
        (image,) = attrs_of(markup, "img")
        width, height, pixels = _png_size_and_pixels(image["src"])
        assert (width, height) == (row["num_frames"], N_MELS)
        assert len(pixels) == height * (1 + 3 * width)
        assert int(attrs["data-boundaries"]) == markup.count('<line class="b"') == len(row["durations"]) - 1
        assert 'class="f0"' in markup  # the F0 contour over the mel
        boxes = label_boxes(markup)
        assert int(attrs["data-labels"]) == len(boxes)
        texts = [box[0] for box in boxes]
        assert texts == [t for t in row["phonemes"] if t in texts]  # in token order
        assert_apart(boxes, 1000)
    assert "<h2>Alignment</h2>" in page and "<h2>Phone durations</h2>" in page


def test_no_alignment_section_without_durations(tmp_path):
    dataset_dir, rows = build_dataset(tmp_path, with_durations=False, kept=KEPT[:2])
    page = write_report(dataset_dir, examples=1, seed=0).read_text(encoding="utf-8")
    assert "<h2>Alignment</h2>" not in page and "<h2>Phone durations</h2>" not in page
    ((attrs, markup),) = _figures(page)  # the example's mel with its pause segments, in Examples
    assert page.index('<div class="mel"') > page.index("<h2>Examples</h2>")
    row = next(row for row in rows if row["utt_id"] == attrs["data-utt-id"])
    assert int(attrs["data-boundaries"]) == markup.count('<line class="b"') == len(row["snt_duration"]) - 1
    assert ">segment 2<" in markup


def test_label_layout_keeps_labels_apart():
    rng = np.random.default_rng(0)
    labels = [["ˈaɪ"], ["t͡ʃ"], ["segment 12", "12"], ["sil"], ["ŋ"], ["中"], ["."]]
    for _ in range(200):
        count = int(rng.integers(1, 120))
        centres = np.sort(rng.uniform(-20, 1020, count)).tolist()
        choices = [labels[i] for i in rng.integers(0, len(labels), count)]
        placed = place_labels(centres, choices, width_px=1000)
        boxes = [(text, x - w / 2, x + w / 2, row * LABEL_ROW_PX, (row + 1) * LABEL_ROW_PX)
                 for text, x, w, row in filter(None, placed)]
        assert_apart(boxes, 1000)
        assert all(p is None or p[0] in options for p, options in zip(placed, choices))
    sparse = place_labels([100, 300, 500], [["a"], ["bb"], ["segment 3", "3"]], width_px=1000)
    assert [p[0] for p in sparse] == ["a", "bb", "segment 3"] and {p[3] for p in sparse} == {0}
    assert label_width_px("t͡ʃ") == label_width_px("tʃ")  # the tie is a combining mark
    assert label_width_px("中") == pytest.approx(2 * label_width_px("a"), abs=0.1)  # East Asian wide


def test_a_dataset_with_nothing_kept_still_reports(tmp_path):
    dataset_dir, _ = build_dataset(tmp_path, kept=[])
    page = write_report(dataset_dir).read_text(encoding="utf-8")
    (counts,) = [attrs for attrs in attrs_of(page, "p") if attrs.get("id") == "counts"]
    assert (counts["data-kept"], counts["data-rejected"], counts["data-input"]) == ("0", "3", "3")
    assert page.count("No kept utterances.") == 2  # per speaker, examples
    assert "<h2>Alignment</h2>" not in page and "<h2>Lowest-SNR kept clips</h2>" not in page
    assert {p["data-kind"] for p in attrs_of(page, "audio")} == {"rejected"}


def test_dnsmos_histogram_only_when_scored(tmp_path, page):
    assert "DNSMOS" not in page  # features.dnsmos off: the column is all null
    dataset_dir, rows = build_dataset(tmp_path)
    for shard in sorted((dataset_dir / "shards").glob("*.parquet")):
        table = pq.read_table(shard)
        scores = [None if utt_id == "toy:001" else 2.5 + int(utt_id[-1]) / 10 for utt_id in table["utt_id"].to_pylist()]
        index = table.schema.get_field_index("dnsmos_ovrl")
        pq.write_table(table.set_column(index, table.schema.field(index), pa.array(scores, pa.float32())), shard)
    scored = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
    counts = {attrs["data-title"]: int(attrs["data-count"]) for attrs in attrs_of(scored, "svg") if "data-title" in attrs}
    assert counts["DNSMOS P.835 overall before denoising"] == len(rows) - 1


def test_per_speaker_histograms_name_each_speaker(dataset, page):
    rows = dataset[1]
    minis = [attrs for attrs in attrs_of(page, "svg") if attrs.get("class") == "mini"]
    for kind, count in (("duration", lambda row: 1), ("f0", lambda row: sum(row["voiced"]))):
        drawn = {attrs["data-speaker"]: int(attrs["data-count"]) for attrs in minis if attrs["data-kind"] == kind}
        assert drawn == {speaker: sum(count(row) for row in rows if row["speaker"] == speaker)
                         for speaker in {row["speaker"] for row in rows}}
    table = {row[0]: row[1:] for row in _Tables(page).tables["speakers"][1:-1]}  # the last row is the scale
    for speaker in ("s1", "s2"):
        seconds = [row["duration_s"] for row in rows if row["speaker"] == speaker]
        assert int(table[speaker][0]) == len(seconds)
        assert float(table[speaker][3]) == pytest.approx(np.median(seconds), abs=6e-3)
    assert "All 2 speakers." in page


def test_per_speaker_shows_the_largest_and_says_so(dataset, monkeypatch):
    monkeypatch.setattr(report_speakers, "MAX_SPEAKER_PLOTS", 1)
    page = write_report(dataset[0], examples=0).read_text(encoding="utf-8")
    assert {a["data-speaker"] for a in attrs_of(page, "svg") if a.get("class") == "mini"} == {"s2"}
    assert "The 1 largest of 2 speakers by kept hours" in page


def _token_ms(rows: list[dict]) -> dict[tuple[str, str], list[float]]:
    """(language, phone) -> token durations in ms, from the shard rows (r = 1, HOP_LENGTH at SAMPLE_RATE)."""
    found: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        for phone, units in zip(row["phonemes"], row["durations"]):
            found.setdefault((row["language"], phone), []).append(units * HOP_LENGTH / SAMPLE_RATE * 1000)
    return found


@pytest.mark.parametrize("features", [True, False])
def test_phone_table_medians_in_ms(tmp_path, features):
    dataset_dir, rows = build_dataset(tmp_path, features=features)
    page = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
    tables = _Tables(page).tables
    expected = _token_ms(rows)
    for language in ("en", "de"):
        shown = {row[0].replace("pause", "").strip(): row[1:] for row in tables[f"phones phones-{language}"][1:]}
        assert set(shown) == {phone for lang, phone in expected if lang == language}
        for phone, (tokens, median, p10, p90, maximum, *_) in shown.items():
            values = expected[(language, phone)]
            assert int(tokens) == len(values)
            assert float(median.replace(",", "")) == pytest.approx(np.median(values), abs=0.051)
            assert float(p90.replace(",", "")) == pytest.approx(np.percentile(values, 90), abs=0.051)
            assert float(maximum.replace(",", "")) == pytest.approx(max(values), abs=0.051)
    assert float(next(row for row in tables["phones phones-en"] if row[0] == "p1")[2]) == pytest.approx(100.0)
    assert ("index.json features" in page) is features and ("estimated from the shards" in page) is not features


def test_implausible_phone_durations_are_flagged(dataset, page):
    flags = {(row[0], row[1]): row[2:] for row in _Tables(page).tables["phone-flags"][1:]}
    expected = {key: (sum(v == 0 for v in values), sum(v > 500 for v in values), len(values))
                for key, values in _token_ms(dataset[1]).items()}
    assert set(flags) == {key for key, (zero, long, _) in expected.items() if zero or long}
    for key, (tokens, zero, long, _note, examples) in flags.items():
        assert (int(zero), int(long), int(tokens)) == (expected[key][0], expected[key][1], expected[key][2])
    assert flags[("en", "p2")][1:3] == ["1", "0"] and "toy:001" in flags[("en", "p2")][4]


def test_frame_grid_is_estimated_from_the_shards_where_the_index_lacks_it():
    rng = np.random.default_rng(1)
    num_samples = rng.integers(20_000, 300_000, 40)
    hop, r = 256, 2
    num_frames = -(-(1 + num_samples // hop) // r) * r  # 1 + num_samples // hop, rounded up to a multiple of r
    light = pa.table({"num_frames": num_frames.astype(np.int32), "num_samples": num_samples,
                      "sample_rate": np.full(40, 22050, np.int32)})
    timing = frame_timing({}, light, num_frames // r)
    assert (timing.hop_length, timing.sample_rate, timing.reduction_factor) == (256, 22050, 2)
    assert timing.unit_ms == pytest.approx(2 * 256 / 22050 * 1000)
    recorded = frame_timing({"hop_length": 200, "sample_rate": 16000, "reduction_factor": 3}, light, num_frames // r)
    assert (recorded.hop_length, recorded.reduction_factor, recorded.source) == (200, 3, "index.json features")


def _decoded(player: dict[str, str]) -> tuple[np.ndarray, int]:
    return decode_bytes(base64.b64decode(player["src"].removeprefix("data:audio/flac;base64,")))


def test_rejected_clips_play_their_source_audio(dataset, page):
    players = [p for p in attrs_of(page, "audio") if p["data-kind"] == "rejected"]
    assert [p["data-utt-id"] for p in players] == ["toy:900", "toy:901"]  # too_short; missing_audio has no file
    rejects = {row["utt_id"]: row for row in pq.read_table(dataset[0] / "rejects.parquet").to_pylist()}
    for player in players:
        samples, rate = _decoded(player)
        expected = load_audio(Path(rejects[player["data-utt-id"]]["audio_path"]), PREVIEW_RATE)
        assert rate == PREVIEW_RATE and samples.size == expected.size
        np.testing.assert_allclose(samples, expected, atol=2 / 32768)
    assert "toy:902: not decodable" in page


def test_lowest_snr_kept_clips(dataset, page):
    table = _Tables(page).tables["low-snr"]
    by_snr = sorted((row for row in dataset[1] if row["snr_db"] is not None), key=lambda row: row["snr_db"])[:3]
    assert [(row[0], float(row[2])) for row in table[1:]] == [(row["utt_id"], row["snr_db"]) for row in by_snr]
    players = [p for p in attrs_of(page, "audio") if p["data-kind"] == "low-snr"]
    assert [p["data-utt-id"] for p in players] == [row["utt_id"] for row in by_snr]
    samples, rate = _decoded(players[0])
    assert rate == PREVIEW_RATE and samples.size == pytest.approx(by_snr[0]["duration_s"] * PREVIEW_RATE, abs=2)


def test_voice_conversion_pairs_section(tmp_path, page):
    assert "Voice-conversion pairs" not in page  # no pairs.parquet
    dataset_dir, rows = build_dataset(tmp_path)
    pairs = [("toy:000", "toy:002", 6.5), ("toy:001", "toy:005", 9.25), ("toy:004", "toy:003", 4.0),
             ("toy:000", "toy:777", 7.0)]  # toy:777 is in no shard (a pairs file older than the shards)
    speaker = {row["utt_id"]: row["speaker"] for row in rows}
    table = pa.Table.from_pylist([
        {"source_utt_id": source, "target_utt_id": target, "source_speaker": speaker[source],
         "target_speaker": speaker.get(target, "s9"), "num_source_frames": 100, "num_target_frames": 120,
         "durations": [1] * 100, "mcd_db": mcd, "snt_duration": None} for source, target, mcd in pairs],
        schema=PAIRS_SCHEMA)
    pq.write_table(table, dataset_dir / "pairs.parquet")
    page = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
    (summary,) = [attrs for attrs in attrs_of(page, "p") if attrs.get("id") == "pairs"]
    assert summary["data-pairs"] == "4" and "median 6.75 dB" in page
    worst = _Tables(page).tables["pairs-worst"][1:]
    assert [(row[0], row[1], float(row[5])) for row in worst] == [
        (source, target, mcd) for source, target, mcd in sorted(pairs, key=lambda pair: -pair[2])]
    assert "1 pairs name an utterance that is not in the shards" in page
    counts = {a["data-title"]: int(a["data-count"]) for a in attrs_of(page, "svg") if "data-title" in a}
    assert counts["mel-cepstral distortion of the pairs"] == 4


def test_long_speaker_ids_are_shortened_with_the_full_id_on_hover(tmp_path):
    client_id = "7143ca30d132e3a068eff6402d9abe5ac70bac4b08491d5ed44721d8e82b8e8d" * 2  # Common Voice: 128 hex
    kept = [(client_id, "de", "train", 2), ("s2", "de", "train", 1)]
    dataset_dir, _ = build_dataset(tmp_path, kept=kept)
    page = write_report(dataset_dir, examples=2).read_text(encoding="utf-8")
    tables = _Tables(page).tables
    assert {row[0] for row in tables["hours-speaker"][1:]} == {client_id[:8] + "…", "s2", "s3"}  # s3: rejects
    assert {row[0] for row in tables["speakers"][1:-1]} == {client_id[:8] + "…", "s2"}
    spans = [attrs for attrs in attrs_of(page, "span") if attrs.get("class") == "id"]
    assert spans and all(attrs["title"] == client_id for attrs in spans)
    assert f">{client_id}<" not in page and f"{client_id}:" not in page  # never written out in full as text


def _add_similarity(dataset_dir: Path, scores: dict[str, float | None] | None) -> None:
    """Give every shard a ``speaker_similarity`` column (float32, nullable; ``scores`` by utt_id, others null),
    as the speaker-embedding stage does, or with ``None`` drop it, as in shards written before it existed."""
    for shard in sorted((dataset_dir / "shards").glob("*.parquet")):
        table = pq.read_table(shard)
        if "speaker_similarity" in table.column_names:
            table = table.drop_columns(["speaker_similarity"])
        if scores is not None:
            values = pa.array([scores.get(utt_id) for utt_id in table["utt_id"].to_pylist()], pa.float32())
            table = table.append_column(pa.field("speaker_similarity", pa.float32()), values)
        pq.write_table(table, shard)


def test_least_similar_utterances_per_speaker(tmp_path, page):
    assert "Speaker similarity" not in page  # the main dataset's shards have no speaker_similarity column
    dataset_dir, _ = build_dataset(tmp_path)
    scores = {"toy:000": 0.91, "toy:001": 0.42, "toy:002": 0.88, "toy:003": None, "toy:004": 0.77, "toy:005": 0.35}
    _add_similarity(dataset_dir, scores)
    page = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
    table = _Tables(page).tables["similarity"]
    # s2 first (its least similar, toy:005 at 0.35, is lower than s1's toy:001 at 0.42); toy:003 is unscored
    assert [(row[0], row[1], row[3], float(row[4])) for row in table[1:]] == [
        ("s2", "2", "toy:005", 0.35), ("s2", "2", "toy:002", 0.88),
        ("s1", "3", "toy:001", 0.42), ("s1", "3", "toy:004", 0.77)]
    assert float(table[1][2]) == pytest.approx(np.median([0.35, 0.88]), abs=1e-3)
    players = [p["data-utt-id"] for p in attrs_of(page, "audio") if p["data-kind"] == "least-similar"]
    assert players == ["toy:005", "toy:002", "toy:001", "toy:004"]
    counts = {a["data-title"]: int(a["data-count"]) for a in attrs_of(page, "svg") if "data-title" in a}
    assert counts["speaker similarity (cosine to the leave-one-out speaker centroid)"] == 5
    for name, scores in (("unscored", {}), ("older", None)):  # every value null; no column at all
        dataset_dir, _ = build_dataset(tmp_path / name)
        _add_similarity(dataset_dir, scores)
        page = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
        assert "Speaker similarity" not in page and "<h2>Per speaker</h2>" in page


def test_near_duplicate_voices_are_listed_from_the_index():
    from ttsprep.stages.step7_finalize.report_speakers import near_duplicates_html

    index = {"speaker_embedding": {"near_duplicate_threshold": 0.85, "near_duplicates": [
        {"speakers": ["p225", "c" * 128], "cosine": 0.9123}]}}
    page = near_duplicates_html(index)
    assert "p225" in page and "0.912" in page and f'title="{"c" * 128}"' in page
    assert "None." in near_duplicates_html({"speaker_embedding": {"near_duplicates": []}})
    assert near_duplicates_html({"speaker_embedding": None}) == ""
