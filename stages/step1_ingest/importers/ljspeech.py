"""LJSpeech-1.1 (Keith Ito, public domain): one female US English speaker, 13,100 clips, 22.05 kHz.

Layout::

    LJSpeech-1.1/metadata.csv      # ID|Transcription|Normalized Transcription  (no header, no quoting)
    LJSpeech-1.1/wavs/<ID>.wav     # mono PCM-16, 22050 Hz

Sample line: ``LJ001-0001|Printing, in the only sense ...|Printing, in the only sense ...``.
Quotes inside fields are literal (LJ001-0007), so the file is split on ``|`` and never parsed as CSV.
A line that is not UTF-8 is an ``invalid_encoding`` Problem under its ID; a wav in ``wavs/`` that no line
names is a ``missing_transcript`` Problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, Problem, missing_transcript, read_lines,
                                                        source_utterance)

DEFAULT_LANGUAGE = "en"
SPEAKER = "LJ"


class Options(ImporterOptions):
    pass


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    metadata = root / "metadata.csv"
    if not metadata.is_file():
        raise ConfigError(f"ljspeech: {metadata} not found (root must be the LJSpeech-1.1 folder)")
    listed: set[str] = set()
    for number, line in read_lines(metadata, id_separator="|"):
        if isinstance(line, Problem):
            listed.add(line.local_id)
            yield line
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0]:
            yield Problem(f"metadata.csv:{number}", Reason.MALFORMED_METADATA, f"line {number}: expected ID|text|normalized")
            continue
        local_id, text = fields[0], fields[1]
        listed.add(local_id)
        yield source_utterance(root, f"wavs/{local_id}.wav", local_id=local_id, text=text,
                               text_normalized=fields[2] if len(fields) > 2 and fields[2] else None,
                               speaker=SPEAKER, language=language, gender="female", accent="us")
    for audio in sorted((root / "wavs").glob("*.wav")):
        if audio.stem not in listed:
            yield missing_transcript(audio.stem, audio, "no line in metadata.csv")
