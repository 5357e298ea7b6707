"""A large synthetic corpus for the load benchmark: espeak-ng clips, perturbed and concatenated.

Six espeak-ng voices (the speakers, each with its own rate and pitch) speak 16 Harvard sentences once:
96 base clips. Utterance ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so a corpus of N
utterances is the first N of any larger one and files already written are kept:

* one speaker; 1 to 3 of their base clips (1: 50 %, 2: 35 %, 3: 15 %) joined by 0.15-0.6 s pauses;
* tape-speed change 0.85-1.15x (resampling: tempo and pitch move together; independent pitch comes from
  the voices' espeak-ng pitch settings, a phase vocoder would cost more than the pipeline);
* 0.1-0.8 s of leading and trailing silence, peak gain -18 to -1 dBFS, white noise at 20-45 dB SNR.

Written as 22.05 kHz PCM-16 wavs (5.4 s each on average, 230 MB per 1,000) with a manifest for the
``manifest`` importer (``path,text,speaker``)::

    OUT/wavs/LD-000000.wav ...   OUT/manifest-<N>.csv   OUT/corpus.json (seed, count)

    python bench/make_load_corpus.py /tmp/load-corpus --utterances 20000
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 22050
CORPUS_VERSION = 1


@dataclass(frozen=True)
class Voice:
    speaker: str
    voice: str
    words_per_minute: int
    pitch: int  # espeak-ng 0-99


VOICES = (
    Voice("us_m", "en-us", 165, 35), Voice("us_f", "en-us+f3", 150, 65), Voice("scot_m", "en-gb-scotland", 175, 45),
    Voice("rp_m", "en-gb-x-rp", 155, 40), Voice("car_m", "en-029", 170, 50), Voice("us_f2", "en-us+f2", 160, 72),
)
SENTENCES = (
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
)


def base_clips(scratch: Path) -> dict[tuple[int, int], np.ndarray]:
    """``{(voice index, sentence index): float32 samples at SAMPLE_RATE}`` spoken by espeak-ng."""
    clips = {}
    wav = scratch / "clip.wav"
    for v, voice in enumerate(VOICES):
        for s, sentence in enumerate(SENTENCES):
            subprocess.run(["espeak-ng", "-v", voice.voice, "-s", str(voice.words_per_minute), "-p", str(voice.pitch),
                            "-w", str(wav), sentence], check=True, capture_output=True)
            samples, rate = sf.read(wav, dtype="float32")
            clips[v, s] = samples if rate == SAMPLE_RATE else soxr.resample(samples, rate, SAMPLE_RATE)
    return clips


def _draw(seed: int, index: int) -> tuple[np.random.Generator, int, list[int]]:
    """Utterance ``index``'s generator, voice index and sentence indices (the generator then draws the rest)."""
    rng = np.random.default_rng([seed, index])
    v = int(rng.integers(len(VOICES)))
    count = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    return rng, v, [int(s) for s in rng.choice(len(SENTENCES), size=count, replace=False)]


def transcript(seed: int, index: int) -> tuple[str, str]:
    """Text and speaker of utterance ``index``."""
    _, v, sentences = _draw(seed, index)
    return " ".join(SENTENCES[s] for s in sentences), VOICES[v].speaker


def samples_of(clips: dict[tuple[int, int], np.ndarray], seed: int, index: int) -> np.ndarray:
    """Audio of utterance ``index``: float32 [N] at SAMPLE_RATE in [-1, 1]."""
    rng, v, sentences = _draw(seed, index)
    pieces = []
    for position, s in enumerate(sentences):
        if position:
            pieces.append(np.zeros(int(rng.uniform(0.15, 0.6) * SAMPLE_RATE), np.float32))
        pieces.append(clips[v, s])
    speech = soxr.resample(np.concatenate(pieces), SAMPLE_RATE * rng.uniform(0.85, 1.15), SAMPLE_RATE)
    speech *= 10 ** (rng.uniform(-18, -1) / 20) / max(float(np.abs(speech).max()), 1e-9)
    lead, tail = (np.zeros(int(rng.uniform(0.1, 0.8) * SAMPLE_RATE), np.float32) for _ in range(2))
    signal = np.concatenate([lead, speech, tail])
    noise_rms = np.sqrt(np.mean(speech ** 2)) * 10 ** (-rng.uniform(20, 45) / 20)
    signal = signal + rng.normal(0, noise_rms, signal.size).astype(np.float32)
    return np.clip(signal, -1, 1).astype(np.float32)


def utt_name(index: int) -> str:
    return f"LD-{index:06d}"


def write_load_corpus(root: Path, num_utterances: int, *, seed: int = 0) -> Path:
    """Write (or extend) the corpus under ``root`` to ``num_utterances`` and its ``manifest-<N>.csv``;
    returns the manifest. Raises ``ValueError`` if ``root`` holds a corpus of another seed or version."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    meta_path = root / "corpus.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"seed": seed, "version": CORPUS_VERSION}
    if (meta["seed"], meta["version"]) != (seed, CORPUS_VERSION):
        raise ValueError(f"{root} holds a corpus with seed {meta['seed']} version {meta['version']}; "
                         f"choose another folder")
    paths = [Path("wavs") / f"{utt_name(index)}.wav" for index in range(num_utterances)]
    missing = [index for index, path in enumerate(paths) if not (root / path).is_file()]
    if missing:
        with tempfile.TemporaryDirectory() as scratch:
            clips = base_clips(Path(scratch))
        for index in missing:
            sf.write(root / paths[index], samples_of(clips, seed, index), SAMPLE_RATE, subtype="PCM_16")
    rows = [{"path": path.as_posix(), "text": text, "speaker": speaker}
            for path, (text, speaker) in zip(paths, (transcript(seed, index) for index in range(num_utterances)))]
    manifest = root / f"manifest-{num_utterances}.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "text", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    meta_path.write_text(json.dumps({**meta, "utterances": max(num_utterances, meta.get("utterances", 0))}))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--utterances", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = write_load_corpus(args.root, args.utterances, seed=args.seed)
    print(f"{manifest} ({args.utterances} utterances) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
