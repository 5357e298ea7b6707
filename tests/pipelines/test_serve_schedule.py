"""``ttsprep serve`` against a real Prefect server, and with none configured (it then starts its own, with the
scheduler and the UI): the interval schedule fires and the run completes; a run that comes due while the output
is locked is skipped; SIGTERM stops it cleanly.

(With ``sqlalchemy`` 2.1 the server's scheduler silently never fires; pyproject pins ``<2.1``.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import (BIN_DIR, api_post, background_process, embedded_servers, flow_runs_of_deployments,
                                      prefect_server, service_env, wait_for_deployment_run)
from ttsprep.pipelines.lock import output_lock

pytestmark = pytest.mark.slow


def _corpus(tmp_path: Path) -> Path:
    write_ljspeech(tmp_path / "LJ", {"S-00": "A scheduled sentence.", "S-01": "Another one."})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {filter: {min_snr_db: null}, align: {method: none}}\n")
    return config


def test_serve_skips_runs_while_locked_and_stops_cleanly_on_sigterm(tmp_path: Path):
    """Issue #15: runs that come due during a run (here: while this test holds the output's lock) are skipped,
    not queued; SIGTERM pauses the deployment, cancels its runs not started and exits 0 without warnings."""
    config, out, log = _corpus(tmp_path), tmp_path / "out", tmp_path / "serve.log"
    with prefect_server(tmp_path / "server-home") as api_url:
        env = {**service_env(tmp_path / "client-home", api_url), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        serve_args = [str(BIN_DIR / "ttsprep"), "serve", "--config", str(config), "--out", str(out),
                      "--interval", "8", "--workers", "1"]
        with background_process(serve_args, env, log) as serve:
            with output_lock(out):  # "a previous run still running"
                skipped = wait_for_deployment_run(api_url, "Skipped", serve, log)
            completed = wait_for_deployment_run(api_url, "Completed", serve, log)
            late = [run for run in flow_runs_of_deployments(api_url) if run["state_name"] == "Late"]
            serve.send_signal(signal.SIGTERM)  # the serve process only, as `kill PID` does
            status = serve.wait(timeout=60)
        deployments = api_post(api_url, "deployments/filter")
        unfinished = flow_runs_of_deployments(api_url, ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING"])
        runs = flow_runs_of_deployments(api_url)
    output = log.read_text()
    assert status == 0 and "RuntimeWarning" not in output and "never awaited" not in output, output[-3000:]
    assert "skipped: previous run still running" in output and "unexpected exception" not in output, output[-3000:]
    assert skipped[0]["state_type"] == "COMPLETED", skipped
    assert skipped[0]["state"]["message"].startswith("skipped: previous run still running"), skipped
    assert late == [], late
    (deployment,) = deployments
    assert deployment["name"] == "scheduled" and deployment["schedules"][0]["schedule"]["interval"] == 8
    assert deployment["paused"], deployment
    assert unfinished == [], unfinished
    assert completed[0]["auto_scheduled"] and completed[0]["deployment_id"] == deployment["id"]
    assert {run["state_type"] for run in runs} <= {"COMPLETED", "CANCELLED"}, runs
    assert json.loads((out / "tiny" / "index.json").read_text())["counts"]["kept"] == 2
    assert "database is locked" not in (tmp_path / "server-home" / "server.log").read_text()


def test_serve_without_a_server_runs_its_own_with_the_scheduler_and_the_ui(tmp_path: Path):
    """Prefect's ephemeral mode has no scheduler: a schedule served against it would never fire. A Ctrl-C
    (SIGINT to the process group) stops it cleanly too: its own server outlives the signal until it is done."""
    config, log = _corpus(tmp_path), tmp_path / "serve.log"
    env = {**service_env(tmp_path / "home"), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    serve_args = [str(BIN_DIR / "ttsprep"), "serve", "--config", str(config), "--out", str(tmp_path / "out"),
                  "--interval", "10", "--workers", "1"]
    with background_process(serve_args, env, log) as serve:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"(http://127\.0\.0\.1:\d+)/deployments", log.read_text())):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        address = found.group(1)
        completed = wait_for_deployment_run(f"{address}/api", "Completed", serve, log)
        ui = httpx.get(address, timeout=10.0)
        os.killpg(serve.pid, signal.SIGINT)
        status = serve.wait(timeout=60)
    output = log.read_text()
    assert completed and status == 0 and "stopped: deployments paused" in output, output[-3000:]
    assert "RuntimeWarning" not in output and "database is locked" not in output, output[-3000:]
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    assert json.loads((tmp_path / "out" / "tiny" / "index.json").read_text())["counts"]["kept"] == 2
    assert embedded_servers(tmp_path / "home") == []
