"""``ttsprep run`` against a real ``prefect server`` on loopback, read back through the server's REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import api_post, eventually, prefect_server, run_ttsprep, service_env

pytestmark = pytest.mark.slow


def test_run_is_recorded_by_a_real_prefect_server(tmp_path: Path):
    texts = {f"T-{i:02d}": f"Sentence number {i} is here." for i in range(6)}
    write_ljspeech(tmp_path / "LJ", texts, missing=("T-05",))
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {shards: {max_utterances: 2}, filter: {min_snr_db: null}, align: {method: none}}\n")
    out = tmp_path / "out"

    with prefect_server(tmp_path / "server-home") as api_url:
        printed = run_ttsprep(["run", "--config", str(config), "--out", str(out), "--workers", "1"],
                              service_env(tmp_path / "client-home", api_url))["tiny"]
        flow_names = {flow["id"]: flow["name"] for flow in api_post(api_url, "flows/filter")}
        flow_runs = {flow_names[run["flow_id"]]: run for run in api_post(api_url, "flow_runs/filter")}
        num_shards = len(json.loads((out / "tiny" / "index.json").read_text())["shards"])
        shard_runs = eventually(
            lambda: api_post(api_url, "task_runs/filter", {"task_runs": {"name": {"like_": "tiny/part-"}}}),
            lambda rows: len(rows) == num_shards and all(row["state_type"] == "COMPLETED" for row in rows))
        root_id = flow_runs["ttsprep-run"]["id"]
        logs = eventually(lambda: api_post(api_url, "logs/filter", {"logs": {"flow_run_id": {"any_": [root_id]}}}),
                           lambda rows: any("shards to process" in row["message"] for row in rows))
        shard_logs = [row["message"] for row in api_post(api_url, "logs/filter", {"logs": {"flow_run_id": {
            "any_": [flow_runs["shards"]["id"]]}}})]
        finalize_logs = [row["message"] for row in api_post(api_url, "logs/filter", {"logs": {"flow_run_id": {
            "any_": [flow_runs["finalize"]["id"]]}}})]
        parent_tasks = {run["id"]: run for run in api_post(api_url, "task_runs/filter", {"task_runs": {"id": {"any_": [
            run["parent_task_run_id"] for run in flow_runs.values() if run["parent_task_run_id"]]}}})}
        artifacts = {artifact["key"]: artifact for artifact in api_post(api_url, "artifacts/filter")}

    assert printed["inputs"] == 6 and printed["rejected_by_reason"] == {"missing_audio": 1}
    assert sorted(flow_runs) == ["finalize", "ingest", "shards", "ttsprep-run"]
    assert {name: run["state_type"] for name, run in flow_runs.items()} == dict.fromkeys(flow_runs, "COMPLETED")
    for name in ("ingest", "shards", "finalize"):  # subflows of this run
        assert parent_tasks[flow_runs[name]["parent_task_run_id"]]["flow_run_id"] == root_id

    assert flow_runs["ttsprep-run"]["name"].startswith("datasets 20")  # the config's name and the start time
    for stage in ("ingest", "shards", "finalize"):
        assert flow_runs[stage]["name"] == f"{stage} of {flow_runs['ttsprep-run']['name']}"
    assert sorted(run["name"] for run in shard_runs) == [f"tiny/part-{i:05d}" for i in range(3)]
    assert len(shard_runs) == num_shards == 3
    shard_lines = sorted(line for line in shard_logs if line.startswith("tiny/part-"))
    assert len(shard_lines) == 3 and all(" in, " in line and "x realtime" in line for line in shard_lines)
    assert sorted(int(line.split(": ")[1].split(" in,")[0]) for line in shard_lines) == [1, 2, 2]  # T-05: no wav
    assert any(line.startswith(f"tiny: {printed['inputs']} inputs = {printed['kept']} kept + ") and " h kept" in line
               for line in finalize_logs)
    assert {run["state_type"] for run in shard_runs} == {"COMPLETED"}
    assert {run["flow_run_id"] for run in shard_runs} == {flow_runs["shards"]["id"]}
    assert any(f"{num_shards} shards to process" in row["message"] for row in logs)

    counts_table = json.loads(artifacts["ttsprep-counts"]["data"])
    assert artifacts["ttsprep-counts"]["flow_run_id"] == root_id
    assert [{key: row[key] for key in ("dataset", "inputs", "kept", "rejected", "shards")} for row in counts_table] == [
        {"dataset": "tiny", "inputs": printed["inputs"], "kept": printed["kept"], "rejected": printed["rejected"],
         "shards": num_shards}]
    assert json.loads(artifacts["tiny-rejects"]["data"]) == [
        {"reason": reason, "count": count} for reason, count in printed["rejected_by_reason"].items()]
    summary = artifacts["tiny-summary"]["data"]
    assert f"* inputs: {printed['inputs']} = kept {printed['kept']} (" in summary
    assert "| no utterance is both kept and rejected | ok |" in summary and "| split | " in summary
    assert artifacts["tiny-summary"]["description"].startswith("tiny: counts, self-checks")
    assert artifacts["shards-progress"]["type"] == "progress" and artifacts["shards-progress"]["data"] == 100
    assert artifacts["shards-progress"]["flow_run_id"] == flow_runs["shards"]["id"]
