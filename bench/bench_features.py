"""Benchmark: x realtime per core of ``ttsprep.stages.step4_features.extract.extract_features`` (one thread).

Variants: mel + energy only (no pitch, no denoise), + spectral gate, + gate + DIO + StoneMask (at the
input rate, and at the default 8 kHz ``f0_sample_rate`` with DIO speed 1, 2 and 3), + gate + Harvest, and the
noisereduce package instead of the gate. glibc keeps freed memory, as in ``bench/bench_pipeline.py``.
x realtime = audio seconds per CPU second (``time.process_time``), median of ``--passes`` passes over the
whole corpus after one warm-up pass (Harvest: ``--harvest-clips`` clips, one pass). Decoding is excluded.
The corpus is the LJSpeech clips in ``../shared/corpora`` when present, else espeak-ng sentences (tone
bursts without espeak-ng). For the whole per-utterance path see ``bench/bench_pipeline.py``.

    python bench/bench_features.py
    python bench/bench_features.py --wavs /data/LJSpeech-1.1/wavs --limit 50 --passes 5
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402


from bench_pipeline import keep_freed_memory  # noqa: E402  (bench/ is the script's folder)
from ttsprep.stages.core.config import DenoiseConfig, FeatureConfig  # noqa: E402
from ttsprep.stages.step4_features.extract import extract_features  # noqa: E402

DEFAULT_WAVS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "ljspeech" / "LJSpeech-1.1" / "wavs"
SENTENCES = ["The quick brown fox jumps over the lazy dog, and then it runs far away into the woods.",
             "Printing, in the only sense with which we are at present concerned, differs from most arts.",
             "Pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump!"]
VARIANTS = {
    "mel+energy (no pitch, no denoise)": (FeatureConfig(f0_method="none"), DenoiseConfig(method="none")),
    "gate + mel + energy": (FeatureConfig(f0_method="none"), DenoiseConfig()),
    "noisereduce + mel + energy": (FeatureConfig(f0_method="none"), DenoiseConfig(method="noisereduce")),
    "gate + DIO speed 2 at the input rate": (FeatureConfig(f0_sample_rate=None, dio_speed=2), DenoiseConfig()),
    "gate + DIO speed 1 at 8 kHz": (FeatureConfig(dio_speed=1), DenoiseConfig()),
    "gate + DIO speed 2 at 8 kHz": (FeatureConfig(dio_speed=2), DenoiseConfig()),
    "gate + DIO speed 3 at 8 kHz (default)": (FeatureConfig(), DenoiseConfig()),
    "gate + Harvest": (FeatureConfig(f0_method="harvest"), DenoiseConfig()),
}


def load_corpus(wavs: Path, limit: int) -> tuple[str, list[tuple[np.ndarray, int]]]:
    paths = sorted(wavs.glob("*.wav"))[:limit] if wavs.is_dir() else []
    if paths:
        return f"{len(paths)} clips from {wavs}", [sf.read(p, dtype="float32") for p in paths]
    clips = []
    with tempfile.TemporaryDirectory() as folder:  # no corpus: espeak-ng sentences (the README's set-up installs it)
        for index, text in enumerate(SENTENCES):
            path = Path(folder) / f"{index}.wav"
            subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), text], check=True, capture_output=True)
            clips.append(sf.read(path, dtype="float32"))
    return f"{len(clips)} espeak-ng sentences", clips


def x_realtime(clips: list[tuple[np.ndarray, int]], feature_cfg: FeatureConfig, denoise: DenoiseConfig,
               passes: int) -> tuple[float, float]:
    """x realtime (audio seconds per CPU second) of the median and of the fastest pass."""
    audio_s = sum(samples.size / rate for samples, rate in clips)

    def one_pass() -> float:
        start = time.process_time()
        for samples, rate in clips:
            extract_features(samples, rate, feature_cfg, denoise)
        return time.process_time() - start

    one_pass()
    times = [one_pass() for _ in range(passes)]
    return audio_s / statistics.median(times), audio_s / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wavs", type=Path, default=DEFAULT_WAVS)
    parser.add_argument("--limit", type=int, default=19, help="clips to use")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--harvest-clips", type=int, default=3)
    parser.add_argument("--stock-malloc", action="store_true", help="leave glibc's allocator settings alone")
    args = parser.parse_args()
    malloc = "glibc defaults" if args.stock_malloc or not keep_freed_memory() else "freed memory kept (mallopt)"
    source, clips = load_corpus(args.wavs, args.limit)
    audio_s = sum(samples.size / rate for samples, rate in clips)
    print(f"corpus: {source}, {audio_s:.1f} s of audio; one thread; allocator: {malloc}; "
          f"CPU-time x realtime (median / best pass)\n")
    print(f"| {'variant':36s} | {'x realtime':>10s} | {'best':>8s} | {'ms per audio s':>14s} |")
    print(f"|{'-' * 38}|{'-' * 12}:|{'-' * 9}:|{'-' * 15}:|")
    for name, (feature_cfg, denoise) in VARIANTS.items():
        slow = feature_cfg.f0_method == "harvest"
        subset = clips[: args.harvest_clips] if slow else clips
        median, best = x_realtime(subset, feature_cfg, denoise, 1 if slow else args.passes)
        print(f"| {name:36s} | {median:10.0f} | {best:8.0f} | {1000 / median:14.2f} |", flush=True)


if __name__ == "__main__":
    main()
