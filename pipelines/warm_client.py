"""``ttsprep run`` and ``demo`` as a thin client of a warm runner (``warm_runner``), which does the work.

A command pays ~1.5 CPU-s to import Prefect and the pipeline, and each shard worker ~1.3 to import and warm
the signal-processing stack: most of a small run. The warm runner is a process that has both loaded and forks
a fresh copy of itself per command. This module, which imports nothing beyond the standard library, finds
the runner made for this command's set-up, or starts one, and hands it the command: its arguments,
environment and working directory, and its standard input, output and error (the descriptors themselves,
so progress bars and colours behave as in a terminal). Ctrl-C, SIGTERM and SIGHUP are passed on to the
command's process. The exit status comes back.

A runner serves one set-up, named by ``runner_key``: this Python and its installed packages, ttsprep's
source files, the environment (but a few per-shell variables), the working directory and the Prefect
profiles file. Anything else starts another runner. A runner exits after ``TTSPREP_RUNNER_IDLE_S`` seconds
without a command (default 600; ``0`` turns the runner off: every command runs in its own process, as with
``TTSPREP_SERVER=embedded``, whose server lives only as long as its command).

Where no runner can be used (it does not start, or ends before taking the command), the command runs in
this process instead, after a one-line warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from ttsprep.pipelines.prefect_api import alive, prefect_home

IDLE_VARIABLE = "TTSPREP_RUNNER_IDLE_S"
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 120.0
#: Per-shell variables that do not change what a command does.
_VOLATILE = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "TERM_SESSION_ID", "WINDOWID",
                       "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "PS1", "PROMPT_COMMAND"})
_ROOT = Path(__file__).resolve().parents[1]
_SOURCE_FOLDERS = ("aligners", "models", "pipelines", "stages", "train")
STATE_PREFIX, LOG_FILE = "ttsprep-runner-", "ttsprep-runner.log"


class RunnerUnavailable(Exception):
    """The runner could not take the command (it did not start, or ended before taking it)."""


def idle_s() -> float:
    """``TTSPREP_RUNNER_IDLE_S`` (seconds; 0: no runner)."""
    try:
        return max(0.0, float(os.environ.get(IDLE_VARIABLE, DEFAULT_IDLE_S)))
    except ValueError:
        return DEFAULT_IDLE_S


def enabled() -> bool:
    """A runner is used with the local Prefect server (the default), unless ``TTSPREP_RUNNER_IDLE_S`` is 0."""
    return idle_s() > 0 and os.environ.get("TTSPREP_SERVER", "local").strip().lower() in ("", "local")


def runner_key() -> str:
    """SHA-256 of what a runner's loaded state depends on (see the module's docstring). ~3 ms."""
    digest = hashlib.sha256()
    digest.update(f"{sys.executable}\0{sys.version}\0{os.getcwd()}\0{os.getuid()}\0".encode())
    for entry in sys.path:  # installing or removing a package changes its folder's mtime
        if Path(entry).name in ("site-packages", "dist-packages"):
            digest.update(f"{entry}\0{_mtime_ns(Path(entry))}\0".encode())
    for folder in _SOURCE_FOLDERS:
        for path in sorted((_ROOT / folder).rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    profiles = os.environ.get("PREFECT_PROFILES_PATH") or str(prefect_home() / "profiles.toml")
    digest.update(f"{profiles}\0{_mtime_ns(Path(profiles))}\0".encode())
    for name in sorted(set(os.environ) - _VOLATILE):
        digest.update(f"{name}={os.environ[name]}\0".encode())
    return digest.hexdigest()


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def runner_id(key: str) -> str:
    return key[:24]


def socket_name(runner: str) -> str:
    """The Linux abstract socket name of the runner ``runner`` (an id: no file to clean up; peers are checked
    by user id)."""
    return f"\0ttsprep-runner-{os.getuid()}-{runner}"


def same_user(sock: socket.socket) -> bool:
    """Whether the process at the other end of ``sock`` runs as this user (``SO_PEERCRED``)."""
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


def _connect(name: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(name)
    except OSError:
        sock.close()
        return None
    if not same_user(sock):
        sock.close()
        raise RunnerUnavailable("the runner's socket belongs to another user")
    return sock


_STARTED: list[subprocess.Popen] = []  # runners this process started (kept: never waited for)


def _start_runner(runner: str) -> socket.socket:
    """Start a runner (it binds its socket first, then loads the pipeline: a command sent now waits in the
    socket's backlog) and connect to it. Two commands starting one at once: one runner binds, the other exits."""
    home, name = prefect_home(), socket_name(runner)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOG_FILE, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "ttsprep.pipelines.warm_runner", runner, str(idle_s())],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # a Ctrl-C in the terminal reaches the command, not it
    _STARTED.append(process)
    print(f"ttsprep: started a warm runner (pid {process.pid}) that keeps the pipeline loaded for later commands "
          f"for {idle_s():.0f} s; `ttsprep server stop` stops it", file=sys.stderr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if (sock := _connect(name)) is not None:
            return sock
        if process.poll() is not None and (sock := _connect(name)) is None:
            raise RunnerUnavailable(f"the runner exited with status {process.returncode} (log: {home / LOG_FILE})")
        time.sleep(0.01)
    raise RunnerUnavailable(f"the runner did not answer within {START_TIMEOUT_S:.0f} s (log: {home / LOG_FILE})")


def _read_line(sock: socket.socket, buffer: bytearray) -> dict | None:
    """The next JSON line from the runner, ``None`` at the end of the connection."""
    while b"\n" not in buffer:
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def run_warm(argv: list[str]) -> int:
    """Run the ``ttsprep`` command ``argv`` in a warm runner; its exit status. ``RunnerUnavailable`` when no
    runner took it (nothing of the command ran)."""
    runner = runner_id(runner_key())
    sock = _connect(socket_name(runner)) or _start_runner(runner)
    with sock, open(os.devnull, "r+b") as devnull:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        streams = [fd if _is_open(fd) else devnull.fileno() for fd in (0, 1, 2)]  # a cron job may close stdin
        buffer = bytearray()
        try:
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], streams)
            started = _read_line(sock, buffer)
        except OSError as error:
            raise RunnerUnavailable(f"the runner did not take the command ({error})") from error
        if started is None:
            raise RunnerUnavailable("the runner ended before taking the command")
        forwarded: list[int] = []

        def forward(signum: int, _frame) -> None:
            forwarded.append(signum)
            try:
                os.kill(started["pid"], signum)
            except ProcessLookupError:
                pass

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        try:
            finished = _read_line(sock, buffer)
        except OSError:  # reset: as if it closed
            finished = None
    if finished is not None:
        return int(finished["status"])
    if forwarded:
        return 128 + forwarded[-1]
    print(f"ttsprep: error: the command's process (pid {started['pid']}) ended without an exit status "
          f"(log: {prefect_home() / LOG_FILE})", file=sys.stderr)
    return 1


def read_runners(home: Path | None = None) -> list[dict]:
    """The runners recorded in ``home`` (default ``PREFECT_HOME``) whose processes still run."""
    runners = []
    for path in sorted((home or prefect_home()).glob(f"{STATE_PREFIX}*.json")):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and alive(state):
            runners.append(state)
    return runners


def stop_runners(home: Path | None = None, timeout_s: float = 30.0) -> list[dict]:
    """SIGTERM the runners of ``home``: each exits once its running commands end (waited for up to ``timeout_s``,
    then it is left to finish them). Returns their states."""
    runners = read_runners(home)
    for state in runners:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(alive(state) for state in runners) and time.monotonic() < deadline:
        time.sleep(0.05)
    return runners
