"""The only module that decodes or encodes audio files: in-process, no subprocess per file.

libsndfile (through soundfile) reads wav, flac, ogg/vorbis, opus and mp3 in-process; resampling uses
soxr. Every decoded signal passes ``check_audio`` (finite, non-empty) before any DSP sees it.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ttsprep.stages.core.errors import InvalidAudio
from ttsprep.stages.core.reasons import Reason

PCM16_FULL_SCALE = 32768.0  # pydub's max_possible_amplitude for 2-byte samples, libsndfile's scale
#: Decoded sample frames may fall this short of the header's count (two MP3 frames: encoder delay and
#: padding estimates) before a file counts as truncated.
TRUNCATION_TOLERANCE_FRAMES = 2 * 1152


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
        raise InvalidAudio(f"{path}: holds no samples", reason=Reason.EMPTY_AUDIO)
    if info.format in ("WAV", "WAVEX"):
        _check_wav_data_size(Path(path))
    return AudioInfo(info.samplerate, info.channels, int(info.frames), f"{info.format}/{info.subtype}")


def _check_wav_data_size(path: Path) -> None:
    """``InvalidAudio(reason=Reason.TRUNCATED_AUDIO)`` when the RIFF ``data`` chunk declares more bytes than the
    file holds after it (an interrupted copy); libsndfile would silently decode what is left."""
    file_bytes = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(12)  # "RIFF", size, "WAVE"
        while header := handle.read(8):
            if len(header) < 8:
                return
            chunk_id, chunk_bytes = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                available = file_bytes - handle.tell()
                if chunk_bytes not in (0, 0xFFFFFFFF) and chunk_bytes > available:  # 0 / -1: streamed, unknown
                    raise InvalidAudio(f"{path}: truncated: the header declares {chunk_bytes} bytes of audio "
                                       f"data, the file holds {available}", reason=Reason.TRUNCATED_AUDIO)
                return
            handle.seek(chunk_bytes + (chunk_bytes & 1), io.SEEK_CUR)  # chunks are padded to even sizes


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
        raise InvalidAudio(f"{what}: no samples", reason=Reason.EMPTY_AUDIO)
    if not np.all(np.isfinite(samples)):
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise InvalidAudio(f"{what}: {bad} non-finite samples (NaN or inf)", reason=Reason.NON_FINITE_AUDIO)
    return samples


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode ``path``, downmix to mono and resample to ``sample_rate`` (soxr HQ).

    Returns float32 samples, shape ``[num_samples]``, nominally in [-1, 1]. Raises ``InvalidAudio``, with
    reason ``truncated_audio`` when the decoder stops well short of the header's frame count.
    """
    try:
        with sf.SoundFile(str(path)) as audio_file:
            declared_frames, source_rate = audio_file.frames, audio_file.samplerate
            samples = audio_file.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise InvalidAudio(f"cannot decode {path}: {exc}") from None
    if samples.shape[0] < declared_frames - TRUNCATION_TOLERANCE_FRAMES:
        raise InvalidAudio(f"{path}: truncated: decoded {samples.shape[0]} of the {declared_frames} sample frames "
                           f"its header declares", reason=Reason.TRUNCATED_AUDIO)
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    check_audio(mono, str(path))
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(mono, dtype=np.float32)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Mono samples as int16 PCM ``[num_samples]``: int16 unchanged, floats as ``rint(x * 32768)`` clipped.

    This is libsndfile's own float to PCM-16 conversion (its FLAC and WAV writers), and the inverse of
    its float decode of a 16-bit file (which divides by 32768).
    """
    if samples.dtype == np.int16:
        return samples
    if not np.issubdtype(samples.dtype, np.floating):
        raise TypeError(f"expected int16 PCM or float samples, got {samples.dtype}")
    scaled = samples * PCM16_FULL_SCALE  # the input's precision (a Python float does not promote)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16)


def encode_flac(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode float samples in [-1, 1] (or int16 PCM) as 16-bit FLAC bytes (clipped, lossless for PCM-16).

    The PCM conversion is done here (``to_pcm16``, vectorised): libsndfile's per-sample conversion of
    float input was a quarter of the encoding time, and gives the same bytes.
    """
    buffer = io.BytesIO()
    sf.write(buffer, to_pcm16(samples), sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode in-memory audio (e.g. a shard's FLAC column) to float32 mono samples and their rate."""
    samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(sample_rate)
