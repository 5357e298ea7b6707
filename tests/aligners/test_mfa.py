"""MFA corpus export, the mfa command line (with a stand-in executable; the real one where installed) and
TextGrid look-up."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import tone_bursts
from ttsprep.aligners.mfa import export_mfa_corpus, find_textgrid, mfa_available, mfa_file_stem, run_mfa_align
from ttsprep.aligners.textgrid import TextGridAligner
from ttsprep.stages.core.errors import AlignmentFailed, ConfigError, InvalidTranscript
from ttsprep.stages.core.frames import num_frames_for


def test_file_stems_are_portable():
    assert mfa_file_stem("LJ001-0001") == "LJ001-0001"
    assert mfa_file_stem("spk 1/take:2") == "spk_1_take_2"
    assert mfa_file_stem(".hidden") == "_hidden"
    assert mfa_file_stem("話者") == "__"


def test_export_writes_mfa_layout_from_paths_and_samples(tmp_path):
    source = tmp_path / "source.wav"
    sf.write(source, tone_bursts(22050), 22050, subtype="PCM_16")
    samples = 0.5 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)
    corpus = export_mfa_corpus([("p225", "p225_001", source, " Please call Stella. "),
                                ("spk 2", "utt/2", samples, "Hello there")], tmp_path / "corpus")
    assert sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*")) == [
        "p225", "p225/p225_001.lab", "p225/p225_001.wav", "spk_2", "spk_2/utt_2.lab", "spk_2/utt_2.wav"]
    assert (corpus / "p225" / "p225_001.lab").read_text(encoding="utf-8") == "Please call Stella.\n"
    info = sf.info(str(corpus / "p225" / "p225_001.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.frames == pytest.approx(sf.info(str(source)).frames * 16000 / 22050, abs=2)
    written, rate = sf.read(corpus / "spk_2" / "utt_2.wav")
    assert rate == 16000 and np.max(np.abs(written - samples)) < 1 / 32768 + 1e-9


def test_export_rejects_colliding_names_and_empty_transcripts(tmp_path):
    samples = np.zeros(1600)
    with pytest.raises(AlignmentFailed) as collision:
        export_mfa_corpus([("a", "x:1", samples, "one"), ("b", "x_1", samples, "two")], tmp_path / "c1")
    assert collision.value.reason == "duplicate_utterance_name"
    with pytest.raises(InvalidTranscript):
        export_mfa_corpus([("a", "x", samples, "   ")], tmp_path / "c2")


def test_find_textgrid_indexes_nested_folders(tmp_path):
    for relative in ("spk1/a.TextGrid", "spk2/b_c.TextGrid", "spk1/dup.TextGrid", "spk2/dup.TextGrid", "spk2/a.lab"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("", encoding="utf-8")
    assert find_textgrid(tmp_path, "a") == (tmp_path / "spk1" / "a.TextGrid").resolve()
    assert find_textgrid(tmp_path, "b:c") == (tmp_path / "spk2" / "b_c.TextGrid").resolve()  # sanitised name
    assert find_textgrid(tmp_path, "missing") is None
    with pytest.raises(AlignmentFailed) as ambiguous:
        find_textgrid(tmp_path, "dup")
    assert ambiguous.value.reason == "ambiguous_textgrid"


@pytest.fixture
def fake_mfa(tmp_path, monkeypatch):
    """An ``mfa`` on PATH that records its arguments, prints to stderr and exits with ``$FAKE_MFA_STATUS``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "mfa"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_MFA_ARGS"\n'
                      'i=1; while [ $i -le 30 ]; do echo "log line $i" >&2; i=$((i+1)); done\n'
                      'exit "${FAKE_MFA_STATUS:-0}"\n', encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MFA_ARGS", str(tmp_path / "args.txt"))
    return tmp_path / "args.txt"


def test_run_mfa_align_builds_the_align_and_train_commands(fake_mfa, tmp_path):
    out = run_mfa_align(tmp_path / "corpus", "english_us_arpa", "english_us_arpa", tmp_path / "out", jobs=3)
    assert out == tmp_path / "out"
    assert fake_mfa.read_text().split("\n")[:-1] == [
        "align", "--clean", "-j", "3", str(tmp_path / "corpus"), "english_us_arpa", "english_us_arpa", str(out)]
    run_mfa_align(tmp_path / "corpus", "lexicon.txt", None, tmp_path / "out", jobs=2, clean=False)
    assert fake_mfa.read_text().split("\n")[:-1] == [
        "train", "-j", "2", str(tmp_path / "corpus"), "lexicon.txt", str(out / "acoustic_model.zip"),
        "--output_directory", str(out)]


def test_run_mfa_align_failure_quotes_the_command_and_stderr_tail(fake_mfa, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MFA_STATUS", "2")
    with pytest.raises(AlignmentFailed) as failure:
        run_mfa_align(tmp_path / "corpus", "dict.txt", "model.zip", tmp_path / "out")
    message = str(failure.value)
    assert failure.value.reason == "mfa_failed"
    assert "exited with status 2" in message and "align --clean -j 1" in message
    assert "log line 30" in message and "log line 11" in message and "log line 10\n" not in message


def test_run_mfa_align_without_mfa_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not mfa_available()
    with pytest.raises(ConfigError, match="conda-forge"):
        run_mfa_align(tmp_path, "dict", "model", tmp_path / "out")


@pytest.mark.mfa
@pytest.mark.skipif(not mfa_available(), reason="MFA not installed (conda-forge only); the align command line is "
                                                "covered with a stand-in executable above")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng generates the test speech")
def test_real_mfa_aligns_generated_speech(tmp_path):
    texts = {"utt_1": "please call stella", "utt_2": "ask her to bring these things"}
    utterances = []
    for local_id, text in texts.items():
        wav = tmp_path / f"{local_id}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-w", str(wav), text], check=True)
        utterances.append(("speaker", local_id, wav, text))
    corpus = export_mfa_corpus(utterances, tmp_path / "corpus")
    out = run_mfa_align(corpus, "english_us_arpa", "english_us_arpa", tmp_path / "aligned", jobs=1)
    for local_id, wav in ((u[1], u[2]) for u in utterances):
        num_frames = num_frames_for(sf.info(str(wav)).frames * 22050 // sf.info(str(wav)).samplerate, 256)
        alignment = TextGridAligner(out).align(local_id, num_frames=num_frames, trim_start_s=0.0, sample_rate=22050,
                                               hop_length=256, reduction_factor=1)
        assert alignment.durations.sum() == num_frames and len(alignment.tokens) >= len(texts[local_id].split())
