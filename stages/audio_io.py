"""The only module that decodes or encodes audio files: in-process, no subprocess per file.

libsndfile (through soundfile) reads wav, flac, ogg/vorbis, opus and mp3 in-process; resampling uses
soxr. Every decoded signal passes ``check_audio`` (finite, non-empty) before any DSP sees it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from stages.errors import InvalidAudio


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """Header facts of an audio file. ``num_samples`` counts frames per channel."""

    sample_rate: int
    channels: int
    num_samples: int
    audio_format: str  # e.g. "WAV/PCM_16", "FLAC/PCM_16", "MP3/MPEG_LAYER_III"

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0


def probe_audio(path: Path) -> AudioInfo:
    """Read the header of ``path`` in-process. Raises ``InvalidAudio`` if it is not a readable audio file."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise InvalidAudio(f"cannot read audio header of {path}: {exc}") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise InvalidAudio(f"{path}: invalid header (sample rate {info.samplerate}, channels {info.channels})")
    if info.frames <= 0:
        raise InvalidAudio(f"{path}: holds no samples", reason="empty_audio")
    return AudioInfo(info.samplerate, info.channels, int(info.frames), f"{info.format}/{info.subtype}")


def file_checksum(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 (hex) of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def check_audio(samples: np.ndarray, what: str) -> np.ndarray:
    """Gate before DSP: a non-empty 1-D float array of finite samples. Returns it unchanged."""
    if samples.ndim != 1 or samples.size == 0:
        raise InvalidAudio(f"{what}: no samples", reason="empty_audio")
    if not np.all(np.isfinite(samples)):
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise InvalidAudio(f"{what}: {bad} non-finite samples (NaN or inf)", reason="non_finite_audio")
    return samples


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode ``path``, downmix to mono and resample to ``sample_rate`` (soxr HQ).

    Returns float32 samples, shape ``[num_samples]``, nominally in [-1, 1]. Raises ``InvalidAudio``.
    """
    try:
        samples, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise InvalidAudio(f"cannot decode {path}: {exc}") from None
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    check_audio(mono, str(path))
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(mono, dtype=np.float32)


def encode_flac(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode float samples in [-1, 1] as 16-bit FLAC bytes (clipped, lossless for PCM-16)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode in-memory audio (e.g. a shard's FLAC column) to float32 mono samples and their rate."""
    samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(sample_rate)
