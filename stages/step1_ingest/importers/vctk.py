"""CSTR VCTK Corpus (https://datashare.ed.ac.uk/handle/10283/3443, CC BY 4.0): 110 English speakers.

Each speaker reads about 400 newspaper sentences plus the "Please call Stella" elicitation paragraph and
the rainbow passage, so the first utterances are parallel across speakers. Two layouts, detected:

* 0.92: 48 kHz 16-bit mono FLAC from two microphones (``mic1`` omni DPA 4035, ``mic2`` Sennheiser MKH 800),
  with leading/trailing silence trimmed::

    VCTK-Corpus-0.92/wav48_silence_trimmed/p225/p225_001_mic1.flac
    VCTK-Corpus-0.92/txt/p225/p225_001.txt                      # one line: "Please call Stella."
    VCTK-Corpus-0.92/speaker-info.txt                           # ID  AGE  GENDER  ACCENTS  REGION COMMENTS

* 0.80 and earlier: 48 kHz wav, one microphone (``mic`` does not apply): ``wav48/p225/p225_001.wav``.

Sample ``speaker-info.txt`` row (space aligned): ``p225  23  F    English    Southern  England``.

Quirks: p315 has audio but no text files (each of its clips is a missing_transcript Problem); a text whose
audio for the chosen microphone is absent is left to ingest (missing_audio). Old speaker-info.txt ids have
no ``p`` (``225``). Text files may end in spaces (p226_001), which are stripped. The local id is
``<speaker>_<nnn>`` for either microphone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Literal

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, Problem, missing_transcript, read_lines,
                                                        read_text_file, source_utterance)

DEFAULT_LANGUAGE = "en"
GENDERS = {"M": "male", "F": "female"}


class Options(ImporterOptions):
    #: Which microphone's recordings to read (0.92 layout only).
    mic: Literal["mic1", "mic2"] = "mic1"


@dataclasses.dataclass(frozen=True)
class SpeakerInfo:
    age: str
    gender: str | None
    accent: str
    region: str


def read_speaker_info(path: Path) -> dict[str, SpeakerInfo]:
    """``{speaker: SpeakerInfo}`` from ``speaker-info.txt`` (ids normalised to ``p225``); empty when absent."""
    if not path.is_file():
        return {}
    info = {}
    for _, line in read_lines(path):
        fields = line.split() if isinstance(line, str) else []
        if len(fields) >= 4 and fields[0] != "ID":
            speaker = f"p{fields[0]}" if fields[0].isdigit() else fields[0]
            info[speaker] = SpeakerInfo(fields[1], GENDERS.get(fields[2]), fields[3], " ".join(fields[4:]))
    return info


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    if (root / "wav48_silence_trimmed").is_dir():
        audio_dir, audio_suffix, mic = "wav48_silence_trimmed", f"_{options.mic}.flac", options.mic
    elif (root / "wav48").is_dir():
        audio_dir, audio_suffix, mic = "wav48", ".wav", None
    else:
        raise ConfigError(f"vctk: neither wav48_silence_trimmed/ (0.92) nor wav48/ found in {root}")
    speakers = read_speaker_info(root / "speaker-info.txt")
    transcripts = {path.stem: path for path in (root / "txt").glob("*/*.txt")}
    audio_files = {path.name.removesuffix(audio_suffix): path
                   for path in (root / audio_dir).glob(f"*/*{audio_suffix}")}
    for utt in sorted(transcripts.keys() | audio_files.keys()):
        speaker = utt.split("_", 1)[0]
        relative = Path(audio_dir, speaker, f"{utt}{audio_suffix}")
        if utt not in transcripts:
            yield missing_transcript(utt, audio_files[utt], f"no txt/{speaker}/{utt}.txt")
            continue
        text = read_text_file(transcripts[utt])
        if isinstance(text, Problem):
            yield text
            continue
        info = speakers.get(speaker)
        extra = {"age": info.age, "region": info.region, "mic": mic} if info else {"mic": mic}
        yield source_utterance(root, relative, local_id=utt, text=text, speaker=speaker, language=language,
                               gender=info.gender if info else None, accent=info.accent if info else None,
                               extra={key: value for key, value in extra.items() if value})
