"""Benchmark: utterances per CPU-second (one core), from Parquet shards to padded, collated batches.

Writes realistic shards first (the pipeline's writer, 64 rows per row group): 80 mel bins,
2-10 s utterances at hop 256 / 22.05 kHz (173-862 frames), smooth log-mel, f0/energy/voiced, about 12
phonemes per second with durations. ``audio`` is left null: the loader never reads it unless asked.
Then reads them with one process and one thread (``num_workers=0``, ``torch.set_num_threads(1)``,
single-threaded pyarrow) through ``ShardDataset -> ShardBatches (bucketing) -> Collate(add_blank=True)``,
and, as the floor, pyarrow's decoding of the same columns alone. Figures are utterances per second of
process CPU time (user + kernel, ``getrusage``), so other processes count less, though a busy machine still
slows a process's CPU time down: runs are interleaved and the best and the median are shown, with the
kernel's share (page faults of fresh allocations are costly in a VM; see ``--storage`` and the allocator
note below).

``--storage`` writes the same utterances in other layouts (writer options and schema variants, see
``STORAGE_VARIANTS``) and times pyarrow's decoding of the loader's columns for each, plus the whole loader for
the layouts it reads (``mel`` still ``list<fixed_size_list>``).

Allocator churn: freed Arrow buffers are returned to the OS by mimalloc after 10 ms and large numpy buffers by
glibc, and every page is faulted in again on the next epoch. ``MIMALLOC_PURGE_DELAY=-1
MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment keeps them.

    python bench/bench_loader.py                      # 2 shards x 512 utterances, 5 epochs
    python bench/bench_loader.py --shards 4 --rows 1024
    python bench/bench_loader.py --features f0 energy voiced tokens durations   # without mel
    python bench/bench_loader.py --profile            # plus cProfile of one loader epoch
    python bench/bench_loader.py --storage            # decode cost of alternative shard layouts
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import pstats
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ttsprep.stages.core.atomic import leaf_paths, write_parquet
from ttsprep.stages.core.schema import shard_schema
from ttsprep.train.collate import Collate
from ttsprep.train.dataset import DEFAULT_FEATURES, ShardBatches, ShardDataset, shard_columns
from ttsprep.train.shards import load_shard_set, load_symbol_maps, open_shard

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


def write_bench_dataset(root: Path, *, num_shards: int, rows_per_shard: int, seed: int = 0,
                        transform: Callable[[pa.Table], pa.Table] | None = None,
                        write_options: dict | None = None) -> None:
    """Shards and ``index.json`` under ``root``: the pipeline's writer, or, with ``write_options``,
    ``pq.write_table`` with those options (64 rows per row group either way) on ``transform(table)``."""
    rng = np.random.default_rng(seed)
    shards = []
    for number in range(num_shards):
        relative = f"shards/part-{number:05d}.parquet"
        (root / "shards").mkdir(parents=True, exist_ok=True)
        table = realistic_table(rows_per_shard, rng, number * rows_per_shard)
        table = transform(table) if transform else table
        if write_options is None:
            write_parquet(root / relative, table, row_group_size=64)
        else:
            pq.write_table(table, root / relative, row_group_size=64, **write_options)
        shards.append({"path": relative, "num_rows": rows_per_shard})
    index = {"shards": shards, "features": {"n_mels": N_MELS, "hop_length": HOP_LENGTH, "sample_rate": SAMPLE_RATE,
                                            "reduction_factor": 1}}
    (root / "index.json").write_text(json.dumps(index))


def flat_mel(table: pa.Table) -> pa.Table:
    """``mel`` as ``list<float32 not null>``: each row ``[T * n_mels]``, frame-major."""
    mel = table.column("mel").combine_chunks()
    flat = pa.ListArray.from_arrays(pa.array(mel.offsets.to_numpy() * N_MELS, pa.int32()), mel.values.flatten(),
                                    type=pa.list_(pa.field("element", pa.float32(), nullable=False)))
    return table.set_column(table.schema.get_field_index("mel"), "mel", flat)


def blob_mel(table: pa.Table) -> pa.Table:
    """``mel`` as ``binary``: each row the ``[T, n_mels]`` float32 bytes (the earlier analysis's layout)."""
    mel = table.column("mel").combine_chunks()
    offsets = pa.array(mel.offsets.to_numpy() * (N_MELS * 4), pa.int32())
    blob = pa.BinaryArray.from_buffers(pa.binary(), len(mel), [None, offsets.buffers()[1],
                                                               mel.values.flatten().buffers()[1]])
    return table.set_column(table.schema.get_field_index("mel"), "mel", blob)


def split_floats(float_codec: str) -> Callable[[pa.Schema], dict]:
    """Writer options: dictionary only for strings, BYTE_STREAM_SPLIT and ``float_codec`` for the float32
    columns, zstd level 3 for the others."""
    def options(schema: pa.Schema) -> dict:
        floats = leaf_paths(schema, pa.types.is_float32)
        codecs = {path: float_codec if path in floats else "zstd" for path in leaf_paths(schema, lambda _: True)}
        return dict(compression=codecs, use_dictionary=leaf_paths(schema, pa.types.is_string),
                    compression_level={path: 3 for path, codec in codecs.items() if codec == "zstd"},
                    use_byte_stream_split=floats)
    return options


#: name -> (table transform, writer options for the table's schema (None: the pipeline's writer), whether
#: the loader reads the layout, i.e. ``mel`` is still ``list<fixed_size_list>``)
STORAGE_VARIANTS: dict[str, tuple[Callable[[pa.Table], pa.Table] | None, Callable[[pa.Schema], dict] | None, bool]] = {
    "pipeline writer (floats split, lz4_raw)": (None, None, True),
    "zstd 3 everywhere (the writer before schema 2)": (None, lambda _: dict(compression="zstd", compression_level=3),
                                                       True),
    "same schema, floats split, zstd": (None, split_floats("zstd"), True),
    "mel list<float32> [T*n_mels], zstd": (flat_mel, split_floats("zstd"), False),
    "mel list<float32> [T*n_mels], lz4_raw": (flat_mel, split_floats("lz4_raw"), False),
    "mel float32 blob (binary), zstd": (blob_mel, split_floats("zstd"), False),
}


def timed(run: Callable[[], int]) -> tuple[int, float, float]:
    """``(utterances, CPU seconds, of which in the kernel)`` of ``run()``, which returns the utterance count."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    count = run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    system_s = after.ru_stime - before.ru_stime
    return count, after.ru_utime - before.ru_utime + system_s, system_s


def summary(timings: list[tuple[int, float, float]]) -> str:
    """Best and median utterances per CPU-second of ``timed`` results, and the kernel's median share."""
    count = timings[0][0]
    cpu_s = [t[1] for t in timings]
    system_share = float(np.median([t[2] / t[1] for t in timings]))
    return (f"best {count / min(cpu_s):5.0f}, median {count / float(np.median(cpu_s)):5.0f} utt/CPU-s "
            f"({1e6 * float(np.median(cpu_s)) / count:4.0f} us/utt, {100 * system_share:2.0f}% in the kernel)")


def loader_runs(root: Path, features: list[str], batch_size: int, group_size: int) -> dict[str, Callable[[], int]]:
    """``{"pyarrow decode only": ..., "loader to padded batches": ...}`` over the shards under ``root``;
    each run reads everything once and returns the utterance count (the loader's order changes per run)."""
    shard_set = load_shard_set(str(root))
    maps = load_symbol_maps(shard_set)
    batches = ShardBatches(ShardDataset(shard_set, maps, features=features),
                           Collate(reduction_factor=1, add_blank=True, blank_id=maps.vocab["<blank>"]),
                           batch_size=batch_size, group_size=group_size)
    columns = shard_columns(features)
    readers = [open_shard(path) for path in shard_set.paths]
    epochs = itertools.count()

    def loader_epoch() -> int:
        batches.set_epoch(next(epochs))
        return sum(len(batch["utt_ids"]) for batch in batches)

    def decode_only() -> int:
        return sum(reader.read_row_group(group, columns=columns, use_threads=False).num_rows
                   for reader in readers for group in range(reader.num_row_groups))

    return {"pyarrow decode only": decode_only, "loader to padded batches": loader_epoch}


def bench_loader(root: Path, args: argparse.Namespace) -> None:
    runs = loader_runs(root, args.features, args.batch_size, args.group_size)
    frames = np.concatenate([open_shard(str(path)).read(columns=["num_frames"]).column(0).to_numpy()
                             for path in sorted((root / "shards").glob("*.parquet"))])
    print(f"{len(frames)} utterances, {frames.mean():.0f} frames ({frames.mean() * HOP_LENGTH / SAMPLE_RATE:.1f} s) "
          f"on average; features {' '.join(args.features)}; {args.epochs} epochs")
    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: page cache, allocator arenas
        run()
    for _ in range(args.epochs):  # interleaved, so that machine load affects both alike
        for name, run in runs.items():
            results[name].append(timed(run))
    for name, timings in results.items():
        print(f"{name:26s} {summary(timings)}")
    if args.profile:
        profile = cProfile.Profile(time.process_time)
        profile.runcall(runs["loader to padded batches"])
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


def bench_storage(root: Path, args: argparse.Namespace) -> None:
    """Decode floor per ``STORAGE_VARIANTS`` entry, and the loader where it reads the layout."""
    decoders, loaders, sizes = {}, {}, {}
    for number, (name, (transform, options, loader_reads)) in enumerate(STORAGE_VARIANTS.items()):
        variant_root = root / f"variant-{number}"
        schema = (transform or (lambda t: t))(realistic_table(1, np.random.default_rng(0), 0)).schema
        write_bench_dataset(variant_root, num_shards=args.shards, rows_per_shard=args.rows, transform=transform,
                            write_options=options(schema) if options else None)
        sizes[name] = sum(path.stat().st_size for path in (variant_root / "shards").glob("*.parquet")) / 2**20
        runs = loader_runs(variant_root, args.features, args.batch_size, args.group_size)
        decoders[name] = runs["pyarrow decode only"]
        if loader_reads:
            loaders[name] = runs["loader to padded batches"]
    results: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for run in [*decoders.values(), *loaders.values()]:  # warm-up: page cache, allocator arenas
        run()
    for _ in range(args.epochs):  # interleaved, so that machine load affects all alike
        for name in decoders:
            results.setdefault((name, "decode"), []).append(timed(decoders[name]))
            if name in loaders:
                results.setdefault((name, "loader"), []).append(timed(loaders[name]))
    print(f"{args.shards * args.rows} utterances per layout, {args.epochs} epochs; "
          f"columns {' '.join(shard_columns(args.features))}")
    for (name, what), timings in results.items():
        label = f"{name} ({sizes[name]:.0f} MiB)" if what == "decode" else ""
        print(f"{label:48s} {what:6s} {summary(timings)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rows", type=int, default=512, help="utterances per shard")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--features", nargs="+", default=list(DEFAULT_FEATURES),
                        help="features to load (default: all but audio)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of a loader epoch")
    parser.add_argument("--storage", action="store_true", help="compare shard layouts instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        if args.storage:
            bench_storage(root, args)
        else:
            write_bench_dataset(root, num_shards=args.shards, rows_per_shard=args.rows)
            bench_loader(root, args)


if __name__ == "__main__":
    main()
