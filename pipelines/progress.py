"""Progress bars for the CLI (tqdm on stderr); silent when the CLI did not ask for them (tests, workers).

With the bars on, Prefect's console log lines go through ``BarAwareConsoleHandler``, which clears the bars,
writes the line and redraws them: log lines and bars never share a terminal line.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from prefect.logging.handlers import PrefectConsoleHandler
from tqdm import tqdm

_enabled = False
#: Prefect's logging setting (``logging.yml``'s ``handlers.console.class``, overridable from the environment).
CONSOLE_CLASS_SETTING = "PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS"


class BarAwareConsoleHandler(PrefectConsoleHandler):
    """Prefect's console handler, writing each line between the progress bars (``tqdm.external_write_mode``)."""

    def emit(self, record: logging.LogRecord) -> None:
        with tqdm.external_write_mode(file=self.stream):
            super().emit(record)


def enable(on: bool = True) -> None:
    """Show the bars (``on``), and route Prefect's console logging around them; call before the first flow
    runs (Prefect reads its logging settings then)."""
    global _enabled
    _enabled = on
    if on:
        os.environ.setdefault(CONSOLE_CLASS_SETTING, f"{__name__}.{BarAwareConsoleHandler.__name__}")


@contextlib.contextmanager
def bar(**kwargs) -> Iterator[tqdm]:
    with tqdm(disable=not _enabled, dynamic_ncols=True, **kwargs) as progress_bar:
        yield progress_bar
