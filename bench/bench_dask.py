"""Benchmark: the shard stage on a Dask cluster of 1 vs 2 workers (prefect-dask), with the CPU load beside it.

Set-up: a corpus of espeak-ng clips in LJSpeech layout, ``--shards`` x ``--per-shard`` utterances (every shard
the same amount of work); the local Prefect server ``ttsprep`` runs (``prefect_api.ensure_local_server``); a Dask
``LocalCluster`` of 1 or 2 worker processes (1 thread each, ``ttsprep.pipelines.tasks`` preloaded). Each repeat starts a cluster per
size (sizes alternate, so drifting background load hits both alike), warms it up with a run over 8
one-clip shards (a worker's first shard costs ~10 s more: Prefect's task engine, librosa's lazy imports,
numba; the warm-up checks that every worker ran one), then runs ``ttsprep run --dask-address`` once, into
a fresh output folder so that no shard is skipped as unchanged.

What is timed is what Prefect recorded on the server, so CLI start-up, ingest and finalize (the same for
both sizes) are left out:

* shard stage: the ``shards`` subflow run, start to end (Dask connection, submission, every shard task);
* task span: first shard task (``bench/part-NNNNN``) start to last task end (the parallel section alone).

Speed-up = median over repeats of 1-worker time / 2-worker time. CPU load over the task span, sampled every
0.5 s: the busy cores of the machine (``/proc/stat``) and the CPU seconds of the Dask worker processes
(psutil), so ``busy - workers`` is what other programs took from the cores meanwhile. Equal worker CPU
seconds for 1 and 2 workers mean that splitting the work adds none; the wall-clock speed-up then depends
only on how many cores the workers get.

    python bench/bench_dask.py                        # 8 shards x 32 clips, 2 repeats
    python bench/bench_dask.py --shards 12 --per-shard 16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

import httpx
import psutil

from ttsprep.pipelines.prefect_api import ensure_local_server, stop_local, wait_for_server
from ttsprep.stages.step1_ingest.demo_corpus import ENGLISH_PROMPTS

WORDS_PER_MINUTE = (140, 160, 180)



# --- the services: the local Prefect server ttsprep runs, a LocalCluster of single-threaded worker processes ---

def api_post(api_url: str, path: str, body: dict | None = None) -> list[dict]:
    """``POST {api_url}/{path}`` with a JSON filter ``body``."""
    response = httpx.post(f"{api_url}/{path}", json=body or {}, timeout=10.0)
    response.raise_for_status()
    return response.json()


def eventually(fetch, done, *, timeout_s: float = 30.0) -> list[dict]:
    """``fetch()`` until ``done`` holds (the server records task runs from events, shortly after a run)."""
    deadline = time.monotonic() + timeout_s
    while not done(rows := fetch()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return rows


def run_ttsprep(args: list[str], env: dict[str, str]) -> dict[str, dict]:
    """``ttsprep ARGS``; the counts it prints per dataset (``name: {json}`` lines)."""
    done = subprocess.run([str(Path(sys.executable).parent / "ttsprep"), *args], env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"ttsprep {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return {line.split(": ", 1)[0]: json.loads(line.split(": ", 1)[1]) for line in done.stdout.splitlines()
            if ": {" in line}


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """The local Prefect server ``ttsprep run`` starts (``PREFECT_HOME`` ``home``), stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    state, _ = ensure_local_server(home)
    try:
        if not wait_for_server(state):
            raise RuntimeError(f"the Prefect server did not answer; its log: {state['log']}")
        yield state["url"]
    finally:
        stop_local(home)


@contextmanager
def dask_cluster(num_workers: int, api_url: str) -> Iterator[str]:
    """``num_workers`` Dask worker processes of one thread each (``ttsprep.pipelines.tasks`` preloaded), which
    record their task runs with the server at ``api_url``; yields the scheduler's address."""
    from distributed import LocalCluster

    os.environ["PREFECT_API_URL"] = api_url  # the worker processes start with this environment
    with LocalCluster(n_workers=num_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      preload=["ttsprep.pipelines.tasks"]) as cluster:
        yield cluster.scheduler_address


