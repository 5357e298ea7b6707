"""``ttsprep run`` with no Prefect server configured: one embedded API for the command and its workers, gone
when the command ends, even when it is killed; a second run with nothing changed does no work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import embedded_servers

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_uses_one_embedded_server_and_a_rerun_does_no_work(tmp_path: Path):
    write_ljspeech(tmp_path / "LJ", {f"E-{i}": f"Sentence number {i}." for i in range(3)})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: emb\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {shards: {max_utterances: 2}, filter: {min_snr_db: null}, align: {method: none}}\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), TTSPREP_PROGRESS="0")
    command = [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config), "--out", str(tmp_path / "out"),
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
        assert _eventually(lambda: embedded_servers(tmp_path / "prefect"), timeout_s=60)
    finally:
        killed.kill()  # SIGKILL: no exit handler runs
        killed.wait(timeout=30)
    assert _eventually(lambda: not embedded_servers(tmp_path / "prefect"), timeout_s=30)  # it followed its parent


def _eventually(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
