"""Durations and per-token prosody for one utterance, by the aligner the dataset's config names.

``textgrid`` and ``mfa`` read TextGrids (MFA's output, or a folder the user already has); both give
durations on the features' frame grid that sum to ``num_frames / r``. ``none`` and ``tacotron2`` give
none here: the Tacotron 2 aligner needs the finished shards to train on, and adds its durations after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aligners.base import Alignment
from aligners.textgrid import TextGridAligner
from stages.config import StageConfig
from stages.errors import ConfigError
from stages.prosody import interpolate_f0, token_means

TEXTGRID_METHODS = ("textgrid", "mfa")


def local_id(utt_id: str) -> str:
    """The id within its corpus (``"ljspeech:LJ001-0001"`` -> ``"LJ001-0001"``): the TextGrid's file name."""
    return utt_id.split(":", 1)[1]


def durations_for(utt_id: str, config: StageConfig, *, num_frames: int, trim_start_s: float,
                  textgrid_dir: Path | None) -> Alignment | None:
    """Tokens and durations (int32, units of r frames, sum ``num_frames / r``), or ``None`` without an aligner.

    Raises ``AlignmentFailed`` (e.g. reason ``no_textgrid``) when the aligner has nothing for this utterance.
    """
    if config.align.method not in TEXTGRID_METHODS:
        return None
    if textgrid_dir is None:
        raise ConfigError(f"align.method={config.align.method!r} needs a TextGrid folder (align.textgrid_dir)")
    return TextGridAligner(textgrid_dir).align(
        local_id(utt_id), num_frames=num_frames, trim_start_s=trim_start_s, sample_rate=config.audio.sample_rate,
        hop_length=config.features.hop_length, reduction_factor=config.align.reduction_factor)


def token_prosody(durations: np.ndarray, f0: np.ndarray, voiced: np.ndarray, energy: np.ndarray, *,
                  reduction_factor: int, interpolate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-token pitch and energy, float32 [N] each.

    Pitch is the mean F0 in Hz over each token's voiced frames (0 for a token without any), or with
    ``interpolate`` the mean of the continuous log-F0 over all its frames (FastSpeech2's variant; a fully
    unvoiced utterance then raises ``Rejected``). Energy is the mean over all the token's frames.
    """
    if interpolate:
        pitch = token_means(interpolate_f0(f0, voiced), durations, reduction_factor=reduction_factor)
    else:
        pitch = token_means(f0, durations, voiced=voiced, reduction_factor=reduction_factor)
    return pitch, token_means(energy, durations, reduction_factor=reduction_factor)
