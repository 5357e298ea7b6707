"""Benchmark: F0 of the pipeline's feature path against SPTK RAPT, per dataset and pooled, and its cost.

Every clip of every dataset in ``datasets.yaml`` (the samples in ``../shared/corpora``) goes through what
``process_shard`` does for its acoustic columns: ingest and plan into a temporary folder, then per shard
``ttsprep.stages.step6_shards.acoustic_row.acoustic_rows`` (decode, conditioning, denoising, the F0 first pass of every utterance, the
speaker ranges, the final F0). Each row's own audio (the FLAC it stores) is analysed by RAPT (``pysptk.rapt``,
hop 256 at 22.05 kHz, 60-500 Hz; independent of our trackers) and compared frame by frame:

* GPE: frames voiced in both with our F0 more than 20 % off RAPT's, over the frames voiced in both;
* VDE: frames whose voicing differs, over all frames;
* octave-up: our voiced frames above 1.8 x the utterance's voiced median, over our voiced frames;
* out of range: our voiced values outside the range the row was analysed in (the configured one);
* ms per audio second: CPU time of ``acoustic_rows`` minus that with ``f0_method: none``, one thread.

Variants: ``before`` (DIO + StoneMask over the configured range, the trackers' own voicing: the previous
default, except that values outside the range are now unvoiced), ``dio`` (the default), ``harvest``,
``swift_f0`` (SwiftF0 within the speaker ranges). Also
Harvest and DIO on ``arctic_a0007`` (awb, 16 kHz, hop 80, 60-240 Hz) against the SPTK RAPT and SWIPE'
reference files. Needs ``pip install -e .[bench]`` (pysptk).

    python bench/bench_f0_accuracy.py                      # before, dio
    python bench/bench_f0_accuracy.py --variants before dio harvest
    python bench/bench_f0_accuracy.py --variants dio --datasets vctk jsut   # a quick look while iterating
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # pysptk imports the deprecated pkg_resources
    import pysptk  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

from ttsprep.stages.core.frames import num_frames_for  # noqa: E402
from ttsprep.stages.core.layout import DatasetLayout  # noqa: E402
from ttsprep.stages.step1_ingest.plan import ingest_and_plan  # noqa: E402
from ttsprep.stages.step1_ingest.project import load_project  # noqa: E402
from ttsprep.stages.step4_features import acoustic_row  # noqa: E402
from ttsprep.stages.step4_features.pitch import extract_f0  # noqa: E402
from ttsprep.stages.step6_shards.shard_state import read_utterances  # noqa: E402

CONFIG = REPO_ROOT / "datasets.yaml"
SHARED_CORPORA = REPO_ROOT.parent / "shared" / "corpora"
ARCTIC = "cmu_arctic/cmu_us_awb_arctic/wav/arctic_a0007.wav"
ARCTIC_F0 = "cmu_arctic/reference_f0/sptk_pitch/arctic_a0007_p16_L60_H240_o0_{}.txt"
RAPT_RANGE = (60.0, 500.0)
#: Variant -> FeatureConfig fields changed from each dataset's own.
VARIANTS = {
    "before": {"f0_refine": False, "f0_range_mode": "configured"},
    "dio": {},
    "harvest": {"f0_method": "harvest"},
    "swift_f0": {"f0_method": "swift_f0"},
}


def rapt(samples: np.ndarray, sample_rate: int, hop: int) -> np.ndarray:
    return pysptk.rapt(samples.astype(np.float64) * 32768, sample_rate, hop, min=RAPT_RANGE[0], max=RAPT_RANGE[1],
                       otype="f0")


def counts(f0: np.ndarray, reference: np.ndarray, f0_range: tuple[float, float]) -> np.ndarray:
    """[gross, both voiced, voicing errors, frames, octave-up, voiced, out of range]."""
    length = min(f0.size, reference.size)
    ours, ref = f0[:length], reference[:length]
    both = (ours > 0) & (ref > 0)
    voiced = f0[f0 > 0]
    median = np.median(voiced) if voiced.size else 0.0
    return np.array([np.sum(np.abs(ours[both] / ref[both] - 1) > 0.2), both.sum(), np.sum((ours > 0) != (ref > 0)),
                     length, np.sum(voiced > 1.8 * median), voiced.size,
                     np.sum((voiced < f0_range[0] - 1e-3) | (voiced > f0_range[1] + 1e-3))], dtype=np.float64)


def prepared_shards(out: Path, only: list[str] | None = None) -> list[tuple[str, object, list]]:
    """(dataset, its StageConfig, utterances) per planned shard of every dataset in ``datasets.yaml`` (or of
    those named in ``only``)."""
    shards = []
    for dataset in load_project(CONFIG).datasets:
        if only and dataset.name not in only:
            continue
        summary = ingest_and_plan(dataset, out)
        layout = DatasetLayout(out, dataset.name)
        for name, _ in summary.shards:
            shards.append((dataset.name, dataset.config, read_utterances(layout.shard_inputs(name))))
    return shards


def run_variant(shards: list, changes: dict) -> tuple[dict[str, np.ndarray], float, float]:
    """Counts per dataset, CPU seconds of ``acoustic_rows`` and audio seconds."""
    totals: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(7))
    cpu = audio = 0.0
    for dataset, config, utterances in shards:
        variant = config.model_copy(update={"features": config.features.model_copy(update=changes)})
        start = time.process_time()
        rows, _ = acoustic_row.acoustic_rows(utterances, variant)
        cpu += time.process_time() - start
        features = variant.features
        for utt in utterances:
            row = rows[utt.utt_id]
            if isinstance(row, Exception):
                print(f"  {utt.utt_id}: rejected ({row})")
                continue
            samples, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
            audio += samples.size / rate
            f0_range = tuple(features.speaker_f0_range.get(utt.speaker, (features.f0_floor, features.f0_ceil)))
            totals[dataset] += counts(np.asarray(row["f0"]), rapt(samples, rate, features.hop_length), f0_range)
    return totals, cpu, audio


def warm_up() -> None:
    """Load the refinement's compiled NCCF kernel (numba) before anything is timed: a one-off per process."""
    t = np.arange(22050) / 22050
    extract_f0((0.3 * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32), 22050, 256, 87, analysis_rate=8000)


