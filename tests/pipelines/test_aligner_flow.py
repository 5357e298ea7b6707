"""The Tacotron 2 aligner under Prefect: train on finished shards, extract durations per shard, finalize;
artifacts, ledger accounting, and a second run (flow and CLI) that resumes and skips."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import torch

from tests.stages.test_tacotron_durations import N_MELS, TEXTS, TINY_MODEL, R, build_output, read_rows
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.schema import check_row_invariants


def latest_artifacts(keys: list[str]) -> dict[str, object]:
    """``{key: data}`` of the latest version of each keyed artifact (tables parsed from their JSON)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys)))
    return {a.key: json.loads(a.data) if isinstance(a.data, str) else a.data for a in found}


def test_train_extract_finalize_then_resume_and_skip(prefect_harness, tmp_path, capsys):
    from ttsprep.pipelines.aligner_flow import aligner_dir, train_aligner
    from ttsprep.pipelines.cli import main

    torch.set_num_threads(1)
    # the focus rate is at least 1 / N for N phonemes, so the short utterances (3-5 phonemes) pass 0.15 however
    # little the aligner has learnt, while S-03 and S-04 (35 and 70 phonemes) stay near 1 / N
    config, out = build_output(tmp_path, TEXTS, "attention_min_focus_rate: 0.15, attention_min_diagonality: -1.0")
    counts = train_aligner(str(config), str(out), steps=3, batch_size=4, device="cpu", model_sizes=TINY_MODEL,
                           log_every=2)["tiny"]
    assert counts == {"inputs": 5, "kept": 3, "rejected": 2,
                      "rejected_by_reason": {"attention_low_quality": 2}}
    layout = DatasetLayout(out, "tiny")
    rows = read_rows(layout)
    assert sorted(row["utt_id"] for row in rows) == ["tiny:S-00", "tiny:S-01", "tiny:S-02"]
    for row in rows:
        check_row_invariants(row, n_mels=N_MELS, reduction_factor=R)
        assert sum(row["durations"]) == row["num_frames"] // R
    ledger = pq.read_table(layout.rejects).to_pylist()
    assert [(r["utt_id"], r["stage"], r["reason"]) for r in ledger] == [
        ("tiny:S-03", "align", "attention_low_quality"), ("tiny:S-04", "align", "attention_low_quality")]
    assert all(float(re.match(r"focus_rate=([0-9.]+) ", r["detail"])[1]) < 0.15 for r in ledger)
    index = json.loads(layout.index.read_text())
    assert sum(s["num_rows"] for s in index["shards"]) == 3

    artifacts = latest_artifacts(["aligner-losses", "aligner-training", "aligner-durations", "aligner-shards"])
    assert [row["step"] for row in artifacts["aligner-losses"]] == [2, 3]
    assert all(row["total"] > 0 and row["guided_attention"] > 0 for row in artifacts["aligner-losses"])
    assert artifacts["aligner-training"] == artifacts["aligner-durations"] == 100.0
    assert [(s["name"], s["num_rows"], s["skipped"]) for s in artifacts["aligner-shards"]] == [
        ("part-00000", 2, False), ("part-00001", 1, False), ("part-00002", 0, False)]

    # again: training is already at its 3 steps, so the checkpoint and every shard stay as they are
    kept_files = [*layout.shards_dir.iterdir(), *(layout.root / "work").iterdir(), *aligner_dir(out).iterdir()]
    files = {p: p.stat().st_mtime_ns for p in kept_files}
    again = train_aligner(str(config), str(out), steps=3, batch_size=4, device="cpu", model_sizes=TINY_MODEL)
    assert again["tiny"] == counts
    assert main(["extract-durations", "--config", str(config), "--out", str(out), "--device", "cpu"]) == 0
    assert f"tiny: {json.dumps(counts)}" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert all(s["skipped"] for s in latest_artifacts(["aligner-shards"])["aligner-shards"])

    # a dataset processed with another aligner is refused before anything runs (exit status 2)
    config.write_text(config.read_text().replace("method: tacotron2", "method: none"))
    assert main(["train-aligner", "--config", str(config), "--out", str(out), "--steps", "4"]) == 2
    assert "no dataset has align.method 'tacotron2'" in capsys.readouterr().err
