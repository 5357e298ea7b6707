"""CSS10 (https://github.com/Kyubyong/css10, Apache License 2.0; audio from LibriVox, public domain).

Ten single-speaker audiobook corpora (de, el, es, fi, fr, hu, ja, nl, ru, zh), 22.05 kHz mono wav, one
folder per language, each read by one speaker. Layout (root = a language folder, e.g. ``german``)::

    german/transcript.txt                                         # path|original|normalized|duration
    german/achtgesichterambiwasse/achtgesichterambiwasse_0000.wav

Line format (text illustrative): ``achtgesichterambiwasse/achtgesichterambiwasse_0000.wav|Text.|Text.|1.45``

Quirks: the files do not say their language, so ``language:`` is required in datasets.yaml. The speaker is
``css10_<language>``. In the ja set (reportedly also zh) the normalized column is a romanisation
(``xtsu``-style kana spellings), not normalized text in the same script, so it is kept only as
``text_normalized``. ``duration`` (seconds) is kept in ``extra["duration_s"]``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Iterator

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import ImporterOptions, Problem, read_lines, source_utterance

#: Empty: CSS10 cannot tell its language; the dataset entry must give ``language:``.
DEFAULT_LANGUAGE = ""


class Options(ImporterOptions):
    pass


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    if not language or language == "und":
        raise ConfigError("css10 needs `language:` in datasets.yaml (e.g. `language: de` for the german folder)")
    transcript = root / "transcript.txt"
    if not transcript.is_file():
        raise ConfigError(f"css10: {transcript} not found (root must be one language folder of CSS10)")
    for number, line in read_lines(transcript):
        if isinstance(line, Problem):
            yield line
            continue
        fields = line.split("|")
        if len(fields) != 4 or not fields[0]:
            yield Problem(f"transcript.txt:{number}", Reason.MALFORMED_METADATA,
                          f"transcript.txt line {number}: expected path|original|normalized|duration")
            continue
        path, original, normalized, duration_s = fields
        yield source_utterance(root, path, local_id=PurePosixPath(path).stem, text=original,
                               text_normalized=normalized or None, speaker=f"css10_{language}", language=language,
                               extra={"duration_s": duration_s} if duration_s else {})
