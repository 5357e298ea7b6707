"""Progress bars for the CLI (tqdm on stderr); silent when the CLI did not ask for them (tests, workers)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from tqdm import tqdm

_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


@contextlib.contextmanager
def bar(**kwargs) -> Iterator[tqdm]:
    with tqdm(disable=not _enabled, dynamic_ncols=True, **kwargs) as progress_bar:
        yield progress_bar
