"""CMU ARCTIC (http://festvox.org/cmu_arctic/, BSD-like CMU licence: free for any use, see each COPYING).

About 1,130 phonetically balanced English prompts read by each of several speakers (parallel data),
16 kHz 16-bit mono wav in the festvox voice packages. One folder per voice::

    cmu_us_slt_arctic/etc/txt.done.data          # Festival prompt list
    cmu_us_slt_arctic/wav/arctic_a0009.wav

Sample line: ``( arctic_a0009 "He turned sharply, and faced Gregson across the table." )``

The root is one voice folder or a folder holding several (``cmu_us_*_arctic``); the local id is
``<speaker>_<prompt id>`` (``slt_arctic_a0009``) because prompt ids repeat across voices.
Quirks: prompt text may hold ``\\"`` escapes (unescaped here). A prompt line that is not UTF-8 is reported
under its utterance id where the prompt id itself is ASCII, else as ``<voice>/etc/txt.done.data:<line>``.
Prompt ids come in two sets, ``arctic_a*`` and ``arctic_b*``. Known voices get gender and accent: awb
Scottish, jmk Canadian, ksp Indian, the others US.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, Problem, missing_transcript, read_lines,
                                                        source_utterance)

DEFAULT_LANGUAGE = "en"
VOICE_FOLDER = re.compile(r"^cmu_[a-z]+_([a-z0-9]+)_arctic$")
PROMPT_LINE = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')
#: The prompt id of a line whose text is not UTF-8.
PROMPT_ID = re.compile(rb"^\(\s*([A-Za-z0-9_-]+)\s")
#: ``{speaker: (gender, accent)}`` for the voices documented on festvox.org.
KNOWN_VOICES = {"awb": ("male", "scottish"), "bdl": ("male", "us"), "clb": ("female", "us"),
                "jmk": ("male", "canadian"), "ksp": ("male", "indian"), "rms": ("male", "us"),
                "slt": ("female", "us")}


class Options(ImporterOptions):
    pass


def voice_folders(root: Path) -> list[Path]:
    """``root`` itself when it is a voice folder, else the voice folders inside it (sorted)."""
    if VOICE_FOLDER.match(root.name):
        return [root]
    return sorted(folder for folder in root.iterdir() if folder.is_dir() and VOICE_FOLDER.match(folder.name))


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    voices = voice_folders(root)
    if not voices:
        raise ConfigError(f"cmu_arctic: {root} is not a cmu_us_<speaker>_arctic folder and holds none")
    for voice in voices:
        speaker = VOICE_FOLDER.match(voice.name).group(1)
        prompts = voice / "etc" / "txt.done.data"
        if not prompts.is_file():
            raise ConfigError(f"cmu_arctic: {prompts} not found")
        label = f"{voice.name}/etc/txt.done.data"
        gender, accent = KNOWN_VOICES.get(speaker, (None, None))
        listed: set[str] = set()
        for number, line in read_lines(prompts, id_pattern=PROMPT_ID, label=label):
            if isinstance(line, Problem):
                if line.local_id != f"{label}:{number}":  # the prompt id was read: report the utterance
                    listed.add(line.local_id)
                    line = dataclasses.replace(line, local_id=f"{speaker}_{line.local_id}")
                yield line
                continue
            match = PROMPT_LINE.match(line)
            if match is None:
                yield Problem(f"{label}:{number}", Reason.MALFORMED_METADATA,
                              f'{label} line {number}: expected ( <id> "<text>" )')
                continue
            prompt, text = match.groups()
            listed.add(prompt)
            yield source_utterance(root, voice.relative_to(root) / "wav" / f"{prompt}.wav",
                                   local_id=f"{speaker}_{prompt}",
                                   text=text.replace('\\"', '"'), speaker=speaker, language=language,
                                   gender=gender, accent=accent)
        for audio in sorted((voice / "wav").glob("*.wav")):
            if audio.stem not in listed:
                yield missing_transcript(f"{speaker}_{audio.stem}", audio, f"no line in {label}")
