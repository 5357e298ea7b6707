from pathlib import Path

import pytest

from tests.importers.layouts import reasons, split_items, write_audio, write_text
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.importers.aishell3 import Options, scan

SPK_INFO = ("# voice-file name; age group; gender; accent\n# In years, A:< 14, B:14 - 25, C:26 - 40, D:> 41.\n\n"
            "SSB0005\tC\tfemale\tnorth\nSSB0009\tB\tmale\tsouth\n")


def write_subset(root: Path, subset: str, lines: list[bytes], wavs: tuple[str, ...]) -> None:
    write_text(root / subset / "content.txt", b"\n".join(lines) + b"\n")
    for utt in wavs:
        write_audio(root / subset / "wav" / utt[:7] / f"{utt}.wav", sample_rate=44100)


def test_shared_sample_keeps_corpus_pinyin(shared_corpora):
    items = list(scan(shared_corpora / "aishell3" / "data_aishell3", Options(), "zh"))
    utterances, problems = split_items(items)
    assert len(utterances) == 19 and not problems
    first = utterances["SSB01390001"]
    assert (first.text, first.pinyin) == ("我知道你不习惯", "wo3 zi1 dao4 ni3 bu4 qi2 guan4")  # 知 zi1, 习 qi2 as given
    assert (first.speaker, first.gender, first.accent, first.split, first.language) == (
        "SSB0139", "male", "south", "train", "zh")
    assert first.extra == {"age_group": "B"}
    assert (utterances["SSB01390002"].text, utterances["SSB01390002"].pinyin) == (
        "音乐搜索情深谊长", "yin1 yue4 sou1 suo3 qing2 shen1 yi2 cang2")
    assert all(Path(u.audio_path).is_file() for u in utterances.values())
    assert all(len(u.text) == len(u.pinyin.split()) for u in utterances.values())


def test_subsets_speakers_and_problems(tmp_path):
    root = tmp_path / "data_aishell3"
    write_text(root / "spk-info.txt", SPK_INFO)
    write_subset(root, "train", [
        "SSB00050001.wav\t广 guang3 州 zhou1".encode(),
        "SSB00050002.wav\t知 zi1 道".encode(),                     # odd token count
        "SSB00050003.wav\t".encode(),                             # no labels at all
        b"SSB00050004.wav\t\xe5\xb9 guang3",                       # invalid UTF-8
        "SSB00050005 广 guang3".encode(),                          # no .wav<TAB>
    ], wavs=("SSB00050001", "SSB00050004", "SSB00050006"))
    write_subset(root, "test", ["SSB00090001.wav\t好 hao3".encode()], wavs=("SSB00090001",))
    items = list(scan(root, Options(), "zh"))
    utterances, _ = split_items(items)
    assert [(u.local_id, u.text, u.pinyin, u.split, u.gender, u.accent, u.extra) for u in utterances.values()] == [
        ("SSB00050001", "广州", "guang3 zhou1", "train", "female", "north", {"age_group": "C"}),
        ("SSB00090001", "好", "hao3", "test", "male", "south", {"age_group": "B"})]
    assert reasons(items) == {
        "train/content.txt:2": "malformed_metadata", "SSB00050003": "empty_transcript",
        "SSB00050004": "invalid_encoding", "train/content.txt:5": "malformed_metadata",
        "SSB00050006": "missing_transcript"}


def test_missing_subset_is_skipped_only_when_another_exists(tmp_path):
    root = tmp_path / "data_aishell3"
    write_subset(root, "train", ["SSB00050001.wav\t好 hao3".encode()], wavs=())
    assert [u.split for u in scan(root, Options(), "zh")] == ["train"]
    with pytest.raises(ConfigError, match="none of the subsets"):
        list(scan(root, Options(subsets=["test"]), "zh"))
    (root / "test").mkdir()
    with pytest.raises(ConfigError, match="content.txt not found"):
        list(scan(root, Options(), "zh"))


def test_path_escape_in_content_line(tmp_path):
    root = tmp_path / "data_aishell3"
    write_subset(root, "train", ["../../../../x.wav\t好 hao3".encode()], wavs=())
    assert reasons(list(scan(root, Options(), "zh"))) == {"../../../../x": "path_escapes_root"}
