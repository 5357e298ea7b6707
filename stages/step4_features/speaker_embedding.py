"""Speaker embeddings with Resemblyzer's pretrained GE2E encoder, batched and without Resemblyzer's runtime.

The encoder is the 3-layer LSTM (40 -> 256) + linear (256 -> 256) + ReLU of Real-Time-Voice-Cloning, whose weights
ship as ``resemblyzer/pretrained.pt`` in the ``resemblyzer==0.1.4`` wheel (install it with ``--no-deps``: we only
read that file, never import the package). Features, partial utterances and averaging reproduce
``resemblyzer.VoiceEncoder.embed_utterance(preprocess_wav(wav, sr))`` to ~2e-7 per component, but all partials
of all utterances of a batch go through the LSTM together, in fixed-size chunks (``SpeakerEncoder.chunk``), so an
utterance's embedding does not depend on what else is in the batch.

Resemblyzer's ``preprocess_wav`` steps are kept by default (soxr HQ resampling to 16 kHz, raising an RMS below
-30 dBFS to -30 dBFS, VAD-dropping the middle of pauses longer than ~0.2 s); together they cost ~0.4 ms per audio
second. Both matter even on trimmed, loudness-normalised audio. The encoder reads a power (not log) mel, so it is
not scale-invariant: the same clip at half the amplitude embeds at cosine ~0.96 to the original, so embeddings
depend on the pipeline's loudness target. Without the VAD step the shared clips embed at cosine 0.96-0.999 to
Resemblyzer's (the speaker-verification EER is unchanged).

Cost: ~1.3 partials of 160 frames (1.6 s) per audio second, each a full LSTM pass from a zero state; with one torch
thread that is ~5 ms per partial, i.e. ~150x realtime for the encoder. Setting the thread count is the caller's
business (``torch.set_num_threads(1)`` in pipeline workers). Output is byte-identical across runs and processes for
the same input, torch build, CPU instruction set and thread count; other CPUs may differ in the last bits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

import librosa
import numpy as np
import soxr

SAMPLE_RATE = 16_000  # Hz, the encoder's input rate
HOP = 160  # samples: 10 ms
N_FFT = 400  # samples: 25 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # frames per partial utterance (1.6 s)
PARTIAL_RATE = 1.3  # partials per second of audio
MIN_COVERAGE = 0.75  # keep a zero-padded last partial if at least this fraction of it is audio
TARGET_DBFS = -30.0  # volume normalisation target (raise only)
EMBEDDING_DIM = 256


def prepare_wav(wav: np.ndarray, sample_rate: int, *, normalize_volume: bool = True,
                trim_silences: bool = True) -> np.ndarray:
    """Mono waveform [n > 0] at any rate (float, -1..1) -> float32 [m] at 16 kHz as Resemblyzer's ``preprocess_wav``.

    Resamples with soxr HQ to ``ceil(n * 16000 / sample_rate)`` samples (= ``librosa.resample``), raises an RMS
    below -30 dBFS to -30 dBFS, and drops the middle of pauses longer than ~0.2 s (webrtcvad, mode 3), keeping the
    whole waveform if the VAD finds no speech at all.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or not len(wav):
        raise ValueError(f"expected a non-empty mono waveform, got shape {wav.shape}")
    if sample_rate != SAMPLE_RATE:
        n = int(np.ceil(len(wav) * SAMPLE_RATE / sample_rate))
        wav = soxr.resample(wav, sample_rate, SAMPLE_RATE, quality="soxr_hq")
        wav = np.pad(wav, (0, max(0, n - len(wav))))[:n]
    if normalize_volume:
        rms = np.sqrt(np.mean((wav * 32767) ** 2))
        if 0 < rms:
            change = TARGET_DBFS - 20 * np.log10(rms / 32767)
            if change > 0:
                wav = wav * (10 ** (change / 20))
    if trim_silences:
        trimmed = _trim_long_silences(wav)
        wav = trimmed if len(trimmed) else wav
    return wav


