"""Normalisation statistics (log-F0, energy, mel per bin; per speaker and global), mergeable and robust.

Every statistic is a fixed-bin histogram that keeps, per bin, the count, the sum and the sum of squares of
the values that fell into it; values beyond the bin range land in an underflow and an overflow bin. Partial
statistics of different shards therefore merge exactly by addition, in any order. The final mean and std
use only the bins from the one holding the ``TRIM_QUANTILE`` quantile to the one holding the
``1 - TRIM_QUANTILE`` quantile: outliers (an octave-jump F0 of 5000 Hz, a click) fall into excluded tail
bins, while the moments of the kept values are exact. The exclusion is per whole bin, so at most the two
quantile bins' worth of values decide what is cut.

Per speaker: log-F0 (natural log of Hz, voiced frames only) and energy; globally also the log-mel per bin.
A shard saves its partial statistics with ``save`` (an uncompressed .npz of ~1 MB: deflating it took
~40 ms per shard) and the flow merges them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ttsprep.stages.core.atomic import atomic_path
from ttsprep.stages.core.errors import InvariantViolation

TRIM_QUANTILE = 0.005
#: Bins per statistic, uniform on a scale: (scale, low, high, bins). log-F0 in steps of ~35 cents over
#: 30-1600 Hz, energy in 5 % steps over 1e-4..1e4 (uniform in log), log-mel in steps of 0.05 over -12..12
#: (the log floor is log(1e-5) = -11.5). A value's bin is then arithmetic, not a search.
GRIDS = {
    "log_f0": ("linear", np.log(30.0), np.log(1600.0), 200),
    "energy": ("log", np.log(1e-4), np.log(1e4), 378),
    "mel": ("linear", -12.0, 12.0, 480),
}
#: The same bins' edges on the value's own scale (saved with the partial statistics).
EDGES = {
    "log_f0": np.linspace(np.log(30.0), np.log(1600.0), 201),
    "energy": np.geomspace(1e-4, 1e4, 379),
    "mel": np.linspace(-12.0, 12.0, 481),
}
SPEAKER_STATS = ("log_f0", "energy")


def _empty(name: str, channels: int = 1) -> np.ndarray:
    """Histogram float64[3, channels, bins + 2]: count, sum and sum of squares per bin."""
    return np.zeros((3, channels, EDGES[name].size + 1), np.float64)


def _slots(name: str, values: np.ndarray) -> np.ndarray:
    """Each value's histogram slot (int64, shaped like ``values``): 0 below the first edge, ``i`` in
    ``[edge i-1, edge i)``, ``bins + 1`` from the last edge up and for NaN. Equal to
    ``np.searchsorted(EDGES[name], values, side="right")`` up to rounding at the edges, several times faster."""
    scale, low, high, bins = GRIDS[name]
    with np.errstate(divide="ignore", invalid="ignore"):
        position = np.log(values) if scale == "log" else np.array(values, np.float64)
        position -= low
        position *= bins / (high - low)
        position += 1.0
        np.clip(position, 0.0, bins + 1.0, out=position)  # also +-inf; NaN stays
    position[np.isnan(position)] = bins + 1.0
    return position.astype(np.int64)  # truncation: floor, as position >= 0


def _accumulate(histogram: np.ndarray, name: str, values: np.ndarray) -> None:
    """Add ``values`` [n] (one channel) or [n, channels] into ``histogram`` in place."""
    channels, slots = histogram.shape[1], histogram.shape[2]
    values = np.asarray(values, np.float64).reshape(-1, channels)
    index = (np.arange(channels) * slots + _slots(name, values)).ravel()
    flat = values.ravel()
    for row, weights in enumerate((None, flat, flat * flat)):
        histogram[row] += np.bincount(index, weights, minlength=channels * slots).reshape(channels, slots)


def _summary(histogram: np.ndarray) -> dict[str, list]:
    """Trimmed mean, std, count and excluded count, one list entry per channel (mean/std None if empty)."""
    count, total, total_sq = histogram
    cumulative = np.cumsum(count, axis=1)
    num_values = cumulative[:, -1:]
    first = (cumulative < TRIM_QUANTILE * num_values).sum(axis=1, keepdims=True)
    last = (cumulative < (1 - TRIM_QUANTILE) * num_values).sum(axis=1, keepdims=True)
    slot = np.arange(count.shape[1])
    kept = (slot >= first) & (slot <= last)
    n, s, ss = ((a * kept).sum(axis=1) for a in (count, total, total_sq))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    return {"mean": [None if c == 0 else float(m) for m, c in zip(mean, n)],
            "std": [None if c == 0 else float(v) for v, c in zip(std, n)],
            "count": [int(c) for c in n], "excluded": [int(c) for c in num_values[:, 0] - n]}


def _scalar_summary(histogram: np.ndarray) -> dict[str, Any]:
    return {key: values[0] for key, values in _summary(histogram).items()}


class RunningStats:
    """Per-speaker log-F0 and energy histograms plus a global per-bin log-mel histogram."""

    def __init__(self) -> None:
        self._speakers: dict[str, dict[str, np.ndarray]] = {}
        self._mel: np.ndarray | None = None
        #: F0 range used per speaker ({"floor_hz", "ceil_hz", "source", "utterances"}, ``acoustic_rows``).
        self.f0_ranges: dict[str, dict[str, Any]] = {}

    def add(self, speaker: str, *, f0: np.ndarray, voiced: np.ndarray, energy: np.ndarray,
            mel: np.ndarray) -> None:
        """One utterance: f0 float[T] Hz, voiced bool[T], energy float[T], mel float[T, n_mels]."""
        histograms = self._speakers.setdefault(speaker, {name: _empty(name) for name in SPEAKER_STATS})
        voiced_f0 = f0[voiced & (f0 > 0)]
        _accumulate(histograms["log_f0"], "log_f0", np.log(voiced_f0))
        _accumulate(histograms["energy"], "energy", energy)
        if self._mel is None:
            self._mel = _empty("mel", mel.shape[1])
        if self._mel.shape[1] != mel.shape[1]:
            raise InvariantViolation(f"mel has {mel.shape[1]} bins, the statistics hold {self._mel.shape[1]}")
        _accumulate(self._mel, "mel", mel)

    def merge(self, other: RunningStats) -> RunningStats:
        """A new ``RunningStats`` holding both (exact: histograms add up)."""
        merged = RunningStats()
        for source in (self, other):
            for speaker, histograms in source._speakers.items():
                target = merged._speakers.setdefault(speaker, {name: _empty(name) for name in SPEAKER_STATS})
                for name in SPEAKER_STATS:
                    target[name] += histograms[name]
            if source._mel is not None:
                if merged._mel is not None and merged._mel.shape != source._mel.shape:
                    raise InvariantViolation(f"cannot merge mel statistics of {source._mel.shape[1]} and "
                                             f"{merged._mel.shape[1]} bins")
                merged._mel = source._mel.copy() if merged._mel is None else merged._mel + source._mel
            for speaker, used in source.f0_ranges.items():
                merged.f0_ranges[speaker] = _merge_f0_range(merged.f0_ranges.get(speaker), used)
        return merged

    def to_json_dict(self) -> dict[str, Any]:
        """``{"global": {"log_f0": {mean, std, count, excluded}, "energy": {...}, "mel": {mean: [n_mels],
        std: [n_mels], ...}}, "speakers": {speaker: {"log_f0": ..., "energy": ...}}}``; mean/std are None
        where nothing was counted."""
        speakers = {spk: {name: _scalar_summary(h[name]) for name in SPEAKER_STATS}
                    | ({"f0_range": self.f0_ranges[spk]} if spk in self.f0_ranges else {})
                    for spk, h in sorted(self._speakers.items())}
        overall = {name: _scalar_summary(sum((h[name] for h in self._speakers.values()), _empty(name)))
                   for name in SPEAKER_STATS}
        mel = _summary(self._mel if self._mel is not None else _empty("mel", 0))
        return {"global": {**overall, "mel": mel}, "speakers": speakers}

    def save(self, path: Path) -> None:
        """Write the partial statistics to ``path`` (.npz), atomically."""
        speakers = sorted(self._speakers)
        arrays = {f"edges_{name}": edges for name, edges in EDGES.items()}
        arrays["speakers"] = np.array(speakers, dtype=np.str_)
        for name in SPEAKER_STATS:
            arrays[name] = np.stack([self._speakers[s][name] for s in speakers]) if speakers \
                else np.zeros((0, *_empty(name).shape))
        if self._mel is not None:
            arrays["mel"] = self._mel
        arrays["f0_ranges"] = np.array(json.dumps(self.f0_ranges, sort_keys=True))
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> RunningStats:
        """Read what ``save`` wrote; raises ``InvariantViolation`` if it used other bin edges."""
        stats = cls()
        with np.load(path, allow_pickle=False) as data:
            for name, edges in EDGES.items():
                if not np.array_equal(data[f"edges_{name}"], edges):
                    raise InvariantViolation(f"{path}: {name} statistics were binned differently")
            for index, speaker in enumerate(data["speakers"].tolist()):
                stats._speakers[speaker] = {name: data[name][index] for name in SPEAKER_STATS}
            if "mel" in data:
                stats._mel = data["mel"]
            if "f0_ranges" in data:
                stats.f0_ranges = json.loads(str(data["f0_ranges"]))
        return stats


def _merge_f0_range(mine: dict[str, Any] | None, other: dict[str, Any]) -> dict[str, Any]:
    """One speaker's F0 ranges from two shards: the widest, utterances added, the sources joined."""
    if mine is None:
        return dict(other)
    sources = sorted(set(mine["source"].split("+")) | set(other["source"].split("+")))
    return {"floor_hz": min(mine["floor_hz"], other["floor_hz"]), "ceil_hz": max(mine["ceil_hz"], other["ceil_hz"]),
            "source": "+".join(sources), "utterances": mine["utterances"] + other["utterances"]}
