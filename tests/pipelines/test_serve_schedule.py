"""``ttsprep serve`` against a real Prefect server, and with none configured (it then starts its own, with the
scheduler and the UI): the interval schedule fires and the run completes.

(With ``sqlalchemy`` 2.1 the server's scheduler silently never fires; pyproject pins ``<2.1``.)
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import (BIN_DIR, api_post, background_process, embedded_servers, prefect_server,
                                     service_env)

pytestmark = pytest.mark.slow


def _corpus(tmp_path: Path) -> Path:
    write_ljspeech(tmp_path / "LJ", {"S-00": "A scheduled sentence.", "S-01": "Another one."})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {filter: {min_snr_db: null}, align: {method: none}}\n")
    return config


def _wait_for_completed_runs(api_url: str, timeout_s: float = 240) -> tuple[list[dict], list[dict]]:
    """Poll until a deployment's flow run completes; fails at once on a failed or crashed one."""
    completed, runs = [], []
    deadline = time.monotonic() + timeout_s
    while not completed and time.monotonic() < deadline:
        time.sleep(2)
        runs = api_post(api_url, "flow_runs/filter", {"flow_runs": {"deployment_id": {"is_null_": False}}})
        completed = [run for run in runs if run["state_type"] == "COMPLETED"]
        assert not [run for run in runs if run["state_type"] in ("FAILED", "CRASHED")], runs
    return completed, runs


def test_scheduled_deployment_runs_the_pipeline(tmp_path: Path):
    config = _corpus(tmp_path)
    out = tmp_path / "out"
    with prefect_server(tmp_path / "server-home") as api_url:
        env = {**service_env(tmp_path / "client-home", api_url), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
        serve_args = [str(BIN_DIR / "ttsprep"), "serve", "--config", str(config), "--out", str(out),
                      "--interval", "10", "--workers", "1"]
        with background_process(serve_args, env, tmp_path / "serve.log"):
            completed, runs = _wait_for_completed_runs(api_url)
            deployments = api_post(api_url, "deployments/filter")
    assert completed, f"runs: {runs}\n" + (tmp_path / "serve.log").read_text()[-3000:]
    (deployment,) = [d for d in deployments if d["id"] == completed[0]["deployment_id"]]
    assert deployment["name"] == "scheduled" and deployment["schedules"][0]["schedule"]["interval"] == 10
    assert completed[0]["auto_scheduled"]
    index = json.loads((out / "tiny" / "index.json").read_text())
    assert index["counts"]["kept"] == 2


def test_serve_without_a_server_runs_its_own_with_the_scheduler_and_the_ui(tmp_path: Path):
    """Prefect's ephemeral mode has no scheduler: a schedule served against it would never fire."""
    config, log = _corpus(tmp_path), tmp_path / "serve.log"
    env = {**service_env(tmp_path / "home"), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    serve_args = [str(BIN_DIR / "ttsprep"), "serve", "--config", str(config), "--out", str(tmp_path / "out"),
                  "--interval", "10", "--workers", "1"]
    with background_process(serve_args, env, log):
        deadline = time.monotonic() + 120
        while not (found := re.search(r"(http://127\.0\.0\.1:\d+)/deployments", log.read_text())):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        address = found.group(1)
        completed, runs = _wait_for_completed_runs(f"{address}/api")
        ui = httpx.get(address, timeout=10.0)
    assert completed, f"runs: {runs}\n" + log.read_text()[-3000:]
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    assert json.loads((tmp_path / "out" / "tiny" / "index.json").read_text())["counts"]["kept"] == 2
    assert embedded_servers(tmp_path / "home") == []
