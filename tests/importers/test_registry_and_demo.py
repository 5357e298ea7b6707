import shutil
import time

import pytest
import soundfile as sf

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.demo_corpus import GERMAN_PROMPTS, write_demo_config, write_demo_corpus
from ttsprep.stages.step1_ingest.importers import IMPORTERS
from ttsprep.stages.step1_ingest.importers.base import ImporterOptions
from ttsprep.stages.step1_ingest.ingest import ingest_dataset
from ttsprep.stages.step1_ingest.project import build_project, load_project

#: Every shared sample: (importer, root under ../shared/corpora, extra entry keys, utterances).
SHARED = [
    ("ljspeech", "ljspeech/LJSpeech-1.1", {}, 19),
    ("common_voice", "common_voice/cv-corpus-6.1-2020-12-11/en", {}, 14),
    ("common_voice", "common_voice/cv-corpus-6.1-2020-12-11/ja", {}, 5),
    ("common_voice", "common_voice/cv-corpus-6.1-2020-12-11/zh-CN", {}, 5),
    ("aishell3", "aishell3/data_aishell3", {}, 19),
    ("jsut", "jsut/jsut_ver1.1", {}, 1),
    ("libritts", "libritts/LibriTTS", {}, 4),
    ("librispeech", "librispeech/LibriSpeech", {}, 2),
    ("vctk", "vctk/VCTK-Corpus-0.92", {"mic": "mic2"}, 3),
    ("cmu_arctic", "cmu_arctic", {}, 2),
]


def test_every_importer_follows_the_protocol():
    assert sorted(IMPORTERS) == ["aishell3", "cmu_arctic", "common_voice", "css10", "jsut", "jvs", "librispeech",
                                 "libritts", "ljspeech", "manifest", "vctk"]
    for name, module in IMPORTERS.items():
        assert isinstance(module.DEFAULT_LANGUAGE, str), name
        assert issubclass(module.Options, ImporterOptions), name
        assert callable(module.scan) and module.__doc__, name


def test_shared_samples_ingest_without_rejects(shared_corpora, tmp_path):
    entries = [{"name": f"d{index}", "importer": importer, "root": str(shared_corpora / root), **options}
               for index, (importer, root, options, _) in enumerate(SHARED)]
    project = build_project({"datasets": entries}, base_dir=tmp_path)
    for dataset, (importer, root, _, expected) in zip(project.datasets, SHARED):
        result = ingest_dataset(dataset, workers=2)
        assert (len(result.utterances), result.rejects) == (expected, []), root
        assert all(u.duration_s > 0.5 and u.sample_rate >= 16000 for u in result.utterances), root


def test_css10_language_comes_from_the_entry(tmp_path):
    (tmp_path / "german").mkdir()
    (tmp_path / "german" / "transcript.txt").write_text("b/b_0.wav|Hallo.|Hallo.|1\n", encoding="utf-8")
    entry = {"name": "css", "importer": "css10", "root": "german"}
    [dataset] = build_project({"datasets": [entry]}, base_dir=tmp_path).datasets
    with pytest.raises(ConfigError, match="needs `language:`"):
        ingest_dataset(dataset)
    [dataset] = build_project({"datasets": [entry | {"language": "de"}]}, base_dir=tmp_path).datasets
    [reject] = ingest_dataset(dataset).rejects
    assert (reject.utt_id, reject.reason) == ("css:b_0", "missing_audio")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_demo_corpus_is_scanned_by_its_importers(tmp_path):
    started = time.perf_counter()
    root = write_demo_corpus(tmp_path / "demo", utterances_per_speaker=3)
    elapsed_s = time.perf_counter() - started
    project = load_project(write_demo_config(root))
    assert [(d.name, d.importer) for d in project.datasets] == [("demo_vctk", "vctk"), ("demo_cv_de", "common_voice")]
    vctk, cv = (ingest_dataset(dataset, workers=2) for dataset in project.datasets)
    assert not vctk.rejects and not cv.rejects
    assert sorted({u.speaker for u in vctk.utterances}) == ["p901", "p902", "p903"]
    assert len(vctk.utterances) == 9 and len(cv.utterances) == 6
    assert {(u.language, u.sample_rate, u.audio_format) for u in vctk.utterances} == {("en", 48000, "FLAC/PCM_16")}
    assert {(u.language, u.sample_rate, u.audio_format) for u in cv.utterances} == {("de", 48000, "MP3/MPEG_LAYER_III")}
    # the first two prompts are parallel across speakers, the third is each speaker's own
    texts = {u.utt_id.split(":")[1]: u.text for u in vctk.utterances}
    assert texts["p901_001"] == texts["p902_001"] == texts["p903_001"] == "Please call Stella."
    assert texts["p901_002"] == texts["p903_002"] and len({texts[f"p90{k}_003"] for k in (1, 2, 3)}) == 3
    assert [u.text for u in cv.utterances][:2] == list(GERMAN_PROMPTS[:2])
    assert {u.gender for u in cv.utterances} == {"female", "male"}
    # 0.3 s of near-silence (the -55 dBFS noise floor) lead every clip
    samples, sample_rate = sf.read(vctk.utterances[0].audio_path)
    lead = samples[: int(0.25 * sample_rate)]
    assert 1e-4 < lead.std() < 10 ** (-50 / 20) and abs(samples).max() > 0.1
    assert elapsed_s < 20


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_demo_corpus_is_deterministic_and_checks_its_range(tmp_path):
    first, second = (write_demo_corpus(tmp_path / name, utterances_per_speaker=1) for name in ("a", "b"))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 3 * 2 + 1 + 2 + 1  # flac+txt per English speaker, speaker-info, 2 mp3, validated.tsv
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    with pytest.raises(ConfigError, match="distinct prompts"):
        write_demo_corpus(tmp_path / "c", utterances_per_speaker=40)


def test_demo_corpus_needs_espeak(tmp_path, monkeypatch):
    monkeypatch.setattr("ttsprep.stages.step1_ingest.demo_corpus.shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="espeak-ng, which is not installed"):
        write_demo_corpus(tmp_path)
    assert not any(tmp_path.iterdir())
