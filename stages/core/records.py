"""The record types that flow between stages.

``Utterance`` is the one record every importer produces and every manifest row holds. ``Reject`` is a
row of the rejects ledger. Both are frozen: stages return ``dataclasses.replace(utt, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ttsprep.stages.core.reasons import REASONS


def utt_id_for(dataset: str, local_id: str) -> str:
    """Stable id, unique across datasets: ``<dataset>:<local id>``."""
    return f"{dataset}:{local_id}"


def local_id(utt_id: str) -> str:
    """The id within its corpus, ``utt_id_for``'s inverse (``"ljspeech:LJ001-0001"`` -> ``"LJ001-0001"``)."""
    return utt_id.split(":", 1)[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Labels:
    """The labels a corpus may give an utterance besides its text and speaker; None where it gives none.

    ``extra`` holds corpus-specific fields (``{"age": "23", "region": "Southern England"}``).
    """

    text_normalized: str | None = None
    pinyin: str | None = None
    accent: str | None = None
    gender: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourceUtterance(Labels):
    """What an importer knows about one utterance before its audio is probed.

    ``audio_path`` is absolute and already checked to lie inside the corpus root. ``local_id`` is unique
    within the dataset; ingest prefixes it with the dataset name to form ``utt_id``.
    """

    local_id: str
    audio_path: str
    text: str
    speaker: str
    language: str


@dataclass(frozen=True, slots=True)
class Utterance(Labels):
    """One utterance in the manifest: the source fields plus the probed audio header.

    Units: ``sample_rate`` in Hz, ``duration_s`` in seconds, ``num_samples`` per channel.
    ``checksum`` is the SHA-256 of the audio file's bytes (hex), the key for incremental re-runs.
    """

    utt_id: str
    dataset: str
    speaker: str
    language: str
    text: str
    audio_path: str
    sample_rate: int
    channels: int
    num_samples: int
    duration_s: float
    checksum: str
    audio_format: str

    def to_row(self) -> dict[str, Any]:
        """A manifest row (``extra`` as a list of key/value pairs, Arrow's map layout)."""
        row = {item.name: getattr(self, item.name) for item in fields(self)}
        row["extra"] = sorted(self.extra.items())
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Utterance":
        values = {item.name: row[item.name] for item in fields(cls) if item.name in row}
        values["extra"] = dict(row.get("extra") or [])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Reject:
    """A row of the rejects ledger: which utterance, at which stage, why, and the measured detail."""

    utt_id: str
    dataset: str
    stage: str
    reason: str  # a ``Reason`` of ``REASONS``
    detail: str
    audio_path: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"ledger reason {self.reason!r} is not in stages/core/reasons.py's REASONS")

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) if name != "reason" else str(self.reason) for name in self.__slots__}
