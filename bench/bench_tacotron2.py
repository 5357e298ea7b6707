"""Benchmark: train the Tacotron 2 aligner on the LJSpeech sample and compare its word boundaries with MFA's.

Features: 22.05 kHz, log-mel (natural log of the magnitude mel, n_fft 1024, hop 256, 80 mels, 0-8 kHz);
tokens: the characters of the lowercased normalised transcript. After training, durations are extracted by
teacher forcing, and the start/end of every word (a run of letters/apostrophes; the chars between words,
spaces and punctuation, absorb the pauses) is compared with the ``words`` tier of the MFA TextGrids. The
baseline spreads the frames uniformly over the characters.

    python bench/bench_tacotron2.py --steps 300                 # CPU
    python bench/bench_tacotron2.py --steps 3000 --device cuda  # GPU
"""

from __future__ import annotations

import argparse
import difflib
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
from praatio import textgrid

from ttsprep.models.tacotron2 import Tacotron2Config
from ttsprep.stages.core.config import AlignConfig
from ttsprep.stages.core.frames import pad_to_multiple
from ttsprep.train.tacotron2_trainer import TrainConfig, extract_durations, train_tacotron2

SAMPLE_RATE, HOP_LENGTH, N_MELS = 22050, 256, 80
WORD = re.compile(r"[a-z']+")
DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "ljspeech"


@dataclass(frozen=True)
class Clip:
    utt_id: str
    text: str  # lowercased normalised transcript; one token per character
    mel: np.ndarray  # [T, n_mels], T a multiple of r
    num_frames: int  # before padding to a multiple of r


def load_clips(corpus: Path, r: int) -> list[Clip]:
    clips = []
    for line in (corpus / "LJSpeech-1.1" / "metadata.csv").read_text(encoding="utf-8").splitlines():
        utt_id, _, normalized = line.split("|")
        audio, _ = librosa.load(corpus / "LJSpeech-1.1" / "wavs" / f"{utt_id}.wav", sr=SAMPLE_RATE)
        mel = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=1024, hop_length=HOP_LENGTH,
                                             n_mels=N_MELS, fmin=0.0, fmax=8000.0, power=1.0)
        log_mel = np.log(np.maximum(mel, 1e-5)).T.astype(np.float32)
        clips.append(Clip(utt_id, normalized.lower(), pad_to_multiple(log_mel, r), log_mel.shape[0]))
    return clips


def standardise(clips: list[Clip]) -> list[Clip]:
    """Scale every mel bin to zero mean and unit variance over the corpus (faster, steadier training)."""
    frames = np.concatenate([c.mel[:c.num_frames] for c in clips])
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-5
    return [Clip(c.utt_id, c.text, (c.mel - mean) / std, c.num_frames) for c in clips]


def collate(clips: list[Clip], symbols: dict[str, int]) -> dict:
    tokens = torch.zeros(len(clips), max(len(c.text) for c in clips), dtype=torch.long)
    mel = torch.zeros(len(clips), max(len(c.mel) for c in clips), N_MELS)
    for index, clip in enumerate(clips):
        tokens[index, :len(clip.text)] = torch.tensor([symbols[ch] for ch in clip.text])
        mel[index, :len(clip.mel)] = torch.from_numpy(clip.mel)
    return {"tokens": tokens, "token_lengths": torch.tensor([len(c.text) for c in clips]), "mel": mel,
            "mel_lengths": torch.tensor([len(c.mel) for c in clips]), "utt_ids": [c.utt_id for c in clips]}


def word_boundaries_s(text: str, durations: np.ndarray, r: int) -> tuple[list[str], np.ndarray]:
    """Words of ``text`` and their [start, end] in seconds from per-character durations (in units of r frames).
    A boundary between frames k - 1 and k of the centred frame grid lies at (k - 0.5) * hop."""
    edges = np.concatenate([[0], np.cumsum(durations)]) * r
    words = [m for m in WORD.finditer(text)]
    frames = np.array([[edges[m.start()], edges[m.end()]] for m in words], dtype=np.float64)
    return [m.group() for m in words], np.maximum(frames - 0.5, 0) * HOP_LENGTH / SAMPLE_RATE


def mfa_words(path: Path) -> tuple[list[str], np.ndarray]:
    tier = textgrid.openTextgrid(str(path), includeEmptyIntervals=False).getTier("words")
    entries = [(word, start, end) for start, end, label in tier.entries
               for word in [label.lower()] if WORD.fullmatch(word)]
    return [e[0] for e in entries], np.array([[e[1], e[2]] for e in entries])


