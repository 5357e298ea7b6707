"""JSUT ver1.1 (https://sites.google.com/site/shinnosuketakamichi/publication/jsut): one female Japanese speaker.

About 10 hours, 7,696 utterances, 48 kHz 16-bit mono PCM. Text: CC-BY-SA 4.0 and others (see the corpus's
LICENCE); audio: research and personal use only, no redistribution, commercial use by agreement. Layout
(root = ``jsut_ver1.1``), one folder per subset (basic5000, countersuffix26, loanword128, onomatopee300,
precedent130, repeat500, travel1000, utparaphrase512, voiceactress100)::

    jsut_ver1.1/basic5000/transcript_utf8.txt     # <ID>:<text>
    jsut_ver1.1/basic5000/wav/BASIC5000_0001.wav

Sample line: ``BASIC5000_0001:水をマレーシアから買わなくてはならないのです。``

Quirks: the transcript is split at the first ASCII colon only (the text uses full-width punctuation).
The repeat500 subset reads the same sentences several times. Every folder holding a ``transcript_utf8.txt``
counts as a subset; ``lab/`` folders (jsut-lab alignments) are not read here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, Problem, missing_transcript, read_lines,
                                                        select_subsets, source_utterance)

DEFAULT_LANGUAGE = "ja"
SPEAKER = "jsut"
TRANSCRIPT = "transcript_utf8.txt"


class Options(ImporterOptions):
    #: Subset folders to read; all that hold a transcript_utf8.txt when None.
    subsets: list[str] | None = None


def scan_id_colon_text(root: Path, transcript: Path, wav_dir: Path, *, id_prefix: str, extra: dict[str, str],
                       **fields: Any) -> Iterator[SourceUtterance | Problem]:
    """Utterances of a ``<ID>:<text>`` transcript with audio ``wav_dir/<ID>.wav`` (JSUT, JVS).

    The local id is ``id_prefix + ID``; ``extra`` and ``fields`` are the SourceUtterance fields shared by all
    lines. Wavs in ``wav_dir`` that no line names are ``missing_transcript`` Problems.
    """
    label = transcript.relative_to(root).as_posix()
    listed: set[str] = set()
    for number, line in read_lines(transcript, id_separator=":", label=label):
        if isinstance(line, Problem):
            listed.add(line.local_id)
            yield dataclasses.replace(line, local_id=id_prefix + line.local_id)
            continue
        utt, colon, text = line.partition(":")
        if not colon or not utt.strip():
            yield Problem(f"{label}:{number}", Reason.MALFORMED_METADATA, f"{label} line {number}: expected '<ID>:<text>'")
            continue
        listed.add(utt)
        yield source_utterance(root, (wav_dir / f"{utt}.wav").relative_to(root), local_id=id_prefix + utt, text=text,
                               extra=dict(extra), **fields)
    for audio in sorted(wav_dir.glob("*.wav")):
        if audio.stem not in listed:
            yield missing_transcript(id_prefix + audio.stem, audio, f"no line in {label}")


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    found = sorted(folder.name for folder in root.iterdir() if (folder / TRANSCRIPT).is_file())
    for subset in select_subsets(root, options.subsets, found, "jsut"):
        yield from scan_id_colon_text(root, root / subset / TRANSCRIPT, root / subset / "wav", id_prefix="",
                                      extra={"subset": subset}, speaker=SPEAKER, language=language, gender="female")
