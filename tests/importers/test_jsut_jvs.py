from pathlib import Path

import pytest

from tests.importers.layouts import reasons, split_items, write_audio, write_text
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.importers import jsut, jvs

PARALLEL = {"VOICEACTRESS100_001": "また、東寺のように、五大明王と呼ばれる、主要な明王の中央に配されることも多い。",
            "VOICEACTRESS100_002": "ニューイングランド風は牛乳をベースとした白いクリームスープ。"}


def test_shared_jsut_sample(shared_corpora):
    [utt] = jsut.scan(shared_corpora / "jsut" / "jsut_ver1.1", jsut.Options(), "ja")
    assert (utt.local_id, utt.text) == ("BASIC5000_0001", "水をマレーシアから買わなくてはならないのです。")
    assert (utt.speaker, utt.language, utt.gender, utt.extra) == ("jsut", "ja", "female", {"subset": "basic5000"})
    assert Path(utt.audio_path).is_file()


def test_jsut_subsets_and_problems(tmp_path):
    root = tmp_path / "jsut_ver1.1"
    write_text(root / "basic5000" / "transcript_utf8.txt",
               "BASIC5000_0001:水を買う。\nBASIC5000_0002:時刻は12:30です。\nno colon here\nBASIC5000_0003:\n".encode()
               + b"BASIC5000_0004:\xe6\xb0\n")
    write_text(root / "travel1000" / "transcript_utf8.txt", "TRAVEL1000_0001:駅はどこですか。\n")
    for utt in ("BASIC5000_0001", "BASIC5000_0004", "BASIC5000_0009"):
        write_audio(root / "basic5000" / "wav" / f"{utt}.wav", sample_rate=48000)
    (root / "lab").mkdir()  # a folder without transcript is not a subset
    items = list(jsut.scan(root, jsut.Options(), "ja"))
    utterances, _ = split_items(items)
    assert {u: (v.text, v.extra["subset"]) for u, v in utterances.items()} == {
        "BASIC5000_0001": ("水を買う。", "basic5000"), "BASIC5000_0002": ("時刻は12:30です。", "basic5000"),
        "TRAVEL1000_0001": ("駅はどこですか。", "travel1000")}
    assert reasons(items) == {"basic5000/transcript_utf8.txt:3": "malformed_metadata",
                              "BASIC5000_0003": "empty_transcript",
                              "BASIC5000_0004": "invalid_encoding",  # its wav is not also untranscribed
                              "BASIC5000_0009": "missing_transcript"}
    assert [u.local_id for u in jsut.scan(root, jsut.Options(subsets=["travel1000"]), "ja")] == ["TRAVEL1000_0001"]
    with pytest.raises(ConfigError, match=r"\['voiceactress100'\] not found"):
        list(jsut.scan(root, jsut.Options(subsets=["voiceactress100"]), "ja"))


def write_jvs(root: Path) -> Path:
    """Two JVS speakers with the four subsets, laid out as jvs_ver1 is."""
    write_text(root / "gender_f0range.txt", "speaker Male_or_Female minf0[Hz] maxf0[Hz]\njvs001 M 70 300\n"
                                            "jvs002 F 130 450\n")
    for speaker in ("jvs001", "jvs002"):
        for subset, texts in (("parallel100", PARALLEL), ("whisper10", {"VOICEACTRESS100_003": "小さな声。"}),
                              ("falsetto10", {"VOICEACTRESS100_004": "裏声。"}),
                              ("nonpara30", {f"BASIC5000_{speaker[-1]}025": f"{speaker}の文。"})):
            folder = root / speaker / subset
            write_text(folder / "transcripts_utf8.txt", "".join(f"{utt}:{text}\n" for utt, text in texts.items()))
            for utt in texts:
                write_audio(folder / "wav24kHz16bit" / f"{utt}.wav", sample_rate=24000)
    return root


def test_jvs_layout(tmp_path):
    root = write_jvs(tmp_path / "jvs_ver1")
    utterances, problems = split_items(list(jvs.scan(root, jvs.Options(), "ja")))
    assert not problems
    assert list(utterances) == [
        "jvs001_parallel100_VOICEACTRESS100_001", "jvs001_parallel100_VOICEACTRESS100_002",
        "jvs001_nonpara30_BASIC5000_1025", "jvs002_parallel100_VOICEACTRESS100_001",
        "jvs002_parallel100_VOICEACTRESS100_002", "jvs002_nonpara30_BASIC5000_2025"]
    first = utterances["jvs001_parallel100_VOICEACTRESS100_001"]
    assert (first.text, first.speaker, first.gender, first.language) == (PARALLEL["VOICEACTRESS100_001"], "jvs001",
                                                                         "male", "ja")
    assert first.extra == {"subset": "parallel100", "min_f0_hz": "70", "max_f0_hz": "300"}
    assert first.audio_path == str(root / "jvs001" / "parallel100" / "wav24kHz16bit" / "VOICEACTRESS100_001.wav")
    assert utterances["jvs002_nonpara30_BASIC5000_2025"].gender == "female"
    whisper = list(jvs.scan(root, jvs.Options(subsets=["whisper10"]), "ja"))
    assert [u.local_id for u in whisper] == ["jvs001_whisper10_VOICEACTRESS100_003",
                                             "jvs002_whisper10_VOICEACTRESS100_003"]


def test_jvs_problems(tmp_path):
    root = write_jvs(tmp_path / "jvs_ver1")
    write_audio(root / "jvs002" / "parallel100" / "wav24kHz16bit" / "VOICEACTRESS100_099.wav", sample_rate=24000)
    write_text(root / "jvs001" / "nonpara30" / "transcripts_utf8.txt", "BASIC5000_1025:  \n../../../../../x:逃げる\n")
    items = list(jvs.scan(root, jvs.Options(), "ja"))
    assert reasons(items) == {"jvs001_nonpara30_BASIC5000_1025": "empty_transcript",
                              "jvs001_nonpara30_../../../../../x": "path_escapes_root",
                              "jvs002_parallel100_VOICEACTRESS100_099": "missing_transcript"}
    with pytest.raises(ConfigError, match="no speaker folders"):
        list(jvs.scan(tmp_path, jvs.Options(), "ja"))
