"""A real ``prefect server`` on PostgreSQL, as ``docker/compose.yaml`` runs it, with a PostgreSQL started here:
a ``ttsprep run`` is recorded, a second one on the same output is refused by the lock, and ``ttsprep serve``'s
schedule fires. Skipped where PostgreSQL is not installed (Debian: the ``postgresql`` package).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import (BIN_DIR, REPO_ROOT, api_post, background_process, postgres_bin_dir,
                                      postgres_database, prefect_server, service_env, wait_for_deployment_run)
from ttsprep.pipelines.lock import LOCK_NAME


def _cannot_run_postgres() -> str | None:
    if postgres_bin_dir() is None:
        return "no PostgreSQL binaries (initdb, postgres): install the Debian package postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


_CANNOT = _cannot_run_postgres()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_CANNOT is not None, reason=_CANNOT or "")]


def test_runs_locks_and_schedules_against_a_prefect_server_on_postgresql(tmp_path: Path):
    write_ljspeech(tmp_path / "LJ", {"P-00": "A sentence for the database.", "P-01": "And another one."})
    config, out = tmp_path / "datasets.yaml", tmp_path / "out"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {filter: {min_snr_db: null}, align: {method: none}}\n")
    run_args = [str(BIN_DIR / "ttsprep"), "run", "--config", str(config), "--out", str(out), "--workers", "1"]

    with postgres_database(tmp_path / "postgres") as database_url, \
            prefect_server(tmp_path / "server-home", database_url=database_url) as api_url:
        env = service_env(tmp_path / "client-home", api_url)
        with background_process(run_args, env, tmp_path / "run.log") as first:
            deadline = time.monotonic() + 60
            while not ((out / LOCK_NAME).is_file() and (out / LOCK_NAME).read_text().startswith(f"pid {first.pid} ")):
                assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
                time.sleep(0.1)
            second = subprocess.run(run_args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
            first_status = first.wait(timeout=300)
        flows = {flow["id"]: flow["name"] for flow in api_post(api_url, "flows/filter")}
        recorded = {flows[run["flow_id"]]: run["state_type"] for run in api_post(api_url, "flow_runs/filter")}

        serve_log = tmp_path / "serve.log"
        serve_args = [str(BIN_DIR / "ttsprep"), "serve", "--config", str(config), "--out", str(out),
                      "--interval", "10", "--workers", "1"]
        with background_process(serve_args, {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}, serve_log) as serve:
            scheduled = wait_for_deployment_run(api_url, "Completed", serve, serve_log)
            serve.send_signal(signal.SIGTERM)
            serve_status = serve.wait(timeout=60)
        (deployment,) = api_post(api_url, "deployments/filter")

    assert first_status == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert second.returncode == 2 and second.stdout == "", second
    assert second.stderr.startswith("ttsprep: error: ") and second.stderr.count("\n") == 1, second.stderr
    assert f"is locked: in use by another ttsprep run (pid {first.pid} on " in second.stderr
    assert recorded == dict.fromkeys(["ttsprep-run", "ingest", "shards", "finalize"], "COMPLETED")
    assert scheduled[0]["auto_scheduled"] and scheduled[0]["deployment_id"] == deployment["id"]
    assert serve_status == 0 and deployment["paused"], serve_log.read_text()[-3000:]
    server_log = (tmp_path / "server-home" / "server.log").read_text()
    assert "Traceback" not in server_log and "ERROR" not in server_log, server_log[-3000:]
