"""Token durations from a teacher-forced attention matrix (Tacotron 2), with quality measures.

The hard alignment is the monotonic alignment search over ``log(attention + eps)``, so durations are
monotonic, each >= 1 and sum exactly to the number of decoder steps (T / r). Two measures say whether
the attention is trustworthy:

* ``focus_rate``: mean over decoder steps of the largest attention weight (ESPnet's focus rate); near 1 for
  a sharp alignment, near 1 / N for a blurred one;
* ``diagonality``: Pearson correlation between the decoder step and the token it attends most (argmax);
  near 1 for an alignment that moves forward through the text, near 0 or negative for one that is stuck,
  jumps around or runs backwards. It is insensitive to speaking-rate changes and pauses, unlike a fixed
  band around the straight diagonal. A constant argmax (attention stuck on one token) counts as 0.
"""

from __future__ import annotations

import numpy as np

from ttsprep.aligners.mas import monotonic_alignment_search
from ttsprep.stages.core.config import AlignConfig
from ttsprep.stages.core.errors import AlignmentFailed
from ttsprep.stages.core.reasons import Reason

EPS = 1e-8


def attention_quality(attention: np.ndarray) -> dict[str, float]:
    """``focus_rate`` and ``diagonality`` (see the module docstring) of attention [T_dec, N] (unpadded)."""
    attention = np.asarray(attention, dtype=np.float64)
    focus_rate = float(attention.max(axis=1).mean())
    argmax = attention.argmax(axis=1)
    if attention.shape[0] < 2 or np.all(argmax == argmax[0]):
        diagonality = 0.0
    else:
        diagonality = float(np.corrcoef(np.arange(attention.shape[0]), argmax)[0, 1])
    return {"focus_rate": focus_rate, "diagonality": diagonality}


def durations_from_attention(attention: np.ndarray, token_length: int, frame_length_r: int, *,
                             config: AlignConfig = AlignConfig()) -> tuple[np.ndarray, dict[str, float]]:
    """Durations int32 [token_length] summing to ``frame_length_r`` (= T / r), and the quality measures.

    attention: [T_dec, N] weights of one utterance, possibly padded beyond ``frame_length_r`` steps and
    ``token_length`` tokens. Raises ``AlignmentFailed`` with reason ``attention_low_quality`` (message with
    the measured values) when ``focus_rate`` or ``diagonality`` fall below the thresholds of ``config``, and
    with reason ``too_few_frames`` when there are fewer decoder steps than tokens.
    """
    attention = np.asarray(attention, dtype=np.float64)[:frame_length_r, :token_length]
    if attention.shape != (frame_length_r, token_length):
        raise ValueError(f"attention of shape {attention.shape} is smaller than ({frame_length_r}, {token_length})")
    quality = attention_quality(attention)
    if (quality["focus_rate"] < config.attention_min_focus_rate
            or quality["diagonality"] < config.attention_min_diagonality):
        raise AlignmentFailed(
            f"focus_rate={quality['focus_rate']:.3f} (min {config.attention_min_focus_rate}), "
            f"diagonality={quality['diagonality']:.3f} (min {config.attention_min_diagonality})",
            reason=Reason.ATTENTION_LOW_QUALITY)
    return monotonic_alignment_search(np.log(attention.T + EPS)), quality
