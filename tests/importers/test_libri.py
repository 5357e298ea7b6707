from pathlib import Path

import pytest

from tests.importers.layouts import reasons, split_items, write_audio, write_text
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.importers import librispeech, libritts

LIBRITTS_SHARED = {
    "260_123440_000010_000004": "I almost think I can remember feeling a little different.",
    "5142_33396_000002_000004": "Ten sons sat at meat with him, and I was the youngest.",
    "6829_68771_000027_000000": "The girl entered, and gave an involuntary cry of surprise.",
    "7176_92135_000004_000000": "But even the unsuccessful dramatist has his moments.",
}
SPEAKERS_TXT = """; Some readers appear under several names
;ID  |SEX| SUBSET           |MINUTES| NAME
14   | F | train-clean-360  | 25.03 | Kristin LeMoine
60   | M | train-clean-100  | 20.18 | |CBW|Simon
"""


def test_shared_libritts_sample(shared_corpora):
    utterances, problems = split_items(list(libritts.scan(shared_corpora / "libritts" / "LibriTTS",
                                                          libritts.Options(), "en")))
    assert not problems
    assert {u: v.text for u, v in utterances.items()} == LIBRITTS_SHARED
    assert all(v.text_normalized == v.text and v.split == "test-clean" for v in utterances.values())
    first = utterances["7176_92135_000004_000000"]
    assert (first.speaker, first.gender, first.extra) == ("7176", None, {"chapter": "92135"})
    assert all(Path(v.audio_path).is_file() for v in utterances.values())


def test_libritts_prefers_original_text_and_reads_speakers(tmp_path):
    root = tmp_path / "LibriTTS"
    chapter = root / "dev-clean" / "84" / "121123"
    write_audio(chapter / "84_121123_000007_000001.wav", sample_rate=24000)
    write_text(chapter / "84_121123_000007_000001.original.txt", "Mr. Smith paid $5.")
    write_text(chapter / "84_121123_000007_000001.normalized.txt", "Mister Smith paid five dollars.")
    write_audio(chapter / "84_121123_000008_000000.wav", sample_rate=24000)  # no text at all
    write_text(chapter / "84_121123_000009_000000.normalized.txt", "Text whose wav is missing.")
    write_text(chapter / "84_121123_000010_000000.normalized.txt", " \n")
    write_text(chapter / "84_121123_000011_000000.normalized.txt", b"bad \xc3")
    write_text(chapter / "84_121123.trans.tsv", "ignored\tignored\tignored\n")
    write_text(root / "speakers.tsv", "READER\tGENDER\tSUBSET\tNAME\n84\tF\tdev-clean\tChristie Nowak\n")
    items = list(libritts.scan(root, libritts.Options(), "en"))
    utterances, _ = split_items(items)
    assert list(utterances) == ["84_121123_000007_000001", "84_121123_000009_000000"]
    first = utterances["84_121123_000007_000001"]
    assert (first.text, first.text_normalized, first.gender, first.split) == (
        "Mr. Smith paid $5.", "Mister Smith paid five dollars.", "female", "dev-clean")
    assert reasons(items) == {"84_121123_000008_000000": "missing_transcript",
                              "84_121123_000010_000000": "empty_transcript",
                              "84_121123_000011_000000": "invalid_encoding"}
    (root / "speakers.tsv").unlink()
    write_text(root / "SPEAKERS.txt", SPEAKERS_TXT.replace("14 ", "84 "))
    assert next(libritts.scan(root, libritts.Options(), "en")).gender == "female"


def test_libritts_subsets_and_symlink_out(tmp_path):
    root = tmp_path / "LibriTTS_R"
    outside = write_audio(tmp_path / "elsewhere.wav")
    for subset in ("train-clean-100", "test-other"):
        chapter = root / subset / "19" / "198"
        write_text(chapter / "19_198_000000_000000.normalized.txt", f"From {subset}.")
        write_audio(chapter / "19_198_000000_000000.wav", sample_rate=24000)
    link = root / "test-other" / "19" / "198" / "19_198_000001_000000"
    (link.parent / f"{link.name}.wav").symlink_to(outside)
    write_text(link.parent / f"{link.name}.normalized.txt", "Link out of the corpus.")
    assert [(u.split, u.text) for u in libritts.scan(root, libritts.Options(subsets=["train-clean-100"]), "en")] == [
        ("train-clean-100", "From train-clean-100.")]
    items = list(libritts.scan(root, libritts.Options(), "en"))
    assert [u.split for u in items if u.local_id == "19_198_000000_000000"] == ["train-clean-100", "test-other"]
    assert reasons(items) == {"19_198_000001_000000": "path_escapes_root"}
    with pytest.raises(ConfigError, match="not found"):
        list(libritts.scan(root, libritts.Options(subsets=["dev-clean"]), "en"))
    with pytest.raises(ConfigError, match="no subset folders"):
        list(libritts.scan(tmp_path / "LibriTTS_R" / "test-other", libritts.Options(), "en"))


def test_shared_librispeech_sample(shared_corpora):
    utterances, problems = split_items(list(librispeech.scan(shared_corpora / "librispeech" / "LibriSpeech",
                                                             librispeech.Options(), "en")))
    assert not problems
    assert {u: (v.speaker, v.split, v.extra["chapter"]) for u, v in utterances.items()} == {
        "2412-153948-0000": ("2412", "dev-clean", "153948"), "61-70968-0000": ("61", "test-clean", "70968")}
    assert utterances["61-70968-0000"].text == ("HE BEGAN A CONFUSED COMPLAINT AGAINST THE WIZARD WHO HAD VANISHED "
                                                "BEHIND THE CURTAIN ON THE LEFT")
    assert all(Path(v.audio_path).suffix == ".flac" and Path(v.audio_path).is_file() for v in utterances.values())


def test_librispeech_layout_and_problems(tmp_path):
    root = tmp_path / "LibriSpeech"
    write_text(root / "SPEAKERS.TXT", SPEAKERS_TXT)
    chapter = root / "train-clean-100" / "60" / "121082"
    write_text(chapter / "60-121082.trans.txt",
               b"60-121082-0000 FIRST LINE\n60-121082-0001\n 60-121082-0002 LEADING SPACE\n60-121082-0003 \xff\n"
               b"60-121082-0004 LISTED BUT NO FLAC\n")
    for number in ("0000", "0003", "0005"):
        write_audio(chapter / f"60-121082-{number}.flac")
    write_audio(root / "train-clean-100" / "14" / "208" / "14-208-0000.flac")  # chapter without trans.txt
    items = list(librispeech.scan(root, librispeech.Options(), "en"))
    utterances, _ = split_items(items)
    assert {u: (v.text, v.gender) for u, v in utterances.items()} == {
        "60-121082-0000": ("FIRST LINE", "male"), "60-121082-0004": ("LISTED BUT NO FLAC", "male")}
    label = "train-clean-100/60/121082/60-121082.trans.txt"
    assert reasons(items) == {"14-208-0000": "missing_transcript", "60-121082-0001": "empty_transcript",
                              f"{label}:3": "malformed_metadata", "60-121082-0003": "invalid_encoding",
                              "60-121082-0005": "missing_transcript"}


def test_speakers_txt_keeps_names_with_bars(tmp_path):
    genders = librispeech.read_speakers_txt(write_text(tmp_path / "SPEAKERS.TXT", SPEAKERS_TXT))
    assert genders == {"14": "female", "60": "male"}
