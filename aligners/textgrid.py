"""MFA TextGrids (``phones`` and ``words`` tiers, read with praatio) as tiling intervals, and the aligner that
turns them into durations (``align.method: textgrid``, and ``mfa`` on MFA's output folder).

Silence stays a token. MFA >= 2 writes pauses as empty intervals, MFA 1 as ``sil`` (edges) or ``sp``
(inside); ming024/FastSpeech2 reads tiers without empty intervals, so every phone after the first pause
is shifted against the mel. Here empty intervals are kept, gaps between intervals (a tier that does not
tile ``[xmin, xmax]``) become silence intervals, and ``""``, ``sil`` and ``sp`` all map to the single
token ``ttsprep.aligners.base.SILENCE``: one pause token whichever MFA version aligned a corpus, so corpora aligned
with different versions share a vocabulary. ``spn`` (spoken noise: a word MFA could not pronounce) is not
silence and stays ``spn``. Intervals are never merged, so a tier of ``n`` intervals gives ``n`` tokens.
"""

from __future__ import annotations

from pathlib import Path

from praatio import textgrid
from praatio.utilities.errors import PraatioException

from ttsprep.aligners.base import SILENCE, Alignment, Interval
from ttsprep.aligners.durations import intervals_to_durations
from ttsprep.aligners.mfa import find_textgrid
from ttsprep.stages.core.errors import AlignmentFailed
from ttsprep.stages.core.reasons import Reason

SILENCE_LABELS = frozenset({"", "sil", "sp"})


def _tile(entries: list[tuple[float, float, str]], xmin_s: float, xmax_s: float) -> list[Interval]:
    """Intervals covering ``[xmin_s, xmax_s]`` without gaps: gaps become silence, labels are mapped."""
    intervals: list[Interval] = []
    cursor = xmin_s
    for start_s, end_s, label in sorted(entries):
        if start_s < cursor - 1e-9:
            raise AlignmentFailed(f"intervals overlap at {start_s:.3f} s", reason=Reason.BAD_TEXTGRID)
        if start_s > cursor:
            intervals.append(Interval(SILENCE, cursor, start_s))
        label = label.strip()
        intervals.append(Interval(SILENCE if label in SILENCE_LABELS else label, start_s, end_s))
        cursor = end_s
    if cursor < xmax_s:
        intervals.append(Interval(SILENCE, cursor, xmax_s))
    return intervals


def read_tier(path: Path, tier: str = "phones") -> list[Interval]:
    """The intervals of ``tier`` tiling ``[xmin, xmax]`` of the TextGrid, silence mapped (module docstring).

    Raises ``AlignmentFailed`` (reason ``bad_textgrid``) for an unreadable file, a missing or non-interval
    tier, or overlapping intervals.
    """
    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True, reportingMode="silence")
    except (OSError, UnicodeDecodeError, ValueError, IndexError, PraatioException) as exc:  # praatio's parser
        # reports malformed files with IndexError / ValueError as well as its own exceptions
        raise AlignmentFailed(f"cannot read TextGrid {path}: {exc}", reason=Reason.BAD_TEXTGRID) from None
    if tier not in grid.tierNames:
        raise AlignmentFailed(f"{path} has no tier '{tier}' (tiers: {list(grid.tierNames)})", reason=Reason.BAD_TEXTGRID)
    found = grid.getTier(tier)
    if not isinstance(found, textgrid.IntervalTier):
        raise AlignmentFailed(f"{path}: tier '{tier}' is not an interval tier", reason=Reason.BAD_TEXTGRID)
    return _tile([tuple(entry) for entry in found.entries], grid.minTimestamp, grid.maxTimestamp)


class TextGridAligner:
    """Durations from ``<textgrid_dir>/**/<local_id>.TextGrid`` (``ttsprep.aligners.base.Aligner``).

    The TextGrids are in the time base of the untrimmed source audio (MFA aligned the files that
    ``ttsprep.aligners.mfa.export_mfa_corpus`` wrote); ``trim_start_s`` shifts them onto the trimmed features.
    """

    def __init__(self, textgrid_dir: Path, *, tier: str = "phones"):
        self.textgrid_dir = Path(textgrid_dir)
        self.tier = tier

    def align(self, local_id: str, *, num_frames: int, trim_start_s: float, sample_rate: int, hop_length: int,
              reduction_factor: int) -> Alignment:
        path = find_textgrid(self.textgrid_dir, local_id)
        if path is None:
            raise AlignmentFailed(f"no {local_id}.TextGrid under {self.textgrid_dir}", reason=Reason.NO_TEXTGRID)
        return intervals_to_durations(read_tier(path, self.tier), num_frames=num_frames, sample_rate=sample_rate,
                                      hop_length=hop_length, offset_s=trim_start_s, reduction_factor=reduction_factor)
