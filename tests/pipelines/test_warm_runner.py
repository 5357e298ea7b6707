"""The warm runner (``warm_client``, ``warm_runner``): ``ttsprep run`` with the local server hands the command
to a process that has the pipeline loaded, which runs it in a fork of itself with the client's streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import holds_within, service_env
from ttsprep.pipelines import cli, warm_client, warm_runner
from ttsprep.pipelines.prefect_api import alive, stop_local

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [str(Path(sys.executable).parent / "ttsprep")]  # the console script: the working directory is not on sys.path


def _project(root: Path, num_clips: int) -> Path:
    write_ljspeech(root / "LJ", {f"W-{i}": f"Sentence number {i}." for i in range(num_clips)})
    config = root / "datasets.yaml"
    config.write_text("datasets:\n  - name: warm\n    importer: ljspeech\n    root: LJ\n    stages: {shards: "
                      "{max_utterances: 2}, filter: {min_snr_db: null}, align: {method: none}}\n", encoding="utf-8")
    return config


def _shards(out: Path) -> dict[str, object]:
    return {path.name: pq.read_table(path) for path in sorted((out / "warm" / "shards").glob("*.parquet"))}


def _the_runner(home: Path) -> dict:
    runners = warm_client.read_runners(home)
    assert len(runners) == 1, runners
    return runners[0]


@pytest.mark.slow
def test_runs_go_to_one_warm_runner_with_the_same_output_status_and_signals(tmp_path: Path):
    config = _project(tmp_path, 6)
    (tmp_path / "soundfile.py").write_text("raise ImportError('a module of the working directory was imported')\n")
    home = tmp_path / "prefect"
    env = {**service_env(home), "TTSPREP_PROGRESS": "0", "TTSPREP_SERVER": "local", "TTSPREP_SERVER_PORT": "0",
           warm_client.IDLE_VARIABLE: "120"}

    def run(out: str, *extra: str, **changes: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "run", "--config", str(config), "--out", str(tmp_path / out), "--workers", "2",
                               *extra], cwd=tmp_path, env={**env, **changes}, capture_output=True, text=True,
                              timeout=300)

    try:
        in_process = run("ref", **{warm_client.IDLE_VARIABLE: "0"})
        assert in_process.returncode == 0, in_process.stderr[-3000:]
        assert warm_client.read_runners(home) == []  # turned off: no runner

        first, second = run("out1"), run("out2")
        for done in (first, second):
            assert done.returncode == 0, done.stderr[-3000:]
            assert '"kept": 6' in done.stdout  # the fork's stdout is the client's
            assert "3 shards to process" in done.stderr  # and its stderr: Prefect's log lines
        assert "started a warm runner" in first.stderr and "started a warm runner" not in second.stderr
        runner = _the_runner(home)
        reference = _shards(tmp_path / "ref")
        assert len(reference) == 3
        for out in ("out1", "out2"):  # workers forked from the fork server write what spawned ones wrote
            shards = _shards(tmp_path / out)
            assert shards.keys() == reference.keys()
            assert all(shards[name].equals(reference[name]) for name in reference)

        refused = run("out3", "--dataset", "nonexistent")
        assert refused.returncode == 2 and refused.stderr.startswith("ttsprep: error:"), refused.stderr
        assert "nonexistent" in refused.stderr

        status = subprocess.run([*CLI, "server", "status"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
        assert f"warm runner: pid {runner['pid']}" in status.stdout

        interrupted = _interrupted_run(config, tmp_path / "out5", env)
        assert interrupted.returncode == -signal.SIGINT, interrupted.stderr[-3000:]  # ended by it, as in-process
        assert "KeyboardInterrupt" in interrupted.stderr
        resumed = run("out5")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert _shards(tmp_path / "out5").keys() == reference.keys()
        assert alive(runner)  # an interrupted command ends its fork only

        assert _the_runner(home)["pid"] == runner["pid"]
        runner = _the_runner(home)  # its fork server may be a new one: the interrupt may have ended the first
        os.kill(runner["fork_server_pid"], signal.SIGKILL)
        after_a_killed_fork_server = run("out7")  # the runner starts another
        assert after_a_killed_fork_server.returncode == 0, after_a_killed_fork_server.stderr[-3000:]
        assert _shards(tmp_path / "out7").keys() == reference.keys()
        assert all(shards.equals(reference[name]) for name, shards in _shards(tmp_path / "out7").items())
        assert _the_runner(home)["pid"] == runner["pid"]
        assert _the_runner(home)["fork_server_pid"] != runner["fork_server_pid"]

        for setting in ("1", "2"):  # other environments: other runners; a new one ends all but the newest earlier
            other = run(f"out-{setting}", TTSPREP_SOME_SETTING=setting)
            assert other.returncode == 0 and "started a warm runner" in other.stderr, other.stderr[-3000:]
        assert holds_within(lambda: not alive(runner), timeout_s=30)
        runners = warm_client.read_runners(home)
        assert len(runners) == warm_runner.RUNNERS_KEPT

        stop = subprocess.run([*CLI, "server", "stop"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        for stopped in runners:
            assert f"stopped the warm runner (pid {stopped['pid']}" in stop.stdout
            assert not alive(stopped)
        assert warm_client.read_runners(home) == []
        assert not list(home.glob(f"{warm_client.STATE_PREFIX}*.json"))  # each removed its record
    finally:
        warm_client.stop_runners(home)
        stop_local(home)


def _interrupted_run(config: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    """A run sent SIGINT (as Ctrl-C would) once its shards are being processed."""
    client = subprocess.Popen([*CLI, "run", "--config", str(config), "--out", str(out), "--workers", "1"],
                              cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in client.stderr:
        lines.append(line)
        if "shards to process" in line:
            client.send_signal(signal.SIGINT)
            break
    stdout, rest = client.communicate(timeout=300)
    return subprocess.CompletedProcess(client.args, client.returncode, stdout, "".join(lines) + rest)


@pytest.mark.slow
def test_a_runner_exits_when_idle_and_removes_its_record(tmp_path: Path):
    home = tmp_path / "prefect"
    env = {**service_env(home), warm_client.IDLE_VARIABLE: "0.5"}
    runner = subprocess.Popen([sys.executable, "-m", "ttsprep.pipelines.warm_runner", "idletest", "0.5"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 0, output
    assert f"runner {runner.pid} ready" in output
    assert not list(home.glob(f"{warm_client.STATE_PREFIX}*.json"))


def test_the_runner_key_follows_the_environment_the_directory_and_the_sources(tmp_path: Path, monkeypatch):
    key = warm_client.runner_key()
    monkeypatch.setenv("COLUMNS", "123")  # per-shell variables do not count
    assert warm_client.runner_key() == key
    monkeypatch.setenv("TTSPREP_SOME_SETTING", "1")
    assert warm_client.runner_key() != key
    monkeypatch.delenv("TTSPREP_SOME_SETTING")
    monkeypatch.chdir(tmp_path)
    assert warm_client.runner_key() != key
    monkeypatch.chdir(REPO_ROOT)
    assert warm_client.runner_key() == key
    source = REPO_ROOT / "stages" / "core" / "errors.py"
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert warm_client.runner_key() != key  # an edited module: a new runner loads it
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_without_a_runner_the_command_runs_in_this_process(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(warm_client, "enabled", lambda: True)
    monkeypatch.setattr(warm_client, "run_warm", lambda argv: (_ for _ in ()).throw(
        warm_client.RunnerUnavailable("the runner exited with status 1")))
    monkeypatch.setattr(cli, "run_parsed", lambda args: ran.append(args.command) or 0)

    assert cli.main(["run", "--out", "x"]) == 0
    assert ran == ["run"]
    assert capsys.readouterr().err == ("ttsprep: warning: the runner exited with status 1; running the command in "
                                       "this process\n")


def test_a_runner_serves_the_local_server_mode_unless_turned_off(monkeypatch):
    monkeypatch.setenv("TTSPREP_SERVER", "local")
    monkeypatch.delenv(warm_client.IDLE_VARIABLE, raising=False)
    assert warm_client.enabled() and warm_client.idle_s() == warm_client.DEFAULT_IDLE_S
    monkeypatch.setenv(warm_client.IDLE_VARIABLE, "0")
    assert not warm_client.enabled()
    monkeypatch.setenv(warm_client.IDLE_VARIABLE, "30")
    monkeypatch.setenv("TTSPREP_SERVER", "embedded")  # its server lives as long as its command: none to keep
    assert not warm_client.enabled()


def test_closed_standard_streams_become_dev_null_before_any_socket_takes_their_number():
    probe = ("import os, socket; os.close(0); from ttsprep.pipelines import warm_client; "
             "warm_client._fill_closed_standard_streams(); sock = socket.socket(); print(os.readlink('/proc/self/fd/0'))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == os.devnull, done.stderr


def test_the_client_side_imports_no_prefect():
    probe = ("import sys, ttsprep.pipelines.cli, ttsprep.pipelines.warm_client; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'numpy', 'pyarrow')))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.replace("'", '"')) == []

