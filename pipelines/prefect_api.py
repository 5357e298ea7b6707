"""The Prefect API a command talks to: the server the settings name, else an embedded one started here.

The embedded server is Prefect's own ephemeral server, run the way Prefect's ``SubprocessASGIServer`` runs it
(``uvicorn --factory prefect.server.api.server:create_app`` with the ephemeral-mode variables), but launched
before this process imports Prefect and the pipeline: its ~8 s start-up then overlaps theirs (~3 s) instead of
following them (importing ``SubprocessASGIServer`` alone costs ~3 s). A no-op re-run is mostly start-up.

Its URL is exported as ``PREFECT_API_URL`` for the worker processes: without it each worker of the pool would
start an embedded server of its own (~10 s of CPU and ~200 MB each). The server stops when this process
exits, after Prefect has sent its last logs and events to it (its stop is registered with ``atexit`` before
Prefect's own exit handlers, so it runs after them), and also when the process is killed: it is asked to
terminate when the thread that started it ends (Linux ``PR_SET_PDEATHSIG``), so start it from the main thread.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

STARTUP_TIMEOUT_S = 120.0
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
            mode = {"PREFECT_UI_ENABLED": "1"} if long_lived else {"PREFECT_UI_ENABLED": "0",
                                                                    "PREFECT__SERVER_EPHEMERAL": "1"}
            env = {**os.environ, **mode, "PREFECT__SERVER_FINAL": "1"}
            self.process = subprocess.Popen(
                [sys.executable, "-c", _RUN_UVICORN_UNTIL_PARENT_ENDS, str(os.getpid()), "--factory",
                 "prefect.server.api.server:create_app", "--fd", str(sock.fileno()), "--log-level", "error",
                 "--lifespan", "on"],
                env=env, pass_fds=(sock.fileno(),))
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


class PrefectApi:
    """Construct early: unless ``PREFECT_API_URL`` (or a loaded test harness) names a server, it launches the
    embedded one (``long_lived``: with the UI and the scheduler, for ``ttsprep serve``). Enter when a flow is
    about to run: the API the Prefect settings name (environment, profile) if any, and the embedded server
    stopped unused; else the embedded one, once healthy. Returns the API URL.

    The embedded server's URL goes into ``PREFECT_API_URL`` and Prefect's process-global settings, for the
    rest of this process (the server lives until it exits) and its children: Prefect's own threads without
    a settings context (the process pool's log forwarder) read the global settings, and with no URL there
    would start yet another server.
    """

    def __init__(self, *, long_lived: bool = False) -> None:
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
        self._long_lived = long_lived
        self._server = (None if os.environ.get("PREFECT_API_URL") or _loaded_api_url()
                        else _EmbeddedServer(long_lived))
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> str:
        from prefect.context import refresh_global_settings_context
        from prefect.settings import get_current_settings, temporary_settings

        configured = get_current_settings().api.url
        if configured:
            if self._server is not None:
                self._server.stop()
            return configured
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


def _loaded_api_url() -> str | None:
    """The API URL of Prefect settings already loaded in this process (a test harness's), without importing
    Prefect when it is not loaded yet."""
    if "prefect.settings" not in sys.modules:
        return None
    from prefect.settings import get_current_settings

    return get_current_settings().api.url
