"""Small generators shared by tests: tone-burst speech stand-ins and minimal corpus layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone_bursts(sample_rate: int = 22050, *, bursts: int = 3, burst_s: float = 0.4, gap_s: float = 0.6,
                lead_s: float = 0.3, f0_hz: float = 160.0, noise_dbfs: float = -70.0, seed: int = 0) -> np.ndarray:
    """Harmonic bursts separated by near-silence: a deterministic stand-in for speech, float32 [N]."""
    rng = np.random.default_rng(seed)
    pieces = [np.zeros(int(lead_s * sample_rate))]
    t = np.arange(int(burst_s * sample_rate)) / sample_rate
    for index in range(bursts):
        f0 = f0_hz * (1 + 0.1 * index)
        burst = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.3
        pieces += [burst * np.hanning(t.size), np.zeros(int(gap_s * sample_rate))]
    signal = np.concatenate(pieces)
    signal += rng.normal(0, 10 ** (noise_dbfs / 20), signal.size)
    return signal.astype(np.float32)


def write_ljspeech(root: Path, texts: dict[str, str], *, sample_rate: int = 22050, missing: tuple[str, ...] = (),
                   extra_lines: tuple[str, ...] = ()) -> Path:
    """An LJSpeech-layout corpus with one tone-burst wav per id (ids in ``missing`` get no wav)."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = [f"{utt_id}|{text}|{text}" for utt_id, text in texts.items()] + list(extra_lines)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for index, utt_id in enumerate(texts):
        if utt_id not in missing:
            sf.write(root / "wavs" / f"{utt_id}.wav", tone_bursts(sample_rate, seed=index), sample_rate,
                     subtype="PCM_16")
    return root