def _trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """Resemblyzer's ``trim_long_silences`` (30 ms VAD windows, moving average of 8, dilation of 7)."""
    import webrtcvad  # from webrtcvad-wheels; only needed for this option
    from scipy.ndimage import binary_dilation

    win = 30 * SAMPLE_RATE // 1000
    wav = wav[: len(wav) - len(wav) % win]
    pcm = np.round(wav * 32767).astype("<i2").tobytes()
    vad = webrtcvad.Vad(3)
    flags = np.array([vad.is_speech(pcm[i * 2:(i + win) * 2], SAMPLE_RATE) for i in range(0, len(wav), win)])
    padded = np.concatenate((np.zeros(3), flags, np.zeros(4)))  # moving average of width 8, as Resemblyzer pads it
    acc = np.cumsum(padded, dtype=float)
    acc[8:] = acc[8:] - acc[:-8]
    mask = np.round(acc[7:] / 8).astype(bool)
    mask = binary_dilation(mask, np.ones(7))
    return wav[np.repeat(mask, win)]


def partial_starts(n_samples: int, rate: float = PARTIAL_RATE, min_coverage: float = MIN_COVERAGE) -> np.ndarray:
    """Start frames (int64 [p], p >= 1) of the 160-frame partials of a 16 kHz waveform of ``n_samples`` samples.

    Same slices as ``VoiceEncoder.compute_partial_slices``: a step of round(100 / rate) frames, and a last partial
    kept only if at least ``min_coverage`` of it is audio (or if it is the only one).
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round(SAMPLE_RATE / rate / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate} gives a step of {step} frames, outside 1..{PARTIAL_FRAMES}")
    starts = np.arange(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


def encoder_mel(wav16k: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """16 kHz waveform [n] -> the encoder's input, a power (not log) mel spectrogram float32 [frames, 40].

    25 ms Hann window, 10 ms hop, centred frames, Slaney mel bands 0-8 kHz (``wav_to_mel_spectrogram``). The
    waveform is first zero-padded to the end of the last partial (``starts``, default ``partial_starts(n)``), so
    ``frames >= starts[-1] + 160`` and every partial can be sliced from the result.
    """
    if starts is None:
        starts = partial_starts(len(wav16k))
    end = (int(starts[-1]) + PARTIAL_FRAMES) * HOP
    wav16k = np.pad(np.asarray(wav16k, dtype=np.float32), (0, max(0, end - len(wav16k))))
    mel = librosa.feature.melspectrogram(y=wav16k, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    return np.ascontiguousarray(mel.astype(np.float32).T)


def encoder_input(wav: np.ndarray, sample_rate: int, *, normalize_volume: bool = True, trim_silences: bool = True,
                  rate: float = PARTIAL_RATE, min_coverage: float = MIN_COVERAGE) -> tuple[np.ndarray, np.ndarray]:
    """A waveform (any rate) -> ``(encoder mel [frames, 40], partial starts)`` for ``SpeakerEncoder.embed_mels``:
    the per-utterance part of ``SpeakerEncoder.embed`` (numpy only, no torch), so a caller can batch the LSTM."""
    w = prepare_wav(wav, sample_rate, normalize_volume=normalize_volume, trim_silences=trim_silences)
    starts = partial_starts(len(w), rate, min_coverage)
    return encoder_mel(w, starts), starts


@contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the previous count (results depend on it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encoder_missing() -> str | None:
    """What this machine lacks to compute speaker embeddings (torch, resemblyzer's weights), or None; imports nothing."""
    if find_spec("torch") is None:
        return "torch is not installed (pip install -e '.[train]')"
    try:
        path = weights_path()
    except ModuleNotFoundError as error:
        return str(error)
    return None if path.is_file() else f"{path} is missing (pip install --no-deps --force-reinstall resemblyzer==0.1.4)"


@lru_cache(maxsize=1)
def weights_path() -> Path:
    """``pretrained.pt`` inside the installed resemblyzer package (found without importing the package)."""
    spec = find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("speaker embeddings need the weights of resemblyzer: "
                                  "pip install --no-deps resemblyzer==0.1.4")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


@lru_cache(maxsize=1)
def encoder_version() -> str:
    """``resemblyzer-<version>-<sha256[:12] of pretrained.pt>``, for cache keys and index.json."""
    digest = hashlib.sha256(weights_path().read_bytes()).hexdigest()[:12]
    return f"resemblyzer-{version('resemblyzer')}-{digest}"


def __getattr__(name: str) -> str:  # ENCODER_VERSION, computed on first use (hashing the 17 MB file takes ~20 ms)
    if name == "ENCODER_VERSION":
        return encoder_version()
    raise AttributeError(name)


class SpeakerEncoder:
    """The GE2E encoder on CPU; ``SpeakerEncoder.shared()`` loads it once per process (~0.1 s).

    ``chunk`` partials go through the LSTM per call (the last chunk zero-padded): ~16 is fastest on one thread, and
    a fixed size keeps results independent of batch composition.
    """

    def __init__(self, path: str | Path | None = None, chunk: int = 16):
        import torch  # optional dependency (extra "speaker"); imported only when an encoder is built

        state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)["model_state"]
        self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear = torch.nn.Linear(256, EMBEDDING_DIM)
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.eval()
        self.chunk = chunk

    @classmethod
    @lru_cache(maxsize=1)
    def shared(cls) -> "SpeakerEncoder":
        return cls()

    def embed(self, wavs: list[np.ndarray], sample_rate: int, *, normalize_volume: bool = True,
              trim_silences: bool = True, rate: float = PARTIAL_RATE,
              min_coverage: float = MIN_COVERAGE) -> np.ndarray:
        """Mono waveforms (any lengths, one rate in Hz) -> unit-norm embeddings float32 [len(wavs), 256]."""
        mels, starts = [], []
        for wav in wavs:
            mel, s = encoder_input(wav, sample_rate, normalize_volume=normalize_volume, trim_silences=trim_silences,
                                   rate=rate, min_coverage=min_coverage)
            mels.append(mel)
            starts.append(s)
        return self.embed_mels(mels, starts)

    def embed_mels(self, mels: list[np.ndarray], starts: list[np.ndarray]) -> np.ndarray:
        """Encoder mels ([frames, 40] each) and their partial start frames -> embeddings float32 [len(mels), 256].

        Each partial is embedded (last LSTM state -> linear -> ReLU -> L2 norm); an utterance's embedding is the
        L2-normalised mean of its partials'.
        """
        import torch

        if not mels:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        parts = np.stack([m[s:s + PARTIAL_FRAMES] for m, ss in zip(mels, starts) for s in ss])
        pad = -len(parts) % self.chunk
        parts = torch.from_numpy(np.concatenate([parts, np.zeros((pad, PARTIAL_FRAMES, N_MELS), np.float32)]))
        with torch.inference_mode():
            out = []
            for batch in parts.split(self.chunk):
                _, (hidden, _) = self.lstm(batch)
                e = torch.relu(self.linear(hidden[-1]))
                out.append(e / torch.linalg.vector_norm(e, dim=1, keepdim=True))
            partial_embeds = torch.cat(out).numpy()
        bounds = np.cumsum([0] + [len(s) for s in starts])
        embeds = np.stack([partial_embeds[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
        return (embeds / np.linalg.norm(embeds, axis=1, keepdims=True)).astype(np.float32)


def leave_one_out_similarity(embeddings: np.ndarray, speaker_ids, min_utterances: int = 3) -> np.ndarray:
    """Cosine of each utterance to the mean of its speaker's other utterances, float64 [N] in -1..1.

    ``embeddings`` [N, 256] unit-norm; ``speaker_ids`` [N]. NaN where the speaker has fewer than ``min_utterances``
    utterances (this one included).
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(speaker_ids)
    out = np.full(len(emb), np.nan)
    for spk in np.unique(ids):
        idx = np.flatnonzero(ids == spk)
        if len(idx) < max(2, min_utterances):
            continue
        others = emb[idx].sum(axis=0) - emb[idx]  # [n, 256]: sum over the other utterances
        others /= np.linalg.norm(others, axis=1, keepdims=True)
        out[idx] = np.einsum("ij,ij->i", others, emb[idx])
    return out


def speaker_centroids(embeddings: np.ndarray, speaker_ids) -> dict:
    """Per speaker: ``{"centroid": float32 [256] unit-norm, "mean": m, "std": s, "count": n}``.

    ``mean``/``std`` are of the cosines of the speaker's utterances to that centroid (their own included).
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(speaker_ids)
    result = {}
    for spk in np.unique(ids):
        e = emb[ids == spk]
        c = e.mean(axis=0)
        c /= np.linalg.norm(c)
        cos = e @ c
        result[spk.item() if hasattr(spk, "item") else spk] = {
            "centroid": c.astype(np.float32), "mean": float(cos.mean()), "std": float(cos.std()),
            "count": len(e)}
    return result
