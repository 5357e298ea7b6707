"""The text front-end on real transcripts (../shared/corpora) and on generated strings per language."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ttsprep.stages.core.errors import InvalidTranscript
from ttsprep.stages.step3_text import (PUNCTUATION, SPECIAL_TOKENS, build_language_map, build_speaker_map, build_vocab,
                                       encode, g2p, inventory, normalize_text, phonemize, phonemize_batch, symbol,
                                       write_table)

CV = "common_voice/cv-corpus-6.1-2020-12-11"


def _cv_sentences(corpora: Path, locale: str) -> list[str]:
    with open(corpora / CV / locale / "validated.tsv", encoding="utf-8", newline="") as handle:
        return [row["sentence"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]


def _aishell3_lines(corpora: Path) -> list[tuple[str, str, str]]:
    """(utterance, hanzi, pinyin) per line of AISHELL-3's content.txt (``hanzi pinyin`` pairs)."""
    lines = []
    for line in (corpora / "aishell3/data_aishell3/train/content.txt").read_text(encoding="utf-8").splitlines():
        name, pairs = line.split("\t")
        words = pairs.split()
        lines.append((name, "".join(words[0::2]), " ".join(words[1::2])))
    return lines


# --- normalisation -----------------------------------------------------------------------------------------

def test_ljspeech_normalisation_matches_the_corpus_normalised_column(shared_corpora):
    rows = [line.split("|") for line in
            (shared_corpora / "ljspeech/LJSpeech-1.1/metadata.csv").read_text(encoding="utf-8").splitlines()]
    by_id = {utt: (raw, normalize_text(raw, "en"), expected.lower()) for utt, raw, expected in rows}
    # years (1455, 1813, "1469, 1470;"), "8." and £ amounts read as LJSpeech's own normalised column reads them
    assert by_id["LJ001-0045"][1] == "fourteen sixty-nine, fourteen seventy;"
    assert by_id["LJ002-0020"][1] == "in eighteen thirteen"
    assert by_id["LJ002-0035"][1] == "eight. the press yard."
    assert "five hundred pounds" in by_id["LJ002-0120"][1]
    # the one difference: num2words reads 5719 the British way ("and"), and its comma is dropped
    assert by_id["LJ002-0126"][1].startswith("five thousand seven hundred and nineteen writs")
    differing = sorted(utt for utt, (_, mine, expected) in by_id.items() if mine != expected)
    assert differing == ["LJ002-0126"]


@pytest.mark.parametrize(("text", "expected"), [
    ("Mr. Smith and Dr. Jones of St. Paul's", "mister smith and doctor jones of saint paul's"),
    ("It cost $3.50, not £1 or €1,200.", "it cost three dollars fifty cents, not one pound or one thousand two hundred euros."),
    ("The 21st of 1,455 people in 2010", "the twenty-first of one thousand four hundred and fifty-five people in two thousand and ten"),
    ("  Two\tspaces \n here ", "two spaces here"),
    ("ＦＵＬＬ－ＷＩＤＴＨ　１２", "full-width twelve"),
])
def test_english_rules(text, expected):
    assert normalize_text(text, "en") == expected


@pytest.mark.parametrize(("text", "language", "expected"), [
    ("Ich habe 21 Äpfel und 2,5 Birnen.", "de", "ich habe einundzwanzig äpfel und zwei komma fünf birnen."),
    ("1.000 Leute", "de", "eintausend leute"),
    ("Il a 21 ans.", "fr", "il a vingt et un ans."),
    ("У меня 3 кошки.", "ru", "у меня три кошки."),
    ("Tengo 15 años.", "es-ES", "tengo quince años."),
    ("Ik heb 7 katten.", "nl", "ik heb zeven katten."),
    ("Van 12 macskám.", "hu", "van tizenkettő macskám."),
    ("２．５メートル、ＡＢＣです。", "ja", "二点五メートル、ABCです。"),
    ("在2020年有1,000人 ， 50%同意。", "zh-CN", "在二零二零年有一千人,百分之五十同意。"),
])
def test_numbers_nfkc_and_spaces_per_language(text, language, expected):
    assert normalize_text(text, language) == expected


