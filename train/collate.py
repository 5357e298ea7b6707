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
    speaker_embedding  float32 [B, 256]     GE2E speaker embedding of each utterance (zero-shot conditioning)

With ``add_blank`` (Grad-TTS / VITS) the blank id is put between every two tokens and at both ends
(N tokens -> 2N + 1); blanks get duration 0 and token pitch/energy 0.

Collation costs a constant number of numpy calls per feature and batch plus one row copy per utterance and
feature (the arrays are views into decoded row groups, so this is the only copy); the invariants are checked
on length and sum vectors of the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ttsprep.stages.core.errors import InvariantViolation
from ttsprep.stages.step3_text.vocab import SPECIAL_TOKENS

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
    speaker_embedding: np.ndarray | None = None  # float32 [256], unit norm


def _arrays(items: Sequence[TrainItem], name: str) -> list[np.ndarray] | None:
    """Every item's ``name`` array, or ``None`` when the first item has none (the feature was not loaded)."""
    arrays = [getattr(item, name) for item in items]
    if arrays[0] is None:
        return None
    for item, values in zip(items, arrays):
        if values is None:
            raise InvariantViolation(f"{item.utt_id}: has no {name} while other utterances of its batch do")
    return arrays


def _mask(lengths: np.ndarray, width: int) -> np.ndarray:
    """bool [B, width]: True at positions below each row's length."""
    return np.arange(width) < lengths[:, None]


def _padded(arrays: Sequence[np.ndarray], lengths: np.ndarray, padding_value: float = 0,
            dtype: np.dtype | None = None) -> np.ndarray:
    """Stack arrays of lengths ``lengths`` (axis 0) into ``[B, max_length, ...]``, filled with ``padding_value``.

    One copy per row: a slice copy beats a masked scatter of the concatenation for ``[T, n_mels]`` rows.
    """
    width = int(lengths.max(initial=0))
    out = np.empty((len(arrays), width, *arrays[0].shape[1:]), dtype=dtype or arrays[0].dtype)
    for row, (values, length) in enumerate(zip(arrays, lengths.tolist())):
        out[row, :length] = values
        out[row, length:] = padding_value
    return out


def _interspersed(padded: np.ndarray, lengths: np.ndarray, fill: int | float, padding_value: int | float) -> np.ndarray:
    """``[B, N]`` -> ``[B, 2N + 1]``: ``fill`` before, between and after each row's values (row ``b`` keeps
    ``2 * lengths[b] + 1`` positions), ``padding_value`` after that."""
    out = np.full((padded.shape[0], 2 * padded.shape[1] + 1), fill, dtype=padded.dtype)
    out[:, 1::2] = padded
    out[~_mask(2 * lengths + 1, out.shape[1])] = padding_value
    return out


def _raise_first(bad: np.ndarray, utt_ids: Sequence[str], message: Callable[[int], str]) -> None:
    """Raise ``InvariantViolation`` for the first row where ``bad`` is True (``message(row)`` describes it)."""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvariantViolation(f"{utt_ids[row]}: {message(row)}")


@dataclass(frozen=True)
class Collate:
    """Callable turning ``TrainItem``s into a ``Batch`` (see the module docstring); raises
    ``InvariantViolation`` naming the first utterance of the batch whose per-frame arrays do not have
    ``num_frames`` rows, whose durations do not sum to ``num_frames / reduction_factor`` or whose token and
    duration counts differ.

    ``pad_id``/``blank_id`` are the vocabulary's ``<pad>`` and ``<blank>`` ids.
    """

    reduction_factor: int = 1
    add_blank: bool = False
    pad_id: int = SPECIAL_TOKENS.index("<pad>")
    blank_id: int = SPECIAL_TOKENS.index("<blank>")

    def __call__(self, items: Sequence[TrainItem]) -> Batch:
        utt_ids = [item.utt_id for item in items]
        num_frames = np.fromiter((item.num_frames for item in items), dtype=np.int64, count=len(items))
        arrays = {name: found for name in (*FRAME_FEATURES, "tokens", *TOKEN_FEATURES)
                  if (found := _arrays(items, name)) is not None}
        lengths = {name: np.fromiter(map(len, values), dtype=np.int64, count=len(items))
                   for name, values in arrays.items()}
        for name in FRAME_FEATURES:
            if name in lengths:
                _raise_first(lengths[name] != num_frames, utt_ids, lambda row: (
                    f"{name} has {lengths[name][row]} frames, expected num_frames={num_frames[row]}"))
        if "tokens" in lengths and "durations" in lengths:
            _raise_first(lengths["tokens"] != lengths["durations"], utt_ids, lambda row: (
                f"{lengths['tokens'][row]} phonemes but {lengths['durations'][row]} durations"))

        batch: Batch = {
            "utt_ids": utt_ids,
            "speaker_ids": torch.tensor([item.speaker_id for item in items], dtype=torch.int64),
            "language_ids": torch.tensor([item.language_id for item in items], dtype=torch.int64),
            "accent_ids": torch.tensor([item.accent_id for item in items], dtype=torch.int64),
            "mel_lengths": torch.from_numpy(num_frames),
            "mel_mask": torch.from_numpy(_mask(num_frames, int(num_frames.max()))),
        }
        for name in FRAME_FEATURES:
            if name in arrays:
                batch[name] = torch.from_numpy(_padded(arrays[name], num_frames))
        if "tokens" in arrays:
            token_lengths = lengths["tokens"]
            tokens = _padded(arrays["tokens"], token_lengths, self.pad_id, dtype=np.int64)
            if self.add_blank:
                tokens = _interspersed(tokens, token_lengths, self.blank_id, self.pad_id)
                token_lengths = 2 * token_lengths + 1
            batch["tokens"] = torch.from_numpy(tokens)
            batch["token_lengths"] = torch.from_numpy(token_lengths)
            batch["token_mask"] = torch.from_numpy(_mask(token_lengths, tokens.shape[1]))
        for name in TOKEN_FEATURES:
            if name in arrays:
                values = _padded(arrays[name], lengths[name], dtype=np.int64 if name == "durations" else None)
                batch[name] = torch.from_numpy(_interspersed(values, lengths[name], 0, 0) if self.add_blank else values)
        if (embeddings := _arrays(items, "speaker_embedding")) is not None:
            batch["speaker_embedding"] = torch.from_numpy(np.stack(embeddings).astype(np.float32, copy=False))
        if "durations" in batch:
            total = batch["durations"].sum(1).numpy()
            r = self.reduction_factor
            _raise_first(total * r != num_frames, utt_ids, lambda row: (
                f"durations sum to {total[row]}, expected num_frames / r = {num_frames[row]} / {r}"))
        return batch
