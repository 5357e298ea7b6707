"""Header probes and checksums of unchanged audio files, kept between runs.

Re-hashing every file is most of a re-run's time on a large corpus (20,000 files: ~25 s of a 53 s no-op
run). A file whose size, modification and change times (ns) and inode are those recorded at its last probe
is taken as unchanged, as git's index and rsync do; any write, ``touch`` or replacement changes the change
time. The cache is dropped whole when the probing code (``stages/core/audio_io.py``) or libsndfile changes. Only
successful probes are kept: a rejected file is probed again on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import soundfile

from ttsprep.stages.core import audio_io
from ttsprep.stages.core.atomic import atomic_path
from ttsprep.stages.core.audio_io import AudioInfo

#: ``(size, mtime_ns, ctime_ns, inode)`` of a file.
FileStamp = tuple[int, int, int, int]


def file_stamp(stat: os.stat_result) -> FileStamp:
    """What identifies the version of a file whose ``os.stat`` is ``stat``."""
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


def _prober_version() -> str:
    source = Path(audio_io.__file__).read_bytes()
    return hashlib.sha256(source + soundfile.__libsndfile_version__.encode()).hexdigest()[:16]


class ProbeCache:
    """``{audio path: (stamp, AudioInfo, checksum)}`` read from and written to one JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self.version = _prober_version()
        self.entries: dict[str, tuple[FileStamp, AudioInfo, str]] = {}
        self.hits = 0
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if stored.get("version") == self.version:
            self.entries = {audio: (tuple(stamp), AudioInfo(**info), checksum)
                            for audio, (stamp, info, checksum) in stored["entries"].items()}

    def get(self, audio_path: str, stamp: FileStamp) -> tuple[AudioInfo, str] | None:
        """The probe and checksum recorded for ``audio_path`` if its stamp is unchanged, else None."""
        found = self.entries.get(audio_path)
        if found is None or found[0] != stamp:
            return None
        self.hits += 1
        return found[1], found[2]

    def save(self, probes: dict[str, tuple[FileStamp, AudioInfo, str]]) -> None:
        """Replace the file by ``probes`` (this run's successful probes), atomically; not rewritten when every
        probe came from it and none of its entries was dropped."""
        if self.hits == len(probes) == len(self.entries):
            return
        data = {"version": self.version,
                "entries": {audio: [list(stamp), asdict(info), checksum] for audio, (stamp, info, checksum)
                            in probes.items()}}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data), encoding="utf-8")