@pytest.mark.parametrize(("text", "language", "reason"), [
    ("", "en", "text_empty"),
    (" ... !? ", "en", "text_empty"),
    ("♪", "ja", "text_empty"),
    ("hello 世界", "en", "text_script"),
    ("привет hello", "ru", "text_script"),
    ("안녕 こんにちは", "ja", "text_script"),
    ("12 words", "xx", "text_numbers"),
    ("1" * 400, "en", "text_numbers"),
])
def test_failing_rule_names_the_reason(text, language, reason):
    with pytest.raises(InvalidTranscript) as caught:
        normalize_text(text, language)
    assert caught.value.reason == reason
    assert language in str(caught.value)


# --- G2P ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "language", "expected"), [
    ("cat", "en", ["k", "ˈæ", "t"]),
    ("tag", "de", ["t", "ˈɑː", "k"]),  # final devoicing
    ("bonjour", "fr", ["b", "ɔ̃", "ʒ", "ˈu", "ʁ"]),
    ("мир", "ru", ["mʲ", "ˈi", "r"]),
    ("hola", "es", ["ˈo", "l", "a"]),
    ("hallo", "nl", ["h", "ˈɑ", "l", "oː"]),
    ("világ", "hu", ["v", "ˈi", "l", "aː", "ɡ"]),
    ("你好", "zh", ["n", "i3", "h", "ao3"]),  # pypinyin applies no third-tone sandhi
    ("女儿的绿色", "zh-CN", ["n", "v3", "er2", "d", "e5", "l", "v4", "s", "e4"]),
    ("こんにちは", "ja", ["k", "o", "N", "n", "i", "ch", "i", "w", "a"]),
])
def test_short_words(text, language, expected):
    assert phonemize(text, language) == expected


def test_punctuation_tokens_and_dropped_marks():
    tokens = phonemize('the cat, "sat"... on (the) mat!', "en")
    assert [t for t in tokens if t in PUNCTUATION] == [",", ".", "!"]
    assert not {'"', "(", ")", "|", " "} & set(tokens)
    assert phonemize("你好，世界。", "zh") == ["n", "i3", "h", "ao3", ",", "sh", "i4", "j", "ie4", "."]
    assert phonemize("こんにちは、世界。", "ja")[-7:] == ["a", "pau", "s", "e", "k", "a", "i"]


def test_mandarin_split_is_strict():
    assert phonemize("一", "zh", pinyin="yi1") == ["i1"]
    assert phonemize("x", "zh", pinyin="wu2 yue4 ju4 liu2 gui4 m2 lü4") == [
        "u2", "ve4", "j", "v4", "l", "iou2", "g", "uei4", "m2", "l", "v4"]


def test_aishell3_corpus_pinyin_is_used_as_given(shared_corpora):
    lines = _aishell3_lines(shared_corpora)
    zh_phones = inventory("zh")
    for name, hanzi, pinyin in lines:
        tokens = phonemize(hanzi, "zh", pinyin=pinyin)
        assert set(tokens) <= zh_phones, name
        assert sum(t[-1].isdigit() for t in tokens) == len(hanzi)  # one tone-bearing final per character
    name, hanzi, pinyin = lines[0]
    assert hanzi == "我知道你不习惯" and pinyin.split()[1] == "zi1"
    said = phonemize(hanzi, "zh", pinyin=pinyin)
    assert said[:3] == ["uo3", "z", "i1"]  # 知 as the speaker said it (zi1) ...
    assert phonemize(hanzi, "zh")[:3] == ["uo3", "zh", "i1"]  # ... not the dictionary's zhi1


def test_common_voice_mandarin_and_japanese(shared_corpora):
    zh_phones, ja_phones = inventory("zh"), inventory("ja")
    for sentence in _cv_sentences(shared_corpora, "zh-CN"):
        tokens = phonemize(normalize_text(sentence, "zh-CN"), "zh-CN")
        assert set(tokens) - PUNCTUATION <= zh_phones, sentence
    ja_sentences = _cv_sentences(shared_corpora, "ja")
    for sentence in ja_sentences:
        assert set(phonemize(normalize_text(sentence, "ja"), "ja")) <= ja_phones, sentence
    assert "く" in ja_sentences and phonemize("く", "ja") == ["k", "u"]


