"""Benchmark: cost and agreement of the DIO + StoneMask settings (analysis rate, decimation) on real speech.

Clips from each corpus in ``../shared/corpora`` (``--per-corpus`` of each, resampled to 22.05 kHz, the
pipeline's rate; espeak-ng sentences where ``../shared`` is absent) go through ``stages.pitch.extract_f0``
with each setting, on the pipeline's frame grid (hop 256), F0 range 71-800 Hz. There is no hand-labelled F0
here, so each setting is compared with two other analyses of the same clips:

* Harvest over 71-800 Hz at 22.05 kHz (WORLD's accurate, ~20x costlier estimator): gross pitch errors
  (frames voiced in both, off by more than 20 %), median error in cents on the other both-voiced frames,
  and voicing agreement (fraction of frames both call voiced or both unvoiced);
* DIO undecimated at 22.05 kHz: voicing agreement, i.e. how far a cheaper setting moves DIO's decisions.

Each figure is the mean over clips (cents: the median over clips). Where ``../shared`` is present the
SPTK RAPT and SWIPE' tracks of ``arctic_a0007`` (16 kHz, hop 80, 60-240 Hz) are compared as in
``tests/stages/test_features.py``. Cost: CPU ms of ``extract_f0`` per audio second, one thread, best of
``--passes``.

    python bench/bench_f0_accuracy.py
    python bench/bench_f0_accuracy.py --per-corpus 10 --passes 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_features import load_corpus  # noqa: E402
from bench.bench_pipeline import SHARED_CORPORA, keep_freed_memory  # noqa: E402
from stages.audio_io import load_audio  # noqa: E402
from stages.frames import num_frames_for  # noqa: E402
from stages.pitch import extract_f0  # noqa: E402

SAMPLE_RATE, HOP_LENGTH = 22050, 256
#: Setting name -> (analysis rate, None = the input's; DIO speed).
SETTINGS = {
    "22.05 kHz, speed 1": (None, 1),
    "8 kHz, speed 1": (8000, 1),
    "8 kHz, speed 2": (8000, 2),
    "8 kHz, speed 3 (default)": (8000, 3),
    "8 kHz, speed 4": (8000, 4),
}
#: Corpus folder -> audio file pattern under it.
CORPORA = {"ljspeech": "*.wav", "vctk": "*.flac", "cmu_arctic": "*.wav", "aishell3": "*.wav", "jsut": "*.wav",
           "libritts": "*.wav", "librispeech": "*.flac", "common_voice": "*.mp3"}
ARCTIC = "cmu_arctic/cmu_us_awb_arctic/wav/arctic_a0007.wav"
ARCTIC_F0 = "cmu_arctic/reference_f0/sptk_pitch/arctic_a0007_p16_L60_H240_o0_{}.txt"


def load_clips(per_corpus: int) -> tuple[str, list[np.ndarray]]:
    """``per_corpus`` clips of each shared corpus as float32 at 22.05 kHz, or espeak-ng sentences."""
    if not SHARED_CORPORA.is_dir():
        source, clips = load_corpus(SHARED_CORPORA, 0)  # no corpus there: espeak-ng sentences
        return source, [load_resampled(samples, rate) for samples, rate in clips]
    paths = [path for folder, pattern in CORPORA.items()
             for path in sorted((SHARED_CORPORA / folder).rglob(pattern))[:per_corpus]]
    return f"{len(paths)} clips of {len(CORPORA)} corpora in {SHARED_CORPORA}", \
        [load_audio(path, SAMPLE_RATE) for path in paths]


def load_resampled(samples: np.ndarray, rate: int) -> np.ndarray:
    return samples if rate == SAMPLE_RATE else soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)


def f0_of(samples: np.ndarray, setting: tuple[int | None, int], method: str = "dio") -> np.ndarray:
    analysis_rate, speed = setting
    return extract_f0(samples, SAMPLE_RATE, HOP_LENGTH, num_frames_for(samples.size, HOP_LENGTH), method=method,
                      dio_speed=speed, analysis_rate=analysis_rate, harvest_range="configured")[0]


def agreement(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(gross error fraction, median cents on the other both-voiced frames, voicing agreement)."""
    both = (ours > 0) & (reference > 0)
    ratio = ours[both] / reference[both]
    fine = ratio[np.abs(ratio - 1) <= 0.2]
    cents = float(np.median(np.abs(1200 * np.log2(fine)))) if fine.size else float("nan")
    gross = float(np.mean(np.abs(ratio - 1) > 0.2)) if ratio.size else 0.0
    return gross, cents, float(np.mean((ours > 0) == (reference > 0)))


def sptk_agreement(setting: tuple[int | None, int]) -> str:
    """Gross errors and voicing agreement against SPTK RAPT and SWIPE' on arctic_a0007 (``-`` if absent)."""
    if not (SHARED_CORPORA / ARCTIC).is_file():
        return "-"
    samples, rate = sf.read(SHARED_CORPORA / ARCTIC, dtype="float32")
    frames = num_frames_for(samples.size, 80)
    f0 = extract_f0(samples, rate, 80, frames, f0_floor=60, f0_ceil=240, dio_speed=setting[1],
                    analysis_rate=setting[0])[0]
    cells = []
    for tracker in ("rapt", "swipe"):
        period = np.loadtxt(SHARED_CORPORA / ARCTIC_F0.format(tracker))
        reference = np.where(period > 0, rate / np.where(period > 0, period, 1), 0.0)
        length = min(reference.size, frames)
        gross, _, voicing = agreement(f0[:length], reference[:length])
        cells.append(f"{tracker} {100 * gross:.1f} % / {voicing:.3f}")
    return ", ".join(cells)


def cost_ms_per_s(clips: list[np.ndarray], setting: tuple[int | None, int], passes: int) -> float:
    audio_s = sum(clip.size for clip in clips) / SAMPLE_RATE
    best = float("inf")
    for _ in range(passes):
        start = time.process_time()
        for clip in clips:
            f0_of(clip, setting)
        best = min(best, time.process_time() - start)
    return 1000 * best / audio_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-corpus", type=int, default=6, help="clips per shared corpus")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per setting (best counts)")
    args = parser.parse_args()
    keep_freed_memory()
    source, clips = load_clips(args.per_corpus)
    audio_s = sum(clip.size for clip in clips) / SAMPLE_RATE
    print(f"corpus: {source}, {audio_s:.1f} s of audio at 22.05 kHz; F0 71-800 Hz, hop 256; one thread\n")
    harvest = [f0_of(clip, (None, 1), method="harvest") for clip in clips]
    undecimated = [f0_of(clip, SETTINGS["22.05 kHz, speed 1"]) for clip in clips]
    print("| DIO + StoneMask | ms per audio s | vs Harvest: gross errors | cents | voicing agreement "
          "| voicing vs 22.05 kHz DIO | SPTK arctic_a0007: gross errors / voicing |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, setting in SETTINGS.items():
        tracks = [f0_of(clip, setting) for clip in clips]
        versus_harvest = np.array([agreement(ours, ref) for ours, ref in zip(tracks, harvest)])
        voicing_vs_dio = np.mean([agreement(ours, ref)[2] for ours, ref in zip(tracks, undecimated)])
        print(f"| {name} | {cost_ms_per_s(clips, setting, args.passes):.2f} "
              f"| {100 * versus_harvest[:, 0].mean():.2f} % | {np.nanmedian(versus_harvest[:, 1]):.1f} "
              f"| {versus_harvest[:, 2].mean():.3f} | {voicing_vs_dio:.3f} | {sptk_agreement(setting)} |", flush=True)


if __name__ == "__main__":
    main()
