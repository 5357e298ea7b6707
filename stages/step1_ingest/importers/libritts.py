"""LibriTTS (https://www.openslr.org/60/) and LibriTTS-R (https://www.openslr.org/141/), CC BY 4.0.

Multi-speaker English TTS corpus derived from LibriSpeech: about 585 hours, 2,456 speakers, 24 kHz
16-bit mono PCM, split at sentence breaks, with original and normalized text. LibriTTS-R is the same
utterances restored by a speech-restoration model, in the same layout. Subsets as LibriSpeech's
(train-clean-100, ..., test-other). Layout (root = the ``LibriTTS`` or ``LibriTTS_R`` folder)::

    LibriTTS/speakers.tsv                                        # READER GENDER SUBSET NAME (or SPEAKERS.txt)
    LibriTTS/test-clean/7176/92135/7176_92135_000004_000000.wav
    LibriTTS/test-clean/7176/92135/7176_92135_000004_000000.original.txt
    LibriTTS/test-clean/7176/92135/7176_92135_000004_000000.normalized.txt

Sample ``.normalized.txt`` (one line, no final newline): ``But even the unsuccessful dramatist has his moments.``

Quirks: ``text`` is the original text (digits, abbreviations) when ``.original.txt`` exists, else the
normalized one; ``text_normalized`` is always the normalized one. Ids are
``<speaker>_<chapter>_<paragraph>_<sentence>``. The per-chapter ``.trans.tsv``/``.book.tsv`` files are not
read. LibriTTS-R leaves out some LibriTTS utterances, so its file counts are slightly lower.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Iterator

from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, Problem, missing_transcript, read_table,
                                                        read_text_file, select_subsets, source_utterance)
from ttsprep.stages.step1_ingest.importers.librispeech import (GENDERS, SUBSETS, Subset, chapter_folders,
                                                               read_speakers_txt)

DEFAULT_LANGUAGE = "en"
TEXT_SUFFIXES = (".original.txt", ".normalized.txt")


class Options(ImporterOptions):
    #: Subset folders to read; all found when None.
    subsets: list[Subset] | None = None


def read_speaker_genders(root: Path) -> dict[str, str]:
    """``{speaker: "male" | "female"}`` from ``speakers.tsv``, else ``SPEAKERS.txt``; empty when neither exists."""
    table = root / "speakers.tsv"
    if not table.is_file():
        return read_speakers_txt(root / "SPEAKERS.txt")
    rows = (row for _, row in read_table(table, delimiter="\t", quoting=csv.QUOTE_NONE) if isinstance(row, dict))
    return {row["READER"]: GENDERS[row["GENDER"]] for row in rows if row.get("GENDER") in GENDERS and row.get("READER")}


def _read_optional(path: Path, local_id: str) -> str | Problem | None:
    if not path.is_file():
        return None
    text = read_text_file(path)
    return dataclasses.replace(text, local_id=local_id) if isinstance(text, Problem) else text


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    found = [name for name in SUBSETS if (root / name).is_dir()]
    genders = read_speaker_genders(root)
    for subset in select_subsets(root, options.subsets, found, "libritts"):
        for chapter in chapter_folders(root / subset):
            speaker = chapter.parent.name
            names = [path.name for path in chapter.iterdir()]
            utts = sorted({name.split(".", 1)[0] for name in names if name.endswith((".wav", *TEXT_SUFFIXES))})
            for utt in utts:
                audio = chapter / f"{utt}.wav"
                original, normalized = (_read_optional(chapter / f"{utt}{suffix}", utt) for suffix in TEXT_SUFFIXES)
                problem = next((t for t in (original, normalized) if isinstance(t, Problem)), None)
                if problem is not None:
                    yield problem
                elif original is None and normalized is None:
                    yield missing_transcript(utt, audio, f"neither {utt}.original.txt nor {utt}.normalized.txt")
                else:
                    yield source_utterance(root, audio.relative_to(root), local_id=utt,
                                           text=original if original is not None else normalized,
                                           text_normalized=normalized, speaker=speaker, language=language,
                                           gender=genders.get(speaker), split=subset, extra={"chapter": chapter.name})
