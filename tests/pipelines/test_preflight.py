"""``ttsprep validate`` (and a run, before Prefect starts) catches what the run would fail on, in one line."""

from __future__ import annotations

import pytest

from tests.helpers import write_ljspeech
from ttsprep.pipelines.cli import main


def _validate(tmp_path, entry: str, capsys) -> tuple[int, str]:
    config = tmp_path / "datasets.yaml"
    config.write_text(f"datasets:\n  - {{name: lj, root: LJ, {entry}}}\n")
    status = main(["validate", "--config", str(config)])
    captured = capsys.readouterr()
    return status, (captured.out + captured.err).strip()


@pytest.fixture
def lj(tmp_path):
    write_ljspeech(tmp_path / "LJ", {"LJ-1": "One sentence."})
    return tmp_path


def test_a_valid_dataset_passes(lj, capsys):
    status, output = _validate(lj, "importer: ljspeech", capsys)
    assert status == 0 and output.endswith("1 dataset OK (settings, tools, languages and layouts): lj")


@pytest.mark.parametrize("entry, message", [
    ("importer: vctk", "dataset 'lj': vctk: neither wav48_silence_trimmed/ (0.92) nor wav48/ found in"),
    ("importer: ljspeech, language: klingon", "dataset 'lj': language 'klingon' has no G2P;"),
    ("importer: ljspeech, language: eng", "language 'eng' has no G2P (did you mean 'en'?)"),
    ("importer: ljspeach", "unknown importer 'ljspeach' (did you mean 'ljspeech'?)"),
    ("importer: manifest, file: none.csv", "dataset 'lj': manifest: "),
])
def test_a_run_would_fail_so_validate_fails_in_one_line(lj, capsys, entry, message):
    status, output = _validate(lj, entry, capsys)
    assert status == 2 and message in output and len(output.splitlines()) == 1, output


def test_an_importer_that_finds_nothing_is_refused(tmp_path, capsys):
    (tmp_path / "LJ").mkdir()
    (tmp_path / "LJ" / "metadata.csv").write_text("")
    status, output = _validate(tmp_path, "importer: ljspeech", capsys)
    assert status == 2 and "importer 'ljspeech' finds no utterance in" in output


def test_the_text_stage_off_needs_no_g2p(lj, capsys):
    status, _ = _validate(lj, "importer: ljspeech, language: klingon, stages: {text: {enabled: false}}", capsys)
    assert status == 0
