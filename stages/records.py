"""The record types that flow between stages.

``Utterance`` is the one record every importer produces and every manifest row holds. ``Reject`` is a
row of the rejects ledger. Both are frozen: stages return ``dataclasses.replace(utt, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Reason codes used by ingest. Filters and stages add their own (see ``stages.errors``).
MISSING_AUDIO = "missing_audio"
UNREADABLE_AUDIO = "unreadable_audio"
MISSING_TRANSCRIPT = "missing_transcript"
EMPTY_TRANSCRIPT = "empty_transcript"
INVALID_ENCODING = "invalid_encoding"
DUPLICATE_ID = "duplicate_id"
PATH_ESCAPES_ROOT = "path_escapes_root"
MALFORMED_METADATA = "malformed_metadata"


@dataclass(frozen=True, slots=True)
class SourceUtterance:
    """What an importer knows about one utterance before its audio is probed.

    ``audio_path`` is absolute and already checked to lie inside the corpus root. ``local_id`` is unique
    within the dataset; ingest prefixes it with the dataset name to form ``utt_id``.
    """

    local_id: str
    audio_path: str
    text: str
    speaker: str
    language: str
    text_normalized: str | None = None
    pinyin: str | None = None
    accent: str | None = None
    gender: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Utterance:
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
    text_normalized: str | None = None
    pinyin: str | None = None
    accent: str | None = None
    gender: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """A manifest row (``extra`` as a list of key/value pairs, Arrow's map layout)."""
        row = {name: getattr(self, name) for name in self.__slots__}
        row["extra"] = sorted(self.extra.items())
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Utterance":
        values = {name: row[name] for name in cls.__slots__ if name in row}
        values["extra"] = dict(row.get("extra") or [])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Reject:
    """A row of the rejects ledger: which utterance, at which stage, why, and the measured detail."""

    utt_id: str
    dataset: str
    stage: str
    reason: str
    detail: str
    audio_path: str = ""

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}
