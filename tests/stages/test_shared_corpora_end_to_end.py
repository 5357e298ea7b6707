"""Every corpus sample in ../shared/corpora through the pure pipeline (no Prefect): ingest, shards,
finalize, symbol maps and VC pairs, with the repository's own datasets.yaml.

The samples are clean recordings, so every utterance must be kept; the shards must satisfy the frame
invariants and read back with pyarrow, polars and duckdb alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from ttsprep.aligners.durations import token_edges_s
from ttsprep.aligners.sequence import align_sequences
from ttsprep.stages.core.schema import check_row_invariants
from ttsprep.stages.run_dataset import run_dataset
from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step7_finalize.maps import write_symbol_maps

CONFIG = Path(__file__).resolve().parents[2] / "datasets.yaml"


@pytest.fixture(scope="module")
def processed(shared_corpora, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shared-out")
    for dataset in load_project(CONFIG).datasets:
        run_dataset(dataset, out, pairs=True)
    write_symbol_maps(out)
    return out


def _rows(root: Path) -> list[dict]:
    return [row for path in sorted((root / "shards").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_clean_samples_are_all_kept(processed):
    for dataset in load_project(CONFIG).datasets:
        root = processed / dataset.name
        index = json.loads((root / "index.json").read_text())
        rejects = pq.read_table(root / "rejects.parquet").to_pylist()
        assert rejects == [], f"{dataset.name}: {[(r['utt_id'], r['reason'], r['detail']) for r in rejects]}"
        manifest = pq.read_table(root / "manifest.parquet")
        assert index["counts"]["inputs"] == index["counts"]["kept"] == manifest.num_rows > 0
        assert sum(s["num_rows"] for s in index["shards"]) == manifest.num_rows
        assert index["hours"]["total"] > 0 and index["split_overlap"] is not None


def test_every_row_holds_the_frame_grid_and_the_text_front_end(processed):
    config = load_project(CONFIG)
    for dataset in config.datasets:
        features = dataset.config.features
        for row in _rows(processed / dataset.name):
            check_row_invariants(row, n_mels=features.n_mels, reduction_factor=dataset.config.align.reduction_factor)
            assert row["duration_s"] <= row["source_duration_s"] + 1e-6
            assert row["num_frames"] == 1 + row["num_samples"] // features.hop_length
            assert row["phonemes"], f"{row['utt_id']}: no phonemes"
            assert any(row["voiced"]), f"{row['utt_id']}: no voiced frame"


def test_every_kept_row_of_every_corpus_has_durations(processed):
    for dataset in load_project(CONFIG).datasets:
        rows = _rows(processed / dataset.name)
        expected = {"textgrid"} if dataset.config.align.method == "textgrid" else {"pocketsphinx", "espeak_synthesis"}
        for row in rows:
            assert row["durations"] is not None and row["alignment_method"] in expected, row["utt_id"]
            assert sum(row["durations"]) == row["num_frames"] and len(row["durations"]) == len(row["phonemes"])
        index = json.loads((processed / dataset.name / "index.json").read_text())
        assert sum(index["alignment"]["rows_by_aligner"].values()) == len(rows)
        assert "none" not in index["alignment"]["rows_by_aligner"], dataset.name


def _htk_onsets_s(label: Path) -> list[tuple[str, float]]:
    """(phone, onset seconds) of an HTS full-context label's non-silent phones (times in 100 ns)."""
    phones = [(line.split()[2].split("-", 1)[1].split("+", 1)[0], int(line.split()[0]) / 1e7)
              for line in label.read_text(encoding="utf-8").splitlines()]
    return [(phone, start) for phone, start in phones if phone not in ("sil", "pau")]


