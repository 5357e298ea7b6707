"""Shared plumbing for corpus importers: the module protocol, path safety, tolerant text reading.

Every importer is one module exposing the same three names::

    DEFAULT_LANGUAGE: str                 # BCP-47-ish code, e.g. "en", "zh", "ja"
    class Options(ImporterOptions): ...   # its keys in datasets.yaml, strictly validated
    def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]

``scan`` never raises on bad data: each problem with one utterance is yielded as a ``Problem`` (it
becomes a rejects-ledger row) and scanning continues. It raises only when the corpus as a whole is
unusable (e.g. its metadata file is missing), with a ``ConfigError`` that says what was expected.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import BaseModel, ConfigDict

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance


class ImporterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Problem:
    """One utterance the importer cannot use; becomes a rejects row at stage ``ingest``."""

    local_id: str
    reason: str
    detail: str
    audio_path: str = ""


class PathEscapesRoot(Exception):
    pass


#: Within ``resolved_directories_memo()``: ``{directory: its real path}`` (per thread: contexts are).
_RESOLVED_DIRECTORIES: ContextVar[dict[str, str] | None] = ContextVar("resolved_directories", default=None)


@contextlib.contextmanager
def resolved_directories_memo() -> Iterator[None]:
    """Resolve each directory once inside this block (one scan: thousands of files in a few directories),
    instead of every component of every file's path. Symlinks changed during the block are not seen."""
    token = _RESOLVED_DIRECTORIES.set({})
    try:
        yield
    finally:
        _RESOLVED_DIRECTORIES.reset(token)


def _real_directory(directory: str) -> str:
    memo = _RESOLVED_DIRECTORIES.get()
    if memo is None:
        return os.path.realpath(directory)
    if directory not in memo:
        memo[directory] = os.path.realpath(directory)
    return memo[directory]


def resolve_inside(root: Path, relative: str | os.PathLike) -> str:
    """Resolve ``relative`` against ``root`` (symlinks followed) and check it stays inside ``root``.

    Raises ``PathEscapesRoot`` for absolute paths, ``..`` escapes and symlinks that point outside.
    (``..`` is applied to the path's text before symlinks are followed.)
    """
    if os.path.isabs(relative):
        raise PathEscapesRoot(f"absolute path '{relative}' in metadata")
    real_root = _real_directory(os.fspath(root))
    directory, name = os.path.split(os.path.normpath(os.path.join(real_root, relative)))
    resolved = os.path.join(_real_directory(directory), name)
    if os.path.islink(resolved):
        resolved = os.path.realpath(resolved)
    if resolved != real_root and not resolved.startswith(os.path.join(real_root, "")):
        raise PathEscapesRoot(f"'{relative}' resolves to '{resolved}', outside the corpus root")
    return resolved


def escape_problem(local_id: str, relative: str, error: PathEscapesRoot) -> Problem:
    return Problem(local_id, Reason.PATH_ESCAPES_ROOT, str(error), str(relative))


def read_lines(path: Path, *, id_separator: str | None = None, id_pattern: re.Pattern[bytes] | None = None,
               label: str | None = None) -> Iterator[tuple[int, str | Problem]]:
    """Yield ``(line_number, text)`` for each non-blank line, or a ``Problem`` for undecodable UTF-8.

    A UTF-8 byte-order mark and CR line ends are tolerated. The Problem's ``local_id`` is the line's id
    where lines start with one ended by ``id_separator`` and that id decodes (a Latin-1 line
    ``LJ001-0001|Café`` gives ``LJ001-0001``), or where ``id_pattern`` matches the line (group 1, ASCII), else
    ``<label>:<line number>`` (label: the file name). Importers count that id as transcribed, so its audio is
    not reported a second time as untranscribed.
    """
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    name = Path(path).name
    label = label or name
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, Problem(_line_id(raw, id_separator, id_pattern) or f"{label}:{number}", Reason.INVALID_ENCODING,
                                  f"{name} line {number} is not UTF-8: {exc.reason} at byte {exc.start}")


def _line_id(raw: bytes, separator: str | None, pattern: re.Pattern[bytes] | None) -> str | None:
    """The ASCII group 1 of ``pattern`` matching ``raw``, or the UTF-8 id before ``separator`` at the start of
    ``raw``; None when there is none."""
    if pattern is not None and (match := pattern.match(raw)) and match.group(1).isascii():
        return match.group(1).decode("ascii")
    if separator is None or separator.encode() not in raw:
        return None
    try:
        return raw.split(separator.encode(), 1)[0].decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return None


