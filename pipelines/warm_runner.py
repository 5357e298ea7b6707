"""The warm runner: a process with Prefect and the pipeline loaded that runs ``ttsprep`` commands in forks of itself.

Started by ``warm_client`` (``python -m ttsprep.pipelines.warm_runner ID IDLE_S``) in a session of its
own, it binds its socket (``warm_client.socket_path``) first (a second runner for the same set-up exits
there), then imports the CLI, the flows and what a run imports (``PRELOAD``, ~1.7 CPU-s), and starts a
``multiprocessing`` fork server that imports the shard stack and runs its compiled kernels once
(``shard_pool.preload``), started again if it ends. It records itself in ``$PREFECT_HOME/ttsprep-runner-ID.json``
(``ttsprep server status`` lists it, ``ttsprep server stop`` stops it) and logs to ``ttsprep-runner.log``
there.

Each command it accepts (from this user only) runs in a process forked from it, so every command starts
from the same state, with nothing left over from an earlier one (caches, settings, locks, environment). The
fork takes the client's standard streams, working directory and environment, tells the client its pid
(Ctrl-C and other signals go straight to it), runs the command as ``ttsprep`` would in-process, runs the
exit handlers (Prefect sends its last logs and events), and sends the exit status. Its shard workers are
forked from the fork server rather than spawned: the shard stack is imported and warm in them from the start,
and they write to the command's output and error (``shard_pool._CommandStreams``).
A Ctrl-C reaches those workers too (``shard_pool.interrupt_workers``), as it reaches a command's own workers
through the terminal's process group, and the fork ends as if Ctrl-C was pressed if the client goes away.

The runner starts no Python thread (the libraries' native pools, OpenBLAS's and jemalloc's, have fork
handlers), serves commands concurrently, and exits after ``IDLE_S`` seconds without one, or on SIGTERM: it
then stops listening (a new command starts another runner) and ends once its commands have. A new runner
sends that SIGTERM to the earlier runners of its ``PREFECT_HOME`` (another environment or an edited source
file made it) but the newest: at most ``RUNNERS_KEPT`` stay loaded (~380 MB resident each with its fork
server) once running commands end.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import json
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from ttsprep.pipelines.prefect_api import prefect_home, start_ticks
from ttsprep.pipelines.warm_client import STATE_PREFIX, read_runners, same_user, socket_path
from ttsprep.stages.core.atomic import write_json

#: ``shard_pool.preload`` at import: what the fork server imports before forking workers.
FORK_SERVER_PRELOAD = "ttsprep.pipelines.warm_shard_stack"
_REQUEST_LIMIT_BYTES = 1 << 22
#: This runner's start (its record is written again when its fork server is started again).
_STARTED = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def serve(runner_id: str, idle_s: float) -> None:
    """Serve the commands sent to runner ``runner_id`` until ``idle_s`` seconds pass without one (or SIGTERM)."""
    path = socket_path(runner_id)
    listener = _listen(path)
    if listener is None:  # another runner for this set-up listens there: commands go to it
        return
    bound_inode = os.stat(path).st_ino
    _load()
    state_path = prefect_home() / f"{STATE_PREFIX}{runner_id}.json"
    earlier = read_runners()
    _record(state_path)
    _stop_all_but_the_newest(earlier, RUNNERS_KEPT - 1)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    commands: set[int] = set()
    last_active = time.monotonic()
    try:
        while True:
            commands -= _reaped(commands)
            if stopping and listener.fileno() >= 0:  # a new command starts another runner rather than wait
                _release(listener, path, bound_inode)
            if commands:
                last_active = time.monotonic()
            elif listener.fileno() < 0 or time.monotonic() - last_active > idle_s:
                break
            _keep_fork_server(state_path)
            readable, _, _ = select.select([listener] if listener.fileno() >= 0 else [], [], [], 0.25)
            if readable:
                with contextlib.suppress(OSError):  # the client left already, or no fork now: it runs in-process
                    connection, _ = listener.accept()
                    with connection:
                        if same_user(connection):
                            commands.add(_fork_command(connection, listener))
                            last_active = time.monotonic()
    finally:
        _release(listener, path, bound_inode)
        with contextlib.suppress(OSError):
            if json.loads(state_path.read_text())["pid"] == os.getpid():
                state_path.unlink()


def _release(listener: socket.socket, path: str, bound_inode: int) -> None:
    """Stop listening and remove the socket file, unless a newer runner has put its own there."""
    listener.close()
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == bound_inode:
            os.unlink(path)


def _listen(path: str) -> socket.socket | None:
    """A socket listening at ``path``, replacing a stale one (its runner was killed); ``None`` when a runner
    answers there. Under an exclusive lock (one for the folder), so two runners starting at once do not both
    replace it."""
    with open(Path(path).with_name("bind.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
                return None
            except OSError:
                pass
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        return listener


#: Runners kept per ``PREFECT_HOME``: a new one stops the older ones beyond this (each holds ~380 MB).
RUNNERS_KEPT = 2


def _stop_all_but_the_newest(runners: list[dict], kept: int) -> None:
    """SIGTERM all of ``runners`` but the ``kept`` started last (each ends once its commands have)."""
    for runner in sorted(runners, key=lambda state: state["start_ticks"], reverse=True)[kept:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(runner["pid"], signal.SIGTERM)


#: What a run imports besides the CLI: the flows and, on first use, Prefect's engines and what they import lazily
#: (``fastapi.encoders`` for flow parameters, graphviz, anyio's asyncio back end), the finalize stage's
#: modules (~0.25 CPU-s of a command when not loaded here).
PRELOAD = ("ttsprep.pipelines.cli", "ttsprep.pipelines.flows", "ttsprep.pipelines.task_runners", "prefect.flow_engine",
           "prefect.task_engine", "prefect.utilities.visualization", "fastapi.encoders", "anyio._backends._asyncio",
           "numpy.random", "numpy.ma", "pyarrow.dataset", "ttsprep.stages.step7_finalize.vc_pairs")


def _load() -> None:
    """Import what every command needs, and start the fork server for shard workers."""
    for module in PRELOAD:
        importlib.import_module(module)
    multiprocessing.set_forkserver_preload([FORK_SERVER_PRELOAD])
    multiprocessing.forkserver.ensure_running()
    freeze_heap()


def freeze_heap() -> None:
    """Move every object allocated so far out of the garbage collector's sight (``gc.freeze``): a process forked
    from this one then never scans them, so it neither spends the time nor copies the pages they lie on."""
    gc.collect()
    gc.freeze()


def _record(state_path: Path) -> None:
    fork_server = _fork_server_pid()
    state = {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid()), "fork_server_pid": fork_server,
             "cwd": os.getcwd(), "python": sys.executable, "started": _STARTED}
    write_json(state_path, state)
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} runner {os.getpid()} ready (fork server {fork_server})",
          flush=True)


def _fork_server_pid() -> int | None:
    return getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)  # type: ignore[attr-defined]


def _keep_fork_server(state_path: Path) -> None:
    """Start the fork server again if it has ended: ``multiprocessing``'s fork server exits when a request is cut
    short (a command interrupted while it asked for a worker), or it may have been killed. (A command that
    asks it for a worker meanwhile spawns its workers: ``shard_pool._submit``.)"""
    pid = _fork_server_pid()
    if pid is not None and start_ticks(pid) is not None:  # None: ended (a zombie until ``ensure_running`` reaps it)
        return
    multiprocessing.forkserver.ensure_running()
    _record(state_path)


def _reaped(commands: set[int]) -> set[int]:
    ended = set()
    for pid in commands:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                ended.add(pid)
    return ended


def _fork_command(connection: socket.socket, listener: socket.socket) -> int:
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        listener.close()
        status = _run_command(connection)
    finally:
        os._exit(status)


def _run_command(connection: socket.socket) -> int:
    """In the fork: take the client's command and run it; its exit status (also sent to the client)."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, _interrupt)
    os.setsid()  # its own session: the runner's signals are not its own, and its children follow it
    message, fds, _, _ = socket.recv_fds(connection, _REQUEST_LIMIT_BYTES, 3)
    while not message.endswith(b"\n") and (more := connection.recv(_REQUEST_LIMIT_BYTES)):
        message += more  # a large environment may arrive in pieces
    request = json.loads(message)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["ttsprep", *request["argv"]]
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=stream is sys.stderr or stream.isatty())
    _console_logging_on_new_stderr()
    _use_fork_server()
    connection.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    finished = threading.Event()
    threading.Thread(target=_interrupt_when_client_leaves, args=(connection, finished), daemon=True).start()

    from ttsprep.pipelines import cli

    try:
        status = cli.run_parsed(cli.parse(request["argv"]))
    except SystemExit as exit_request:  # as the interpreter maps it
        status = exit_request.code if isinstance(exit_request.code, int) else int(exit_request.code is not None)
        if exit_request.code is not None and not isinstance(exit_request.code, int):
            print(exit_request.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        status = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - reported to the client, as the interpreter would
        traceback.print_exc()
        status = 1
    finished.set()
    cli.run_exit_handlers()
    with contextlib.suppress(OSError):
        connection.sendall(json.dumps({"status": status}).encode() + b"\n")
    return status


def _interrupt(signum: int, frame) -> None:
    """Ctrl-C: as in a command run in its own process, the shard workers are interrupted with it (there, the
    terminal sends SIGINT to its whole process group, the workers included; here they are not in the group)."""
    from ttsprep.pipelines import shard_pool

    shard_pool.interrupt_workers()
    signal.default_int_handler(signum, frame)


def _console_logging_on_new_stderr() -> None:
    """Prefect's console handler decided at the runner's start that its stream (a log file) is no terminal: no
    colours. Where the client's standard error is one, set Prefect's logging up again (0.06 CPU-s)."""
    if sys.stderr.isatty():
        from prefect.logging.configuration import setup_logging

        setup_logging(incremental=False)


def _use_fork_server() -> None:
    """Have this process's shard workers forked from the runner's fork server. ``multiprocessing`` checks that
    a fork server it knows of still runs with ``waitpid``, which only its parent (the runner) may call; this
    process shares it (the runner outlives its commands), so only the resource tracker is checked."""
    from ttsprep.pipelines import shard_pool

    pid = _fork_server_pid()
    if pid is None or start_ticks(pid) is None:  # killed: spawned workers, as without a runner
        return
    fork_server = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    fork_server.ensure_running = multiprocessing.resource_tracker.ensure_running
    shard_pool.start_workers_with("forkserver")


def _interrupt_when_client_leaves(connection: socket.socket, finished: threading.Event) -> None:
    with contextlib.suppress(OSError):
        while connection.recv(4096):
            pass
    if not finished.is_set():
        os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]))