def client_env(api_url: str) -> dict[str, str]:
    """The environment of the ``ttsprep`` commands: this one, with the server's API."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}, "PREFECT_API_URL": api_url}

def write_config(root: Path, num_clips: int, per_shard: int) -> Path:
    """``root/datasets.yaml`` for dataset ``bench``: ``num_clips`` espeak-ng clips, ``per_shard`` per shard."""
    write_espeak_corpus(root / "LJ", num_clips)
    config = root / "datasets.yaml"
    config.write_text("datasets:\n  - name: bench\n    importer: ljspeech\n    root: LJ\n"
                      f"    stages: {{shards: {{max_utterances: {per_shard}}}}}\n")
    return config


def write_espeak_corpus(root: Path, num_clips: int) -> Path:
    """An LJSpeech-layout corpus of ``num_clips`` espeak-ng clips (22.05 kHz mono wav) under ``root``."""
    (root / "wavs").mkdir(parents=True)
    lines = []
    for number in range(num_clips):
        utt_id, text = f"B-{number:04d}", ENGLISH_PROMPTS[number % len(ENGLISH_PROMPTS)]
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(WORDS_PER_MINUTE[number % 3]), "-w",
                        str(root / "wavs" / f"{utt_id}.wav"), text], check=True, capture_output=True)
        lines.append(f"{utt_id}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _utc_s(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


class CpuSampler:
    """Every ``period_s``: (time, busy jiffies, total jiffies of all cores, CPU seconds of ``pids``)."""

    def __init__(self, pids: list[int], period_s: float = 0.5):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.period_s = period_s
        self.samples: list[tuple[float, int, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> tuple[float, int, int, float]:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        cpu_s = sum(sum(p.cpu_times()[:2]) for p in self.processes)
        return time.time(), sum(fields) - idle, sum(fields), cpu_s

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._sample())
            self._stop.wait(self.period_s)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start_s: float, end_s: float) -> tuple[float, float]:
        """(busy cores, worker cores) averaged from the last sample before ``start_s`` to the first after ``end_s``."""
        first = max((s for s in self.samples if s[0] <= start_s), default=self.samples[0])
        last = min((s for s in self.samples if s[0] >= end_s), default=self.samples[-1])
        busy = psutil.cpu_count() * (last[1] - first[1]) / (last[2] - first[2])
        return busy, (last[3] - first[3]) / (last[0] - first[0])


@dataclass
class Measurement:
    workers: int
    stage_s: float
    span_s: float
    busy_cores: float  # all programs, averaged over the task span
    worker_cpu_s: float  # CPU seconds of the Dask workers over the task span
    shards_per_worker: list[int]
    load_1min: float


def run_on_cluster(address: str, config: Path, out: Path, env: dict[str, str]) -> tuple[dict, list[int], CpuSampler]:
    """``ttsprep run --dask-address`` with the workers' CPU sampled; counts, shards run per worker, samples."""
    from distributed import Client, get_task_stream

    with Client(address) as client:
        pids = client.run(os.getpid)
        with CpuSampler(list(pids.values())) as cpu, get_task_stream(client) as stream:
            counts = run_ttsprep(["run", "--config", str(config), "--out", str(out), "--dask-address", address], env)
    per_worker = Counter(task["worker"] for task in stream.data)
    return counts, [per_worker[worker] for worker in sorted(pids)], cpu


def measure(api_url: str, address: str, workers: int, config: Path, out: Path, env: dict[str, str],
            num_shards: int) -> Measurement:
    """One measured run; its stage and task times read back from the Prefect server."""
    counts, shards_per_worker, cpu = run_on_cluster(address, config, out, env)
    if counts["bench"]["kept"] == 0:
        raise RuntimeError(f"nothing kept: {counts}")
    stage = api_post(api_url, "flow_runs/filter", {"flows": {"name": {"any_": ["shards"]}},
                                                   "sort": "START_TIME_DESC", "limit": 1})[0]
    tasks = eventually(lambda: api_post(api_url, "task_runs/filter", {
        "flow_runs": {"id": {"any_": [stage["id"]]}}, "task_runs": {"name": {"like_": "bench/part-"}}}),
        lambda rows: len(rows) == num_shards and all(row["end_time"] for row in rows))
    span_start_s = min(_utc_s(t["start_time"]) for t in tasks)
    span_end_s = max(_utc_s(t["end_time"]) for t in tasks)
    busy, worker_cores = cpu.between(span_start_s, span_end_s)
    return Measurement(workers, _utc_s(stage["end_time"]) - _utc_s(stage["start_time"]), span_end_s - span_start_s,
                       busy, worker_cores * (span_end_s - span_start_s), shards_per_worker, psutil.getloadavg()[0])


def warm_up(address: str, config: Path, out: Path, env: dict[str, str]) -> None:
    """A run over one-clip shards; raises unless every worker ran at least one (so none starts cold)."""
    _, shards_per_worker, _ = run_on_cluster(address, config, out, env)
    if min(shards_per_worker) == 0:
        raise RuntimeError(f"warm-up left a worker cold: shards per worker {shards_per_worker}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per-shard", type=int, default=32, help="utterances per shard")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dask-") as scratch:
        root = Path(scratch)
        config = write_config(root / "corpus", args.shards * args.per_shard, args.per_shard)
        warm_up_config = write_config(root / "warm-up", 8, 1)
        print(f"{args.shards} shards x {args.per_shard} espeak-ng clips; {psutil.cpu_count()} cores; "
              f"load before: {psutil.getloadavg()[0]:.2f}", flush=True)
        results: list[Measurement] = []
        with prefect_server(root / "server-home") as api_url:
            env = client_env(api_url)
            for repeat in range(args.repeats):
                for workers in (1, 2):
                    with dask_cluster(workers, api_url) as address:
                        warm_up(address, warm_up_config, root / f"warm-{repeat}-{workers}", env)
                        result = measure(api_url, address, workers, config, root / f"out-{repeat}-{workers}", env,
                                         args.shards)
                    results.append(result)
                    print(f"{workers} worker(s): shard stage {result.stage_s:6.1f} s, task span {result.span_s:6.1f} s,"
                          f" shards per worker {result.shards_per_worker}; over the span: busy cores"
                          f" {result.busy_cores:.2f} / {psutil.cpu_count()}, dask workers"
                          f" {result.worker_cpu_s / result.span_s:.2f} cores ({result.worker_cpu_s:.1f} CPU s);"
                          f" load(1 min) after {result.load_1min:.2f}", flush=True)
    for field in ("stage_s", "span_s", "worker_cpu_s"):
        one, two = (statistics.median(getattr(r, field) for r in results if r.workers == n) for n in (1, 2))
        print(f"median {field}: 1 worker {one:.1f} s, 2 workers {two:.1f} s, ratio {one / two:.2f}")


if __name__ == "__main__":
    main()
