"""The CLI's progress bars and Prefect's console log lines never share a terminal line."""

from __future__ import annotations

import io
import logging
import os

from tqdm import tqdm

from ttsprep.pipelines import progress
from ttsprep.pipelines.progress import BarAwareConsoleHandler


def _log_after_a_bar(handler_class: type[logging.Handler]) -> str:
    """What a terminal receives: a bar at 1/3, then one log line through ``handler_class``."""
    stream = io.StringIO()
    handler = handler_class(stream=stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with tqdm(total=3, file=stream, desc="shards", ncols=60, mininterval=0) as bar:
        bar.update(1)
        handler.emit(logging.LogRecord("prefect", logging.INFO, __file__, 1, "lj/part-00000: 2 in", None, None))
    return stream.getvalue()


def test_a_log_line_clears_the_bar_first():
    screen = _log_after_a_bar(BarAwareConsoleHandler)
    line = next(segment for segment in screen.replace("\n", "\r").split("\r") if "lj/part-00000" in segment)
    assert line.strip() == "lj/part-00000: 2 in"  # the bar was cleared ("\r") before the line was written
    assert "shards" in screen  # and drawn around it


def test_the_plain_handler_would_interleave():
    screen = _log_after_a_bar(logging.StreamHandler)
    line = next(segment for segment in screen.replace("\n", "\r").split("\r") if "lj/part-00000" in segment)
    assert "shards" in line  # what the bar-aware handler prevents


def test_enabling_the_bars_routes_prefects_console_logging(monkeypatch):
    monkeypatch.delenv(progress.CONSOLE_CLASS_SETTING, raising=False)
    monkeypatch.setattr(progress, "_enabled", False)
    progress.enable(True)
    assert os.environ[progress.CONSOLE_CLASS_SETTING] == "ttsprep.pipelines.progress.BarAwareConsoleHandler"
    monkeypatch.delenv(progress.CONSOLE_CLASS_SETTING)
