from pathlib import Path

from tests.helpers import write_ljspeech
from ttsprep.stages.step1_ingest.ingest import ingest_dataset
from ttsprep.stages.step1_ingest.project import build_project


def ingest(root: Path, tmp_path: Path):
    project = build_project({"datasets": [{"name": "lj", "importer": "ljspeech", "root": str(root)}]},
                            base_dir=tmp_path)
    return ingest_dataset(project.datasets[0])


def test_every_input_is_kept_or_rejected_with_a_reason(tmp_path):
    root = write_ljspeech(tmp_path / "LJ", {"A-1": "one", "A-2": "two", "A-3": "three", "A-4": "four"},
                          missing=("A-2",),
                          extra_lines=("A-1|again|again", "../../../etc/passwd|x|x", "broken line without bars"))
    (root / "wavs" / "A-3.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    (root / "wavs" / "A-4.wav").write_bytes(b"")
    result = ingest(root, tmp_path)
    assert [u.utt_id for u in result.utterances] == ["lj:A-1"]
    reasons = sorted((r.utt_id, r.reason) for r in result.rejects)
    assert reasons == sorted([("lj:A-2", "missing_audio"), ("lj:A-3", "unreadable_audio"),
                              ("lj:A-4", "unreadable_audio"), ("lj:A-1#2", "duplicate_id"),
                              ("lj:../../../etc/passwd", "path_escapes_root"),
                              ("lj:metadata.csv:7", "malformed_metadata")])
    assert result.num_inputs == 7
    assert all(r.stage == "ingest" and r.detail for r in result.rejects)


def test_record_fields_come_from_the_probed_header(tmp_path):
    root = write_ljspeech(tmp_path / "LJ", {"A-1": "Printing, in 1455."}, sample_rate=16000)
    [utt] = ingest(root, tmp_path).utterances
    assert (utt.dataset, utt.speaker, utt.language, utt.text) == ("lj", "LJ", "en", "Printing, in 1455.")
    assert (utt.sample_rate, utt.channels, utt.audio_format) == (16000, 1, "WAV/PCM_16")
    assert abs(utt.duration_s - utt.num_samples / 16000) < 1e-9 and utt.duration_s > 1
    assert len(utt.checksum) == 64


def test_shared_ljspeech_sample(shared_corpora, tmp_path):
    result = ingest(shared_corpora / "ljspeech" / "LJSpeech-1.1", tmp_path)
    assert len(result.utterances) == 19 and result.rejects == []
    by_id = {u.utt_id: u for u in result.utterances}
    assert by_id["lj:LJ001-0001"].num_samples / 22050 == by_id["lj:LJ001-0001"].duration_s
    assert round(by_id["lj:LJ001-0001"].duration_s, 3) == 9.655
    assert by_id["lj:LJ002-0124"].text.count("£") >= 1


def test_unchanged_files_reuse_the_last_probe_and_changed_ones_are_read_again(tmp_path):
    root = write_ljspeech(tmp_path / "LJ", {"A-1": "one", "A-2": "two", "A-3": "three"})
    project = build_project({"datasets": [{"name": "lj", "importer": "ljspeech", "root": str(root)}]},
                            base_dir=tmp_path)
    cache = tmp_path / "work" / "probes.json"
    first = ingest_dataset(project.datasets[0], cache_path=cache)
    second = ingest_dataset(project.datasets[0], cache_path=cache)
    assert (first.num_cached_probes, second.num_cached_probes) == (0, 3)
    assert second.utterances == first.utterances

    wav = root / "wavs" / "A-2.wav"
    data = bytearray(wav.read_bytes())
    data[-2:] = bytes([data[-2] ^ 1, data[-1]])  # same size, new content (a sample's low bit)
    wav.write_bytes(bytes(data))
    (root / "wavs" / "A-3.wav").write_bytes(b"")  # now unreadable: never served from the cache
    third = ingest_dataset(project.datasets[0], cache_path=cache)
    assert third.num_cached_probes == 1
    checksums = {u.utt_id: u.checksum for u in third.utterances}
    assert checksums["lj:A-2"] != {u.utt_id: u.checksum for u in first.utterances}["lj:A-2"]
    assert [(r.utt_id, r.reason) for r in third.rejects] == [("lj:A-3", "unreadable_audio")]

    cache.write_text(cache.read_text().replace('"version": "', '"version": "old-'))  # other probing code
    assert ingest_dataset(project.datasets[0], cache_path=cache).num_cached_probes == 0
