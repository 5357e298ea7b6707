"""Load benchmark: ``ttsprep run --workers N`` over the generated corpus at several sizes (not run in CI).

For each size, a fresh output directory and the whole CLI (embedded Prefect server, ingest, shards,
finalize, report) with default stage settings; the corpus is ``bench/make_load_corpus.py``'s (the first
N utterances; generated or extended on first use). Reported per size:

* wall time of the run, and of its shard phase (``plan.json`` written -> last shard summary written);
* x realtime per core = input audio seconds / (wall seconds x workers), for the run and the shard phase;
  x realtime per CPU second = input audio seconds / CPU seconds of the run's whole process tree;
* peak resident memory (``VmHWM`` from ``/proc/<pid>/status``: the kernel's high-water mark, so no peak
  falls between samples) of each pool worker, of the main process and of the embedded Prefect server(s);
* the machine's 1-minute load average at start and end (other tenants inflate wall times).

The process tree is read from ``/proc`` (Linux), every ``--sample-s`` seconds.

    python bench/bench_load.py --corpus /tmp/load-corpus --sizes 1000 20000
    python bench/bench_load.py --corpus /tmp/load-corpus --sizes 1000 5000 --json results.json --keep
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq


from make_load_corpus import write_load_corpus  # noqa: E402  (bench/ is the script's folder)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET = "load"


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants alive now."""
    children, tree, pending = _children_by_parent(), [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending += children.get(pid, [])
    return tree


def _role(pid: int, root: int) -> str:
    """``main``, ``worker`` (a pool process), ``prefect_server`` or ``other`` (e.g. multiprocessing's
    resource tracker)."""
    if pid == root:
        return "main"
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if "uvicorn" in command:
        return "prefect_server"
    if "spawn_main" in command or "--multiprocessing-fork" in command:
        return "worker"
    return "other"


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class PeakMemory(threading.Thread):
    """Samples the peak RSS (KiB) of every process in ``root``'s tree until ``stop``."""

    def __init__(self, root: int, interval_s: float):
        super().__init__(daemon=True)
        self.root, self.interval_s = root, interval_s
        self.peak_kib: dict[int, int] = {}
        self.roles: dict[int, str] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid in process_tree(self.root):
                try:
                    self.roles.setdefault(pid, _role(pid, self.root))
                    self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), _peak_rss_kib(pid))
                except (OSError, ValueError):
                    continue  # exited between listing and reading
            self._halt.wait(self.interval_s)

    def stop(self) -> dict[str, list[float]]:
        """Stop sampling; peak MiB per process, grouped by role (largest first)."""
        self._halt.set()
        self.join()
        by_role: dict[str, list[float]] = {}
        for pid, kib in self.peak_kib.items():
            by_role.setdefault(self.roles[pid], []).append(round(kib / 1024, 1))
        return {role: sorted(values, reverse=True) for role, values in by_role.items()}


def _cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_size(corpus: Path, size: int, out_root: Path, workers: int, sample_s: float) -> dict:
    """Run the CLI over the first ``size`` utterances; returns the figures (see the module docstring)."""
    manifest = write_load_corpus(corpus, size)
    work = out_root / f"n{size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = work / "datasets.yaml"
    config.write_text(f"datasets:\n  - name: {DATASET}\n    importer: manifest\n    root: {corpus.resolve()}\n"
                      f"    file: {manifest.name}\n    language: en\n", encoding="utf-8")
    env = {**os.environ, "PREFECT_HOME": str(out_root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "TTSPREP_PROGRESS": "0", "TTSPREP_SERVER": "embedded"}  # a server per run, measured with it
    command = [sys.executable, "-m", "ttsprep.pipelines.cli", "run", "--config", str(config), "--out", str(work / "out"),
               "--workers", str(workers)]
    cpu_before = _cpu_seconds_of_children()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(work / "run.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        memory = PeakMemory(process.pid, sample_s)
        memory.start()
        status = process.wait()
    wall_s = time.perf_counter() - start
    peaks = memory.stop()
    if status != 0:
        raise RuntimeError(f"ttsprep run exited {status}; see {work / 'run.log'}")
    cpu_s = _cpu_seconds_of_children() - cpu_before
    dataset_dir = work / "out" / DATASET
    index = json.loads((dataset_dir / "index.json").read_text(encoding="utf-8"))
    durations_s = pq.read_table(dataset_dir / "manifest.parquet", columns=["duration_s"])["duration_s"]
    audio_s = float(sum(durations_s.to_pylist()))
    summaries = list((dataset_dir / "work").glob("*.summary.json"))
    shard_phase_s = max(p.stat().st_mtime for p in summaries) - (dataset_dir / "work" / "plan.json").stat().st_mtime
    return {
        "utterances": size, "workers": workers, "shards": len(index["shards"]),
        "kept": index["counts"]["kept"], "rejected": index["counts"]["rejected_by_reason"],
        "input_audio_h": round(audio_s / 3600, 3), "wall_s": round(wall_s, 1), "shard_phase_s": round(shard_phase_s, 1),
        "x_realtime_per_core": round(audio_s / wall_s / workers, 1),
        "x_realtime_per_core_shard_phase": round(audio_s / shard_phase_s / workers, 1),
        "cpu_s": round(cpu_s, 1), "x_realtime_per_cpu_s": round(audio_s / cpu_s, 1),
        "peak_rss_mib": peaks, "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="make_load_corpus.py folder (created if needed)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out-root", type=Path, help="where outputs go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep each size's output")
    parser.add_argument("--sample-s", type=float, default=0.5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    out_root = args.out_root or Path(tempfile.mkdtemp(prefix="ttsprep-load-"))
    results = []
    for size in args.sizes:
        figures = run_size(args.corpus, size, out_root, args.workers, args.sample_s)
        results.append(figures)
        print(json.dumps(figures), flush=True)
        if not args.keep:
            shutil.rmtree(out_root / f"n{size}" / "out", ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