def no_pitch_cpu(shards: list) -> float:
    start = time.process_time()
    for _, config, utterances in shards:
        acoustic_row.acoustic_rows(utterances, config.model_copy(
            update={"features": config.features.model_copy(update={"f0_method": "none"})}))
    return time.process_time() - start


def arctic_rows() -> list[str]:
    """Table rows: trackers on arctic_a0007 against the SPTK reference files (VDE, GPE)."""
    if not (SHARED_CORPORA / ARCTIC).is_file():
        return []
    samples, rate = sf.read(SHARED_CORPORA / ARCTIC, dtype="float32")
    frames = num_frames_for(samples.size, 80)
    references = {}
    for tracker in ("rapt", "swipe"):
        period = np.loadtxt(SHARED_CORPORA / ARCTIC_F0.format(tracker))
        references[tracker] = np.where(period > 0, rate / np.where(period > 0, period, 1), 0.0)
    rows = []
    for method, refine, label in (("harvest", False, "Harvest, no refinement (before)"),
                                  ("harvest", True, "Harvest (refined, per-utterance range)"),
                                  ("dio", False, "DIO, no refinement (before)"), ("dio", True, "DIO (default)")):
        f0, _ = extract_f0(samples, rate, 80, frames, method=method, f0_floor=60, f0_ceil=240, analysis_rate=8000,
                           harvest_range="per_utterance", refine=refine,
                           range_mode="utterance" if refine else "configured")
        cells = []
        for tracker, reference in references.items():
            c = counts(f0, reference, (60, 240))
            cells.append(f"{100 * c[2] / c[3]:.1f} % / {100 * c[0] / max(c[1], 1):.1f} %")
        rows.append(f"| {label} | {int((f0 > 0).sum())} of {frames} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["before", "dio"])
    parser.add_argument("--datasets", nargs="+", metavar="NAME", help="only these datasets (default: all)")
    args = parser.parse_args()
    warm_up()
    with tempfile.TemporaryDirectory() as out:
        shards = prepared_shards(Path(out), args.datasets)
        baseline_cpu = no_pitch_cpu(shards)
        results = {name: run_variant(shards, VARIANTS[name]) for name in args.variants}
    audio_s = next(iter(results.values()))[2]
    print(f"{sum(len(u) for *_, u in shards)} clips, {audio_s:.1f} s after conditioning; vs RAPT 60-500 Hz, hop 256 "
          f"at 22.05 kHz; one thread\n")
    print("| variant | dataset | GPE | VDE | octave-up | out of range | F0 ms per audio s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, (totals, cpu, audio) in results.items():
        pooled = sum(totals.values(), np.zeros(7))
        cost = 1000 * (cpu - baseline_cpu) / audio
        for dataset, c in [*sorted(totals.items()), ("pooled", pooled)]:
            print(f"| {name} | {dataset} | {100 * c[0] / max(c[1], 1):.1f} % | {100 * c[2] / c[3]:.1f} % "
                  f"| {100 * c[4] / max(c[5], 1):.1f} % | {int(c[6])} | {cost:.2f} |" if dataset == "pooled" else
                  f"| {name} | {dataset} | {100 * c[0] / max(c[1], 1):.1f} % | {100 * c[2] / c[3]:.1f} % "
                  f"| {100 * c[4] / max(c[5], 1):.1f} % | {int(c[6])} | |")
    print("\narctic_a0007 (awb, 16 kHz, hop 80, 60-240 Hz) against the SPTK reference files\n")
    print("| tracker | voiced frames | vs RAPT: VDE / GPE | vs SWIPE': VDE / GPE |")
    print("|---|---:|---:|---:|")
    print("\n".join(arctic_rows()))


if __name__ == "__main__":
    main()
