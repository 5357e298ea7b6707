"""Global alignment of two symbol sequences (Needleman-Wunsch): which phone of one transcription is which
phone of another (an aligner's phones against the dataset's tokens, or a reference's against ours).

``similarity(a, b)`` scores a substitution (positive for a match, negative for a mismatch); a gap costs
``gap`` (negative). Ties prefer a substitution, then a gap in ``b``, so equal-length sequences of similar
symbols pair one to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Pair = tuple[int | None, int | None]


def align_sequences(a: Sequence[str], b: Sequence[str], similarity: Callable[[str, str], float], *,
                    gap: float = -1.0) -> list[Pair]:
    """The best-scoring global alignment as ``(i, j)`` pairs in order: ``(i, j)`` pairs ``a[i]`` with ``b[j]``,
    ``(i, None)`` leaves ``a[i]`` unmatched and ``(None, j)`` leaves ``b[j]`` unmatched. Every index of
    ``a`` and of ``b`` appears exactly once. O(len(a) * len(b)) time and memory."""
    n, m = len(a), len(b)
    scores = np.array([[similarity(x, y) for y in b] for x in a], dtype=np.float64).reshape(n, m)
    total = np.zeros((n + 1, m + 1))
    total[:, 0] = gap * np.arange(n + 1)
    total[0, :] = gap * np.arange(m + 1)
    for i in range(1, n + 1):
        row, above = total[i], total[i - 1]
        diagonal = above[:-1] + scores[i - 1]
        from_above = above[1:] + gap
        best = np.maximum(diagonal, from_above)
        for j in range(1, m + 1):  # the left move depends on this row's previous cell
            row[j] = max(best[j - 1], row[j - 1] + gap)
    pairs: list[Pair] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and np.isclose(total[i, j], total[i - 1, j - 1] + scores[i - 1, j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and np.isclose(total[i, j], total[i - 1, j] + gap):
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]
