"""The HTML report: its numbers against the dataset it was built from, its embedded media, and a real browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from stages.atomic import rows_to_table
from stages.audio_io import decode_bytes, encode_flac, load_audio
from stages.report import MAX_CLIP_S, write_report
from stages.schema import MANIFEST_SCHEMA, REJECTS_SCHEMA, shard_schema
from tests.helpers import tone_bursts

SAMPLE_RATE, SOURCE_RATE, HOP_LENGTH, N_MELS = 16000, 22050, 160, 20
# (speaker, language, split, bursts): bursts set the length; 16 bursts make a 16.3 s original (> MAX_CLIP_S).
KEPT = [("s1", "en", "train", 2), ("s1", "en", "train", 3), ("s2", "de", "val", 2),
        ("s2", "en", None, 16), ("s1", "de", "train", 1), ("s2", "de", "train", 2)]


def build_dataset(root: Path, *, with_durations: bool = True, kept: list = KEPT) -> tuple[Path, list[dict]]:
    """A dataset dir (manifest, rejects, two shards, JSONs) over tone-burst wavs; returns it and the shard rows."""
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
    (dataset_dir / "index.json").write_text(json.dumps({"schema_version": 1, "n_mels": N_MELS, "shards": ["a", "b"]}))
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
    durations = np.diff(np.linspace(0, num_frames, len(tokens) + 1).astype(int)).tolist()
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
    assert violations == [0] * 5


def test_a_manifest_utterance_neither_kept_nor_rejected_fails_a_check(tmp_path):
    dataset_dir, _ = build_dataset(tmp_path)
    rejects = pq.read_table(dataset_dir / "rejects.parquet")
    pq.write_table(rejects.slice(1), dataset_dir / "rejects.parquet")  # toy:900 is now unaccounted for
    page = write_report(dataset_dir, examples=0).read_text(encoding="utf-8")
    checks = {row[0]: row[1] for row in _Tables(page).tables[""][1:] if len(row) == 2}
    assert checks["every manifest utterance is kept or rejected"] == "FAILED: 1 utterances"
    assert checks["no utterance is both kept and rejected"] == "ok"


def test_hours_per_speaker_language_and_split(dataset, page):
    tables = _Tables(page).tables
    manifest = pq.read_table(dataset[0] / "manifest.parquet").to_pylist()
    for key in ("speaker", "language", "split"):
        shown = {row[0]: row[1:] for row in tables[f"hours-{key}"][1:]}
        for name in {row[key] or "—" for row in dataset[1]}:
            kept = [row["duration_s"] for row in dataset[1] if (row[key] or "—") == name]
            source = [row["duration_s"] for row in manifest if (row[key] or "—") == name]
            utterances_in, hours_in, utterances_kept, hours_kept = shown[name]
            assert (int(utterances_in), int(utterances_kept)) == (len(source), len(kept))
            assert float(hours_in) == pytest.approx(sum(source) / 3600, abs=6e-4)
            assert float(hours_kept) == pytest.approx(sum(kept) / 3600, abs=6e-4)
    assert tables["hours-speaker"][1][0] == "s2"  # largest kept hours first (holds the 16 s utterance)


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
    players = attrs_of(page, "audio")
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
    assert len(attrs_of(first.decode(), "audio")) == 4
    assert not [path.name for path in dataset[0].iterdir() if path.name.endswith(".tmp")]


def _png_size_and_pixels(src: str) -> tuple[int, int, bytes]:
    png = base64.b64decode(src.removeprefix("data:image/png;base64,"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    (idat_length,) = struct.unpack(">I", png[33:37])
    assert png[37:41] == b"IDAT"
    return width, height, zlib.decompress(png[41:41 + idat_length])


@pytest.mark.parametrize("with_durations", [True, False])
def test_alignment_picture_shows_the_mel_and_its_boundaries(tmp_path, with_durations):
    dataset_dir, rows = build_dataset(tmp_path, with_durations=with_durations, kept=KEPT[:2])
    page = write_report(dataset_dir, examples=1, seed=0).read_text(encoding="utf-8")
    (figure,) = [attrs for attrs in attrs_of(page, "div") if attrs.get("class") == "mel"]
    row = next(row for row in rows if row["utt_id"] == figure["data-utt-id"])
    (image,) = attrs_of(page, "img")
    width, height, pixels = _png_size_and_pixels(image["src"])
    assert (width, height) == (row["num_frames"], N_MELS)
    assert len(pixels) == height * (1 + 3 * width)
    spans = row["durations"] if with_durations else row["snt_duration"]
    overlay = page[page.index('<div class="mel"'):page.index("</div>", page.index('<div class="mel"'))]
    assert int(figure["data-boundaries"]) == overlay.count("<line ") == len(spans) - 1
    assert (">p3<" in overlay) is with_durations and (">segment 2<" in overlay) is not with_durations


def test_a_dataset_with_nothing_kept_still_reports(tmp_path):
    dataset_dir, _ = build_dataset(tmp_path, kept=[])
    page = write_report(dataset_dir).read_text(encoding="utf-8")
    (counts,) = [attrs for attrs in attrs_of(page, "p") if attrs.get("id") == "counts"]
    assert (counts["data-kept"], counts["data-rejected"], counts["data-input"]) == ("0", "3", "3")
    assert page.count("No kept utterances.") == 2 and "<audio" not in page


def test_renders_in_headless_chromium(dataset, page, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    report = dataset[0] / "report.html"
    report.write_text(page, encoding="utf-8")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom",
         report.as_uri()], capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    headings = re.findall(r"<h2>([^<]*)</h2>", dom)
    assert headings == ["Utterances", "Hours", "Rejects by reason", "Distributions", "Alignment", "Examples",
                        "Run files"]
    assert dom.count('<svg class="hist"') == 5 and dom.count("<img ") == 1 and dom.count("<table") >= 5
    assert attrs_of(dom, "html")[0]["data-errors"] == ""
    states = [attrs.get("data-state") for attrs in attrs_of(dom, "audio")]
    assert states == ["ok"] * 2 * len(KEPT)
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]
    assert console == []


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
