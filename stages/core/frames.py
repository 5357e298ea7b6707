"""The single frame grid: how many frames a signal has, and fitting per-frame arrays onto it.

Frames are centred (librosa's ``center=True``): frame ``t`` is centred on sample ``t * hop_length``, so a
signal of ``num_samples`` has ``1 + num_samples // hop_length`` frames. Every per-frame array (mel, f0,
energy, voiced mask) goes through ``fit_to_frames`` so that all have exactly ``num_frames`` rows.
"""

from __future__ import annotations

import numpy as np

from ttsprep.stages.core.errors import InvariantViolation


def num_frames_for(num_samples: int, hop_length: int) -> int:
    """Frame count of a centred STFT over ``num_samples`` samples."""
    return 1 + num_samples // hop_length


def fit_to_frames(values: np.ndarray, num_frames: int, *, tolerance: int = 2, what: str = "array") -> np.ndarray:
    """Cut or edge-pad ``values`` (frames on axis 0) to exactly ``num_frames`` rows.

    Different tools round the last frame differently (pyworld vs STFT), so a difference of up to
    ``tolerance`` frames is reconciled; anything larger is a bug and raises ``InvariantViolation``.
    """
    difference = values.shape[0] - num_frames
    if abs(difference) > tolerance:
        raise InvariantViolation(f"{what} has {values.shape[0]} frames, expected {num_frames} (±{tolerance})")
    if difference > 0:
        return values[:num_frames]
    if difference < 0:
        pad = [(0, -difference)] + [(0, 0)] * (values.ndim - 1)
        return np.pad(values, pad, mode="edge")
    return values


def pad_to_multiple(values: np.ndarray, reduction_factor: int) -> np.ndarray:
    """Edge-pad frames (axis 0) up to a multiple of ``reduction_factor`` (Tacotron-style r)."""
    remainder = values.shape[0] % reduction_factor
    if remainder == 0:
        return values
    pad = [(0, reduction_factor - remainder)] + [(0, 0)] * (values.ndim - 1)
    return np.pad(values, pad, mode="edge")
