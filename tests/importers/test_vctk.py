from pathlib import Path

import pytest

from tests.importers.layouts import reasons, split_items, write_audio, write_text
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.importers.vctk import Options, scan

ROOT = "VCTK-Corpus-0.92"


@pytest.mark.parametrize("mic", ["mic1", "mic2"])
def test_shared_sample(shared_corpora, mic):
    utterances, problems = split_items(list(scan(shared_corpora / "vctk" / ROOT, Options(mic=mic), "en")))
    assert not problems
    assert {u: v.text for u, v in utterances.items()} == {
        "p225_001": "Please call Stella.", "p225_002": "Ask her to bring these things with her from the store.",
        "p226_001": "Please call Stella."}  # p226_001.txt ends in two spaces
    p225, p226 = utterances["p225_001"], utterances["p226_001"]
    assert (p225.speaker, p225.gender, p225.accent, p225.extra) == (
        "p225", "female", "English", {"age": "23", "region": "Southern England", "mic": mic})
    assert (p226.gender, p226.extra["age"], p226.extra["region"]) == ("male", "22", "Surrey")
    assert all(v.audio_path.endswith(f"_{mic}.flac") and Path(v.audio_path).is_file() for v in utterances.values())


def test_missing_transcripts_and_bad_files(tmp_path):
    root = tmp_path / ROOT
    outside = write_audio(tmp_path / "outside.flac")
    write_text(root / "speaker-info.txt",
               "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \np315  18  M    American    Connecticut\n")
    for utt in ("p315_001", "p315_002"):
        write_audio(root / "wav48_silence_trimmed" / "p315" / f"{utt}_mic1.flac", sample_rate=48000)
    write_text(root / "txt" / "p240" / "p240_001.txt", "  \n")
    write_text(root / "txt" / "p240" / "p240_002.txt", b"Caf\xe9\n")
    write_text(root / "txt" / "p240" / "p240_003.txt", "Text only: the flac is missing.\n")
    write_text(root / "txt" / "p240" / "p240_004.txt", "Symlinked out.\n")
    (root / "wav48_silence_trimmed" / "p240").mkdir()
    (root / "wav48_silence_trimmed" / "p240" / "p240_004_mic1.flac").symlink_to(outside)
    write_audio(root / "wav48_silence_trimmed" / "p240" / "p240_005_mic2.flac")  # other mic: not listed
    items = list(scan(root, Options(), "en"))
    utterances, _ = split_items(items)
    assert [(u.local_id, u.text, u.gender) for u in utterances.values()] == [
        ("p240_003", "Text only: the flac is missing.", None)]
    assert reasons(items) == {"p240_001": "empty_transcript", "p240_002": "invalid_encoding",
                              "p240_004": "path_escapes_root", "p315_001": "missing_transcript",
                              "p315_002": "missing_transcript"}
    assert reasons(list(scan(root, Options(mic="mic2"), "en")))["p240_005"] == "missing_transcript"


def test_old_layout_with_numeric_speaker_ids(tmp_path):
    root = tmp_path / "VCTK-Corpus"
    write_text(root / "speaker-info.txt",
               "ID  AGE  GENDER  ACCENTS  REGION\n225  23  F    English    Southern  England\n")
    write_text(root / "txt" / "p225" / "p225_001.txt", "Please call Stella.\n")
    write_audio(root / "wav48" / "p225" / "p225_001.wav", sample_rate=48000)
    [utt] = scan(root, Options(mic="mic2"), "en")  # mic does not apply to the one-microphone layout
    assert (utt.local_id, utt.gender, utt.accent, utt.extra) == (
        "p225_001", "female", "English", {"age": "23", "region": "Southern England"})
    assert utt.audio_path == str(root / "wav48" / "p225" / "p225_001.wav")
    with pytest.raises(ConfigError, match="wav48_silence_trimmed"):
        list(scan(tmp_path, Options(), "en"))
