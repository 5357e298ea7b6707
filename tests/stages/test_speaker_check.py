"""The speaker-label check on planted embeddings (no torch, no encoder): who is judged, who moves to the ledger and
back, re-runs, a crash in the middle, the statistics; the configuration and environment checks; near duplicates.

Shards come from tone-burst utterances run with the embedding off; their ``speaker_embedding`` column is then
overwritten with vectors of known geometry, and ``check_speakers`` runs with the feature on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.helpers import tone_bursts
from ttsprep.pipelines import preflight
from ttsprep.stages.core.atomic import write_parquet
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.run_dataset import run_dataset
from ttsprep.stages.step1_ingest.plan import load_plan
from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step6_shards.stats import RunningStats
from ttsprep.stages.step7_finalize import speaker_check
from ttsprep.stages.step7_finalize.speaker_check import check_speakers, near_duplicate_speakers, speaker_profiles

#: utterance -> speaker label; "a3x" is labelled a but has c's voice; b has too few utterances to be judged.
LABELS = {"a0": "a", "a1": "a", "a2": "a", "a3x": "a", "a4": "a", "b0": "b", "b1": "b", "c0": "c", "c1": "c", "c2": "c"}
VOICE = {"a": 0, "b": 1, "c": 2}


def _config(root: Path, extra: str = "") -> Path:
    path = root / "datasets.yaml"
    embedding = "true" if extra else "false"
    path.write_text("datasets:\n  - {name: toy, importer: manifest, root: corpus, file: m.csv, language: en, stages: "
                    f"{{filter: {{min_snr_db: null{extra}}}, text: {{enabled: false}}, align: {{method: none}}, shards: "
                    f"{{max_utterances: 4}}, features: {{f0_method: none, speaker_embedding: {embedding}}}}}}}\n")
    return path


def _embedding(utt: str, rng: np.random.Generator) -> np.ndarray:
    voice = np.zeros(256)
    voice[VOICE["c" if utt.endswith("x") else LABELS[utt]]] = 1.0
    vector = voice + rng.normal(0, 0.02, 256)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


@pytest.fixture
def toy(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with (corpus / "m.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "id", "speaker", "text"])
        for index, (utt, speaker) in enumerate(LABELS.items()):
            sf.write(corpus / f"{utt}.wav", tone_bursts(16000, bursts=2, seed=index), 16000, subtype="PCM_16")
            writer.writerow([f"{utt}.wav", utt, speaker, "Two bursts."])
    run_dataset(load_project(_config(tmp_path)).datasets[0], tmp_path / "out", finalize=False)
    layout = DatasetLayout(tmp_path / "out", "toy")
    rng = np.random.default_rng(0)
    for spec in load_plan(layout.plan):
        table = pq.read_table(layout.shard(spec.name))
        vectors = [_embedding(u.split(":")[1], rng) for u in table["utt_id"].to_pylist()]
        index = table.schema.get_field_index("speaker_embedding")
        table = table.set_column(index, table.schema.field(index), pa.array(vectors, table.schema.field(index).type))
        write_parquet(layout.shard(spec.name), table)
    return tmp_path, layout


def _state(layout: DatasetLayout) -> tuple[dict[str, float | None], dict[str, str]]:
    """(kept utt -> speaker_similarity, ledger utt -> reason), checking every input is in exactly one of them."""
    kept, ledger = {}, {}
    for spec in load_plan(layout.plan):
        shard = pq.read_table(layout.shard(spec.name), columns=["utt_id", "speaker_similarity"]).to_pylist()
        rejects = pq.read_table(layout.shard_rejects(spec.name)).to_pylist()
        inputs = pq.read_table(layout.shard_inputs(spec.name), columns=["utt_id"])["utt_id"].to_pylist()
        assert sorted([r["utt_id"] for r in shard] + [r["utt_id"] for r in rejects]) == sorted(inputs)
        kept |= {r["utt_id"].split(":")[1]: r["speaker_similarity"] for r in shard}
        ledger |= {r["utt_id"].split(":")[1]: r["reason"] for r in rejects}
    return kept, ledger


def _check(root: Path, layout: DatasetLayout, threshold: str):
    config = load_project(_config(root, f", min_speaker_similarity: {threshold}")).datasets[0].config
    return check_speakers(layout, config)


def test_mislabelled_rows_move_to_the_ledger_and_back(toy):
    root, layout = toy
    first = _check(root, layout, "0.5")
    kept, ledger = _state(layout)
    assert ledger == {"a3x": "speaker_mismatch"} and first.rejected == 1 and first.judged == 8
    assert all(kept[u] > 0.5 for u in ("a0", "a1", "a2", "a4", "c0", "c1", "c2"))
    assert kept["b0"] is None and kept["b1"] is None  # 2 utterances < speaker_min_utterances = 3
    detail = pq.read_table(layout.shard_rejects("part-00000")).to_pylist()[0]["detail"]
    assert detail.startswith("speaker_similarity=") and "speaker a" in detail

    stats = RunningStats.load(layout.shard_stats("part-00000")).to_json_dict()
    assert stats["speakers"]["a"]["energy"]["count"] == sum(
        r["num_frames"] for r in pq.read_table(layout.shard("part-00000"), columns=["num_frames", "speaker"]).to_pylist()
        if r["speaker"] == "a")

    stamps = {p: p.stat().st_mtime_ns for p in layout.shards_dir.glob("*.parquet")}
    again = _check(root, layout, "0.5")
    assert again.skipped and again.rejected == 1
    assert {p: p.stat().st_mtime_ns for p in layout.shards_dir.glob("*.parquet")} == stamps

    lenient = _check(root, layout, "null")  # the row comes back, with its similarity
    kept, ledger = _state(layout)
    assert ledger == {} and kept["a3x"] < 0.5 and lenient.rejected == 0
    assert not speaker_check.mismatch_rows_path(layout, "part-00000").exists()
    _check(root, layout, "0.5")
    assert _state(layout)[1] == {"a3x": "speaker_mismatch"}


@pytest.mark.parametrize("crash_after", ["moved_rows", "ledger"])
def test_a_crash_mid_rewrite_loses_no_row(toy, monkeypatch, crash_after):
    root, layout = toy
    _check(root, layout, "0.5")
    real_write = speaker_check.write_shard_files

    def crash(layout_, name, shard, ledger_rows, stats, settings):
        if crash_after == "ledger":
            from ttsprep.stages.core.atomic import rows_to_table
            from ttsprep.stages.core.schema import REJECTS_SCHEMA

            write_parquet(layout_.shard_rejects(name), rows_to_table(ledger_rows, REJECTS_SCHEMA))
        raise KeyboardInterrupt

    monkeypatch.setattr(speaker_check, "write_shard_files", crash)
    with pytest.raises(KeyboardInterrupt):
        _check(root, layout, "null")  # would bring a3x back
    monkeypatch.setattr(speaker_check, "write_shard_files", real_write)
    _check(root, layout, "null")
    kept, ledger = _state(layout)
    assert ledger == {} and set(kept) == set(LABELS)


def test_profiles_and_near_duplicates(toy):
    root, layout = toy
    _check(root, layout, "0.5")
    profiles = speaker_profiles([layout.shard(s.name) for s in load_plan(layout.plan)])
    assert {s: p["utterances"] for s, p in profiles.items()} == {"a": 4, "b": 2, "c": 3}
    assert profiles["b"]["similarity_mean"] is None and profiles["a"]["similarity_std"] >= 0
    assert np.argmax(profiles["a"]["centroid"]) == VOICE["a"]
    centroids = {"x:a": [1.0, 0.0], "y:a": [0.9, 0.1], "y:b": [0.0, 1.0]}
    assert near_duplicate_speakers(centroids) == [{"speakers": ["x:a", "y:a"], "cosine": pytest.approx(0.9939, abs=1e-4)}]


def test_the_filter_needs_the_embedding_and_the_run_the_encoder(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "m.csv").write_text("path,text\n")
    path = tmp_path / "datasets.yaml"
    path.write_text("datasets:\n  - {name: x, importer: manifest, root: corpus, file: m.csv, language: en, "
                    "stages: {filter: {min_speaker_similarity: 0.7}}}\n")
    with pytest.raises(ConfigError, match="min_speaker_similarity needs stages.features.speaker_embedding"):
        load_project(path)
    project = load_project(_config(tmp_path, ", min_speaker_similarity: 0.7"))
    monkeypatch.setattr(preflight, "encoder_missing", lambda: "torch is not installed")
    with pytest.raises(ConfigError, match="features.speaker_embedding needs torch.*torch is not installed"):
        preflight.check_environment(project.datasets[0], "here")


def test_the_loader_refuses_shards_without_embeddings(toy):
    pytest.importorskip("torch")
    from ttsprep.stages.step7_finalize.finalize import finalize_dataset
    from ttsprep.stages.step7_finalize.maps import write_symbol_maps
    from ttsprep.train.dataset import ShardDataset
    from ttsprep.train.shards import load_shard_set, load_symbol_maps

    root, layout = toy
    for spec in load_plan(layout.plan):  # back to no embeddings, as with the feature off
        table = pq.read_table(layout.shard(spec.name))
        index = table.schema.get_field_index("speaker_embedding")
        write_parquet(layout.shard(spec.name), table.set_column(index, table.schema.field(index),
                                                                pa.nulls(table.num_rows, table.schema.field(index).type)))
    config = load_project(_config(root)).datasets[0].config
    finalize_dataset(layout, config, num_inputs=len(LABELS))
    write_symbol_maps(layout.out_dir)
    shard_set = load_shard_set(str(layout.root))
    with pytest.raises(ConfigError, match="no speaker_embedding"):
        list(ShardDataset(shard_set, load_symbol_maps(shard_set), features=("speaker_embedding",)))
    assert json.loads(layout.index.read_text())["speaker_embedding"] is None
