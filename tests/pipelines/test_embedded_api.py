"""``ttsprep run`` with no Prefect server configured.

* ``TTSPREP_SERVER=embedded`` (what the rest of the test suite runs): one embedded API for the command and its
  workers, gone when the command ends, even when it is killed; a second run with nothing changed does no work.
* The default, the local server: the first run starts it detached (with the UI), the next run reuses it
  (both through a warm runner, `test_warm_runner`),
  ``ttsprep server status`` shows it and ``ttsprep server stop`` stops it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import embedded_servers, holds_within, service_env
from ttsprep.pipelines.prefect_api import STATE_FILE, read_local_state, stop_local
from ttsprep.pipelines.warm_client import read_runners, stop_runners

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tiny_project(root: Path, name: str, num_clips: int, shards: str = "") -> Path:
    """``root/datasets.yaml``: dataset ``name``, ``num_clips`` tone-burst clips in LJSpeech layout, no aligner."""
    write_ljspeech(root / "LJ", {f"T-{i}": f"Sentence number {i}." for i in range(num_clips)})
    config = root / "datasets.yaml"
    config.write_text(f"datasets:\n  - name: {name}\n    importer: ljspeech\n    root: LJ\n"
                      f"    stages: {{{shards}filter: {{min_snr_db: null}}, align: {{method: none}}}}\n", encoding="utf-8")
    return config


@pytest.mark.slow
def test_run_uses_one_embedded_server_and_a_rerun_does_no_work(tmp_path: Path):
    config = _tiny_project(tmp_path, "emb", 3, "shards: {max_utterances: 2}, ")
    env = {**service_env(tmp_path / "prefect"), "TTSPREP_PROGRESS": "0", "TTSPREP_SERVER": "embedded"}
    command = [sys.executable, "-m", "ttsprep.pipelines.cli", "run", "--config", str(config), "--out", str(tmp_path / "out"),
               "--workers", "2"]

    runs = [subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]

    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert '"kept": 3' in run.stdout
        # Prefect's fallback server never starts: the pool workers and Prefect's own threads use ours
        assert "Starting temporary server" not in run.stderr
        assert "Error logging to API" not in run.stderr
        assert "View at" not in run.stderr  # no links to a UI that this server does not serve
    assert "2 shards to process" in runs[0].stderr
    assert "0 shards to process, 2 unchanged" in runs[1].stderr
    assert "unchanged: index, pairs and report kept" in runs[1].stderr
    assert "Beginning subflow run" in runs[1].stderr and "for flow 'finalize'" not in runs[1].stderr
    assert embedded_servers(tmp_path / "prefect") == []  # stopped when the command ended

    killed = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert holds_within(lambda: embedded_servers(tmp_path / "prefect"), timeout_s=60)
    finally:
        killed.kill()  # SIGKILL: no exit handler runs
        killed.wait(timeout=30)
    assert holds_within(lambda: not embedded_servers(tmp_path / "prefect"), timeout_s=30)  # it followed its parent


@pytest.mark.slow
def test_the_local_server_outlives_a_run_is_reused_and_stops_on_request(tmp_path: Path):
    config = _tiny_project(tmp_path, "loc", 2)
    home = tmp_path / "prefect"
    env = {**service_env(home), "TTSPREP_PROGRESS": "0", "TTSPREP_SERVER": "local", "TTSPREP_SERVER_PORT": "0"}
    cli = [sys.executable, "-m", "ttsprep.pipelines.cli"]
    try:
        runs = [subprocess.run([*cli, "run", "--config", str(config), "--out", str(tmp_path / f"out{n}")], cwd=REPO_ROOT,
                               env=env, capture_output=True, text=True, timeout=300) for n in range(2)]
        for run in runs:
            assert run.returncode == 0, run.stderr[-3000:]
            assert '"kept": 2' in run.stdout
            assert "Starting temporary server" not in run.stderr and "Error logging to API" not in run.stderr
        assert "started a local Prefect server" in runs[0].stderr
        assert "started a local Prefect server" not in runs[1].stderr  # reused
        state = read_local_state(home)
        assert state is not None and embedded_servers(home) == [state["pid"]]  # one server, still running
        assert f"View at {state['ui_url']}/runs/flow-run/" in runs[1].stderr  # it serves the UI
        assert httpx.get(state["ui_url"], timeout=30).status_code == 200
        flows = {flow["id"]: flow["name"] for flow in httpx.post(f"{state['url']}/flows/filter", json={}).json()}
        flow_runs = httpx.post(f"{state['url']}/flow_runs/filter", json={}, timeout=30).json()
        names = sorted(flows[run["flow_id"]] for run in flow_runs)  # both runs are in the one server's records
        assert names == sorted(["ttsprep-run", "ingest", "shards", "finalize"] * 2), names

        status = subprocess.run([*cli, "server", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and state["ui_url"] in status.stdout and "answering" in status.stdout
        stop = subprocess.run([*cli, "server", "stop"], env=env, capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0 and f"pid {state['pid']}" in stop.stdout
        assert embedded_servers(home) == [] and not (home / STATE_FILE).exists()
        status = subprocess.run([*cli, "server", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 3 and "no local Prefect server" in status.stdout
        assert read_runners(home) == []  # stopped with the server
    finally:
        stop_runners(home)  # never leave a runner or a server behind, whatever failed above
        stop_local(home)

