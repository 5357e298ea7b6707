"""A generic manifest: any corpus described by one CSV, TSV or JSON Lines file (format by extension).

Columns (keys, for JSON Lines): ``path`` (audio, relative to the dataset root) and ``text`` are required;
``speaker`` (default ``unknown``), ``language`` (default: the dataset's ``language:``), ``id`` (default: the
audio file's stem), ``split``, ``gender``, ``accent`` and ``text_normalized`` are optional; any other
column is kept in ``extra``. Example ``datasets.yaml`` entry and files::

    - {name: mine, importer: manifest, root: /data/mine, file: manifest.csv, language: en}

    path,text,speaker
    wavs/0001.wav,"Hello, world.",anna

    {"path": "wavs/0001.wav", "text": "Hello, world.", "speaker": "anna"}

Quirks: CSV and TSV follow the csv module's (Excel's) quoting: a field holding the delimiter, a quote or
a newline is quoted and its quotes doubled, as pandas and the csv module write it; a stray quote makes the
line a malformed_metadata Problem. Ids are not checked for uniqueness here (ingest does that).
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Iterator

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import (ImporterOptions, PathEscapesRoot, Problem, read_lines,
                                                        read_table, resolve_inside, source_utterance)

#: Empty: the language comes from a ``language`` column or the dataset entry's ``language:``.
DEFAULT_LANGUAGE = ""
REQUIRED_COLUMNS = ("path", "text")
TYPED_COLUMNS = ("speaker", "language", "id", "split", "gender", "accent", "text_normalized")
DELIMITERS = {".csv": ",", ".tsv": "\t"}


class Options(ImporterOptions):
    #: The manifest file, relative to the dataset root: ``.csv``, ``.tsv`` or ``.jsonl``.
    file: str


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, str] | Problem]]:
    for number, line in read_lines(path):
        if isinstance(line, Problem):
            yield number, line
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            row = exc
        if not isinstance(row, dict):
            yield number, Problem(f"{path.name}:{number}", Reason.MALFORMED_METADATA,
                                  f"{path.name} line {number}: not a JSON object ({row})")
            continue
        yield number, {str(key): str(value) for key, value in row.items() if value is not None}


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str] | Problem]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _json_lines(path)
        return
    if suffix not in DELIMITERS:
        raise ConfigError(f"manifest: {path.name}: unknown format; use .csv, .tsv or .jsonl")
    for number, row in read_table(path, delimiter=DELIMITERS[suffix]):
        if isinstance(row, dict) and not set(REQUIRED_COLUMNS) <= row.keys():
            raise ConfigError(f"manifest: {path} needs the columns {list(REQUIRED_COLUMNS)}; its header: {list(row)}")
        yield number, row


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    try:
        manifest = Path(resolve_inside(root, options.file))
    except PathEscapesRoot as exc:
        raise ConfigError(f"manifest: file: {exc}") from None
    if not manifest.is_file():
        raise ConfigError(f"manifest: file: {manifest} not found")
    for number, row in _rows(manifest):
        if isinstance(row, Problem):
            yield row
            continue
        path = row.get("path", "")
        if not path or "text" not in row:
            yield Problem(f"{manifest.name}:{number}", Reason.MALFORMED_METADATA,
                          f"{manifest.name} line {number}: needs a non-empty 'path' and a 'text'")
            continue
        row_language = row.get("language") or language
        if not row_language:
            raise ConfigError(f"manifest: {manifest.name} line {number} has no language; add a 'language' column "
                              f"or `language:` to the dataset entry")
        yield source_utterance(
            root, path, local_id=row.get("id") or posixpath.splitext(posixpath.basename(path))[0], text=row["text"],
            speaker=row.get("speaker") or "unknown", language=row_language, split=row.get("split") or None,
            gender=row.get("gender") or None, accent=row.get("accent") or None,
            text_normalized=row.get("text_normalized") or None,
            extra={key: value for key, value in row.items()
                   if value and key not in REQUIRED_COLUMNS + TYPED_COLUMNS})
