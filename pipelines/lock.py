"""One run per output directory: an advisory ``flock`` on ``OUT/.ttsprep.lock``, released by the OS on exit."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from stages.errors import ConfigError


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold the lock for ``out_dir`` or raise ``ConfigError`` naming the process that holds it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".ttsprep.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(f"{out_dir} is in use by another ttsprep run ({holder}); wait for it to finish "
                              f"or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
