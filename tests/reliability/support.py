"""Shared by the reliability tests: an espeak-ng corpus, the pipeline run without Prefect, output digests."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from ttsprep.stages.core.audio_io import decode_bytes
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step1_ingest.plan import ingest_and_plan
from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step5_durations.mfa_corpus import textgrid_dir
from ttsprep.stages.step6_shards.process import process_shard
from ttsprep.stages.step7_finalize.finalize import finalize_dataset
from ttsprep.stages.step7_finalize.maps import write_symbol_maps
from ttsprep.stages.step7_finalize.report import write_report

SAMPLE_RATE = 22050
PROMPTS = (
    "Please call Stella.", "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.", "The boy was there when the sun rose.",
    "Six spoons of fresh snow peas for her brother Bob.",
)


def espeak_clip(text: str, scratch: Path, *, words_per_minute: int, pitch: int, seed: int) -> np.ndarray:
    """espeak-ng speaking ``text`` (22.05 kHz) with 0.3 s of silence each side and a -60 dBFS noise floor,
    float32 [N]."""
    wav = scratch / f"espeak-{seed}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-p", str(pitch), "-w", str(wav), text],
                   check=True, capture_output=True)
    speech, _ = sf.read(wav, dtype="float32")
    wav.unlink()
    pad = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    signal = np.concatenate([pad, speech, pad])
    return signal + np.random.default_rng(seed).normal(0, 1e-3, signal.size).astype(np.float32)


def write_espeak_ljspeech(root: Path, num_utterances: int, *, missing: tuple[int, ...] = (),
                          clipped: tuple[int, ...] = ()) -> Path:
    """An LJSpeech-layout corpus of ``num_utterances`` espeak-ng clips ``RL-000``...; indices in ``missing``
    get no wav (an ingest reject), those in ``clipped`` are amplified into clipping (a shard-stage reject)."""
    wavs = root / "wavs"
    wavs.mkdir(parents=True)
    lines = []
    for index in range(num_utterances):
        utt_id, text = f"RL-{index:03d}", PROMPTS[index % len(PROMPTS)]
        lines.append(f"{utt_id}|{text}|{text}")
        if index in missing:
            continue
        samples = espeak_clip(text, wavs, words_per_minute=150 + 10 * (index % 4), pitch=30 + 7 * (index % 5),
                              seed=index)
        if index in clipped:
            samples = np.clip(samples * 50, -1, 1)
        sf.write(wavs / f"{utt_id}.wav", samples, SAMPLE_RATE, subtype="PCM_16")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_config(path: Path, corpus: Path, *, max_utterances: int) -> Path:
    """A one-dataset ``datasets.yaml`` (dataset ``rel``) over the LJSpeech-layout ``corpus``."""
    path.write_text(f"datasets:\n  - name: rel\n    importer: ljspeech\n    root: {corpus}\n"
                    f"    stages: {{shards: {{max_utterances: {max_utterances}}}}}\n", encoding="utf-8")
    return path


def run_without_prefect(config: Path, dataset: str, out_dir: Path, *, reverse_shards: bool = False) -> dict:
    """What the ``ttsprep run`` flow does for one dataset (ingest, every shard, finalize, report, symbol maps),
    in this process; ``reverse_shards`` processes the shards last to first, as a process pool may.
    Returns the index."""
    loaded = load_project(config).select([dataset])[0]
    summary = ingest_and_plan(loaded, out_dir)
    layout = DatasetLayout(out_dir, dataset)
    for name, key in (reversed(summary.shards) if reverse_shards else summary.shards):
        process_shard(layout, name, key, loaded.config, textgrid_dir=textgrid_dir(loaded, out_dir))
    index = finalize_dataset(layout, loaded.config, num_inputs=summary.num_inputs)
    write_report(layout.root)
    write_symbol_maps(out_dir)
    return index


def _digest(values: list) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()


def column_digests(table: pa.Table) -> dict[str, str]:
    """SHA-256 per column of ``table`` sorted by ``utt_id``, over decoded values: the ``audio`` column's
    FLAC bytes are decoded to samples first, so only sample values (not encoder metadata) count."""
    table = table.sort_by("utt_id")
    digests = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        if name == "audio":
            values = [(samples.tobytes(), sample_rate) for samples, sample_rate in map(decode_bytes, values)]
        digests[name] = _digest(values)
    return digests


def shard_table(dataset_dir: Path) -> pa.Table:
    """Every shard listed in ``dataset_dir/index.json``, concatenated."""
    index = json.loads((dataset_dir / "index.json").read_text(encoding="utf-8"))
    return pa.concat_tables([pq.read_table(dataset_dir / shard["path"]) for shard in index["shards"]])


def output_digests(dataset_dir: Path) -> dict[str, dict[str, str]]:
    """Digests of what a run produced for one dataset: decoded shard columns, the rejects ledger, and the
    bytes of index.json, stats.json, report.html and the output directory's symbol maps."""
    files = [dataset_dir / name for name in ("index.json", "stats.json", "report.html")]
    files += [dataset_dir.parent / f"{name}.json" for name in ("vocab", "speakers", "languages", "accents")]
    return {
        "shards": column_digests(shard_table(dataset_dir)),
        "rejects": column_digests(pq.read_table(dataset_dir / "rejects.parquet")),
        "files": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files},
    }
