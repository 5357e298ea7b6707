import contextlib
import json
from pathlib import Path

import pytest

from tests.importers.layouts import write_audio, write_text
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import Problem, resolved_directories_memo
from ttsprep.stages.step1_ingest.importers.manifest import Options, scan


def problems(items: list) -> list[tuple[str, str]]:
    return [(item.local_id, item.reason) for item in items if isinstance(item, Problem)]


def test_csv_with_quoting_defaults_and_extra_columns(tmp_path):
    write_audio(tmp_path / "wavs" / "a.wav")
    write_text(tmp_path / "meta.csv", 'text,path,speaker,emotion,split\n'
                                      '"Hello, ""world"".",wavs/a.wav,anna,happy,dev\n'
                                      'No speaker or id.,wavs/sub/b.flac,,,\n'
                                      '"Two\nlines.",wavs/c.wav,bob,,\n')
    items = list(scan(tmp_path, Options(file="meta.csv"), "en"))
    assert [(u.local_id, u.text, u.speaker, u.split, u.language, u.extra) for u in items] == [
        ("a", 'Hello, "world".', "anna", "dev", "en", {"emotion": "happy"}),
        ("b", "No speaker or id.", "unknown", None, "en", {}),
        ("c", "Two\nlines.", "bob", None, "en", {})]
    assert items[0].audio_path == str(tmp_path / "wavs" / "a.wav")


def test_tsv_with_language_and_id_columns(tmp_path):
    write_text(tmp_path / "list.tsv", "id\tpath\ttext\tlanguage\tgender\taccent\ttext_normalized\n"
                                      "u1\tx/1.wav\t你好\tzh\tfemale\tnorth\t\n"
                                      "u2\tx/2.wav\tHi 2.\t\t\t\tHi two.\n")
    items = list(scan(tmp_path, Options(file="list.tsv"), "en"))
    assert [(u.local_id, u.language, u.gender, u.accent, u.text_normalized) for u in items] == [
        ("u1", "zh", "female", "north", None), ("u2", "en", None, None, "Hi two.")]


def test_jsonl_rows_and_bad_lines(tmp_path):
    rows = [json.dumps({"path": "a.wav", "text": "Fine.", "speaker": "s", "score": 0.5}),
            "{not json", json.dumps(["a", "list"]), json.dumps({"text": "no path"}),
            json.dumps({"path": "e.wav", "text": "  "})]
    write_text(tmp_path / "m.jsonl", "\n".join(rows).encode() + b'\n{"path": "f.wav", "text": "\xff"}\n')
    items = list(scan(tmp_path, Options(file="m.jsonl"), "de"))
    [kept] = [i for i in items if isinstance(i, SourceUtterance)]
    assert (kept.local_id, kept.speaker, kept.language, kept.extra) == ("a", "s", "de", {"score": "0.5"})
    assert problems(items) == [("m.jsonl:2", "malformed_metadata"), ("m.jsonl:3", "malformed_metadata"),
                               ("m.jsonl:4", "malformed_metadata"), ("e", "empty_transcript"),
                               ("m.jsonl:6", "invalid_encoding")]


def test_paths_escaping_the_root(tmp_path):
    root = tmp_path / "corpus"
    outside = write_audio(tmp_path / "secret.wav")
    write_audio(root / "ok.wav")
    (root / "link.wav").symlink_to(outside)
    write_text(root / "m.csv", "path,text\nok.wav,Inside.\n../../etc/passwd,Up.\n/etc/passwd,Absolute.\n"
                               "link.wav,Symlink.\nmissing.wav,Listed only.\n")
    items = list(scan(root, Options(file="m.csv"), "en"))
    assert [i.local_id for i in items if isinstance(i, SourceUtterance)] == ["ok", "missing"]
    assert problems(items) == [("passwd", "path_escapes_root"), ("passwd", "path_escapes_root"),
                               ("link", "path_escapes_root")]


@pytest.mark.parametrize("memoized", [False, True])
def test_symlinked_directories_resolve_and_stay_inside_the_root(tmp_path, memoized):
    root = tmp_path / "corpus"
    write_audio(root / "real" / "a.wav")
    write_audio(tmp_path / "elsewhere" / "b.wav")
    (root / "inner").symlink_to(root / "real")
    (root / "outer").symlink_to(tmp_path / "elsewhere")
    write_text(root / "m.csv", "path,text\ninner/a.wav,Through a link inside.\nouter/b.wav,Through a link out.\n"
                               "real/../real/a.wav,Dots inside.\nreal/../../elsewhere/b.wav,Dots out.\n")
    with resolved_directories_memo() if memoized else contextlib.nullcontext():
        items = list(scan(root, Options(file="m.csv"), "en"))
    assert [(i.local_id, i.audio_path) for i in items if isinstance(i, SourceUtterance)] == [
        ("a", str(root / "real" / "a.wav")), ("a", str(root / "real" / "a.wav"))]
    assert problems(items) == [("b", "path_escapes_root"), ("b", "path_escapes_root")]


def test_malformed_csv_rows(tmp_path):
    write_text(tmp_path / "m.csv", b'path,text\na.wav,one,extra field\nb.wav,"unclosed " quote\nc.wav,\xff\nd.wav,ok\n')
    items = list(scan(tmp_path, Options(file="m.csv"), "en"))
    assert [i.local_id for i in items if isinstance(i, SourceUtterance)] == ["d"]
    assert problems(items) == [("m.csv:2", "malformed_metadata"), ("m.csv:3", "malformed_metadata"),
                               ("m.csv:4", "invalid_encoding")]


@pytest.mark.parametrize("file, content, message", [
    ("m.csv", "path,transcript\na.wav,x\n", "needs the columns"),
    ("m.xlsx", "", "unknown format"),
    ("../m.csv", "path,text\n", "outside the corpus root"),
    ("absent.csv", None, "not found"),
    ("m.tsv", "path\ttext\na.wav\tno language\n", "has no language"),
])
def test_config_errors(tmp_path, file, content, message):
    root = tmp_path / "root"
    root.mkdir()
    if content is not None:
        write_text(root / file, content)
    with pytest.raises(ConfigError, match=message):
        list(scan(root, Options(file=file), ""))


def test_file_is_required():
    with pytest.raises(ValueError):
        Options()
    assert Path(Options(file="a/b.csv").file) == Path("a/b.csv")
