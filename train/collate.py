"""From a list of utterances to one batch of padded tensors, with the TTS invariants checked per batch.

A batch (``Batch``) holds, for the features the items carry (B utterances, N tokens, T frames)::

    utt_ids        list[str]
    speaker_ids, language_ids, accent_ids   int64 [B]   (-1 where the shard has no accent)
    mel            float32 [B, T, n_mels]   natural-log mel, 0-padded
    mel_lengths    int64 [B]                frames (num_frames; always present)
    mel_mask       bool [B, T]              True on real frames (always present)
    f0, energy     float32 [B, T]           Hz (0 unvoiced), STFT L2 norm
    voiced         bool [B, T]
    tokens         int64 [B, N]             vocabulary ids, ``pad_id``-padded
    token_lengths  int64 [B]
    token_mask     bool [B, N]
    durations      int64 [B, N]             frames / r per token (only when every item has durations)
    token_pitch, token_energy   float32 [B, N]

With ``add_blank`` (Grad-TTS / VITS) the blank id is put between every two tokens and at both ends
(N tokens -> 2N + 1); blanks get duration 0 and token pitch/energy 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stages.errors import InvariantViolation
from stages.text.vocab import SPECIAL_TOKENS

Batch = dict[str, Any]
FRAME_FEATURES = ("mel", "f0", "energy", "voiced")
TOKEN_FEATURES = ("durations", "token_pitch", "token_energy")


@dataclass(slots=True)
class TrainItem:
    """One utterance as read from a shard; arrays are ``None`` when not loaded or null in the shard.

    Arrays read from a shard are read-only views into the decoded row group.
    """

    utt_id: str
    num_frames: int
    speaker_id: int
    language_id: int
    accent_id: int
    mel: np.ndarray | None = None            # float32 [T, n_mels]
    f0: np.ndarray | None = None             # float32 [T] Hz
    energy: np.ndarray | None = None         # float32 [T]
    voiced: np.ndarray | None = None         # bool [T]
    tokens: np.ndarray | None = None         # int64 [N] vocabulary ids
    durations: np.ndarray | None = None      # int32 [N] frames / r
    token_pitch: np.ndarray | None = None    # float32 [N]
    token_energy: np.ndarray | None = None   # float32 [N]
    audio: bytes | None = None               # FLAC


def check_batch_invariants(items: Sequence[TrainItem], reduction_factor: int = 1) -> None:
    """Raise ``InvariantViolation`` naming the first utterance that breaks a frame-grid invariant.

    Per-frame arrays have ``num_frames`` rows; ``durations`` match the tokens in number and sum to
    ``num_frames / reduction_factor``.
    """
    for item in items:
        for name in FRAME_FEATURES:
            values = getattr(item, name)
            if values is not None and len(values) != item.num_frames:
                raise InvariantViolation(f"{item.utt_id}: {name} has {len(values)} frames, "
                                         f"expected num_frames={item.num_frames}")
        if item.durations is None:
            continue
        total = int(item.durations.sum())
        if total * reduction_factor != item.num_frames:
            raise InvariantViolation(f"{item.utt_id}: durations sum to {total}, expected num_frames / r = "
                                     f"{item.num_frames} / {reduction_factor}")
        if item.tokens is not None and len(item.tokens) != len(item.durations):
            raise InvariantViolation(f"{item.utt_id}: {len(item.tokens)} phonemes but {len(item.durations)} durations")


def intersperse(values: np.ndarray, fill: int | float) -> np.ndarray:
    """``[fill, v0, fill, v1, ..., v(N-1), fill]``: N values -> 2N + 1 (Grad-TTS ``add_blank``)."""
    out = np.full(2 * len(values) + 1, fill, dtype=values.dtype)
    out[1::2] = values
    return out


def _padded(arrays: Sequence[np.ndarray], padding_value: float = 0, dtype: np.dtype | None = None) -> torch.Tensor:
    """Stack arrays of different lengths (axis 0) into ``[B, max_length, ...]``, filled with ``padding_value``."""
    lengths = [len(a) for a in arrays]
    out = np.empty((len(arrays), max(lengths), *arrays[0].shape[1:]), dtype=dtype or arrays[0].dtype)
    for row, (values, length) in enumerate(zip(arrays, lengths)):
        out[row, :length] = values
        out[row, length:] = padding_value
    return torch.from_numpy(out)


def _mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size)[None, :] < lengths[:, None]


@dataclass(frozen=True)
class Collate:
    """Callable turning ``TrainItem``s into a ``Batch`` (see the module docstring); checks invariants first.

    ``pad_id``/``blank_id`` are the vocabulary's ``<pad>`` and ``<blank>`` ids.
    """

    reduction_factor: int = 1
    add_blank: bool = False
    pad_id: int = SPECIAL_TOKENS.index("<pad>")
    blank_id: int = SPECIAL_TOKENS.index("<blank>")

    def __call__(self, items: Sequence[TrainItem]) -> Batch:
        check_batch_invariants(items, self.reduction_factor)
        batch: Batch = {
            "utt_ids": [item.utt_id for item in items],
            "speaker_ids": torch.tensor([item.speaker_id for item in items], dtype=torch.int64),
            "language_ids": torch.tensor([item.language_id for item in items], dtype=torch.int64),
            "accent_ids": torch.tensor([item.accent_id for item in items], dtype=torch.int64),
        }
        batch["mel_lengths"] = torch.tensor([item.num_frames for item in items], dtype=torch.int64)
        batch["mel_mask"] = _mask(batch["mel_lengths"], int(batch["mel_lengths"].max()))
        for name in FRAME_FEATURES:
            if getattr(items[0], name) is not None:
                batch[name] = _padded([self._present(item, name) for item in items])
        if items[0].tokens is not None:
            tokens = [self._present(item, "tokens") for item in items]
            tokens = [intersperse(t, self.blank_id) for t in tokens] if self.add_blank else tokens
            batch["tokens"] = _padded(tokens, self.pad_id)
            batch["token_lengths"] = torch.tensor([len(t) for t in tokens], dtype=torch.int64)
            batch["token_mask"] = _mask(batch["token_lengths"], batch["tokens"].shape[1])
        for name in TOKEN_FEATURES:
            if getattr(items[0], name) is not None:
                values = [self._present(item, name) for item in items]
                values = [intersperse(v, 0) for v in values] if self.add_blank else values
                batch[name] = _padded(values, dtype=np.int64 if name == "durations" else None)
        return batch

    @staticmethod
    def _present(item: TrainItem, name: str) -> np.ndarray:
        values = getattr(item, name)
        if values is None:
            raise InvariantViolation(f"{item.utt_id}: has no {name} while other utterances of its batch do")
        return values
