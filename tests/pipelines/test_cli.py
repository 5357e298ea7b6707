"""The command line: help for every option, a misspelt dataset refused before any work, errors in one line."""

from __future__ import annotations

import time

import pytest

from tests.helpers import write_ljspeech
from ttsprep.pipelines import cli


def _subparsers(parser):
    (choices,) = [action.choices for action in parser._actions if getattr(action, "choices", None)
                  and isinstance(action.choices, dict)]
    return choices


def test_every_option_of_every_command_has_help():
    parser = cli._parser()
    assert "training-ready" in parser.description
    missing = [f"{name} {action.option_strings or action.dest}" for name, sub in _subparsers(parser).items()
               for action in sub._actions if not action.help]
    assert missing == []


def test_help_names_each_default_once(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train-aligner", "--help"])
    text = capsys.readouterr().out
    assert "(default: 16)" in text and "(default: None)" not in text and "(default: datasets.yaml)" in text


def test_a_misspelt_dataset_fails_at_once_with_a_suggestion(tmp_path, capsys):
    write_ljspeech(tmp_path / "LJ", {"LJ-1": "One sentence."})
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - {name: ljspeech, importer: ljspeech, root: LJ}\n")
    started = time.monotonic()
    status = cli.main(["run", "--config", str(config), "--out", str(tmp_path / "out"), "--dataset", "ljspech"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and time.monotonic() - started < 5  # no Prefect server was started
    assert error == (f"ttsprep: error: unknown dataset(s) ['ljspech'] (did you mean 'ljspeech'?); {config} "
                     "declares ['ljspeech']")


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "_validate", broken)
    assert cli.main(["validate"]) == 1
    assert capsys.readouterr().err.strip() == ("ttsprep: error: RuntimeError: disk on fire "
                                               "(the traceback: ttsprep --debug ...)")
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(["--debug", "validate"])
