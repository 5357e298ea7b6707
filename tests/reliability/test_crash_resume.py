"""SIGKILL ``ttsprep run`` at seeded random points, resume it, and get the output of an uninterrupted run.

Three runs on the same output directory are killed (their whole process group: the CLI and its worker
pool), each at a point drawn from a seeded generator within one phase of the run:

* ingest:   0-1 s after ``manifest.parquet`` appears (plan and shard inputs being written, pool starting);
* shards:   0-1.5 s after this run completes its first shard (the other worker mid-shard, writes in flight);
* finalize: 0-0.15 s after ``rejects.parquet`` appears (stats.json and index.json being written, or the
  report and symbol maps after them).

A fourth run completes. Its decoded shard columns and rejects ledger, and its index.json, stats.json,
report.html and symbol maps, must equal those of an uninterrupted run of the same stages
(``run_without_prefect``, which the determinism test shows to be reproducible). All the while a reader
thread opens every shard file that exists and every shard an ``index.json`` lists: each must be a
complete Parquet file with the row count the index gives.

The runs share one Prefect server started by the test (``PREFECT_API_URL``) rather than each starting the
embedded one (about 15 s a run, plus one per pool worker): what is under test is the output directory, which
does not depend on where Prefect keeps its run records.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.reliability.support import output_digests, run_without_prefect, write_config, write_espeak_ljspeech

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 20260
RUN_TIMEOUT_S = 300.0


class ShardReader(threading.Thread):
    """Polls ``dataset_dir`` as a training job would, recording every partial or unreadable file it meets."""

    def __init__(self, dataset_dir: Path):
        super().__init__(daemon=True)
        self.dataset_dir = dataset_dir
        self.errors: list[str] = []
        self.files_checked = 0
        self.indexes_checked = 0
        self._seen: dict[Path, tuple[int, int, int, int | None]] = {}
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.poll()
            except Exception as error:  # noqa: BLE001 - a reader that cannot read is a finding, not a crash
                self.errors.append(f"reader failed: {error!r}")
            time.sleep(0.02)

    def poll(self) -> None:
        for path in sorted(self.dataset_dir.glob("shards/*.parquet")) + [self.dataset_dir / "rejects.parquet"]:
            try:
                self._check_parquet(path, expected_rows=None)
            except FileNotFoundError:
                continue  # replaced or removed between listing and opening: nothing partial was seen
        try:
            index = json.loads((self.dataset_dir / "index.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except json.JSONDecodeError as error:
            self.errors.append(f"index.json is partial: {error}")
            return
        for shard in index["shards"]:
            try:
                self._check_parquet(self.dataset_dir / shard["path"], expected_rows=shard["num_rows"])
            except FileNotFoundError:
                self.errors.append(f"index.json lists {shard['path']}, which does not exist")
        self.indexes_checked += 1

    def _check_parquet(self, path: Path, expected_rows: int | None) -> None:
        stat = path.stat()
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns, expected_rows)
        if self._seen.get(path) == seen:
            return
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure to read is what this reader looks for
            self.errors.append(f"{path.name} ({stat.st_size} bytes) unreadable: {error!r}")
            return
        if expected_rows is not None and table.num_rows != expected_rows:
            self.errors.append(f"{path.name}: {table.num_rows} rows, index.json says {expected_rows}")
        self._seen[path] = seen
        self.files_checked += 1


class PrefectServer:
    """``prefect server start`` in a temporary home, for ``ttsprep run`` subprocesses to share."""

    def __init__(self, home: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "TTSPREP_PROGRESS": "0", "PREFECT_API_URL": self.api_url}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
             str(port), "--no-ui", "--no-services"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_until_healthy(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.api_url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Prefect server did not start (exit status {self.process.poll()})")
            time.sleep(0.2)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """Started here, waited for by the test once it has other work done (the start takes ~15 s of CPU)."""
    server = PrefectServer(tmp_path / "prefect")
    yield server
    server.stop()


def _start_run(config: Path, out: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "ttsprep.pipelines.cli", "run", "--config", str(config), "--out",
                                 str(out), "--workers", "2"], cwd=REPO_ROOT, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(condition: Callable[[], bool], run: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not condition():
        if run.poll() is not None:
            pytest.fail(f"the run exited ({run.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {RUN_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


def _appears(path: Path) -> Callable[[], bool]:
    return path.is_file


def _completes_a_shard(dataset_dir: Path) -> Callable[[], bool]:
    """True once a shard summary is written that was not there (or was older) when this was called."""
    def summaries() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in dataset_dir.glob("work/*.summary.json")}

    before = summaries()
    return lambda: any(before.get(path) != mtime_ns for path, mtime_ns in summaries().items())


#: (phase, the event the kill waits for, range of the seeded delay after it in seconds)
KILL_POINTS: tuple[tuple[str, Callable[[Path], Callable[[], bool]], tuple[float, float]], ...] = (
    ("ingest", lambda dataset_dir: _appears(dataset_dir / "manifest.parquet"), (0.0, 1.0)),
    ("shards", _completes_a_shard, (0.0, 1.5)),
    ("finalize", lambda dataset_dir: _appears(dataset_dir / "rejects.parquet"), (0.0, 0.15)),
)


def _kill_group(run: subprocess.Popen, log: Path, phase: str) -> None:
    """SIGKILL the run's process group, which must still be running (else the kill point was missed)."""
    if run.poll() is not None:
        pytest.fail(f"the run finished before its {phase} kill point:\n{log.read_text()[-3000:]}")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)


