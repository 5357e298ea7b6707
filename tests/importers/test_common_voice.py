from pathlib import Path

import pytest

from tests.importers.layouts import split_items, write_audio, write_text
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers import common_voice
from ttsprep.stages.step1_ingest.importers.base import Problem
from ttsprep.stages.step1_ingest.importers.common_voice import Options, language_of, scan

RELEASE = "cv-corpus-6.1-2020-12-11"
V1_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"
V61_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\tlocale\tsegment"
V17_HEADER = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents"
              "\tvariant\tlocale\tsegment")


def write_cv(root: Path, tables: dict[str, list[str]], clips: tuple[str, ...] = ()) -> Path:
    for name, lines in tables.items():
        write_text(root / f"{name}.tsv", "\n".join(lines) + "\n")
    for clip in clips:
        write_audio(root / "clips" / clip, sample_rate=48000)
    return root


def test_shared_english_sample(shared_corpora):
    items = list(scan(shared_corpora / "common_voice" / RELEASE / "en", Options(), common_voice.DEFAULT_LANGUAGE))
    utterances, problems = split_items(items)
    assert len(utterances) == 14 and not problems
    first = utterances["common_voice_en_18091118"]
    assert first.text == "My empire reaches from the ocean in the East to the mountain ridge in the West."
    assert first.speaker.startswith("e59d17310bb3b545") and len(first.speaker) == 128
    assert (first.language, first.gender, first.accent, first.split) == ("en", "male", "us", None)
    assert first.extra == {"up_votes": "2", "down_votes": "0", "age": "twenties", "locale": "en", "tsv": "validated"}
    assert Path(first.audio_path).is_file() and first.audio_path.endswith("/en/clips/common_voice_en_18091118.mp3")
    benchmark = utterances["common_voice_en_22050612"]
    assert (benchmark.text, benchmark.extra["segment"], benchmark.accent) == ("Firefox", "Benchmark", None)
    assert utterances["common_voice_en_518684"].extra["down_votes"] == "1"
    assert utterances["common_voice_en_18511375"].text == ("We always try to take our customers\u2019 likes and "
                                                          "dislikes into account.")
    accents = {u.accent for u in utterances.values()}
    assert accents == {None, "australia", "england", "indian", "ireland", "us"}


def test_shared_chinese_and_japanese_samples(shared_corpora):
    zh, _ = split_items(list(scan(shared_corpora / "common_voice" / RELEASE / "zh-CN", Options(), "")))
    assert len(zh) == 5
    assert {u.language for u in zh.values()} == {"zh"}
    assert {u.extra["locale"] for u in zh.values()} == {"zh-CN"}
    # the TSV's codes (GB/T 2260, birthplace province) become the names Common Voice's site showed for them
    assert sorted((u.extra.get("accent_code"), u.accent) for u in zh.values() if u.accent) == [
        ("230000", "黑龙江省"), ("320000", "江苏省"), ("360000", "江西省"), ("420000", "湖北省")]
    assert zh["common_voice_zh-CN_22108263"].text == "中共高级领导人。"
    ja, _ = split_items(list(scan(shared_corpora / "common_voice" / RELEASE / "ja", Options(), "")))
    assert len(ja) == 5 and {u.language for u in ja.values()} == {"ja"}
    assert ja["common_voice_ja_22191245"].text == "く" and ja["common_voice_ja_22191245"].extra["segment"] == "Benchmark"


@pytest.mark.parametrize("locale, language", [("en", "en"), ("zh-CN", "zh"), ("sv-SE", "sv"), ("zh-HK", "yue"),
                                              ("rm-sursilv", "rm")])
def test_locale_to_language(locale, language):
    assert language_of(locale) == language