@pytest.mark.parametrize("dataset, utt_id, label", [
    ("cmu_arctic", "cmu_arctic:slt_arctic_a0009", "cmu_arctic/merlin_slt_arctic_demo/label_phone_align/arctic_a0009.lab"),
    ("jsut", "jsut:BASIC5000_0001", "jsut/jsut_ver1.1/basic5000/lab/BASIC5000_0001.lab"),
])
def test_default_durations_land_near_the_reference_labels(processed, shared_corpora, dataset, utt_id, label):
    row = next(r for r in _rows(processed / dataset) if r["utt_id"] == utt_id)
    edges = token_edges_s(np.asarray(row["durations"]), sample_rate=row["sample_rate"], hop_length=256)
    starts = np.concatenate([[0.0], edges]) + row["trim_start_s"]
    ours = [(t, s) for t, s in zip(row["phonemes"], starts) if t != "sil" and t not in ",.?!;:"]
    reference = _htk_onsets_s(shared_corpora / label)
    pairs = align_sequences([t for t, _ in ours], [p for p, _ in reference],
                            lambda a, b: 1.0 if a.strip("ˈˌː").lower()[:1] == b.lower()[:1] else -0.5)
    errors_s = [abs(ours[i][1] - reference[j][1]) for i, j in pairs if i is not None and j is not None]
    assert len(errors_s) >= 0.8 * len(reference)
    assert np.median(errors_s) < 0.035, f"median onset error {np.median(errors_s) * 1000:.0f} ms"


def test_ljspeech_durations_come_from_its_textgrids(processed):
    rows = _rows(processed / "ljspeech")
    assert rows and all(row["alignment_method"] == "textgrid" for row in rows)
    arpabet = [t for row in rows for t in row["phonemes"] if re.fullmatch("[A-Z]+[0-2]?", t)]
    assert not arpabet, f"ARPAbet labels not mapped into the G2P's IPA: {arpabet[:5]}"
    for row in rows:
        assert sum(row["durations"]) == row["num_frames"]
        assert len(row["token_pitch"]) == len(row["token_energy"]) == len(row["phonemes"])
        voiced_tokens = [p for p, d in zip(row["token_pitch"], row["durations"]) if d > 0 and p > 0]
        assert 50 < np.median(voiced_tokens) < 400  # LJ's speaker: a female voice around 200 Hz


def test_aishell3_keeps_the_corpus_pinyin(processed):
    rows = _rows(processed / "aishell3")
    for row in rows:
        syllables = row["pinyin"].split()
        tones = [t for t in row["phonemes"] if t[-1].isdigit()]  # finals carry the tone number
        assert [s[-1] for s in syllables] == [t[-1] for t in tones], row["utt_id"]


def test_vctk_pair_and_symbol_maps(processed):
    pairs = pq.read_table(processed / "vctk" / "pairs.parquet").to_pylist()
    row = next(p for p in pairs if (p["source_utt_id"], p["target_utt_id"]) == ("vctk:p225_001", "vctk:p226_001"))
    assert sum(row["durations"]) == row["num_target_frames"] and min(row["durations"]) >= 0
    speakers = json.loads((processed / "speakers.json").read_text())
    assert {"vctk:p225", "vctk:p226", "aishell3:SSB0139", "cmu_arctic:slt"} <= set(speakers)
    vocab = json.loads((processed / "vocab.json").read_text())
    assert any(symbol.startswith("zh:") for symbol in vocab) and any(symbol.startswith("ja:") for symbol in vocab)


def test_shards_read_back_with_polars_and_duckdb(processed):
    shard = sorted((processed / "ljspeech" / "shards").glob("*.parquet"))[0]
    reference = pq.read_table(shard, columns=["utt_id", "num_frames", "mel", "f0"]).to_pylist()
    frame = pl.read_parquet(shard, columns=["utt_id", "num_frames", "mel", "f0"])
    assert frame["utt_id"].to_list() == [r["utt_id"] for r in reference]
    first = frame.row(0, named=True)
    assert np.allclose(np.array(first["mel"], dtype=np.float32), np.array(reference[0]["mel"], dtype=np.float32))
    counted = duckdb.sql(f"SELECT utt_id, num_frames, len(mel) AS mel_rows, len(f0) AS f0_rows "
                         f"FROM read_parquet('{shard}') ORDER BY utt_id").fetchall()
    assert [(u, n) for u, n, _, _ in counted] == sorted((r["utt_id"], r["num_frames"]) for r in reference)
    assert all(n == mel_rows == f0_rows for _, n, mel_rows, f0_rows in counted)