def read_text_file(path: Path) -> str | Problem:
    """The whole of a one-transcript-per-file text (LibriTTS, VCTK), stripped; Problem if not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        return Problem(Path(path).stem, Reason.INVALID_ENCODING, f"{path} is not UTF-8: {exc.reason} at byte {exc.start}")


def source_utterance(root: Path, relative: str | os.PathLike, *, local_id: str, text: str,
                     **fields: Any) -> SourceUtterance | Problem:
    """A ``SourceUtterance`` for the audio at ``root/relative``, or the Problem that stops it.

    The Problem is ``path_escapes_root`` (see ``resolve_inside``) or ``empty_transcript`` (``text`` is blank).
    The audio's existence is not checked: ingest probes it. ``fields`` are the other SourceUtterance fields.
    """
    try:
        audio = resolve_inside(root, relative)
    except PathEscapesRoot as exc:
        return escape_problem(local_id, str(relative), exc)
    if not text.strip():
        detail = f"the transcript is only whitespace: {text!r}" if text else "the transcript is empty"
        return Problem(local_id, Reason.EMPTY_TRANSCRIPT, detail, audio)
    return SourceUtterance(local_id=local_id, audio_path=audio, text=text, **fields)


def missing_transcript(local_id: str, audio: Path, expected: str) -> Problem:
    """The Problem for an audio file that the corpus gives no transcript for (``expected`` says where)."""
    return Problem(local_id, Reason.MISSING_TRANSCRIPT, f"no transcript for {Path(audio).name}: {expected}", str(audio))


def read_table(path: Path, *, delimiter: str, quoting: int = csv.QUOTE_MINIMAL
               ) -> Iterator[tuple[int, dict[str, str] | Problem]]:
    """Rows of a delimited text file with a header line, as ``(line_number, {column: value})``.

    Columns are found by header name, so their order and any added columns do not matter. A row whose
    field count differs from the header's (or with broken quoting) is a ``malformed_metadata`` Problem, an
    undecodable line the Problem from ``read_lines``. Raises ``ConfigError`` when the header is missing or
    not UTF-8. ``quoting=csv.QUOTE_NONE`` keeps quotes literal (Common Voice); the default reads quoted fields.
    """
    undecodable: list[tuple[int, Problem]] = []
    line_numbers: list[int] = []

    def decoded_lines() -> Iterator[str]:
        for number, line in read_lines(path):
            if isinstance(line, Problem):
                undecodable.append((number, line))
            else:
                line_numbers.append(number)
                yield line + "\n"  # the line end keeps newlines inside quoted fields

    reader = csv.reader(decoded_lines(), delimiter=delimiter, quoting=quoting, strict=True)
    header = next(reader, None)
    if undecodable or header is None:
        raise ConfigError(f"{path}: the header line is missing or not UTF-8")
    header = [name.strip() for name in header]
    name = Path(path).name
    while True:
        lines_before = len(line_numbers)
        try:
            fields: list[str] | None = next(reader, None)
            error = None if fields is None or len(fields) == len(header) else f"{len(fields)} fields"
        except csv.Error as exc:
            fields, error = [], str(exc)
        yield from undecodable
        undecodable.clear()
        if fields is None:
            return
        number = line_numbers[lines_before] if lines_before < len(line_numbers) else line_numbers[-1]
        if error:
            yield number, Problem(f"{name}:{number}", Reason.MALFORMED_METADATA,
                                  f"{name} line {number}: expected the {len(header)} header columns, found {error}")
        else:
            yield number, dict(zip(header, fields))


def select_subsets(root: Path, requested: Sequence[str] | None, found: Sequence[str], corpus: str) -> list[str]:
    """The subset folders to scan: all ``found`` when ``requested`` is None, else ``requested``, all present.

    Raises ``ConfigError`` when nothing is found or a requested subset is missing.
    """
    if requested is None:
        if not found:
            raise ConfigError(f"{corpus}: no subset folders found under {root}")
        return list(found)
    missing = [name for name in requested if name not in found]
    if missing:
        raise ConfigError(f"{corpus}: subset(s) {missing} not found under {root}; found: {sorted(found)}")
    return list(requested)
