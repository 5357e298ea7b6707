"""Benchmark: utterances per second per CPU core, from Parquet shards to padded, collated batches.

Writes realistic shards first (the pipeline's writer: zstd level 3, 64 rows per row group): 80 mel bins,
2-10 s utterances at hop 256 / 22.05 kHz (173-862 frames), smooth log-mel, f0/energy/voiced, about 12
phonemes per second with durations. ``audio`` is left null: the loader never reads it unless asked.
Then reads them with one process and one thread (``num_workers=0``, ``torch.set_num_threads(1)``,
single-threaded pyarrow) through ``ShardDataset -> ShardBatches (bucketing) -> Collate(add_blank=True)``,
and, as the floor, pyarrow's decoding of the same columns alone.

    python bench/bench_loader.py                      # 2 shards x 512 utterances, 3 epochs
    python bench/bench_loader.py --shards 4 --rows 1024
    python bench/bench_loader.py --features f0 energy voiced tokens durations   # without mel
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from stages.atomic import write_parquet
from stages.schema import shard_schema
from train.collate import Collate
from train.dataset import DEFAULT_FEATURES, ShardBatches, ShardDataset, shard_columns
from train.shards import load_shard_set, load_symbol_maps, open_shard

SAMPLE_RATE, HOP_LENGTH, N_MELS = 22050, 256, 80
PHONES = ["h", "ə", "l", "oʊ", "w", "ɜː", "d", "ð", "ɪ", "s", "t", "n", "k", "æ", "ɹ", "m", ","]


def _list_array(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def realistic_table(num_rows: int, rng: np.random.Generator, first_id: int) -> pa.Table:
    """``num_rows`` synthetic utterances in ``shard_schema(N_MELS)``, built column-wise from numpy."""
    durations_s = rng.uniform(2.0, 10.0, num_rows)
    num_samples = (durations_s * SAMPLE_RATE).astype(np.int64)
    num_frames = (1 + num_samples // HOP_LENGTH).astype(np.int32)
    frame_offsets = np.concatenate([[0], np.cumsum(num_frames)])
    total_frames = int(frame_offsets[-1])
    envelope = np.linspace(-2.0, -9.0, N_MELS, dtype=np.float32)
    mel = envelope + np.cumsum(rng.normal(0, 0.25, (total_frames, N_MELS)).astype(np.float32), axis=0) * 0.05
    num_tokens = np.maximum(2, (durations_s * 12).astype(np.int64))
    token_offsets = np.concatenate([[0], np.cumsum(num_tokens)])
    durations = np.concatenate([np.diff(np.concatenate([[0], np.sort(rng.choice(np.arange(1, t), n - 1, replace=False)),
                                                        [t]])) for t, n in zip(num_frames, num_tokens)])
    total_tokens = int(token_offsets[-1])
    columns = {
        "utt_id": pa.array([f"bench_{first_id + i:07d}" for i in range(num_rows)]),
        "dataset": pa.array(["bench"] * num_rows),
        "speaker": pa.array([f"s{k}" for k in rng.integers(0, 20, num_rows)]),
        "language": pa.array(["en-US"] * num_rows), "split": pa.array(["train"] * num_rows),
        "sample_rate": pa.array(np.full(num_rows, SAMPLE_RATE, np.int32)), "num_samples": pa.array(num_samples),
        "duration_s": pa.array(durations_s.astype(np.float32)), "num_frames": pa.array(num_frames),
        "mel": _list_array(frame_offsets, pa.FixedSizeListArray.from_arrays(pa.array(mel.ravel()), N_MELS)),
        "f0": _list_array(frame_offsets, pa.array(rng.uniform(80, 300, total_frames).astype(np.float32))),
        "voiced": _list_array(frame_offsets, pa.array(rng.uniform(size=total_frames) > 0.3)),
        "energy": _list_array(frame_offsets, pa.array(rng.uniform(0, 50, total_frames).astype(np.float32))),
        "snt_duration": _list_array(np.arange(num_rows + 1), pa.array(num_frames)),
        "phonemes": _list_array(token_offsets, pa.array(rng.choice(PHONES, total_tokens))),
        "durations": _list_array(token_offsets, pa.array(durations.astype(np.int32))),
        "token_pitch": _list_array(token_offsets, pa.array(rng.uniform(80, 300, total_tokens).astype(np.float32))),
        "token_energy": _list_array(token_offsets, pa.array(rng.uniform(0, 50, total_tokens).astype(np.float32))),
    }
    schema = shard_schema(N_MELS)
    return pa.table({f.name: columns.get(f.name, pa.nulls(num_rows, f.type)) for f in schema}, schema=schema)


def write_bench_dataset(root: Path, *, num_shards: int, rows_per_shard: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    shards = []
    for number in range(num_shards):
        relative = f"shards/part-{number:05d}.parquet"
        (root / "shards").mkdir(parents=True, exist_ok=True)
        write_parquet(root / relative, realistic_table(rows_per_shard, rng, number * rows_per_shard), row_group_size=64)
        shards.append({"path": relative, "num_rows": rows_per_shard})
    index = {"shards": shards, "features": {"n_mels": N_MELS, "hop_length": HOP_LENGTH, "sample_rate": SAMPLE_RATE,
                                            "reduction_factor": 1}}
    (root / "index.json").write_text(json.dumps(index))


def timed(run) -> tuple[int, float, float]:
    """``(utterances, wall seconds, CPU seconds)`` of ``run()``, which returns the utterance count."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = run()
    return count, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rows", type=int, default=512, help="utterances per shard")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--features", nargs="+", default=list(DEFAULT_FEATURES),
                        help="features to load (default: all but audio)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        write_bench_dataset(root, num_shards=args.shards, rows_per_shard=args.rows)
        shard_set = load_shard_set(str(root))
        maps = load_symbol_maps(shard_set)
        items = ShardDataset(shard_set, maps, features=args.features)
        batches = ShardBatches(items, Collate(reduction_factor=1, add_blank=True, blank_id=maps.vocab["<blank>"]),
                               batch_size=args.batch_size, group_size=args.group_size)
        columns = shard_columns(args.features)

        def loader_epoch() -> int:
            return sum(len(batch["utt_ids"]) for batch in batches)

        def decode_only() -> int:
            count = 0
            for path in shard_set.paths:
                reader = open_shard(path)
                for group in range(reader.num_row_groups):
                    count += reader.read_row_group(group, columns=columns, use_threads=False).num_rows
            return count

        frames = np.concatenate([open_shard(p).read(columns=["num_frames"]).column(0).to_numpy()
                                 for p in shard_set.paths])
        mean_s = frames.mean() * HOP_LENGTH / SAMPLE_RATE
        print(f"{len(frames)} utterances, {frames.mean():.0f} frames ({mean_s:.1f} s) on average")
        runs = {"pyarrow decode only": decode_only, "loader to padded batches": loader_epoch}
        results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in runs}
        for epoch in range(args.epochs):  # interleaved, so that machine load affects both alike
            batches.set_epoch(epoch)
            for name, run in runs.items():
                results[name].append(timed(run))
        for name, timings in results.items():
            count = timings[0][0]
            best_wall, best_cpu = min(t[1] for t in timings), min(t[2] for t in timings)
            print(f"{name:26s} {count} utts: {count / best_wall:7.0f} utt/s wall, {count / best_cpu:7.0f} utt/s "
                  f"per CPU-second (best of {args.epochs})")

if __name__ == "__main__":
    main()
