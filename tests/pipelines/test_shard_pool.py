"""The local shard pool: shards in Prefect-free worker processes, and a worker that dies natively (a segfault, an
OOM kill) costs its shard alone: ``shard_failed`` ledger rows, while the run and the other shards go on."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import write_ljspeech
from tests.pipelines.services import holds_within
from ttsprep.pipelines import shard_pool

DOOMED_SHARD = "part-00001"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _omp_threads() -> str | None:
    return os.environ.get("OMP_NUM_THREADS")


def _imported(names: list[str]) -> list[str]:
    return [name for name in names if name in sys.modules]


def _run_shard_or_die(dataset, out_dir: str, shard: str, key: str) -> dict:
    """``run_shard``, except that the process running ``DOOMED_SHARD`` is killed, as the OOM killer would."""
    if shard == DOOMED_SHARD:
        _die()
    return shard_pool.run_shard(dataset, out_dir, shard, key)


def test_a_dead_worker_fails_its_call_alone_and_the_pool_goes_on():
    pool = shard_pool.ShardPool(2)
    try:
        first = pool.run(os.getpid)
        with pytest.raises(BrokenProcessPool):
            pool.run(_die)
        assert pool.run(os.getpid) not in (first, os.getpid())  # a new worker process
        # workers hold no Prefect and no thread pools beyond one thread
        assert pool.run(_imported, ["prefect", "prefect_dask", "distributed"]) == []
        assert pool.run(_omp_threads) == "1"
    finally:
        pool.close()


def test_the_first_call_goes_to_the_worker_started_ahead_of_it():
    """``start`` makes a worker and has it import the shard stack; a call made while that import runs waits for
    it instead of spawning a second process that would import everything again (one shard: one process)."""
    pool = shard_pool.ShardPool(2)
    try:
        pool.start()
        pool.run(os.getpid)
        assert len(multiprocessing.active_children()) == 1
        assert pool.run(_imported, ["ttsprep.stages.step6_shards.process"]) == ["ttsprep.stages.step6_shards.process"]
    finally:
        pool.close()


def test_an_interrupt_stops_the_call_in_flight():
    """``interrupt`` (Ctrl-C in a warm runner's command, whose workers are not in the terminal's process group)
    raises ``KeyboardInterrupt`` in what the workers run, as a Ctrl-C to the process group does."""
    pool = shard_pool.ShardPool(1)
    outcome: list[BaseException | None] = []

    def sleep_in_the_worker() -> None:
        try:
            pool.run(time.sleep, 120)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - what came back is the subject
            outcome.append(error)

    try:
        pool.run(os.getpid)  # its worker is up
        caller = threading.Thread(target=sleep_in_the_worker)
        caller.start()
        time.sleep(1.0)
        started = time.monotonic()
        pool.interrupt()
        caller.join(timeout=30)
        assert not caller.is_alive() and time.monotonic() - started < 30
        assert isinstance(outcome[0], KeyboardInterrupt)
        assert pool.run(os.getpid) != os.getpid()  # the worker goes on serving
    finally:
        pool.close()


def test_a_forked_worker_writes_to_the_standard_error_of_the_process_that_started_it_and_ends_with_it(
        tmp_path: Path):
    """Workers forked from a fork server (a warm runner's command) write where the standard error of the process
    that started them goes, not to the fork server's (the runner's log), and end when that process ends."""
    script = f"""
import multiprocessing.forkserver, os
from ttsprep.pipelines import shard_pool
multiprocessing.forkserver.ensure_running()  # started with this process's standard error
with open({str(tmp_path / "stderr")!r}, "wb") as redirected:
    os.dup2(redirected.fileno(), 2)  # the command's standard error from now on
shard_pool.start_workers_with("forkserver")
pool = shard_pool.ShardPool(1)
pool.run(os.write, 2, b"from the worker")
print(pool.run(os.getpid), flush=True)
os.kill(os.getpid(), 9)  # no clean-up: the worker is not this process's child
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    worker = int(done.stdout.split()[0])
    assert (tmp_path / "stderr").read_text() == "from the worker"
    assert holds_within(lambda: not Path(f"/proc/{worker}").exists(), timeout_s=30)


def test_a_pool_whose_fork_server_ended_spawns_its_workers():
    multiprocessing.forkserver.ensure_running()
    shard_pool.start_workers_with("forkserver")
    fork_server = multiprocessing.forkserver._forkserver
    address = fork_server._forkserver_address
    pool = shard_pool.ShardPool(1)
    try:
        fork_server._forkserver_address = address + "-gone"  # as if it had ended: nothing listens there
        fork_server.ensure_running = lambda: None  # as in a warm runner's command (``warm_runner._use_fork_server``)
        assert pool.run(os.getpid) != os.getpid()
        assert shard_pool._START_METHOD == ["spawn"]
    finally:
        fork_server._forkserver_address = address
        del fork_server.ensure_running
        pool.close()
        shard_pool.start_workers_with("spawn")


def test_the_shard_worker_imports_neither_prefect_nor_the_unused_stacks():
    """What a shard worker imports for English text and the default settings: no Prefect, no scipy.signal
    (0.65 CPU-s: pyloudnorm, windows, the mel filterbank and the pitch median are computed here), no G2P
    stack of other languages, no librosa, no pyarrow dataset layer."""
    script = ("import sys, ttsprep.pipelines.shard_pool, ttsprep.stages.step6_shards.process; print(sorted(m for m in "
              "('prefect', 'scipy.signal', 'scipy.ndimage', 'pyloudnorm', 'pypinyin', 'cn2an', 'pyopenjtalk', "
              "'phonemizer', 'librosa.filters', 'pyarrow.dataset', 'torch', 'noisereduce') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert found.strip() == "[]"


@pytest.mark.slow
def test_a_shard_whose_worker_is_killed_becomes_shard_failed_rows(prefect_harness, tmp_path: Path, monkeypatch):
    from ttsprep.pipelines.flows import ttsprep_run

    write_ljspeech(tmp_path / "LJ", {f"K-{i}": f"Sentence number {i}." for i in range(4)})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: kill\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {shards: {max_utterances: 2}, filter: {min_snr_db: null}, align: {method: none}}\n",
                      encoding="utf-8")
    monkeypatch.setattr(shard_pool, "run_shard", _run_shard_or_die)  # the task looks it up when it runs

    counts = ttsprep_run(str(config), str(tmp_path / "out"), workers=2)["kill"]

    assert counts == {"inputs": 4, "kept": 2, "rejected": 2, "rejected_by_reason": {"shard_failed": 2}}
    rejects = pq.read_table(tmp_path / "out" / "kill" / "rejects.parquet").to_pylist()
    assert {row["reason"] for row in rejects} == {"shard_failed"}
    assert all("BrokenProcessPool" in row["detail"] for row in rejects)
