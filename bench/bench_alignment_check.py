"""Benchmark: does the synthesis aligner's transcript check (``SynthesisAligner._check``) tell matched
transcript/audio pairs from mismatched ones, over every clip in ``../shared/corpora``?

Each dataset of ``datasets.yaml`` is ingested; each clip is read at 22.05 kHz (``ttsprep.stages.core.audio_io.load_audio``,
no trimming) and its transcript goes through the pipeline's text front-end (``normalize_text``,
``phonemize``). Pairs: every clip with its own transcript (``match``); with ``--wrong`` other clips'
transcripts of the same language (``wrong``); every ``--every``-th clip's transcript spoken by tone bursts
(``harmonic_bursts``, about one burst a second of the clip) and by white noise of the clip's
length (``tones``, ``noise``). For each pair: the real signal's ``shape_change_db`` and the
``synthesis_dtw.Match`` values. Printed: min..max per corpus, pair kind and value, then the share of each
kind the aligner's limits reject.

    python bench/bench_alignment_check.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.signal import resample_poly  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from ttsprep.aligners import synthesis_aligner as sa  # noqa: E402
from ttsprep.aligners import synthesis_dtw  # noqa: E402
from ttsprep.aligners.base import SpeechInput  # noqa: E402
from ttsprep.stages.core.audio_io import load_audio  # noqa: E402
from ttsprep.stages.step1_ingest.ingest import ingest_dataset  # noqa: E402
from ttsprep.stages.step1_ingest.project import load_project  # noqa: E402
from ttsprep.stages.step3_text.g2p import phonemize  # noqa: E402
from ttsprep.stages.step3_text.normalize import base_language, normalize_text  # noqa: E402

SR, HOP = 22050, 256
KINDS = ("match", "wrong", "tones", "noise")
VALUES = ("change_db", "mismatch", "contrast", "ratio")



def harmonic_bursts(bursts: int, *, seed: int) -> np.ndarray:
    """Not speech: ``bursts`` Hann-windowed 0.4 s harmonic tones (5 partials, 160 Hz rising 10 % a burst) 0.6 s
    apart after 0.3 s, with noise at -70 dBFS; float32 at ``SR``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * SR)) / SR
    pieces = [np.zeros(int(0.3 * SR))]
    for index in range(bursts):
        tone = sum(np.sin(2 * np.pi * 160.0 * (1 + 0.1 * index) * k * t) / k for k in range(1, 6)) * 0.3
        pieces += [tone * np.hanning(t.size), np.zeros(int(0.6 * SR))]
    signal = np.concatenate(pieces)
    return (signal + rng.normal(0, 10 ** (-70 / 20), signal.size)).astype(np.float32)

def clips() -> list[dict]:
    """Every ingested utterance whose transcript the front-end accepts: id, dataset, language, text, tokens,
    audio (float32 at ``SR``)."""
    out = []
    for dataset in load_project(ROOT / "datasets.yaml").datasets:
        for utt in ingest_dataset(dataset, workers=2).utterances:
            text = normalize_text(utt.text, utt.language)
            out.append(dict(id=utt.utt_id, dataset=dataset.name, language=utt.language, text=text,
                            tokens=phonemize(text, utt.language, pinyin=utt.pinyin),
                            audio=load_audio(Path(utt.audio_path), SR)))
    return out


def measure(samples: np.ndarray, clip: dict) -> dict[str, float]:
    """The check's values for ``samples`` read as ``clip``'s transcript (the aligner's own steps)."""
    speech = SpeechInput(samples=samples, sample_rate=SR, hop_length=HOP, num_frames=samples.size // HOP + 1,
                         reduction_factor=1, text=clip["text"], tokens=clip["tokens"], language=clip["language"])
    synth, _ = sa._synthesize(speech)
    hop = HOP // sa.FINE_STEPS_PER_HOP
    audio = resample_poly(synth.samples, SR, synth.sample_rate).astype(np.float32)
    synth_feats, synth_silent, _ = synthesis_dtw.features(audio, SR, hop)
    real_feats, real_silent, change_db = synthesis_dtw.features(samples, SR, hop)
    _, match = synthesis_dtw.align(synth_feats, real_feats, synth_silent, real_silent)
    return dict(change_db=change_db, mismatch=match.mismatch, contrast=match.contrast, ratio=match.ratio)


def rejected(values: dict[str, float]) -> bool:
    """Whether ``SynthesisAligner``'s default limits refuse these values."""
    return (values["change_db"] < sa.MIN_SHAPE_CHANGE_DB or values["mismatch"] > sa.MAX_MISMATCH
            or values["contrast"] > sa.MAX_CONTRAST or values["ratio"] > sa.MAX_RATIO)


def pairs(all_clips: list[dict], wrong: int, every: int) -> list[dict]:
    """One row per (kind, clip): dataset, id, kind, the check's values."""
    rows = []
    for index, clip in enumerate(all_clips):
        samples = clip["audio"]
        rows.append(dict(dataset=clip["dataset"], id=clip["id"], kind="match", **measure(samples, clip)))
        peers = [c for c in all_clips if c is not clip
                 and base_language(c["language"]) == base_language(clip["language"])]
        for n in range(min(wrong, len(peers))):
            other = peers[(index * 7 + n * 5) % len(peers)]
            rows.append(dict(dataset=clip["dataset"], id=clip["id"], kind="wrong", **measure(samples, other)))
        if index % every == 0:
            tones = harmonic_bursts(max(2, int(samples.size / SR)), seed=index)
            noise = np.random.default_rng(index).normal(0, 0.05, samples.size).astype(np.float32)
            rows.append(dict(dataset=clip["dataset"], id=clip["id"], kind="tones", **measure(tones, clip)))
            rows.append(dict(dataset=clip["dataset"], id=clip["id"], kind="noise", **measure(noise, clip)))
    return rows


def report(rows: list[dict]) -> None:
    datasets = sorted({r["dataset"] for r in rows}) + ["ALL"]
    for value in VALUES:
        print(f"== {value}")
        for dataset in datasets:
            line = f"{dataset:16s}"
            for kind in KINDS:
                got = [r[value] for r in rows if r["kind"] == kind and dataset in ("ALL", r["dataset"])]
                line += f"  {kind} {min(got):5.2f}..{max(got):5.2f}" if got else f"  {kind}      -     "
            print(line)
    print("== rejected by the default limits")
    for dataset in datasets:
        line = f"{dataset:16s}"
        for kind in KINDS:
            got = [rejected(r) for r in rows if r["kind"] == kind and dataset in ("ALL", r["dataset"])]
            line += f"  {kind} {sum(got):3d}/{len(got):3d}"
        print(line)
    for r in rows:
        if r["kind"] == "match" and rejected(r):
            print("  matched but rejected:", r["id"], {v: round(r[v], 3) for v in VALUES})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wrong", type=int, default=3, help="other transcripts per clip")
    parser.add_argument("--every", type=int, default=4, help="tones and noise for every n-th clip")
    args = parser.parse_args()
    report(pairs(clips(), args.wrong, args.every))


if __name__ == "__main__":
    main()