def test_jsut_phones_match_the_corpus_labels(shared_corpora):
    root = shared_corpora / "jsut/jsut_ver1.1/basic5000"
    utt, text = (root / "transcript_utf8.txt").read_text(encoding="utf-8").strip().split(":", 1)
    labels = (root / "lab" / f"{utt}.lab").read_text(encoding="utf-8").split("\n")
    centre_phones = [line.split()[2].split("-", 1)[1].split("+", 1)[0] for line in labels if line.strip()]
    assert phonemize(normalize_text(text, "ja"), "ja") == [p for p in centre_phones if p != "sil"]


def test_batch_equals_single_calls_on_libritts(shared_corpora):
    texts = [normalize_text(p.read_text(encoding="utf-8"), "en")
             for p in sorted((shared_corpora / "libritts").rglob("*.normalized.txt"))]
    assert len(texts) >= 4
    batch = phonemize_batch(texts, "en")
    assert batch == [phonemize(t, "en") for t in texts]
    assert all(isinstance(tokens, list) and len(tokens) > len(t.split()) for tokens, t in zip(batch, texts))


def test_batch_keeps_order_and_isolates_bad_texts():
    results = phonemize_batch(["the cat", "...", "", "a dog."], "en")
    assert results[0] == ["ð", "ə", "k", "ˈæ", "t"]
    assert results[3][-1] == "."
    assert [r.reason for r in results[1:3]] == ["g2p_failed", "g2p_failed"]
    zh = phonemize_batch(["你好", "hello"], "zh", ["ni3 hao3", None])
    assert zh[0] == ["n", "i3", "h", "ao3"] and zh[1].reason == "g2p_failed"
    assert [r.reason for r in phonemize_batch(["a", "b"], "tlh")] == ["g2p_unsupported_language"] * 2


def test_espeak_exception_fails_only_its_text(monkeypatch):
    real = g2p._espeak_backend("en-us")

    class Breaking:
        def phonemize(self, chunks, **kwargs):
            if any("boom" in c for c in chunks):
                raise RuntimeError("espeak-ng crashed")
            return real.phonemize(chunks, **kwargs)

    monkeypatch.setattr(g2p, "_espeak_backend", lambda voice: Breaking())
    results = phonemize_batch(["the cat", "boom", "a dog"], "en")
    assert results[0] == ["ð", "ə", "k", "ˈæ", "t"] and results[2][-1] == "ɡ"
    assert results[1].reason == "g2p_failed" and "boom" in str(results[1])


@pytest.mark.parametrize(("text", "language", "kwargs", "reason"), [
    ("hello", "tlh", {}, "g2p_unsupported_language"),
    ("你好", "zh-HK", {}, "g2p_unsupported_language"),  # Cantonese: pypinyin reads Mandarin only
    ("AB你好", "zh", {}, "g2p_failed"),
    ("3个", "zh", {}, "g2p_failed"),
    ("你好", "zh", {"pinyin": "ni3 xyz3"}, "g2p_failed"),
    ("你好", "zh", {"pinyin": "ni hao"}, "g2p_failed"),
    ("...", "en", {}, "g2p_failed"),
])
def test_g2p_failures(text, language, kwargs, reason):
    with pytest.raises(InvalidTranscript) as caught:
        phonemize(text, language, **kwargs)
    assert caught.value.reason == reason
    assert language in str(caught.value)


def test_openjtalk_exception_is_g2p_failed(monkeypatch):
    class Broken:
        @staticmethod
        def g2p(text):
            raise RuntimeError("njd failure")

    monkeypatch.setattr(g2p, "_pyopenjtalk", lambda: Broken)
    with pytest.raises(InvalidTranscript, match="njd failure") as caught:
        phonemize("こんにちは", "ja")
    assert caught.value.reason == "g2p_failed"


