"""Voice-conversion pairs: pairing rules, DTW durations on a known time-stretch, and the real VCTK pair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttsprep.stages.core.config import AudioConfig, FeatureConfig, PairsConfig
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step7_finalize.vc_pairs import align_pair, write_pairs

N_MELS = 40


def _mel(num_frames: int, seed: int) -> np.ndarray:
    """A smooth random log-mel trajectory [T, N_MELS] (distinct frames, so DTW has one best path)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(num_frames, N_MELS)).cumsum(axis=0)
    return (steps / np.sqrt(np.arange(1, num_frames + 1))[:, None]).astype(np.float32)


def _write_dataset(out: Path, rows: list[dict]) -> DatasetLayout:
    layout = DatasetLayout(out, "toy")
    layout.shards_dir.mkdir(parents=True)
    table = pa.table({
        "utt_id": [r["utt_id"] for r in rows], "speaker": [r["speaker"] for r in rows],
        "text": [r["text"] for r in rows], "num_frames": [len(r["mel"]) for r in rows],
        "mel": [r["mel"].tolist() for r in rows], "snt_duration": [r["snt_duration"] for r in rows],
    })
    pq.write_table(table, layout.shard("part-00000"))
    layout.index.write_text(json.dumps({"shards": [{"path": "shards/part-00000.parquet"}]}))
    return layout


@pytest.fixture
def stretched(tmp_path):
    """Speaker b reads a's sentence at half speed (every frame twice); c reads another sentence."""
    source = _mel(60, seed=1)
    rows = [
        {"utt_id": "toy:a_1", "speaker": "a", "text": "Please call Stella.", "mel": source, "snt_duration": [60]},
        {"utt_id": "toy:b_1", "speaker": "b", "text": "please call stella", "mel": np.repeat(source, 2, axis=0),
         "snt_duration": [120]},
        {"utt_id": "toy:c_1", "speaker": "c", "text": "Something else.", "mel": _mel(50, seed=2), "snt_duration": [50]},
    ]
    return _write_dataset(tmp_path, rows)


def test_parallel_text_pairs_recover_a_known_time_stretch(stretched):
    assert write_pairs(stretched, PairsConfig(mode="parallel_text")) == 2
    pairs = {(r["source_utt_id"], r["target_utt_id"]): r for r in pq.read_table(stretched.pairs).to_pylist()}
    assert set(pairs) == {("toy:a_1", "toy:b_1"), ("toy:b_1", "toy:a_1")}
    slow = pairs[("toy:a_1", "toy:b_1")]
    assert slow["durations"] == [2] * 60
    assert slow["mcd_db"] == pytest.approx(0.0, abs=1e-4)
    assert slow["snt_duration"] == [60, 120]
    fast = pairs[("toy:b_1", "toy:a_1")]
    assert sum(fast["durations"]) == 60 and len(fast["durations"]) == 120
    assert set(fast["durations"]) == {0, 1}


def test_pair_list_and_speaker_filters(stretched, tmp_path):
    listing = tmp_path / "pairs.csv"
    listing.write_text("source,target\na_1,c_1\na_1,missing\n")
    assert write_pairs(stretched, PairsConfig(mode="list", pair_list=listing)) == 1
    (row,) = pq.read_table(stretched.pairs).to_pylist()
    assert (row["source_utt_id"], row["target_utt_id"]) == ("toy:a_1", "toy:c_1")
    assert sum(row["durations"]) == 50 and row["mcd_db"] > 1.0
    assert write_pairs(stretched, PairsConfig(mode="parallel_text", source_speakers=["b"])) == 1
    assert stretched.pairs.is_file()
    assert write_pairs(stretched, PairsConfig(mode="none")) == 0
    assert not stretched.pairs.exists()  # pairs turned off: the earlier file no longer matches the shards


def test_real_vctk_pair_gives_a_monotonic_path_and_a_row(shared_corpora):
    from ttsprep.stages.core.audio_io import load_audio
    from ttsprep.stages.step2_audio.conditioning import condition_audio
    from ttsprep.stages.step2_audio.silence import segment_frames
    from ttsprep.stages.step4_features.extract import extract_features

    audio, features = AudioConfig(sample_rate=22050), FeatureConfig()
    rows = {}
    for speaker in ("p225", "p226"):
        path = next((shared_corpora / "vctk").rglob(f"{speaker}_001_mic1.flac"))
        conditioned = condition_audio(load_audio(path, audio.sample_rate), audio.sample_rate, audio)
        feats = extract_features(conditioned.samples, audio.sample_rate, features, audio.denoise)
        snt = segment_frames(conditioned.pause_boundaries, conditioned.samples.size, features.hop_length)
        rows[speaker] = {"utt_id": f"vctk:{speaker}_001", "speaker": speaker, "num_frames": feats.num_frames,
                         "mel": feats.mel, "snt_duration": snt}
    row = align_pair(rows["p225"], rows["p226"], mcep_order=24)
    durations = np.asarray(row["durations"])
    assert durations.size == rows["p225"]["num_frames"]
    assert durations.sum() == rows["p226"]["num_frames"] and durations.min() >= 0
    assert 0 < row["mcd_db"] < 10
