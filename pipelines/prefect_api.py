"""The Prefect API a command talks to: the server the settings name, else a local one (reused), else embedded.

* ``PREFECT_API_URL`` (environment, profile, or a loaded test harness): that server, always.
* Otherwise, by default (``TTSPREP_SERVER=local``): **the local server**, a detached ``uvicorn`` serving
  Prefect's API *and its UI* on 127.0.0.1 (port 4200 where free, ``TTSPREP_SERVER_PORT``), with every
  service ``prefect server start`` runs. The first command that needs it starts it, in a session of its own
  and without a parent-death signal, so it outlives the command; it is recorded in
  ``$PREFECT_HOME/ttsprep-server.json`` (pid and start time, URL, Prefect version, Python, log file) under an
  exclusive ``flock`` (``ttsprep-server.lock``), so two concurrent first runs start one server on one
  ``prefect.db``. Later commands reuse it after checking that the recorded process is still that server
  (pid and start time), that it was started by this Prefect version, and, once Prefect is
  imported, that it answers ``/api/health`` and ``/api/admin/version`` with this version; otherwise it is
  stopped (if it is ours) and a new one started. It stops only on ``ttsprep server stop`` (``stop_local``)
  or a reboot: starting a server costs ~3.5-5 CPU-s and 3-5 s (8-12 s on a fresh ``PREFECT_HOME``),
  every run after the first saves that, and runs can be watched live in the UI. A server this command
  started but did not use (a profile named another API after all) is stopped again.
* ``TTSPREP_SERVER=embedded`` (the test suite, CI): **the embedded server**, started by this command and
  stopped when it ends, as below. ``ttsprep serve`` always runs its own embedded server with the UI and
  every service (``long_lived``): it serves for as long as the command runs.

The embedded server is Prefect's own ephemeral server, run the way Prefect's ``SubprocessASGIServer`` runs it
(``uvicorn --factory prefect.server.api.server:create_app`` with the ephemeral-mode variables), but launched
before this process imports Prefect and the pipeline: its ~8 s start-up then overlaps theirs (~3 s) instead of
following them (importing ``SubprocessASGIServer`` alone costs ~3 s). The local server is launched at the
same point when it has to be started.

Either URL is exported as ``PREFECT_API_URL`` for the worker processes: without it each worker of the pool would
start an embedded server of its own (~10 s of CPU and ~200 MB each). The embedded server stops when this process
exits, after Prefect has sent its last logs and events to it (its stop is registered with ``atexit`` before
Prefect's own exit handlers, so it runs after them), and also when the process is killed: it is asked to
terminate when the thread that started it ends (Linux ``PR_SET_PDEATHSIG``), so start it from the main thread.
It runs in a session of its own: a Ctrl-C (or a signal to the process group) reaches the command only, which can
still use the server while it stops (``ttsprep serve`` pauses its deployments then).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0
#: ``local`` (default): reuse or start the detached local server; ``embedded``: one server per command.
SERVER_MODE_VARIABLE = "TTSPREP_SERVER"
#: The local server's port where free (else any free port); ``0``: any free port.
SERVER_PORT_VARIABLE = "TTSPREP_SERVER_PORT"
DEFAULT_LOCAL_PORT = 4200
STATE_FILE, LOCK_FILE, LOG_FILE = "ttsprep-server.json", "ttsprep-server.lock", "ttsprep-server.log"
_SERVER_APP = "prefect.server.api.server:create_app"
#: ``python -c`` program: ``python -m uvicorn ARGS...`` that Linux terminates when the thread that started it
#: ends (``PR_SET_PDEATHSIG`` = 1), so a command killed with SIGTERM or SIGKILL leaves no server behind.
#: Its first argument is the starting process's pid: if that process has ended already, it does not start.
_RUN_UVICORN_UNTIL_PARENT_ENDS = """
import ctypes, os, runpy, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv.pop(1)):
    sys.exit(0)
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


