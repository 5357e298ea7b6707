from pathlib import Path

import pytest

from tests.importers.layouts import reasons, split_items, write_audio, write_text
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.importers import cmu_arctic, css10

BOOK = "achtgesichterambiwasse"


def test_css10_layout_and_problems(tmp_path):
    root = tmp_path / "german"
    write_audio(root / BOOK / f"{BOOK}_0000.wav", sample_rate=22050)
    write_text(root / "transcript.txt", (
        f"{BOOK}/{BOOK}_0000.wav|Es war 1 Uhr.|Es war ein Uhr.|1.98\n"
        f"{BOOK}/{BOOK}_0001.wav|Ohne Datei.|Ohne Datei.|2.5\n"
        f"{BOOK}/{BOOK}_0002.wav| | |0.4\n"
        f"../../etc/passwd|Flucht.|Flucht.|1.0\n"
        f"{BOOK}/{BOOK}_0003.wav|nur zwei Felder\n").encode() + f"{BOOK}/{BOOK}_0004.wav|\xe4|x|1\n".encode("latin-1"))
    items = list(css10.scan(root, css10.Options(), "de"))
    utterances, _ = split_items(items)
    first = utterances[f"{BOOK}_0000"]
    assert (first.text, first.text_normalized, first.speaker, first.language, first.extra) == (
        "Es war 1 Uhr.", "Es war ein Uhr.", "css10_de", "de", {"duration_s": "1.98"})
    assert first.audio_path == str(root / BOOK / f"{BOOK}_0000.wav")
    assert list(utterances) == [f"{BOOK}_0000", f"{BOOK}_0001"]
    assert reasons(items) == {f"{BOOK}_0002": "empty_transcript", "passwd": "path_escapes_root",
                              "transcript.txt:5": "malformed_metadata", "transcript.txt:6": "invalid_encoding"}


@pytest.mark.parametrize("language", [css10.DEFAULT_LANGUAGE, "und"])
def test_css10_needs_a_language(tmp_path, language):
    write_text(tmp_path / "transcript.txt", "a/a_0.wav|x|x|1\n")
    with pytest.raises(ConfigError, match="needs `language:`"):
        list(css10.scan(tmp_path, css10.Options(), language))


def test_shared_cmu_arctic_both_roots(shared_corpora):
    parent = shared_corpora / "cmu_arctic"
    utterances, problems = split_items(list(cmu_arctic.scan(parent, cmu_arctic.Options(), "en")))
    assert not problems
    assert {u: (v.speaker, v.gender, v.accent, v.text) for u, v in utterances.items()} == {
        "awb_arctic_a0007": ("awb", "male", "scottish", "And you always want to see it in the superlative degree."),
        "slt_arctic_a0009": ("slt", "female", "us", "He turned sharply, and faced Gregson across the table.")}
    assert all(Path(v.audio_path).is_file() for v in utterances.values())
    [slt] = cmu_arctic.scan(parent / "cmu_us_slt_arctic", cmu_arctic.Options(), "en")
    assert slt == utterances["slt_arctic_a0009"]


def test_cmu_arctic_quotes_and_problems(tmp_path):
    voice = tmp_path / "cmu_us_xyz_arctic"
    write_text(voice / "etc" / "txt.done.data", (
        '( arctic_a0001 "He said \\"no\\" twice." )\n'
        'arctic_a0002 "no parentheses"\n'
        '( arctic_a0003 "" )\n'
        '( ../../../../escape "Out." )\n').encode() + b'( arctic_a0004 "\xff" )\n( arctic_\xe90005 "x" )\n')
    for prompt in ("arctic_a0001", "arctic_a0004", "arctic_b0539"):
        write_audio(voice / "wav" / f"{prompt}.wav")
    items = list(cmu_arctic.scan(tmp_path, cmu_arctic.Options(), "en"))
    [utt] = [i for i in items if i.local_id == "xyz_arctic_a0001"]
    assert (utt.text, utt.speaker, utt.gender, utt.accent) == ('He said "no" twice.', "xyz", None, None)
    label = "cmu_us_xyz_arctic/etc/txt.done.data"
    assert reasons(items) == {f"{label}:2": "malformed_metadata", "xyz_arctic_a0003": "empty_transcript",
                              "xyz_../../../../escape": "path_escapes_root", "xyz_arctic_a0004": "invalid_encoding",
                              f"{label}:6": "invalid_encoding", "xyz_arctic_b0539": "missing_transcript"}
    with pytest.raises(ConfigError, match="holds none"):
        list(cmu_arctic.scan(voice / "wav", cmu_arctic.Options(), "en"))
