"""One run per output directory: an advisory ``flock`` on ``OUT/.ttsprep.lock``, released by the OS on exit.

The kernel drops the lock when the holder's file is closed, however the process ends (SIGKILL and OOM
kills included), so no stale lock is ever left to clean up. The file keeps the holder's pid and host,
for the message the next run prints. Within one process the lock is re-entrant: the CLI takes it before
starting the flow, and the flow (which also runs on its own under ``ttsprep serve``) takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from ttsprep.pipelines import notify
from ttsprep.stages.core.errors import ConfigError

LOCK_NAME = ".ttsprep.lock"
_HELD: dict[Path, int] = {}  # output directory (resolved) -> nesting depth, in this process


@contextlib.contextmanager
def output_lock(out_dir: Path, *, notify_refusal: bool = True) -> Iterator[None]:
    """Hold the lock for ``out_dir`` (created if missing) or raise ``ConfigError`` naming the holder (and
    send a ``Refused`` notification unless ``notify_refusal`` is False)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = out_dir.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    with open(out_dir / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            message = (f"{out_dir} is locked: in use by another ttsprep run ({holder}); wait for it to finish "
                       f"or choose another --out")
            if notify_refusal:
                notify.send("ttsprep-run", "Refused", message, run={"out_dir": str(out_dir)})
            raise ConfigError(message) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