def test_release_header_variants_are_read_by_name(tmp_path):
    v1 = write_cv(tmp_path / "v1" / "de", {"validated": [
        V1_HEADER, "abc\t0a1b2c3d\tGuten Tag.\t3\t1\tthirties\tfemale\tgermany"]})
    v61 = write_cv(tmp_path / "v61" / "de", {"validated": [
        V61_HEADER, "abc\tcommon_voice_de_1.mp3\tGuten Tag.\t2\t0\t\tmale\t\tde\tBenchmark"]})
    v17 = write_cv(tmp_path / "v17" / "ca", {"validated": [
        V17_HEADER, "abc\tcommon_voice_ca_7.mp3\tf00d\tBon dia.\tgeneral\t4\t0\tfourties\tfemale_feminine"
                    "\tCentral|Barceloní\tcentral\tca\t"]})
    reordered = write_cv(tmp_path / "re" / "en", {"validated": [
        "sentence\tlocale\tpath\tclient_id\tdown_votes\tup_votes",
        "Hello there.\ten\tcommon_voice_en_5.mp3\txyz\t0\t2"]})

    [u1] = scan(v1, Options(), "")
    assert (u1.local_id, u1.language, u1.accent, u1.gender) == ("0a1b2c3d", "de", "germany", "female")
    assert u1.audio_path == str((v1 / "clips" / "0a1b2c3d.mp3").resolve())
    assert u1.extra == {"up_votes": "3", "down_votes": "1", "age": "thirties", "locale": "de", "tsv": "validated"}
    [u61] = scan(v61, Options(), "")
    assert (u61.gender, u61.accent, u61.extra["segment"]) == ("male", None, "Benchmark")
    [u17] = scan(v17, Options(), "")
    assert (u17.language, u17.gender, u17.accent) == ("ca", "female", "Central|Barceloní")
    assert u17.extra == {"up_votes": "4", "down_votes": "0", "age": "fourties", "locale": "ca", "variant": "central",
                         "sentence_domain": "general", "sentence_id": "f00d", "tsv": "validated"}
    [ure] = scan(reordered, Options(), "")
    assert (ure.local_id, ure.text, ure.speaker, ure.extra["up_votes"]) == (
        "common_voice_en_5", "Hello there.", "xyz", "2")


def test_dataset_language_overrides_locale(tmp_path):
    root = write_cv(tmp_path / "zh-TW", {"validated": [V61_HEADER, "a\tc1.mp3\t你好\t2\t0\t\t\t\tzh-TW\t"]})
    [utt] = scan(root, Options(), "zh")
    assert (utt.language, utt.extra["locale"]) == ("zh", "zh-TW")


def test_splits_dedupe_and_corpus_split(tmp_path):
    row = "spk{0}\tcommon_voice_en_{0}.mp3\tSentence {0}.\t2\t0\t\t\t\ten\t"
    root = write_cv(tmp_path / "en", {
        "validated": [V61_HEADER] + [row.format(n) for n in (1, 2, 3, 4)],
        "train": [V61_HEADER, row.format(1), row.format(2)],
        "test": [V61_HEADER, row.format(3)],
        "invalidated": [V61_HEADER, row.format(9)],
    })
    items = list(scan(root, Options(splits=["train", "test", "validated", "invalidated"]), ""))
    assert [(u.local_id, u.split, u.extra["tsv"]) for u in items] == [
        ("common_voice_en_1", "train", "train"), ("common_voice_en_2", "train", "train"),
        ("common_voice_en_3", "test", "test"), ("common_voice_en_4", None, "validated"),
        ("common_voice_en_9", None, "invalidated")]
    # the first TSV named wins: validated first means no corpus split for any validated clip
    items = list(scan(root, Options(splits=["validated", "train"]), ""))
    assert [(u.local_id, u.split) for u in items] == [(f"common_voice_en_{n}", None) for n in (1, 2, 3, 4)]


def test_duplicate_inside_one_tsv_is_left_for_ingest(tmp_path):
    row = "spk\tcommon_voice_en_1.mp3\tOnce.\t2\t0\t\t\t\ten\t"
    root = write_cv(tmp_path / "en", {"validated": [V61_HEADER, row, row]})
    assert [u.local_id for u in scan(root, Options(), "")] == ["common_voice_en_1", "common_voice_en_1"]


