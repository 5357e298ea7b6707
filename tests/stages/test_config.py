from pathlib import Path

import pytest

from tests.helpers import write_ljspeech
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.project import build_project, load_project


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_ljspeech(tmp_path / "LJ", {"LJ001-0001": "Hello there."})


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_entry_gets_defaults(tmp_path, corpus):
    project = load_project(write_yaml(tmp_path, "datasets:\n  - {name: lj, importer: ljspeech, root: LJ}\n"))
    [dataset] = project.datasets
    assert dataset.root == corpus.resolve()
    assert dataset.config.audio.sample_rate == 22050
    assert dataset.config.features.hop_length == 256


def test_defaults_and_per_dataset_overrides_merge(tmp_path, corpus):
    project = load_project(write_yaml(tmp_path, """
defaults:
  audio: {sample_rate: 16000, trim: {min_silence_len_ms: 200}}
datasets:
  - name: lj
    importer: ljspeech
    root: LJ
    stages: {audio: {trim: {keep_silence_ms: 50}}, filter: {max_duration_s: 12}}
"""))
    config = project.datasets[0].config
    assert (config.audio.sample_rate, config.audio.trim.min_silence_len_ms, config.audio.trim.keep_silence_ms) == \
        (16000, 200, 50)
    assert config.filter.max_duration_s == 12


@pytest.mark.parametrize("entry, message", [
    ("{name: lj, importer: ljspeech, root: LJ, colour: red}", "dataset #1 'lj': colour: unknown key"),
    ("{name: lj, importer: nosuch, root: LJ}", "unknown importer 'nosuch'"),
    ("{name: lj, importer: ljspeech, root: nowhere}", "root: "),
    ("{name: lj, importer: ljspeech}", "root: Field required"),
    ("{name: LJ!, importer: ljspeech, root: LJ}", "name: String should match"),
    ("{name: lj, importer: ljspeech, root: LJ, stages: {audio: {sampel_rate: 1}}}", "sampel_rate: unknown key"),
    ("{name: lj, importer: ljspeech, root: LJ, stages: {align: {method: textgrid}}}", "needs stages.align.textgrid_dir"),
])
def test_invalid_entries_name_the_entry_and_key(tmp_path, corpus, entry, message):
    with pytest.raises(ConfigError) as error:
        load_project(write_yaml(tmp_path, f"datasets:\n  - {entry}\n"))
    assert message in str(error.value)
    assert "datasets.yaml" in str(error.value)


def test_unknown_top_level_key_and_duplicate_names(tmp_path, corpus):
    with pytest.raises(ConfigError, match="corpora: unknown key"):
        load_project(write_yaml(tmp_path, "corpora: []\ndatasets:\n  - {name: a, importer: ljspeech, root: LJ}\n"))
    with pytest.raises(ConfigError, match="repeated: \\['a'\\]"):
        load_project(write_yaml(tmp_path, "datasets:\n  - {name: a, importer: ljspeech, root: LJ}\n"
                                          "  - {name: a, importer: ljspeech, root: LJ}\n"))


def test_unsafe_yaml_tags_are_refused(tmp_path, corpus):
    path = write_yaml(tmp_path, "datasets: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_project(path)


def test_select_unknown_dataset(tmp_path, corpus):
    project = build_project({"datasets": [{"name": "lj", "importer": "ljspeech", "root": str(corpus)}]},
                            base_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown dataset"):
        project.select(["vctk"])


def test_fingerprint_changes_only_with_the_section(tmp_path, corpus):
    base = {"name": "lj", "importer": "ljspeech", "root": str(corpus)}
    a = build_project({"datasets": [base]}, base_dir=tmp_path).datasets[0].config
    b = build_project({"datasets": [{**base, "stages": {"text": {"enabled": False}}}]},
                      base_dir=tmp_path).datasets[0].config
    assert a.fingerprint("audio") == b.fingerprint("audio")
    assert a.fingerprint("text") != b.fingerprint("text")


def test_auto_alignment_is_the_default(tmp_path, corpus):
    project = build_project({"datasets": [{"name": "lj", "importer": "ljspeech", "root": str(corpus)}]},
                            base_dir=tmp_path)
    assert project.datasets[0].config.align.method == "auto"


def test_one_phone_set_per_language_in_an_output(tmp_path, corpus):
    grids = tmp_path / "grids"
    grids.mkdir()
    as_is = {"name": "kept_labels", "importer": "ljspeech", "root": str(corpus),
             "stages": {"align": {"method": "textgrid", "textgrid_dir": str(grids), "textgrid_phones": "as_is"}}}
    g2p = {"name": "g2p", "importer": "ljspeech", "root": str(corpus)}
    with pytest.raises(ConfigError, match="language 'en' would mix phone sets.*kept_labels.*TextGrid labels"):
        build_project({"datasets": [as_is, g2p]}, base_dir=tmp_path)
    mapped = {**as_is, "stages": {"align": {"method": "textgrid", "textgrid_dir": str(grids)}}}  # ARPAbet -> IPA
    assert len(build_project({"datasets": [mapped, g2p]}, base_dir=tmp_path).datasets) == 2
    japanese = {**g2p, "name": "ja_g2p", "language": "ja"}
    assert len(build_project({"datasets": [as_is, japanese]}, base_dir=tmp_path).datasets) == 2
