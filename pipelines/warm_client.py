"""``ttsprep run`` and ``demo`` as a thin client of a warm runner (``warm_runner``), which does the work.

A command pays ~1.5 CPU-s to import Prefect and the pipeline, and each shard worker ~1.3 to import and warm
the signal-processing stack: most of a small run. The warm runner is a process that has both loaded and forks
a fresh copy of itself per command. This module, which imports nothing beyond the standard library, finds
the runner made for this command's set-up, or starts one, and hands it the command: its arguments,
environment and working directory, and its standard input, output and error (the descriptors themselves,
so progress bars and colours behave as in a terminal). Ctrl-C, SIGTERM and SIGHUP are passed on to the
command's process. The exit status comes back.

A runner serves one set-up, named by ``runner_key``: this Python and its installed packages, ttsprep's
source files, the environment (but a few per-shell variables), the working directory, the Prefect
profiles file, and what a process passes to its children (umask, CPU affinity, priority, resource limits,
interpreter flags). Anything else starts another runner. A runner exits after ``TTSPREP_RUNNER_IDLE_S`` seconds
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
import resource
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ttsprep.pipelines.prefect_api import alive, prefect_home, server_mode
from ttsprep.stages.core.errors import ConfigError

IDLE_VARIABLE = "TTSPREP_RUNNER_IDLE_S"
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 120.0
#: Per-shell and per-terminal variables that do not change what a command does.
_VOLATILE = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "TERM_SESSION_ID", "WINDOWID", "PS1",
                       "PROMPT_COMMAND", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "TMUX_PANE",
                       "STY", "WINDOW", "GPG_TTY", "DISPLAY", "XDG_SESSION_ID", "XDG_VTNR", "ITERM_SESSION_ID",
                       "KONSOLE_DBUS_WINDOW", "KONSOLE_DBUS_SESSION", "VTE_VERSION", "TERM_PROGRAM_VERSION"})
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
    """A runner is used with the local Prefect server (the default), unless ``TTSPREP_RUNNER_IDLE_S`` is 0. (An
    invalid ``TTSPREP_SERVER``: no runner; the command in this process reports it.)"""
    try:
        return idle_s() > 0 and server_mode() == "local"
    except ConfigError:
        return False


def runner_key() -> str:
    """SHA-256 of what a runner's loaded state depends on (see the module's docstring). ~3 ms."""
    digest = hashlib.sha256()
    digest.update(f"{sys.executable}\0{sys.version}\0{os.getcwd()}\0{os.getuid()}\0".encode())
    for entry in sys.path:  # installing or removing a package changes its folder's mtime
        if Path(entry).name in ("site-packages", "dist-packages"):
            digest.update(f"{entry}\0{_mtime_ns(Path(entry))}\0".encode())
    for folder in _SOURCE_FOLDERS:
        for path in sorted((_ROOT / folder).rglob("*.py")):
            status = path.stat()
            digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    umask = os.umask(0o22)
    os.umask(umask)
    limits = [resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")]
    digest.update(f"{umask}\0{sorted(os.sched_getaffinity(0))}\0{os.getpriority(os.PRIO_PROCESS, 0)}\0{limits}\0"
                  f"{sys.flags}\0{sys.warnoptions}\0{sys._xoptions}\0".encode())  # what a fork inherits
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


def socket_path(runner: str) -> str:
    """Where the runner ``runner`` (an id) listens: a Unix socket in a folder only this user can enter
    (``$XDG_RUNTIME_DIR/ttsprep``, else ``/tmp/ttsprep-UID``). ``RunnerUnavailable`` if that folder is not
    this user's alone (someone else made it first)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "ttsprep" if runtime else Path(tempfile.gettempdir()) / f"ttsprep-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700, parents=bool(runtime))
    status = folder.lstat()
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise RunnerUnavailable(f"{folder} is not a folder that only this user can use")
    return str(folder / f"runner-{runner}.sock")


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
    home, name = prefect_home(), socket_path(runner)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOG_FILE, "ab") as log:
        # -P: not the working directory first on sys.path (a corpus folder's .py files), as for the console script
        process = subprocess.Popen([sys.executable, "-P", "-m", "ttsprep.pipelines.warm_runner", runner, str(idle_s())],
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


def run_warm(argv: list[str]) -> int:
    """Run the ``ttsprep`` command ``argv`` in a warm runner; its exit status. ``RunnerUnavailable`` when no
    runner took it (nothing of the command ran). A runner that closes the connection unanswered (it was
    ending: idle, or stopped) is replaced by a new one, once."""
    _fill_closed_standard_streams()
    runner = runner_id(runner_key())
    sock = _connect(socket_path(runner))
    if sock is not None:
        try:
            return _run_on(sock, argv)
        except RunnerUnavailable:
            pass
    return _run_on(_start_runner(runner), argv)


def _fill_closed_standard_streams() -> None:
    """/dev/null where standard input, output or error is closed (a cron job's stdin): before any socket is
    made, which would take that number and be handed to the command as its stream."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def _run_on(sock: socket.socket, argv: list[str]) -> int:
    with sock:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        buffer = bytearray()
        try:
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
            started = _read_line(sock, buffer)
        except OSError as error:
            raise RunnerUnavailable(f"the runner did not take the command ({error})") from error
        if started is None:
            raise RunnerUnavailable("the runner ended before taking the command")
        forwarded: list[int] = []

        def forward(signum: int, _frame) -> None:
            forwarded.append(signum)
            with contextlib.suppress(ProcessLookupError):
                os.kill(started["pid"], signum)

        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, forward)
        try:
            finished = _read_line(sock, buffer)
        except OSError:  # reset: as if it closed
            finished = None
    if forwarded and (finished is None or finished["status"] == 128 + forwarded[-1]):
        _end_by(forwarded[-1])  # as the command would have: shells tell a signal from an exit status
    if finished is not None:
        return int(finished["status"])
    print(f"ttsprep: error: the command's process (pid {started['pid']}) ended without an exit status "
          f"(log: {prefect_home() / LOG_FILE})", file=sys.stderr)
    return 1


#: What the client passes on to the command's process.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _end_by(signum: int) -> None:
    """End this process by ``signum`` with its default action (SIGINT, SIGTERM and SIGHUP terminate)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


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
