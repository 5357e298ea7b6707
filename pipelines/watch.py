"""Finding new or changed corpus files: a snapshot of (path, size, mtime) per dataset root."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ttsprep.stages.core.atomic import write_json
from ttsprep.stages.core.layout import DatasetLayout


def snapshot(root: Path) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` for every file under ``root`` (broken symlinks left out)."""
    entries = {}
    for folder, _, files in os.walk(root):
        prefix = os.path.relpath(folder, root)
        for name in files:
            relative = name if prefix == "." else os.path.join(prefix, name)
            try:
                stat = os.stat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            entries[relative] = [stat.st_size, stat.st_mtime_ns]
    return entries


def snapshot_path(out_dir: Path, dataset: str) -> Path:
    return DatasetLayout(out_dir, dataset).root / "work" / "snapshot.json"


def changed_files(root: Path, out_dir: Path, dataset: str) -> list[str]:
    """Files added, changed or removed under ``root`` since the last recorded snapshot."""
    path = snapshot_path(out_dir, dataset)
    previous = json.loads(path.read_text()) if path.is_file() else {}
    current = snapshot(root)
    return sorted(k for k in previous.keys() | current.keys() if previous.get(k) != current.get(k))


def record_snapshot(root: Path, out_dir: Path, dataset: str) -> None:
    write_json(snapshot_path(out_dir, dataset), snapshot(root))
