"""``ttsprep serve`` against a real Prefect server: the interval schedule fires and the run completes.

(With ``sqlalchemy`` 2.1 the server's scheduler silently never fires; pyproject pins ``<2.1``.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import BIN_DIR, api_post, background_process, prefect_server, service_env

pytestmark = pytest.mark.slow


def test_scheduled_deployment_runs_the_pipeline(tmp_path: Path):
    write_ljspeech(tmp_path / "LJ", {"S-00": "A scheduled sentence.", "S-01": "Another one."})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {filter: {min_snr_db: null}}\n")
    out = tmp_path / "out"
    with prefect_server(tmp_path / "server-home") as api_url:
        env = {**service_env(tmp_path / "client-home", api_url), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
        serve_args = [str(BIN_DIR / "ttsprep"), "serve", "--config", str(config), "--out", str(out),
                      "--interval", "10", "--workers", "1"]
        with background_process(serve_args, env, tmp_path / "serve.log"):
            completed, runs = [], []
            deadline = time.monotonic() + 240
            while not completed and time.monotonic() < deadline:
                time.sleep(2)
                runs = api_post(api_url, "flow_runs/filter", {"flow_runs": {"deployment_id": {"is_null_": False}}})
                completed = [run for run in runs if run["state_type"] == "COMPLETED"]
                assert not [run for run in runs if run["state_type"] in ("FAILED", "CRASHED")], runs
            deployments = api_post(api_url, "deployments/filter")
    assert completed, f"runs: {runs}\n" + (tmp_path / "serve.log").read_text()[-3000:]
    (deployment,) = [d for d in deployments if d["id"] == completed[0]["deployment_id"]]
    assert deployment["name"] == "scheduled" and deployment["schedules"][0]["schedule"]["interval"] == 10
    assert completed[0]["auto_scheduled"]
    index = json.loads((out / "tiny" / "index.json").read_text())
    assert index["counts"]["kept"] == 2
