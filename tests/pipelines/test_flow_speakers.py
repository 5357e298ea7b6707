"""The flow with ``features.speaker_embedding``: the speaker-check task between the shards and finalize, the
output-level list of similar voices, and a re-run that rewrites nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import write_ljspeech

pytest.importorskip("torch")


@pytest.mark.slow
def test_the_flow_checks_the_speakers_before_finalize(prefect_harness, tmp_path: Path):
    from ttsprep.pipelines.flows import ttsprep_run
    from ttsprep.stages.step4_features.speaker_embedding import encoder_missing

    if encoder_missing():
        pytest.skip(f"speaker encoder unavailable: {encoder_missing()}")
    write_ljspeech(tmp_path / "LJ", {f"T-{i:02d}": f"Sentence number {i}." for i in range(4)})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n    stages: {shards: "
                      "{max_utterances: 2}, filter: {min_snr_db: null, min_speaker_similarity: 0.5}, align: "
                      "{method: none}, features: {speaker_embedding: true}}\n")
    out = tmp_path / "out"
    assert ttsprep_run(str(config), str(out))["tiny"]["kept"] == 4
    shards = sorted((out / "tiny" / "shards").glob("*.parquet"))
    similarity = [v for path in shards for v in pq.read_table(path)["speaker_similarity"].to_pylist()]
    assert len(shards) == 2 and len(similarity) == 4 and all(v > 0.5 for v in similarity)
    assert json.loads((out / "tiny" / "index.json").read_text())["speaker_embedding"]["speakers"] == 1
    assert json.loads((out / "similar_speakers.json").read_text())["pairs"] == []
    stamps = {path: path.stat().st_mtime_ns for path in [*shards, out / "tiny" / "index.json"]}
    ttsprep_run(str(config), str(out))
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
