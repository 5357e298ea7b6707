"""Monotonic alignment search (Glow-TTS, Kim et al. 2020): the best monotonic hard alignment of tokens to frames.

A path assigns every frame to one token; it starts at token 0, ends at token N - 1 and at each frame either
stays on its token or moves to the next one. Every token therefore gets at least one frame, and the path with
the largest summed log-probability is found by dynamic programming:

    Q[n, t] = log_probs[n, t] + max(Q[n, t - 1], Q[n - 1, t - 1]),    Q[0, 0] = log_probs[0, 0].
"""

from __future__ import annotations

import numpy as np

from ttsprep.stages.core.errors import AlignmentFailed
from ttsprep.stages.core.reasons import Reason


def monotonic_alignment_search(log_probs: np.ndarray) -> np.ndarray:
    """Durations (frames per token) of the best monotonic path through ``log_probs`` [N_tokens, T_frames].

    Returns int32 [N] with every entry >= 1 and ``sum == T``. The forward pass is vectorised over tokens
    (one numpy step per frame); ties prefer staying on the current token. Raises ``AlignmentFailed``
    (reason ``too_few_frames``) when T < N, and ``ValueError`` for non-finite or non-2-D input.
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2 or log_probs.size == 0:
        raise ValueError(f"log_probs must be a non-empty [N_tokens, T_frames] matrix, got shape {log_probs.shape}")
    if not np.isfinite(log_probs).all():
        raise ValueError("log_probs must be finite (use log(p + eps))")
    num_tokens, num_frames = log_probs.shape
    if num_frames < num_tokens:
        raise AlignmentFailed(f"{num_tokens} tokens cannot fit in {num_frames} frames", reason=Reason.TOO_FEW_FRAMES)

    scores = np.full((num_tokens, num_frames), -np.inf)
    scores[0, 0] = log_probs[0, 0]
    for t in range(1, num_frames):
        previous = scores[:, t - 1]
        from_previous_token = np.concatenate(([-np.inf], previous[:-1]))
        scores[:, t] = log_probs[:, t] + np.maximum(previous, from_previous_token)

    durations = np.zeros(num_tokens, dtype=np.int32)
    token = num_tokens - 1
    for t in range(num_frames - 1, 0, -1):
        durations[token] += 1
        if token > 0 and (token == t or scores[token - 1, t - 1] > scores[token, t - 1]):
            token -= 1
    durations[token] += 1  # frame 0; the path is forced to reach token 0 there
    return durations
