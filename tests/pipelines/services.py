"""Real services on 127.0.0.1 for end-to-end tests and benchmarks: a Prefect server (on SQLite or on a
PostgreSQL started here) and a Dask cluster.

Each runs as child processes in its own process group, configured only through the ``env`` dicts handed
to them (never ``os.environ``), and is stopped when its context manager exits.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent  # the venv's console scripts: prefect, dask, ttsprep
COUNTS_LINE = re.compile(r"^(?P<dataset>[\w-]+): (?P<counts>\{.*\})$", re.MULTILINE)  # what ``ttsprep run`` prints


def holds_within(condition: Callable[[], object], timeout_s: float) -> bool:
    """Whether ``condition()`` becomes true within ``timeout_s`` (polled every 0.05 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


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
def background_process(args: list[str], env: dict[str, str], log: Path, **popen) -> Iterator[subprocess.Popen]:
    """``args`` running in its own process group with stdout/stderr in ``log``; terminated (then killed) on exit.

    ``popen``: more ``subprocess.Popen`` arguments (``cwd``, default the repository; ``user``).
    """
    with log.open("ab") as sink:
        process = subprocess.Popen(args, **{"cwd": REPO_ROOT, **popen}, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
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
def prefect_server(prefect_home: Path, *, database_url: str | None = None, timeout_s: float = 120.0) -> Iterator[str]:
    """``prefect server start`` on a free loopback port with its own SQLite database in ``prefect_home``, or
    the database at ``database_url`` (``postgresql+asyncpg://...``, see ``postgres_database``).

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
    env = service_env(prefect_home)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    with background_process(command, env, log) as server:
        _wait_until(healthy, [(server, log)], "prefect server", timeout_s)
        yield api_url


def postgres_bin_dir() -> Path | None:
    """The directory of PostgreSQL's ``initdb`` and ``postgres``: the newest of Debian's
    ``/usr/lib/postgresql/*/bin`` (package ``postgresql``), else the one on ``PATH``; ``None`` if neither."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    on_path = shutil.which("initdb")
    return debian[-1].parent if debian else Path(on_path).parent if on_path else None


@contextmanager
def postgres_database(scratch: Path, *, timeout_s: float = 60.0) -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free loopback port, with database and superuser ``prefect``
    (trust authentication), its socket in its own directory; yields the SQLAlchemy URL
    ``postgresql+asyncpg://prefect@127.0.0.1:PORT/prefect``. Durability is off (``fsync``): it is a test.

    PostgreSQL refuses to run as root: as root it runs as the ``postgres`` system user, in a directory of its
    own under the system temporary directory (pytest's are private to root), removed on exit; otherwise as
    the current user. The log is ``scratch/postgres.log``.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, postgres)")
    user = "postgres" if os.geteuid() == 0 else None
    scratch.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="ttsprep-postgres-"))
    try:
        if user:
            os.chown(home, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        port, log = free_port(), scratch / "postgres.log"
        env, as_user = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}, {"cwd": home, "user": user}
        with log.open("ab") as sink:
            subprocess.run([str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", "prefect", "--auth=trust",
                            "-E", "UTF8", "--no-locale", "--no-sync"], env=env, stdout=sink,
                           stderr=subprocess.STDOUT, check=True, **as_user)
        command = [str(bin_dir / "postgres"), "-D", str(home / "data"), "-h", "127.0.0.1", "-p", str(port),
                   "-k", str(home), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with background_process(command, env, log, **as_user) as server:
            client = [str(bin_dir / "psql"), "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "prefect",
                      "-d", "postgres", "-c", "CREATE DATABASE prefect"]
            _wait_until(lambda: subprocess.run(client, env=env, capture_output=True, **as_user).returncode == 0,
                        [(server, log)], "postgres", timeout_s)
            yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def dask_cluster(num_workers: int, env: dict[str, str], scratch: Path, *, timeout_s: float = 120.0) -> Iterator[str]:
    """``dask scheduler`` and ``num_workers`` separate ``dask worker`` processes (1 process x 1 thread each).

    Workers import ``ttsprep.pipelines.tasks`` at start (``--preload``), so the first shard does not pay for it.
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
                                             str(scratch / "dask-workers"), "--preload", "ttsprep.pipelines.tasks"]
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


def flow_runs_of_deployments(api_url: str, state_types: list[str] | None = None) -> list[dict]:
    """The flow runs of any deployment, only those in ``state_types`` (``["SCHEDULED", "PENDING"]``) if given."""
    runs: dict = {"deployment_id": {"is_null_": False}}
    if state_types:
        runs["state"] = {"type": {"any_": state_types}}
    return api_post(api_url, "flow_runs/filter", {"flow_runs": runs})


def wait_for_deployment_run(api_url: str, state_name: str, serve: subprocess.Popen, log: Path, *,
                            timeout_s: float = 240) -> list[dict]:
    """Poll until a deployment's flow run is in the state named ``state_name`` ("Completed"); returns those.
    Fails at once on a failed or crashed run, or when ``serve`` (the process serving it) exits, with its ``log``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1)
        runs = flow_runs_of_deployments(api_url)
        assert not [run for run in runs if run["state_type"] in ("FAILED", "CRASHED")], runs
        assert serve.poll() is None, f"{serve.args[:2]} exited with {serve.returncode}:\n{_log_tail(log)}"
        if found := [run for run in runs if run["state_name"] == state_name]:
            return found
    raise AssertionError(f"no {state_name} run after {timeout_s:.0f} s; runs: {runs}\n{_log_tail(log)}")


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
