"""Tacotron 2 durations added to finished shards, without Prefect: a tiny espeak-phonemized corpus is run
through the pure pipeline steps, a tiny aligner is trained on it, and the shards are rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tests.helpers import write_ljspeech
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.schema import check_row_invariants
from ttsprep.stages.run_dataset import run_dataset
from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step7_finalize.finalize import finalize_dataset
from ttsprep.stages.step7_finalize.maps import write_symbol_maps
from ttsprep.stages.step6_shards import writer
from ttsprep.stages.step7_finalize.tacotron_durations import (add_shard_durations, aligner_maps, check_ready,
                                                              checkpoint_digest, train_on_shards)
from ttsprep.train.shards import load_shard_set, load_symbol_maps
from ttsprep.train.tacotron2_trainer import load_tacotron2

R, HOP_LENGTH, N_MELS = 2, 512, 80
TINY_MODEL = dict(embedding_dim=16, encoder_dim=16, encoder_kernel_size=3, attention_rnn_dim=32, attention_dim=16,
                  location_n_filters=4, location_kernel_size=5, decoder_rnn_dim=32, prenet_dim=16, postnet_dim=16,
                  postnet_n_convolutions=2)
#: Tone-burst audio of ~3 s gives ~110 frames, i.e. ~55 decoder steps at r = 2: the last text has more
#: phonemes than that (rejected as too_few_frames whatever the attention), the one before about 35.
TEXTS = {"S-00": "Hi.", "S-01": "Yes.", "S-02": "Go now.", "S-03": "The quick brown fox jumps over the dog.",
         "S-04": "A much longer sentence with very many words keeps the attention spread thin across all of them."}


def build_output(root: Path, texts: dict[str, str], align: str) -> tuple[Path, Path]:
    """``ttsprep run``'s pure steps on an LJSpeech-layout corpus (dataset ``tiny``, 2 utterances per shard,
    ``align`` the YAML mapping of the align section); returns (datasets.yaml, output dir)."""
    write_ljspeech(root / "LJ", texts)
    config = root / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n    stages:\n"
                      "      shards: {max_utterances: 2}\n      filter: {min_snr_db: null}\n"
                      f"      features: {{hop_length: {HOP_LENGTH}}}\n"
                      f"      align: {{method: tacotron2, reduction_factor: {R}, {align}}}\n")
    out = root / "out"
    run_dataset(load_project(config).datasets[0], out)
    write_symbol_maps(out)
    return config, out


def shard_names(layout: DatasetLayout) -> list[str]:
    return [Path(s["path"]).stem for s in json.loads(layout.index.read_text())["shards"]]


def read_rows(layout: DatasetLayout) -> list[dict]:
    return [row for name in shard_names(layout) for row in pq.read_table(layout.shard(name)).to_pylist()]


def voiced_mean_per_token(row: dict) -> np.ndarray:
    """Mean F0 over each token's voiced frames (0 without any), from the row's own columns."""
    frame_token = np.repeat(np.arange(len(row["durations"])), np.asarray(row["durations"]) * R)
    f0, voiced = np.asarray(row["f0"]), np.asarray(row["voiced"])
    means = [f0[(frame_token == token) & voiced].mean() if ((frame_token == token) & voiced).any() else 0.0
             for token in range(len(row["durations"]))]
    return np.asarray(means, dtype=np.float32)


@pytest.fixture(scope="module")
def lenient(tmp_path_factory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    return build_output(tmp_path_factory.mktemp("lenient"), TEXTS,
                        "attention_min_focus_rate: 0.0, attention_min_diagonality: -1.0")


def test_durations_fill_the_shards_and_rejects_reach_the_ledger(lenient, monkeypatch):
    config_path, out = lenient
    dataset = load_project(config_path).datasets[0]
    layout = DatasetLayout(out, "tiny")
    index = check_ready(layout, dataset.config)
    assert index["counts"] == {"inputs": 5, "kept": 5, "rejected": 0, "rejected_by_reason": {}}
    assert all(row["durations"] is None for row in read_rows(layout))

    aligner = out / "aligner"
    losses: list[float] = []
    trained = train_on_shards([layout.root], aligner, steps=3, batch_size=4, device="cpu", model_sizes=TINY_MODEL,
                              on_step=lambda step, values: losses.append(values["total"]))
    assert trained.step == 3 and len(losses) == 3 and all(np.isfinite(losses))
    digest = checkpoint_digest(trained.checkpoint)
    model = load_tacotron2(trained.checkpoint)
    maps = aligner_maps(load_symbol_maps(load_shard_set(str(layout.root))), aligner)
    summaries = [add_shard_durations(layout, name, model, maps, dataset.config, digest)
                 for name in shard_names(layout)]
    assert sum(s.num_rows for s in summaries) == 4 and sum(s.num_rejected for s in summaries) == 1
    rows = read_rows(layout)
    assert sorted(row["utt_id"] for row in rows) == [f"tiny:S-0{i}" for i in range(4)]
    for row in rows:
        check_row_invariants(row, n_mels=N_MELS, reduction_factor=R)
        assert sum(row["durations"]) * R == row["num_frames"] and min(row["durations"]) >= 1
        assert len(row["durations"]) == len(row["phonemes"]) == len(row["token_pitch"]) == len(row["token_energy"])
        np.testing.assert_allclose(row["token_pitch"], voiced_mean_per_token(row), rtol=1e-5)
    assert any(np.asarray(row["token_pitch"]).max() > 100 for row in rows)  # the 160 Hz bursts show up

    index = finalize_dataset(layout, dataset.config, num_inputs=5)
    assert index["counts"] == {"inputs": 5, "kept": 4, "rejected": 1, "rejected_by_reason": {"too_few_frames": 1}}
    ledger = pq.read_table(layout.rejects).to_pylist()
    assert [(r["utt_id"], r["stage"], r["reason"]) for r in ledger] == [("tiny:S-04", "align", "too_few_frames")]
    assert ledger[0]["audio_path"].endswith("S-04.wav")
    quality = pq.read_table(layout.root / "work" / f"{shard_names(layout)[-1]}.attention.parquet").to_pylist()
    assert {q["utt_id"]: q["kept"] for q in quality} == {"tiny:S-04": False}

    # the same checkpoint again: nothing is rewritten
    files = {p: p.stat().st_mtime_ns for p in [*layout.shards_dir.iterdir(), *(layout.root / "work").iterdir()]}
    again = [add_shard_durations(layout, name, model, maps, dataset.config, digest) for name in shard_names(layout)]
    assert all(s.skipped for s in again) and [s.num_rows for s in again] == [s.num_rows for s in summaries]
    assert {p: p.stat().st_mtime_ns for p in files} == files

    # a resumed aligner (new checkpoint) under thresholds nothing meets; the first try dies before the shard
    # write: the ledger part written before it must not count those utterances twice on the next try
    resumed = train_on_shards([layout.root], aligner, steps=4, batch_size=4, device="cpu", model_sizes=TINY_MODEL)
    assert resumed.step == 4 and resumed.checkpoint.name == "checkpoint-000000004.pt"
    strict = dataset.config.model_copy(update={"align": dataset.config.align.model_copy(
        update={"attention_min_focus_rate": 1.0})})
    model, digest = load_tacotron2(resumed.checkpoint), checkpoint_digest(resumed.checkpoint)
    first = shard_names(layout)[0]
    real_write = writer.write_parquet  # every shard file goes through the one shard writer

    def crash_on_shard(path: Path, *args, **kwargs) -> None:
        if path == layout.shard(first):
            raise OSError("disk full")
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(writer, "write_parquet", crash_on_shard)
    with pytest.raises(OSError, match="disk full"):
        add_shard_durations(layout, first, model, maps, strict, digest)
    assert pq.read_table(layout.shard_rejects(first)).num_rows == 2  # written, while the shard still has both
    monkeypatch.undo()
    for name in shard_names(layout):
        add_shard_durations(layout, name, model, maps, strict, digest)
    assert read_rows(layout) == []
    index = finalize_dataset(layout, strict, num_inputs=5)
    assert index["counts"] == {"inputs": 5, "kept": 0, "rejected": 5,
                               "rejected_by_reason": {"attention_low_quality": 4, "too_few_frames": 1}}


def test_check_ready_refuses_other_aligners_and_changed_configs(lenient):
    config_path, out = lenient
    dataset = load_project(config_path).datasets[0]
    layout = DatasetLayout(out, "tiny")
    align = dataset.config.align
    with pytest.raises(ConfigError, match="align.method is 'mfa'"):
        check_ready(layout, dataset.config.model_copy(update={"align": align.model_copy(update={"method": "mfa"})}))
    changed = dataset.config.model_copy(update={"align": align.model_copy(update={"attention_min_focus_rate": 0.3})})
    with pytest.raises(ConfigError, match="another configuration"):
        check_ready(layout, changed)
    with pytest.raises(ConfigError, match="no trained aligner"):
        aligner_maps(load_symbol_maps(load_shard_set(str(layout.root))), out / "no-aligner")