def boundary_errors_ms(ours: tuple[list[str], np.ndarray], reference: tuple[list[str], np.ndarray]) -> np.ndarray:
    """|start - start_ref| and |end - end_ref| in ms for the words the two sequences share (difflib matching)."""
    matcher = difflib.SequenceMatcher(a=ours[0], b=reference[0], autojunk=False)
    errors = [np.abs(ours[1][block.a:block.a + block.size] - reference[1][block.b:block.b + block.size]).ravel()
              for block in matcher.get_matching_blocks()]
    return np.concatenate(errors) * 1000


def summarise(name: str, errors_ms: np.ndarray) -> None:
    print(f"{name:>22}: median {np.median(errors_ms):6.1f} ms, p90 {np.percentile(errors_ms, 90):6.1f} ms, "
          f"within 50 ms {np.mean(errors_ms <= 50):5.1%} ({errors_ms.size} boundaries)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--r", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--size", choices=["small", "paper"], default="small")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    clips = standardise(sorted(load_clips(args.corpus, args.r), key=lambda c: len(c.mel)))
    symbols = {ch: index + 1 for index, ch in enumerate(sorted({ch for c in clips for ch in c.text}))}
    batches = [collate(clips[i:i + args.batch_size], symbols) for i in range(0, len(clips), args.batch_size)]
    rng = np.random.default_rng(0)
    sizes = {} if args.size == "paper" else dict(
        embedding_dim=64, encoder_dim=128, attention_rnn_dim=128, attention_dim=64, location_n_filters=16,
        decoder_rnn_dim=128, prenet_dim=64, postnet_n_convolutions=0)
    model_cfg = Tacotron2Config(n_symbols=len(symbols) + 1, n_mels=N_MELS, reduction_factor=args.r, **sizes)
    cfg = TrainConfig(model=model_cfg, max_steps=args.steps, learning_rate=args.learning_rate,
                      checkpoint_every=max(args.steps, 1))
    print(f"{len(clips)} clips, {sum(c.num_frames for c in clips)} frames, {len(symbols)} symbols, "
          f"r={args.r}, batch size {args.batch_size}, model '{args.size}'")

    curve: list[tuple[int, float, float]] = []

    def on_step(step: int, losses: dict[str, float]) -> None:
        curve.append((step, losses["total"], losses["guided_attention"]))
        if step % 25 == 0 or step == 1:
            print(f"step {step:5d}  total {losses['total']:.3f}  mel {losses['mel']:.3f}  gate {losses['gate']:.3f}"
                  f"  guided_attention {losses['guided_attention']:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        result = train_tacotron2(lambda: [batches[i] for i in rng.permutation(len(batches))], cfg,
                                 args.out or Path(scratch), device=args.device, on_step=on_step)
        elapsed_s = time.perf_counter() - start
    device = next(result.model.parameters()).device
    print(f"trained {result.step} steps in {elapsed_s:.1f} s on {device}: {result.step / elapsed_s:.2f} steps/s "
          f"({args.threads} thread(s) on CPU)")
    first, last = np.mean([c[1] for c in curve[:10]]), np.mean([c[1] for c in curve[-10:]])
    print(f"loss: mean of first 10 steps {first:.3f}, of last 10 steps {last:.3f}")

    no_thresholds = AlignConfig(attention_min_focus_rate=0.0, attention_min_diagonality=-1.0)
    default = AlignConfig()
    model_errors, uniform_errors, qualities = [], [], []
    textgrids = args.corpus / "alignments" / "mfa_fastspeech2" / "TextGrid" / "LJSpeech"
    by_id = {c.utt_id: c for c in clips}
    for utt_id, durations, quality in extract_durations(result.model, batches, args.r, config=no_thresholds):
        clip = by_id[utt_id]
        reference = mfa_words(textgrids / f"{utt_id}.TextGrid")
        steps = len(clip.mel) // args.r
        uniform = np.diff(np.round(np.linspace(0, steps, len(clip.text) + 1))).astype(np.int32)
        model_errors.append(boundary_errors_ms(word_boundaries_s(clip.text, durations, args.r), reference))
        uniform_errors.append(boundary_errors_ms(word_boundaries_s(clip.text, uniform, args.r), reference))
        passes = (quality["focus_rate"] >= default.attention_min_focus_rate
                  and quality["diagonality"] >= default.attention_min_diagonality)
        qualities.append(passes)
        print(f"{utt_id}: focus_rate {quality['focus_rate']:.3f} diagonality {quality['diagonality']:.3f} "
              f"median word-boundary error {np.median(model_errors[-1]):6.1f} ms"
              f"{'' if passes else '  (below the default thresholds)'}")
    summarise(f"tacotron2 ({result.step} steps)", np.concatenate(model_errors))
    summarise("uniform baseline", np.concatenate(uniform_errors))
    print(f"{sum(qualities)}/{len(qualities)} utterances pass the default attention thresholds")


if __name__ == "__main__":
    main()
