"""Real services on 127.0.0.1 for end-to-end tests and benchmarks: a Prefect server and a Dask cluster.

Each runs as child processes in its own process group, configured only through the ``env`` dicts handed
to them (never ``os.environ``), and is stopped when its context manager exits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent  # the venv's console scripts: prefect, dask, ttsprep
COUNTS_LINE = re.compile(r"^(?P<dataset>[\w-]+): (?P<counts>\{.*\})$", re.MULTILINE)  # what ``ttsprep run`` prints


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    """This environment plus a private ``PREFECT_HOME``, no telemetry, the repository importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _log_tail(log: Path, num_chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-num_chars:] if log.is_file() else "(no log)"


@contextmanager
def background_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``args`` running in its own process group with stdout/stderr in ``log``; terminated (then killed) on exit."""
    with log.open("ab") as sink:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_until(ready: Callable[[], bool], processes: list[tuple[subprocess.Popen, Path]], what: str,
                timeout_s: float) -> None:
    """Poll ``ready()``; raise with the log of the first of ``(process, log)`` that exits, or on timeout."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        for process, log in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: {process.args[:2]} exited with {process.returncode}:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s:\n{_log_tail(processes[0][1])}")
        time.sleep(0.25)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        return True
    except OSError:
        return False


@contextmanager
def prefect_server(prefect_home: Path, *, timeout_s: float = 120.0) -> Iterator[str]:
    """``prefect server start`` on a free loopback port with its own SQLite database in ``prefect_home``.

    Yields the API URL (``http://127.0.0.1:PORT/api``) once ``/api/health`` answers; the log is
    ``prefect_home/server.log``.
    """
    prefect_home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = prefect_home / "server.log"

    def healthy() -> bool:
        try:
            return httpx.get(f"{api_url}/health", timeout=2.0).json() is True
        except (httpx.HTTPError, json.JSONDecodeError):
            return False

    command = [str(BIN_DIR / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background_process(command, service_env(prefect_home), log) as server:
        _wait_until(healthy, [(server, log)], "prefect server", timeout_s)
        yield api_url


@contextmanager
def dask_cluster(num_workers: int, env: dict[str, str], scratch: Path, *, timeout_s: float = 120.0) -> Iterator[str]:
    """``dask scheduler`` and ``num_workers`` separate ``dask worker`` processes (1 process x 1 thread each).

    Workers import ``pipelines.tasks`` at start (``--preload``), so the first shard does not pay for it.
    Yields the scheduler address ``tcp://127.0.0.1:PORT`` once every worker is registered; logs go to
    ``scratch/dask-*.log``.
    """
    from distributed import Client

    scratch.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    commands = {"dask-scheduler": ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]}
    for number in range(num_workers):
        commands[f"dask-worker-{number}"] = ["worker", address, "--nworkers", "1", "--nthreads", "1",
                                             "--no-dashboard", "--name", f"ttsprep-{number}", "--local-directory",
                                             str(scratch / "dask-workers"), "--preload", "pipelines.tasks"]
    with ExitStack() as stack:
        processes = []
        for name, args in commands.items():
            log = scratch / f"{name}.log"
            processes.append((stack.enter_context(background_process([str(BIN_DIR / "dask"), *args], env, log)), log))
        _wait_until(lambda: _listening(port), processes, "dask scheduler", timeout_s)
        with Client(address) as client:
            _wait_until(lambda: len(client.scheduler_info()["workers"]) == num_workers, processes,
                        f"{num_workers} dask workers", timeout_s)
        yield address


def run_ttsprep(args: list[str], env: dict[str, str], *, timeout_s: float = 300.0) -> dict[str, dict]:
    """Run the ``ttsprep`` command with ``args`` and return the counts it prints per dataset.

    Raises ``RuntimeError`` with the output when it exits non-zero.
    """
    done = subprocess.run([str(BIN_DIR / "ttsprep"), *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"ttsprep {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return {match["dataset"]: json.loads(match["counts"]) for match in COUNTS_LINE.finditer(done.stdout)}


def embedded_servers(prefect_home: Path) -> list[int]:
    """Pids of live Prefect API servers whose ``PREFECT_HOME`` is ``prefect_home``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"prefect.server.api.server:create_app" in command and \
                f"PREFECT_HOME={prefect_home}".encode() in environment:
            pids.append(int(entry.name))
    return pids


def api_post(api_url: str, path: str, body: dict | None = None) -> list[dict]:
    """``POST {api_url}/{path}`` with a JSON filter ``body``, e.g. ``("flow_runs/filter", {"limit": 5})``."""
    response = httpx.post(f"{api_url}/{path}", json=body or {}, timeout=10.0)
    response.raise_for_status()
    return response.json()


def eventually(fetch: Callable[[], list[dict]], done: Callable[[list[dict]], bool], *,
               timeout_s: float = 30.0) -> list[dict]:
    """``fetch()`` until ``done`` holds or ``timeout_s`` passes; the last rows either way.

    The server records task runs and logs from the events clients send, so they appear shortly after a run.
    """
    deadline = time.monotonic() + timeout_s
    while not done(rows := fetch()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return rows
