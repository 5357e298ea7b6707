"""The local shard pool: worker processes that run ``process_shard`` and nothing else (no Prefect in them).

The ``process-shard`` Prefect tasks run on threads of the flow's process (``ThreadPoolTaskRunner``, one
thread per worker): states, retries, logs and timings are recorded there, as for any task. Each task hands
its shard to this pool and waits for the summary. The computation stays in a separate process, so a native
crash or an OOM kill of a worker (pyworld, pocketsphinx, espeak-ng, libsndfile) fails that shard's task
(``BrokenProcessPool``), which is retried in a new pool and then becomes ``shard_failed`` ledger rows, while
the run goes on. A worker imports only the shard stack: not Prefect (1.3-1.8 CPU-s per worker when Prefect's
own process pool ran the tasks, plus 0.3-0.45 for its collections, prefect-dask and distributed), and it
makes no API calls (Prefect's task engine in a worker made ~10 and a concurrency-slot call per task).

Workers are spawned on demand (one per shard up to ``workers``; in a command run by the warm runner, forked
from its fork server, where the stack is imported and warm already), with one BLAS/OpenMP thread each, glibc
told to keep freed memory (``keep_freed_memory``) and an exit that skips the interpreter's teardown
(``_exit_now``: ~1 CPU-s and ~1 s of wall on the run's critical path per worker; a worker holds no state
that needs finalising: every file it writes is complete and renamed before its result is returned).

On Dask (``--dask-address``) there is no pool: the task runs ``run_shard`` in the Dask worker, as before.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import reduction
from pathlib import Path
from typing import Any, Callable, Iterator

_CURRENT: list[ShardPool] = []
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def single_threaded_numerics() -> None:
    """One BLAS/OpenMP thread per worker process, so workers don't oversubscribe (read by the libraries as
    they load; ``process_shard`` also limits the thread pools already loaded, for bit-identical output)."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (``M_TRIM_THRESHOLD`` 256 MB) and serve blocks up to 32 MB from
    its heap (``M_MMAP_THRESHOLD``): otherwise every large per-utterance buffer (pyworld's, numpy temporaries)
    is mapped afresh and page-faulted in, and the kernel's zeroing of those pages is paid per utterance.
    Changes no result. False where the C library has no ``mallopt`` (not glibc)."""
    libc = ctypes.CDLL(None)  # the symbols already loaded (libc's): no ``ldconfig -p`` run as find_library does
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))


def _exit_now() -> None:
    """The worker's last exit handler (registered last, so run first): flush and leave without the
    interpreter's module teardown and garbage collection."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _initialize_worker(command: _Command | None) -> None:
    if command is not None:
        command.adopt()
    single_threaded_numerics()
    keep_freed_memory()
    atexit.register(_exit_now)


class _Command:
    """The process that starts a worker forked from the warm runner's fork server, which is not that worker's
    parent: its standard output and error, pickled into the worker's start-up data as file descriptors
    (``multiprocessing.reduction.DupFd``; a spawned worker inherits them), and its pid, which the worker
    follows: it exits when that process ends, however it ends (a spawned worker gets the terminal's signals
    with its process group instead)."""

    def __init__(self, pid: int | None = None, fds: tuple = ()) -> None:
        self._pid, self._fds = pid, fds

    def __reduce__(self):
        return _Command, (os.getpid(), (reduction.DupFd(1), reduction.DupFd(2)))

    def adopt(self) -> None:
        for target, duplicate in zip((1, 2), self._fds):
            fd = duplicate.detach()
            os.dup2(fd, target)
            os.close(fd)
        if self._pid is not None:
            threading.Thread(target=_exit_with, args=(os.pidfd_open(self._pid),), daemon=True).start()


def _exit_with(pidfd: int) -> None:
    """Block until the process behind ``pidfd`` ends, then end this one (no clean-up: its shard is unfinished)."""
    select.select([pidfd], [], [])
    os._exit(1)


def preload() -> None:
    """Import the shard stack (~0.6 CPU-s) and run its compiled kernels once on a 1 s tone (numba's CPU target
    starts on first use: ~0.25 CPU-s), so that a worker started ahead of its first shard has them ready."""
    import numpy as np

    import ttsprep.stages.step6_shards.process  # noqa: F401
    from ttsprep.stages.core.config import LoudnessConfig
    from ttsprep.stages.step2_audio.conditioning import normalize_loudness
    from ttsprep.stages.step4_features.pitch import extract_f0

    rate_hz, hop = 22050, 256
    tone = (0.3 * np.sin(2 * np.pi * 150.0 * np.arange(rate_hz) / rate_hz)).astype(np.float32)
    normalize_loudness(tone, rate_hz, LoudnessConfig())
    extract_f0(tone, rate_hz, hop, rate_hz // hop + 1)


#: How workers start: ``spawn`` (a fresh interpreter that imports the shard stack), or ``forkserver`` inside
#: a warm runner's command (``warm_runner``): forked from its fork server, which has the stack imported and
#: warmed (``preload``) already.
_START_METHOD = ["spawn"]


def start_workers_with(method: str) -> None:
    """Start this process's workers with ``method`` (``spawn`` or ``forkserver``) from now on."""
    _START_METHOD[0] = method


def _worker_executor(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started with this process's method (``start_workers_with``)."""
    method = _START_METHOD[0]
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=_initialize_worker,
                               initargs=(_Command() if method == "forkserver" else None,))


def _submit(executor: ProcessPoolExecutor, function: Callable[..., Any], *args: Any) -> Future:
    """``executor.submit``, which starts a worker where none is idle. A fork server that has ended (killed, or
    ended by a request cut short) refuses: this process's workers are spawned from then on."""
    try:
        return executor.submit(function, *args)
    except (ConnectionError, FileNotFoundError):
        if _START_METHOD[0] != "forkserver":
            raise
        start_workers_with("spawn")
        raise _ForkServerGone from None


class _ForkServerGone(Exception):
    """The fork server refused to start a worker."""


def run_shard(dataset: Any, out_dir: str, shard: str, key: str) -> dict:
    """Process one shard (``dataset``: a ``Dataset``) and return its summary as JSON-able data."""
    from ttsprep.stages.core.layout import DatasetLayout
    from ttsprep.stages.step5_durations.mfa_corpus import textgrid_dir
    from ttsprep.stages.step6_shards.process import process_shard  # the signal-processing stack

    single_threaded_numerics()
    summary = process_shard(DatasetLayout(Path(out_dir), dataset.name), shard, key, dataset.config,
                            textgrid_dir=textgrid_dir(dataset, Path(out_dir)))
    return summary.to_json()


class ShardPool:
    """A ``ProcessPoolExecutor`` of ``workers`` processes, replaced by a new one when a worker dies.

    A dead worker breaks the executor and fails every call in flight, not only the one that killed it, and
    which one did is unknown. So each call that a break fails is run again at once, alone in a process of its
    own (one such process at a time): a shard that was only in the wrong place completes there, and the
    shard that kills its process fails again and raises ``BrokenProcessPool`` (its task's retry, then the
    ``shard_failed`` ledger rows).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._alone: ProcessPoolExecutor | None = None  # the one running a call alone after a break
        self._preloading: Future | None = None
        self._lock = threading.Lock()
        self._isolated = threading.Lock()

    def _current_executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = _worker_executor(self.workers)
            return self._executor

    def start(self) -> None:
        """Start one worker now and have it import the shard stack, while the caller goes on (the flow's API
        round trips before the first shard reaches the pool: ~0.5 s of a run's wall time)."""
        self._preloading = self._current_executor().submit(preload)

    def _preloaded(self) -> None:
        """Wait for ``start``'s import to finish: a call submitted while it runs would find no idle worker
        and spawn a second process (0.6 CPU-s more for a one-shard run) instead of using the one made ready."""
        preloading, self._preloading = self._preloading, None
        if preloading is not None:
            with contextlib.suppress(Exception):  # a worker that died importing breaks the pool: ``run`` sees it
                preloading.result()

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in a worker; raises what it raised, or ``BrokenProcessPool`` if its process died."""
        self._preloaded()
        executor = self._current_executor()
        try:
            return _submit(executor, function, *args).result()
        except _ForkServerGone:  # its workers go on with the calls they have; new ones are spawned
            self._retire(executor, cancel_futures=False)
            return self.run(function, *args)
        except BrokenProcessPool:
            self._retire(executor, cancel_futures=True)
        with self._isolated, _worker_executor(1) as alone:
            self._alone = alone
            try:
                return alone.submit(function, *args).result()
            finally:
                self._alone = None

    def _retire(self, executor: ProcessPoolExecutor, cancel_futures: bool) -> None:
        """Stop giving calls to ``executor`` (the next call makes a new one)."""
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=cancel_futures)

    def interrupt(self) -> None:
        """SIGINT to the pool's live workers (the one running a call alone included): each raises
        ``KeyboardInterrupt`` in the shard it runs."""
        for executor in (self._executor, self._alone):
            for pid in list(getattr(executor, "_processes", None) or {}):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


@contextlib.contextmanager
def local_pool(workers: int, pool: ShardPool | None = None) -> Iterator[ShardPool]:
    """The pool (``pool``, else a new one) ``process-shard`` tasks of this process use until the block ends
    (then its workers exit)."""
    pool = pool or ShardPool(workers)
    _CURRENT.append(pool)
    try:
        yield pool
    finally:
        _CURRENT.remove(pool)
        pool.close()


def interrupt_workers() -> None:
    """``ShardPool.interrupt`` for every pool of this process."""
    for pool in list(_CURRENT):
        pool.interrupt()


def current() -> ShardPool | None:
    """The innermost ``local_pool`` of this process, ``None`` outside one (a Dask worker)."""
    return _CURRENT[-1] if _CURRENT else None
