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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ConfigDict

from stages.records import INVALID_ENCODING, PATH_ESCAPES_ROOT


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


def resolve_inside(root: Path, relative: str | os.PathLike) -> Path:
    """Resolve ``relative`` against ``root`` (symlinks followed) and check it stays inside ``root``.

    Raises ``PathEscapesRoot`` for absolute paths, ``..`` escapes and symlinks that point outside.
    """
    root = Path(root).resolve()
    candidate = Path(relative)
    if candidate.is_absolute():
        raise PathEscapesRoot(f"absolute path '{relative}' in metadata")
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise PathEscapesRoot(f"'{relative}' resolves to '{resolved}', outside the corpus root")
    return resolved


def escape_problem(local_id: str, relative: str, error: PathEscapesRoot) -> Problem:
    return Problem(local_id, PATH_ESCAPES_ROOT, str(error), str(relative))


def read_lines(path: Path) -> Iterator[tuple[int, str | Problem]]:
    """Yield ``(line_number, text)`` for each non-blank line, or a ``Problem`` for undecodable UTF-8.

    A UTF-8 byte-order mark and CR line ends are tolerated. The Problem's ``local_id`` is
    ``<file name>:<line number>`` because the line's id cannot be trusted.
    """
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, Problem(f"{Path(path).name}:{number}", INVALID_ENCODING,
                                  f"{Path(path).name} line {number} is not UTF-8: {exc.reason} at byte {exc.start}")


def read_text_file(path: Path) -> str | Problem:
    """The whole of a one-transcript-per-file text (LibriTTS, VCTK), stripped; Problem if not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        return Problem(Path(path).stem, INVALID_ENCODING, f"{path} is not UTF-8: {exc.reason} at byte {exc.start}")
