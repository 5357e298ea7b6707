"""Per-token prosody: frame values (F0, energy) averaged over each token's frames, continuous log-F0 and
z-score normalisation, as FastSpeech2-style variance predictors consume them.

Durations count frames in units of the reduction factor ``r`` (``ttsprep.aligners.base.Alignment``); token ``i``
covers frames ``[r * D_i, r * (D_i + d_i))`` with ``D_i`` the sum of the durations before it.
"""

from __future__ import annotations

import numpy as np

from ttsprep.stages.core.errors import InvariantViolation, Rejected
from ttsprep.stages.core.reasons import Reason


def token_means(values: np.ndarray, durations: np.ndarray, *, voiced: np.ndarray | None = None,
                reduction_factor: int = 1) -> np.ndarray:
    """Mean of ``values`` [T] over each token's frames, float32 [N].

    With ``voiced`` (bool [T]) only voiced frames count, and a token without voiced frames gets 0 (as
    ESPnet averages F0); a token of 0 frames gets 0. Raises ``InvariantViolation`` unless the durations
    (int [N], non-negative) cover exactly ``T = r * sum(durations)`` frames.
    """
    values = np.asarray(values, dtype=np.float64)
    frames = np.asarray(durations, dtype=np.int64) * reduction_factor
    if np.any(frames < 0) or frames.sum() != values.shape[0]:
        raise InvariantViolation(f"durations * r={reduction_factor} cover {frames.sum()} frames "
                                 f"(negative: {int(np.sum(frames < 0))}), the values have {values.shape[0]}")
    mask = np.ones(values.shape[0], dtype=bool) if voiced is None else np.asarray(voiced, dtype=bool)
    sums = np.zeros(frames.size)
    counts = np.zeros(frames.size)
    has_frames = frames > 0
    # reduceat sums [start_k, start_k+1): exact token spans once 0-frame tokens (repeated starts) are left out
    starts = (np.cumsum(frames) - frames)[has_frames]
    if starts.size:
        sums[has_frames] = np.add.reduceat(np.where(mask, values, 0.0), starts)
        counts[has_frames] = np.add.reduceat(mask.astype(np.float64), starts)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return means.astype(np.float32)


def interpolate_f0(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Continuous log-F0, float32 [T], from F0 in Hz [T] and the voiced mask [T].

    Unvoiced frames are filled by linear interpolation (in Hz) between the neighbouring voiced frames and
    the ends hold the first and last voiced values (FastSpeech2's and ESPnet's variant), then the log is
    taken. Only voiced frames with a positive F0 count. Raises ``Rejected`` (reason ``no_voiced_frames``)
    when there is none.
    """
    f0 = np.asarray(f0, dtype=np.float64)
    known = np.flatnonzero(np.asarray(voiced, dtype=bool) & (f0 > 0))
    if known.size == 0:
        raise Rejected("no voiced frame: log-F0 is undefined", reason=Reason.NO_VOICED_FRAMES)
    return np.log(np.interp(np.arange(f0.size), known, f0[known])).astype(np.float32)


def normalise(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(values - mean) / std`` as float32; ``std`` must be positive (``ValueError`` otherwise)."""
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    return ((np.asarray(values, dtype=np.float64) - mean) / std).astype(np.float32)


def normalise_token_prosody(pitch: np.ndarray, energy: np.ndarray, stats: dict, *, speaker: str | None,
                            pitch_is_log: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-token pitch and energy [N] as z-scores with the statistics of ``stats.json``, float32 [N] each.

    ``speaker``: use that speaker's statistics (``None``: the dataset's global ones). Pitch is compared in
    log-F0: voiced-mean pitch in Hz is logged first and tokens without voiced frames (0 Hz) stay 0;
    ``pitch_is_log`` (the interpolated variant) is normalised as it is. Raises ``ValueError`` when the
    statistics hold no log-F0 or energy for that speaker.
    """
    chosen = stats["global"] if speaker is None else stats["speakers"][speaker]
    log_f0, frame_energy = chosen["log_f0"], chosen["energy"]
    if log_f0["std"] is None or frame_energy["std"] is None:
        raise ValueError(f"no log-F0 or energy statistics for speaker {speaker!r}")
    pitch = np.asarray(pitch, dtype=np.float64)
    if pitch_is_log:
        pitch_z = normalise(pitch, log_f0["mean"], log_f0["std"])
    else:
        voiced = pitch > 0
        pitch_z = np.zeros(pitch.shape, dtype=np.float32)
        pitch_z[voiced] = normalise(np.log(pitch[voiced]), log_f0["mean"], log_f0["std"])
    return pitch_z, normalise(energy, frame_energy["mean"], frame_energy["std"])