class _EmbeddedServer:
    """One ``uvicorn`` process serving Prefect's API on a loopback socket bound here (so no other process can
    take its port while the server starts; requests made before it is ready wait in the socket's backlog).

    ``long_lived``: what ``prefect server start`` runs, the UI and every service included (the scheduler that
    turns deployment schedules into flow runs does not run in ephemeral mode); else Prefect's ephemeral
    mode, as for one command: no UI, only the services that record runs, events and logs.
    """

    def __init__(self, long_lived: bool) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.api_url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
            # the UI's API URL defaults to PREFECT_SERVER_API_HOST:PORT (127.0.0.1:4200), not this socket's
            mode = ({"PREFECT_UI_ENABLED": "1", "PREFECT_UI_API_URL": self.api_url} if long_lived
                    else {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"})
            env = {**os.environ, **mode, "PREFECT__SERVER_FINAL": "1"}
            self.process = subprocess.Popen(
                [sys.executable, "-c", _RUN_UVICORN_UNTIL_PARENT_ENDS, str(os.getpid()), "--factory",
                 "prefect.server.api.server:create_app", "--fd", str(sock.fileno()), "--log-level", "error",
                 "--lifespan", "on"],
                env=env, pass_fds=(sock.fileno(),),
                start_new_session=True)  # not stopped with the command's process group (Ctrl-C): it ends after it
        atexit.register(self.stop)

    def wait_until_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        """Block until ``/api/health`` answers 200; returns the API URL. ``RuntimeError`` on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (status := self.process.poll()) is not None:
                raise RuntimeError(f"the embedded Prefect server exited with status {status} while starting")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.api_url}/health",
                                            timeout=max(1.0, deadline - time.monotonic())) as response:
                    if response.status == 200:
                        return self.api_url
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the embedded Prefect server did not answer on {self.api_url} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_mode() -> str:
    """``local`` or ``embedded`` (``TTSPREP_SERVER``; anything else is refused)."""
    mode = os.environ.get(SERVER_MODE_VARIABLE, "local").strip().lower() or "local"
    if mode not in ("local", "embedded"):
        from ttsprep.stages.core.errors import ConfigError

        raise ConfigError(f"{SERVER_MODE_VARIABLE}={mode!r}: expected 'local' or 'embedded'")
    return mode


def prefect_home() -> Path:
    """``PREFECT_HOME`` as Prefect resolves it by default (the environment, else ``~/.prefect``), without
    importing Prefect."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def _prefect_version() -> str:
    from importlib import metadata

    return metadata.version("prefect")


def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, ``/proc/<pid>/stat`` field 22): with the pid, it
    names one process (a recycled pid has another); ``None`` when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])


def alive(state: dict) -> bool:
    return start_ticks(state["pid"]) == state["start_ticks"]


