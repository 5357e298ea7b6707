"""Writers for tiny corpus files used by the importer tests (short sine tones, text with exact bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import Problem


def write_audio(path: Path, *, sample_rate: int = 16000, seconds: float = 0.25, frequency_hz: float = 220.0) -> Path:
    """A mono 16-bit sine tone; the format follows the suffix (.wav, .flac, .mp3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = (0.3 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)
    if path.suffix == ".mp3":
        sf.write(path, tone, sample_rate, format="MP3", subtype="MPEG_LAYER_III")
    else:
        sf.write(path, tone, sample_rate, subtype="PCM_16")
    return path


def write_text(path: Path, content: str | bytes) -> Path:
    """``content`` as UTF-8 (str) or verbatim (bytes, e.g. to plant invalid UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def split_items(items: list) -> tuple[dict[str, SourceUtterance], dict[str, Problem]]:
    """Scan output keyed by local id: ``(utterances, problems)``; fails on duplicate ids."""
    utterances = {item.local_id: item for item in items if isinstance(item, SourceUtterance)}
    problems = {item.local_id: item for item in items if isinstance(item, Problem)}
    assert len(utterances) + len(problems) == len(items), "duplicate local ids in scan output"
    return utterances, problems


def reasons(items: list) -> dict[str, str]:
    """``{local_id: reason}`` of the Problems in a scan's output; fails if one id is reported twice."""
    problems = [(item.local_id, item.reason) for item in items if isinstance(item, Problem)]
    found = dict(problems)
    assert len(found) == len(problems), f"an id reported more than once: {problems}"
    return found