def test_bad_rows_become_problems(tmp_path):
    root = tmp_path / "release" / "en"
    outside = write_audio(tmp_path / "outside.mp3", sample_rate=48000)
    write_audio(root / "clips" / "ok.mp3", sample_rate=48000)
    (root / "clips" / "link.mp3").symlink_to(outside)
    lines = [V61_HEADER.encode(),
             b"s1\tok.mp3\tFine \"quoted\" text.\t2\t0\t\t\t\ten\t",
             b"s1\tmissing.mp3\tListed but absent.\t2\t0\t\t\t\ten\t",
             b"s1\t../../../etc/passwd\tEscape.\t2\t0\t\t\t\ten\t",
             b"s1\t/etc/passwd\tAbsolute.\t2\t0\t\t\t\ten\t",
             b"s1\tlink.mp3\tSymlink out.\t2\t0\t\t\t\ten\t",
             b"s1\tbad.mp3\tNot UTF-8 \xff\xfe here.\t2\t0\t\t\t\ten\t",
             b"s1\tempty.mp3\t   \t2\t0\t\t\t\ten\t",
             b"s1\tshort.mp3\ttoo few fields",
             b"\tnoclient.mp3\tNo client.\t2\t0\t\t\t\ten\t"]
    write_text(root / "validated.tsv", b"\n".join(lines) + b"\n")
    items = list(scan(root, Options(), ""))
    kept = [item for item in items if isinstance(item, SourceUtterance)]
    assert [u.local_id for u in kept] == ["ok", "missing"]  # existence is ingest's check, not the importer's
    assert kept[0].text == 'Fine "quoted" text.'
    assert [(p.local_id, p.reason) for p in items if isinstance(p, Problem)] == [
        ("passwd", "path_escapes_root"), ("passwd", "path_escapes_root"), ("link", "path_escapes_root"),
        ("validated.tsv:7", "invalid_encoding"), ("empty", "empty_transcript"),
        ("validated.tsv:9", "malformed_metadata"), ("validated.tsv:10", "malformed_metadata")]
    assert "absolute path '/etc/passwd.mp3'" in items[3].detail  # v1 rule: no suffix -> .mp3


def test_whole_corpus_errors(tmp_path):
    root = write_cv(tmp_path / "en", {"validated": ["client_id\tsentence", "a\tNo path column."]})
    with pytest.raises(ConfigError, match="no column"):
        list(scan(root, Options(), ""))
    with pytest.raises(ConfigError, match=r"\['dev.tsv'\] not found"):
        list(scan(root, Options(splits=["validated", "dev"]), ""))
    write_text(root / "train.tsv", b"client_id\tpath\t\xff\n")
    with pytest.raises(ConfigError, match="header"):
        list(scan(root, Options(splits=["train"]), ""))


def test_options_reject_unknown_split():
    with pytest.raises(ValueError):
        Options(splits=["reported"])


@pytest.mark.parametrize("value, accent, code", [
    ("320000", "江苏省", "320000"), ("650000", "新疆维吾尔自治区", "650000"), ("810000", "香港特别行政区", "810000"),
    ("出生地：32 江苏省", "江苏省", "320000"),  # the label itself, as later releases write it
    ("999999", "999999", None), ("出生地：32 浙江省", "出生地：32 浙江省", None), ("普通话", "普通话", None),
])
def test_zh_cn_accent_codes(value, accent, code):
    assert common_voice.zh_cn_accent(value) == (accent, code)
    assert len(common_voice.ZH_CN_ACCENTS) == 34  # 31 provinces of the mainland, Taiwan, Hong Kong, Macao


def test_zh_cn_accent_mapped_only_for_zh_cn(tmp_path):
    zh = write_cv(tmp_path / "zh-CN", {"validated": [V1_HEADER, "a\tc1\t你好\t2\t0\t\tmale\t440000",
                                                    "b\tc2\t再见\t2\t0\t\tmale\t"]})
    by_id = {u.local_id: u for u in scan(zh, Options(), "")}  # v1: no locale column, the folder's name is used
    assert (by_id["c1"].accent, by_id["c1"].extra["accent_code"]) == ("广东省", "440000")
    assert by_id["c2"].accent is None and "accent_code" not in by_id["c2"].extra
    other = write_cv(tmp_path / "zh-TW", {"validated": [V61_HEADER, "a\tc1.mp3\t你好\t2\t0\t\t\t440000\tzh-TW\t"]})
    [utt] = scan(other, Options(), "")
    assert utt.accent == "440000" and "accent_code" not in utt.extra