@contextlib.contextmanager
def _state_lock(home: Path):
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_local_state(home: Path | None = None) -> dict | None:
    """The recorded local server if its process still runs, else ``None`` (no lock taken: a snapshot)."""
    try:
        state = json.loads(((home or prefect_home()) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and alive(state) else None


def _reusable(state: dict | None, home: Path) -> bool:
    return (state is not None and state.get("prefect_version") == _prefect_version()
            and state.get("prefect_home") == str(home))


def _bind_loopback() -> socket.socket:
    """A listening socket on 127.0.0.1: ``TTSPREP_SERVER_PORT`` (default 4200) where free, else any port."""
    port = int(os.environ.get(SERVER_PORT_VARIABLE, DEFAULT_LOCAL_PORT))
    for candidate in dict.fromkeys([port, 0]):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise OSError("no free port on 127.0.0.1")


def _terminate(state: dict, timeout_s: float = 15.0) -> None:
    """SIGTERM the recorded server (only if its pid still names it), SIGKILL after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(state):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(state["pid"], sig)
        deadline = time.monotonic() + timeout_s
        while alive(state) and time.monotonic() < deadline:
            time.sleep(0.05)


_STARTED: list[subprocess.Popen] = []  # local servers this process started (kept: never waited for)


def _start_local(home: Path) -> dict:
    """Start the detached local server (call with the state lock held) and record it; returns its state."""
    sock = _bind_loopback()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="1", PREFECT__SERVER_FINAL="1",
               PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),  # the UI's API URL
               PREFECT_UI_API_URL=url, PREFECT_SERVER_LOGGING_LEVEL=env.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT__SERVER_EPHEMERAL", None)
    with sock, open(home / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", _SERVER_APP, "--fd", str(sock.fileno()),
             "--log-level", "warning", "--lifespan", "on"],
            env=env, cwd=home, pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)  # no parent-death signal: it outlives the command
    _STARTED.append(process)
    state = {"pid": process.pid, "start_ticks": start_ticks(process.pid), "url": url,
             "ui_url": url.removesuffix("/api"), "prefect_version": _prefect_version(), "python": sys.executable,
             "prefect_home": str(home), "log": str(home / LOG_FILE), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    temporary = home / f".{STATE_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(temporary, home / STATE_FILE)
    print(f"ttsprep: started a local Prefect server with the UI at {state['ui_url']} (PREFECT_HOME {home}); later "
          f"commands reuse it, `ttsprep server stop` stops it", file=sys.stderr)
    return state


def ensure_local_server(home: Path | None = None, *, replace: bool = False) -> tuple[dict, bool]:
    """The local server of ``home`` (default ``PREFECT_HOME``), started unless a reusable one runs (``replace``:
    stop the recorded one first, e.g. it did not answer). Returns ``(state, started_here)``; it may still be
    starting: ``wait_for_server`` waits for it."""
    home = (home or prefect_home()).resolve()
    with _state_lock(home):
        state = read_local_state(home)
        if _reusable(state, home) and not replace:
            return state, False
        if state is not None:
            _terminate(state)  # another Prefect version, or not answering
        return _start_local(home), True


def stop_local(home: Path | None = None) -> dict | None:
    """Stop the local server of ``home`` (default ``PREFECT_HOME``); returns the state it had, ``None`` if none ran."""
    home = (home or prefect_home()).resolve()
    with _state_lock(home):
        state = read_local_state(home)
        if state is not None:
            _terminate(state)
        (home / STATE_FILE).unlink(missing_ok=True)
    return state


def server_answers(api_url: str, timeout_s: float = 5.0) -> str | None:
    """The Prefect version the server at ``api_url`` reports once ``/api/health`` answers 200, ``None`` if it
    does not answer within ``timeout_s``."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            if response.status != 200:
                return None
        with urllib.request.urlopen(f"{api_url}/admin/version", timeout=timeout_s) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def wait_for_server(state: dict, timeout_s: float = STARTUP_TIMEOUT_S) -> bool:
    """Wait until the local server answers with this Prefect version; False if it exits, answers another
    version, or does not answer within ``timeout_s``. Requests sent while it starts wait in its socket's backlog."""
    deadline = time.monotonic() + timeout_s
    while alive(state) and (remaining := deadline - time.monotonic()) > 0:
        if (version := server_answers(state["url"], timeout_s=min(max(remaining, 0.5), 10.0))) is not None:
            return version == state["prefect_version"]
        time.sleep(0.1)
    return False


class PrefectApi:
    """Construct early: unless ``PREFECT_API_URL`` (or a loaded test harness) names a server, it finds or starts
    the local server, or launches the embedded one (``TTSPREP_SERVER=embedded``; ``long_lived``: with the UI
    and the scheduler, for ``ttsprep serve``). Enter when a flow is about to run: the API the Prefect settings
    name (environment, profile) if any, and a server started here stopped unused; else the local or embedded
    server, once it answers. Returns the API URL.

    The server's URL goes into ``PREFECT_API_URL`` and Prefect's process-global settings, for the rest of this
    process and its children: Prefect's own threads without a settings context (the process pool's log
    forwarder) read the global settings, and with no URL there would start yet another server.
    """

    def __init__(self, *, long_lived: bool = False) -> None:
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
        self._long_lived = long_lived
        self._server: _EmbeddedServer | None = None
        self._local: dict | None = None
        self._local_started = False
        if not (os.environ.get("PREFECT_API_URL") or _loaded_api_url()):
            if long_lived or server_mode() == "embedded":
                self._server = _EmbeddedServer(long_lived)
            else:
                self._local, self._local_started = ensure_local_server()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> str:
        from prefect.context import refresh_global_settings_context
        from prefect.settings import get_current_settings, temporary_settings

        configured = get_current_settings().api.url
        if configured:
            if self._server is not None:
                self._server.stop()
            if self._local is not None and self._local_started:
                stop_local()
            return configured
        if self._local is not None:
            if not wait_for_server(self._local):  # it may still be starting (another command started it)
                self._local, _ = ensure_local_server(replace=True)  # exited, hung, or another Prefect answers
                if not wait_for_server(self._local):
                    raise RuntimeError(f"the local Prefect server did not answer on {self._local['url']}; see "
                                       f"{self._local['log']}")
            os.environ["PREFECT_API_URL"] = self._local["url"]
            refresh_global_settings_context()
            # No flow-run heartbeats here either, as with the embedded server: they only matter to a zombie-flow
            # automation (this server has none), and each flow with them waits up to 1 s for its heartbeat
            # thread at its end (0.5 s of a short run's wall time on average).
            self._stack.enter_context(temporary_settings(updates={"flows.heartbeat_frequency": None}))
            return self._local["url"]
        os.environ["PREFECT_API_URL"] = self._server.wait_until_healthy()
        refresh_global_settings_context()
        if not self._long_lived:
            # No flow-run heartbeats: they let a server that outlives the flow's process mark it crashed, and
            # this one dies with the process; each flow and subflow waits up to 1 s for its heartbeat thread.
            # No "View at <UI link>" lines either: this server has no UI, and is gone after the command.
            self._stack.enter_context(temporary_settings(updates={"flows.heartbeat_frequency": None,
                                                                  "ui_url": ""}))
        return os.environ["PREFECT_API_URL"]

    def __exit__(self, *exc_info) -> None:
        self._stack.close()


@contextlib.contextmanager
def subflow_heartbeats_off():
    """No flow-run heartbeats for the flows started inside (enter it in the parent flow's body: the parent's
    own heartbeat thread is running already and keeps going). One heartbeat per run is enough to tell that
    the run's process is alive; each flow with heartbeats waits up to 1 s for its heartbeat thread at its end."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


def _loaded_api_url() -> str | None:
    """The API URL of Prefect settings already loaded in this process (a test harness's), without importing
    Prefect when it is not loaded yet."""
    if "prefect.settings" not in sys.modules:
        return None
    from prefect.settings import get_current_settings

    return get_current_settings().api.url