def test_the_reader_reports_partial_shards_and_indexed_shards_that_are_missing(tmp_path: Path):
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.table({"utt_id": [f"u{i}" for i in range(100)]}), tmp_path / "shards" / "part-00000.parquet")
    whole = (tmp_path / "shards" / "part-00000.parquet").read_bytes()
    (tmp_path / "shards" / "part-00001.parquet").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "index.json").write_text(json.dumps({"shards": [
        {"path": "shards/part-00000.parquet", "num_rows": 99}, {"path": "shards/part-00002.parquet", "num_rows": 1}]}))
    reader = ShardReader(tmp_path)
    reader.poll()
    assert len(reader.errors) == 3
    assert "part-00001.parquet" in reader.errors[0] and "unreadable" in reader.errors[0]
    assert reader.errors[1:] == ["part-00000.parquet: 100 rows, index.json says 99",
                                 "index.json lists shards/part-00002.parquet, which does not exist"]


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_output_and_readers_never_see_partial_files(tmp_path: Path,
                                                                                           prefect_server):
    rng = random.Random(SEED)
    corpus = write_espeak_ljspeech(tmp_path / "LJ", 13, missing=(4,), clipped=(7,))
    config = write_config(tmp_path / "datasets.yaml", corpus, max_utterances=3)
    reference = run_without_prefect(config, "rel", tmp_path / "reference")
    assert reference["counts"]["rejected_by_reason"] == {"clipping": 1, "missing_audio": 1}
    prefect_server.wait_until_healthy()

    out, log = tmp_path / "out", tmp_path / "runs.log"
    dataset_dir = out / "rel"
    reader = ShardReader(dataset_dir)
    reader.start()
    try:
        for phase, event, (low_s, high_s) in KILL_POINTS:
            condition = event(dataset_dir)
            run = _start_run(config, out, prefect_server.env, log)
            _wait_for(condition, run, log, f"the {phase} phase")
            time.sleep(rng.uniform(low_s, high_s))
            _kill_group(run, log, phase)
        final = _start_run(config, out, prefect_server.env, log)
        assert final.wait(timeout=RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        reader.stop()
    reader.poll()

    assert reader.errors == []
    assert reader.files_checked > len(reference["shards"]) and reader.indexes_checked >= 1
    assert output_digests(dataset_dir) == output_digests(tmp_path / "reference" / "rel")
