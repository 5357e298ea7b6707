"""Voice-conversion pairs: parallel utterances of two speakers, aligned frame by frame with DTW.

Features are mel-cepstra: the DCT of a log-mel frame, scaled as cepstral coefficients
(``c_n = 1/M * sum_m log_mel[m] * cos(pi * n * (m + 1/2) / M)``, scipy's ``norm="forward"``) and without
``c0`` (loudness), so that the Euclidean frame distance is proportional to the mel-cepstral distortion.
They approximate SPTK mel-cepstra (mel filterbank instead of all-pass warping); distortions are
comparable with each other, not with published MCD figures. The DTW itself is ``librosa.sequence.dtw``
(steps (1,1), (0,1), (1,0), equal weights).
"""

from __future__ import annotations

import math
import unicodedata
from collections import defaultdict
from itertools import permutations

import librosa
import numpy as np
import scipy.fft
from scipy.spatial.distance import cdist

MCD_DB_PER_NEPER = 10.0 / math.log(10.0)


def _text_key(text: str) -> str:
    """Case-folded text without punctuation and with single spaces: what "the same sentence" compares."""
    text = unicodedata.normalize("NFKC", text)
    kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(kept.casefold().split())


def pair_parallel_utterances(records: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Ordered ``(source_utt_id, target_utt_id)`` pairs of one sentence read by two different speakers.

    ``records``: ``(utt_id, speaker, text)``. Texts match after case folding and removing punctuation.
    Both directions are listed; a sentence read by ``S`` speakers gives ``S * (S - 1)`` pairs (times the
    takes). Sorted by sentence, then ids, so the result does not depend on the order of ``records``.
    """
    by_text: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for utt_id, speaker, text in records:
        by_text[_text_key(text)].append((utt_id, speaker))
    pairs: list[tuple[str, str]] = []
    for key in sorted(k for k in by_text if k):
        pairs += sorted((src, tgt) for (src, src_speaker), (tgt, tgt_speaker) in permutations(by_text[key], 2)
                        if src_speaker != tgt_speaker)
    return pairs


def mel_cepstrum(log_mel: np.ndarray, order: int = 24) -> np.ndarray:
    """Mel-cepstra c1..c_order, float64 ``[T, order]``, of natural-log mel spectra ``[T, n_mels]``."""
    log_mel = np.asarray(log_mel, dtype=np.float64)
    if order >= log_mel.shape[1]:
        raise ValueError(f"order={order} needs more than {order} mel bins, got {log_mel.shape[1]}")
    return scipy.fft.dct(log_mel, type=2, norm="forward", axis=1)[:, 1:order + 1]


def dtw_align(source_feats: np.ndarray, target_feats: np.ndarray) -> np.ndarray:
    """The minimum-cost monotonic path between ``[Ts, D]`` and ``[Tt, D]`` under Euclidean frame distance.

    Returns int64 ``[L, 2]`` of ``(source_frame, target_frame)`` from ``(0, 0)`` to ``(Ts - 1, Tt - 1)``; each
    step advances one or both indices by exactly 1.
    """
    cost = cdist(np.asarray(source_feats, dtype=np.float64), np.asarray(target_feats, dtype=np.float64))
    _, path = librosa.sequence.dtw(C=cost)
    return np.ascontiguousarray(path[::-1], dtype=np.int64)


def source_to_target_durations(path: np.ndarray, num_source_frames: int, num_target_frames: int) -> np.ndarray:
    """Target frames per source frame, int32 ``[Ts]``, summing to ``Tt``.

    Each target frame goes to the first source frame the path pairs it with, so every target frame is
    counted once; source frames the path passes over horizontally (compressed) get 0.
    """
    path = np.asarray(path)
    targets, first = np.unique(path[:, 1], return_index=True)
    if not np.array_equal(targets, np.arange(num_target_frames)) or path[:, 0].max() >= num_source_frames:
        raise ValueError(f"the path does not join {num_source_frames} source to {num_target_frames} target frames")
    return np.bincount(path[first, 0], minlength=num_source_frames).astype(np.int32)


def mel_cepstral_distortion(src_mcep: np.ndarray, tgt_mcep: np.ndarray, path: np.ndarray) -> float:
    """Mean over the path's frame pairs of ``10 / ln 10 * sqrt(2 * sum_n (c_n - c'_n)^2)``, in dB.

    ``src_mcep`` / ``tgt_mcep``: cepstra without ``c0`` (``mel_cepstrum``), ``[Ts, order]`` / ``[Tt, order]``.
    """
    difference = np.asarray(src_mcep)[path[:, 0]] - np.asarray(tgt_mcep)[path[:, 1]]
    return float(np.mean(MCD_DB_PER_NEPER * np.sqrt(2.0 * np.sum(difference ** 2, axis=1))))


def match_segments(src_segment_frames: np.ndarray, tgt_segment_frames: np.ndarray, path: np.ndarray, *,
                   min_agreement: float = 0.9) -> np.ndarray | None:
    """Frames per matched pause-delimited segment, int32 ``[S, 2]`` of (source, target), or None.

    ``*_segment_frames``: the rows' ``snt_duration``. Segments match when both utterances have ``S``
    segments and at least ``min_agreement`` of the path's frame pairs join segment ``k`` to segment ``k``
    (a pause found in one reading but another in the other gives the same count yet disagrees).
    """
    src_frames = np.asarray(src_segment_frames, dtype=np.int64)
    tgt_frames = np.asarray(tgt_segment_frames, dtype=np.int64)
    if src_frames.size != tgt_frames.size:
        return None
    src_segment = np.repeat(np.arange(src_frames.size), src_frames)[path[:, 0]]
    tgt_segment = np.repeat(np.arange(tgt_frames.size), tgt_frames)[path[:, 1]]
    if np.mean(src_segment == tgt_segment) < min_agreement:
        return None
    return np.stack([src_frames, tgt_frames], axis=1).astype(np.int32)