def test_inventories():
    zh = inventory("zh")
    assert {"zh", "ch", "sh", "r", "z", "a1", "v3", "ve4", "iou2", "uei4", "er2", "i5", "m2", "ng2"} <= zh
    assert not {"y", "w", "i", "a"} & zh  # y/w are not initials; every final carries a tone
    assert all(p[-1] in "12345" for p in zh if p[-1].isdigit())
    assert inventory("zh-CN") == zh and inventory("en") is None and inventory("de") is None
    katakana = [chr(c) for c in range(ord("ァ"), ord("ヺ") + 1)]
    sweep = katakana + [k + small for k in katakana for small in "ャュョァィゥェォ"] + ["です", "っ"]
    produced = {p for tokens in phonemize_batch(sweep, "ja") if isinstance(tokens, list) for p in tokens}
    assert produced <= inventory("ja")
    assert {"N", "cl", "U", "fy", "kw", "gw", "v"} <= produced


# --- symbol tables -----------------------------------------------------------------------------------------

def test_vocab_layout_and_determinism():
    tokens = {"en": {"k", "ˈæ", "t", ","}, "zh-CN": {"n", "i3", "."}, "zh": {"h", "ao3"}, "ja": {"pau"}}
    vocab = build_vocab(tokens)
    reordered = build_vocab({lang: list(reversed(sorted(tokens[lang]))) for lang in reversed(list(tokens))})
    assert list(vocab.items()) == list(reordered.items())
    assert list(vocab.values()) == list(range(len(vocab)))
    assert list(vocab)[:len(SPECIAL_TOKENS)] == ["<pad>", "<unk>", "<bos>", "<eos>", "<blank>"]
    assert list(vocab)[5:11] == sorted(PUNCTUATION)
    phones = list(vocab)[11:]
    assert phones == sorted(phones)
    assert {"en:k", "en:ˈæ", "ja:pau", "zh:n", "zh:ao3"} <= set(phones)
    assert {f"zh:{p}" for p in inventory("zh")} | {f"ja:{p}" for p in inventory("ja")} <= set(phones)
    assert symbol(",", "ja") == "," and symbol("a", "fr-FR") == "fr:a"
    assert encode(["k", "ˈæ", "t", ",", "q"], "en-US", vocab) == [vocab["en:k"], vocab["en:ˈæ"], vocab["en:t"],
                                                                  vocab[","], vocab["<unk>"]]


def test_vocab_covers_real_tokens(shared_corpora):
    texts = [line.split("|")[2] for line in
             (shared_corpora / "ljspeech/LJSpeech-1.1/metadata.csv").read_text(encoding="utf-8").splitlines()]
    en_tokens = phonemize_batch([normalize_text(t, "en") for t in texts], "en")
    zh_tokens = [phonemize(hanzi, "zh", pinyin=pinyin) for _, hanzi, pinyin in _aishell3_lines(shared_corpora)]
    vocab = build_vocab({"en": {t for ts in en_tokens for t in ts}, "zh": set()})
    for tokens in en_tokens:
        assert vocab["<unk>"] not in encode(tokens, "en", vocab)
    for tokens in zh_tokens:  # zh ids come from the inventory even though no zh token was passed in
        assert vocab["<unk>"] not in encode(tokens, "zh", vocab)


def test_maps_and_atomic_write(tmp_path):
    speakers = build_speaker_map([("vctk", "p225"), ("lj", "LJ"), ("vctk", "p225"), ("aishell3", "SSB0139")])
    assert speakers == {"aishell3:SSB0139": 0, "lj:LJ": 1, "vctk:p225": 2}
    assert build_language_map(["zh-CN", "en", "ja", "en"]) == {"en": 0, "ja": 1, "zh-CN": 2}
    vocab = build_vocab({"en": {"ə", "k"}})
    path = tmp_path / "maps" / "vocab.json"
    write_table(path, vocab)
    first = path.read_bytes()
    assert list(json.loads(first).items()) == list(vocab.items())
    write_table(path, build_vocab({"en": ["k", "ə"]}))
    assert path.read_bytes() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["vocab.json"]  # no temporary file left behind
