"""LibriSpeech ASR corpus (https://www.openslr.org/12/, CC BY 4.0): read English audiobooks from LibriVox.

About 1,000 hours, 2,484 speakers, 16 kHz 16-bit mono FLAC, in the subsets train-clean-100,
train-clean-360, train-other-500, dev-clean, dev-other, test-clean and test-other (split by speaker).
Layout (root = the ``LibriSpeech`` folder)::

    LibriSpeech/SPEAKERS.TXT                                  # ID |SEX| SUBSET |MINUTES| NAME
    LibriSpeech/dev-clean/2412/153948/2412-153948.trans.txt   # one line per utterance of the chapter
    LibriSpeech/dev-clean/2412/153948/2412-153948-0000.flac

Sample ``trans.txt`` line: ``61-70968-0000 HE BEGAN A CONFUSED COMPLAINT AGAINST THE WIZARD WHO HAD ...``

Quirks: transcripts are upper case without punctuation (an ASR corpus: prefer LibriTTS for TTS).
SPEAKERS.TXT starts with ``;`` comment lines and one speaker's name itself contains ``|`` (``|CBW|Simon``),
so only the first four separators are split. Audio is not silence-trimmed and may hold other speakers' noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal, get_args

from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, Problem, missing_transcript, read_lines,
                                                        select_subsets, source_utterance)

DEFAULT_LANGUAGE = "en"
#: The subset folders of LibriSpeech, LibriTTS and LibriTTS-R.
Subset = Literal["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean",
                 "test-other"]
SUBSETS: tuple[str, ...] = get_args(Subset)
GENDERS = {"M": "male", "F": "female"}


class Options(ImporterOptions):
    #: Subset folders to read; all found when None.
    subsets: list[Subset] | None = None


def read_speakers_txt(path: Path) -> dict[str, str]:
    """``{speaker: "male" | "female"}`` from a LibriSpeech-style SPEAKERS.TXT; empty when the file is absent."""
    if not path.is_file():
        return {}
    genders = {}
    for _, line in read_lines(path):
        fields = [f.strip() for f in line.split("|", 4)] if isinstance(line, str) and not line.startswith(";") else []
        if len(fields) == 5 and fields[1] in GENDERS:
            genders[fields[0]] = GENDERS[fields[1]]
    return genders


def chapter_folders(subset: Path) -> list[Path]:
    """The ``<speaker>/<chapter>`` folders of a subset, sorted."""
    return sorted(folder for folder in subset.glob("*/*") if folder.is_dir())


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    found = [name for name in SUBSETS if (root / name).is_dir()]
    genders = read_speakers_txt(root / "SPEAKERS.TXT")
    for subset in select_subsets(root, options.subsets, found, "librispeech"):
        for chapter in chapter_folders(root / subset):
            speaker = chapter.parent.name
            transcript = chapter / f"{speaker}-{chapter.name}.trans.txt"
            label = transcript.relative_to(root).as_posix()
            listed: set[str] = set()
            for number, line in read_lines(transcript, id_separator=" ", label=label) if transcript.is_file() else ():
                if isinstance(line, Problem):
                    listed.add(line.local_id)
                    yield line
                    continue
                utt, _, text = line.partition(" ")
                if not utt:
                    yield Problem(f"{label}:{number}", Reason.MALFORMED_METADATA, f"{label} line {number}: expected 'ID TEXT'")
                    continue
                listed.add(utt)
                yield source_utterance(root, Path(subset, speaker, chapter.name, f"{utt}.flac"), local_id=utt,
                                       text=text, speaker=speaker, language=language, gender=genders.get(speaker),
                                       split=subset, extra={"chapter": chapter.name})
            for audio in sorted(chapter.glob("*.flac")):
                if audio.stem not in listed:
                    yield missing_transcript(audio.stem, audio, f"no line in {label}")
