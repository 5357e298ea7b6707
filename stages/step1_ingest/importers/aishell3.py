"""AISHELL-3 (https://www.openslr.org/93/, Apache License 2.0): multi-speaker Mandarin read speech.

218 native speakers, about 85 hours, 44.1 kHz 16-bit mono PCM. The corpus is split by speaker into
``train`` and ``test``. Layout (root = the ``data_aishell3`` folder of ``data_aishell3.tgz``)::

    data_aishell3/spk-info.txt                        # speaker<TAB>age group<TAB>gender<TAB>accent
    data_aishell3/train/content.txt                   # one line per utterance
    data_aishell3/train/wav/SSB0005/SSB00050001.wav
    data_aishell3/test/...                            # same layout

Sample ``content.txt`` line (characters and their pinyin alternate, space-separated)::

    SSB01390001.wav<TAB>我 wo3 知 zi1 道 dao4 你 ni3 不 bu4 习 qi2 惯 guan4

Quirks: the pinyin records what the speaker said, so it sometimes differs from dictionary pinyin
(``知 zi1``, ``习 qi2``); it is kept exactly as given in ``pinyin``. ``spk-info.txt`` starts with ``#``
comment lines; its age groups are letters (its own key: A: < 14, B: 14-25, C: 26-40, D: > 41), kept in
``extra["age_group"]``. The speaker id is the first 7 characters of the utterance id.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, Problem, missing_transcript, read_lines,
                                                        source_utterance)

DEFAULT_LANGUAGE = "zh"
SPEAKER_ID_LENGTH = 7


class Options(ImporterOptions):
    #: Subset folders to read; a missing one is skipped as long as one of them exists.
    subsets: list[str] = ["train", "test"]


def read_speaker_info(path: Path) -> dict[str, tuple[str, str, str]]:
    """``{speaker: (age_group, gender, accent)}`` from ``spk-info.txt``; empty when the file is absent."""
    if not path.is_file():
        return {}
    info = {}
    for _, line in read_lines(path):
        fields = line.split() if isinstance(line, str) and not line.startswith("#") else []
        if len(fields) == 4:
            info[fields[0]] = (fields[1], fields[2], fields[3])
    return info


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    subsets = [name for name in options.subsets if (root / name).is_dir()]
    if not subsets:
        raise ConfigError(f"aishell3: none of the subsets {options.subsets} found in {root} "
                          f"(root must be the data_aishell3 folder)")
    speakers = read_speaker_info(root / "spk-info.txt")
    for subset in subsets:
        content = root / subset / "content.txt"
        if not content.is_file():
            raise ConfigError(f"aishell3: {content} not found")
        label = f"{subset}/content.txt"
        transcribed: set[str] = set()
        for number, line in read_lines(content, id_separator="\t", label=label):
            if isinstance(line, Problem):
                local_id = line.local_id.removesuffix(".wav")
                transcribed.add(local_id)
                yield dataclasses.replace(line, local_id=local_id)
                continue
            name, _, labels = line.partition("\t")
            tokens = labels.split()
            local_id = name.removesuffix(".wav")
            if not name.endswith(".wav") or len(tokens) % 2:
                yield Problem(f"{label}:{number}", Reason.MALFORMED_METADATA,
                              f"{label} line {number}: expected '<id>.wav<TAB>char pinyin char pinyin ...'")
                continue
            transcribed.add(local_id)
            speaker = local_id[:SPEAKER_ID_LENGTH]
            age_group, gender, accent = speakers.get(speaker, (None, None, None))
            yield source_utterance(
                root, Path(subset, "wav", speaker, name), local_id=local_id, text="".join(tokens[0::2]),
                pinyin=" ".join(tokens[1::2]) or None, speaker=speaker, language=language, gender=gender,
                accent=accent, split=subset, extra={"age_group": age_group} if age_group else {})
        for audio in sorted((root / subset / "wav").glob("*/*.wav")):
            if audio.stem not in transcribed:
                yield missing_transcript(audio.stem, audio, f"no line in {label}")
