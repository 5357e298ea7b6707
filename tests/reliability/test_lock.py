"""One run per output directory: a second run is refused with a message naming the first; a killed run
leaves no stale lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import write_ljspeech
from ttsprep.pipelines.lock import LOCK_NAME, output_lock
from ttsprep.stages.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
HOLDER = "import sys; from pathlib import Path; from ttsprep.pipelines.lock import output_lock\n" \
         "with output_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    sys.stdin.read()\n"


def _wait_for_holder(out: Path, pid: int, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Until ``OUT/.ttsprep.lock`` names ``pid`` (written once the lock is held)."""
    deadline = time.monotonic() + timeout_s
    while not ((out / LOCK_NAME).is_file() and (out / LOCK_NAME).read_text().startswith(f"pid {pid} ")):
        assert process.poll() is None, f"the first run exited ({process.returncode}) before taking the lock"
        assert time.monotonic() < deadline, "the first run did not take the lock"
        time.sleep(0.05)


def test_the_lock_is_re_entrant_within_a_process_and_names_its_holder(tmp_path: Path):
    """The CLI takes the lock, then the flow takes it again (a served flow run takes it on its own)."""
    out = tmp_path / "out"
    with output_lock(out):
        with output_lock(tmp_path / "." / "out"):  # the same directory, however it is spelled
            assert (out / LOCK_NAME).read_text() == f"pid {os.getpid()} on {socket.gethostname()}"
        holder = subprocess.run([sys.executable, "-c", HOLDER, str(out)], cwd=REPO_ROOT, input="",
                                capture_output=True, text=True, timeout=60)
        assert holder.returncode != 0 and f"is locked: in use by another ttsprep run (pid {os.getpid()} on " \
            in holder.stderr  # still held after the inner exit
    holder = subprocess.run([sys.executable, "-c", HOLDER, str(out)], cwd=REPO_ROOT, input="",
                            capture_output=True, text=True, timeout=60)
    assert holder.returncode == 0 and holder.stdout == "locked\n"  # released on the outer exit


def test_the_lock_of_a_killed_process_is_released(tmp_path: Path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ConfigError, match=rf"\(pid {holder.pid} on "):
            with output_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with output_lock(out):
        assert (out / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} ")


@pytest.mark.slow
def test_a_second_run_on_the_same_output_exits_2_and_says_it_is_locked(tmp_path: Path):
    write_ljspeech(tmp_path / "LJ", {f"LK-{i}": f"Sentence number {i}." for i in range(2)})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: lk\n    importer: ljspeech\n    root: LJ\n", encoding="utf-8")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ttsprep.pipelines.cli", "run", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        _wait_for_holder(out, first.pid, first)
        second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert second.returncode == 2
    assert f"is locked: in use by another ttsprep run (pid {first.pid} on {socket.gethostname()})" in second.stderr
    assert "Traceback" not in second.stderr
    assert "Starting temporary server" not in second.stderr  # refused before any Prefect work
