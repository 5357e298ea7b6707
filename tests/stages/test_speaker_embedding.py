"""Speaker embeddings (``features.speaker_embedding``) and the speaker-label check on real clips of ../shared/corpora.

One manifest dataset holds VCTK p225 (4 clips) and p226 (2), AISHELL-3 SSB0139 (4), four LibriTTS speakers (1 each)
and one LJSpeech clip planted under p225 (a mislabel). It runs through the pure pipeline with the check's filter on.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step4_features.speaker_embedding import encoder_missing

torch = pytest.importorskip("torch")
if encoder_missing():
    pytest.skip(f"speaker encoder unavailable: {encoder_missing()}", allow_module_level=True)

from ttsprep.stages.run_dataset import run_dataset
from ttsprep.stages.step4_features.speaker_embedding import SpeakerEncoder, encoder_input, torch_threads
from ttsprep.stages.step7_finalize.maps import write_symbol_maps
from ttsprep.stages.step7_finalize.speaker_check import SIMILAR_SPEAKERS_FILE, update_similar_speakers
from ttsprep.train.collate import Collate
from ttsprep.train.dataset import ShardDataset
from ttsprep.train.shards import load_shard_set, load_symbol_maps

PLANTED = "planted"
STAGES = ("{filter: {min_snr_db: null, min_speaker_similarity: %s}, text: {enabled: false}, align: {method: none}, "
          "features: {speaker_embedding: true}, pairs: {mode: parallel_text}}")


def _clips(corpora: Path) -> list[dict[str, str]]:
    """Manifest rows (source path, id, speaker, language, text) of the chosen clips."""
    vctk = corpora / "vctk" / "VCTK-Corpus-0.92"
    rows = []
    for flac in sorted((vctk / "wav48_silence_trimmed").glob("p22[56]/*.flac")):
        speaker, number = flac.stem.split("_")[:2]
        text = (vctk / "txt" / speaker / f"{speaker}_{number}.txt").read_text(encoding="utf-8").strip()
        rows.append({"source": flac, "id": flac.stem, "speaker": speaker, "language": "en", "text": text})
    for wav in sorted((corpora / "aishell3" / "data_aishell3" / "train" / "wav" / "SSB0139").glob("*.wav"))[:4]:
        rows.append({"source": wav, "id": wav.stem, "speaker": "SSB0139", "language": "zh", "text": "你好。"})
    for wav in sorted((corpora / "libritts" / "LibriTTS").rglob("*.wav")):
        text = wav.with_suffix(".normalized.txt").read_text(encoding="utf-8").strip()
        rows.append({"source": wav, "id": wav.stem, "speaker": f"libri{wav.stem.split('_')[0]}", "language": "en",
                     "text": text})
    lj = corpora / "ljspeech" / "LJSpeech-1.1" / "wavs" / "LJ001-0002.wav"
    rows.append({"source": lj, "id": PLANTED, "speaker": "p225", "language": "en", "text": "In being comparatively modern."})
    return rows


def _write_corpus(root: Path, rows: list[dict[str, str]]) -> None:
    (root / "audio").mkdir(parents=True)
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["path", "id", "speaker", "language", "text"])
        writer.writeheader()
        for row in rows:
            target = root / "audio" / f"{row['id']}{row['source'].suffix}"
            shutil.copyfile(row["source"], target)
            writer.writerow({"path": f"audio/{target.name}", **{k: row[k] for k in ("id", "speaker", "language", "text")}})


def _config(base: Path, threshold: str) -> Path:
    path = base / "datasets.yaml"
    path.write_text(f"datasets:\n  - {{name: mixed, importer: manifest, root: corpus, file: manifest.csv, language: en,"
                    f" stages: {STAGES % threshold}}}\n")
    return path


def _run(base: Path, out: Path, threshold: str = "0.70"):
    return run_dataset(load_project(_config(base, threshold)).datasets[0], out, pairs=True)


def _shard_rows(out: Path, columns=("utt_id", "speaker", "speaker_embedding", "speaker_similarity")) -> dict[str, dict]:
    shards = sorted((out / "mixed" / "shards").glob("*.parquet"))
    return {row["utt_id"]: row for path in shards for row in pq.read_table(path, columns=list(columns)).to_pylist()}


@pytest.fixture(scope="module")
def processed(shared_corpora, tmp_path_factory):
    base = tmp_path_factory.mktemp("speakers")
    _write_corpus(base / "corpus", _clips(shared_corpora))
    out = base / "out"
    run = _run(base, out)
    write_symbol_maps(out)
    return base, out, run


@pytest.mark.slow
def test_same_speaker_pairs_score_above_different_speakers(processed):
    """Single short clips overlap a little (EER ~1 % on the shared clips), so: nearly every same-speaker pair above
    every different-speaker pair, and every judged clip closer to its own speaker than to any other's centroid."""
    _, out, _ = processed
    rows = list(_shard_rows(out).values())
    embeddings = np.array([row["speaker_embedding"] for row in rows], np.float64)
    assert embeddings.shape == (len(rows), 256) and np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    speakers = np.array([row["speaker"] for row in rows])
    utterances = np.array([row["utt_id"].rsplit("_mic", 1)[0] for row in rows])  # VCTK: one reading, two mics
    cosine = embeddings @ embeddings.T
    first, second = np.triu_indices(len(rows), 1)
    same = (speakers[first] == speakers[second]) & (utterances[first] != utterances[second])
    different = speakers[first] != speakers[second]
    assert set(speakers[first[same]]) == {"p225", "SSB0139"}  # VCTK and AISHELL-3 same-speaker pairs
    assert sum(s.startswith("libri") for s in set(speakers)) == 4  # LibriTTS: 4 speakers among the different ones
    same_cos, different_cos = cosine[first[same], second[same]], cosine[first[different], second[different]]
    assert (same_cos[:, None] > different_cos[None, :]).mean() > 0.97
    assert same_cos.mean() > different_cos.mean() + 0.2
    centroids = {s: embeddings[speakers == s].sum(axis=0) / np.linalg.norm(embeddings[speakers == s].sum(axis=0))
                 for s in set(speakers)}
    for row, embedding in zip(rows, embeddings):
        if row["speaker_similarity"] is not None:
            closest_other = max(embedding @ c for s, c in centroids.items() if s != row["speaker"])
            assert row["speaker_similarity"] > closest_other + 0.1, row["utt_id"]


@pytest.mark.slow
def test_planted_mislabel_goes_to_the_ledger_and_no_genuine_clip_does(processed):
    _, out, _ = processed
    rejects = pq.read_table(out / "mixed" / "rejects.parquet").to_pylist()
    assert [(r["utt_id"], r["reason"], r["stage"]) for r in rejects] == [
        (f"mixed:{PLANTED}", "speaker_mismatch", "speaker_check")]
    rows = _shard_rows(out)
    genuine = [row for row in rows.values() if row["speaker"] == "p225"]
    assert len(genuine) == 4 and all(row["speaker_similarity"] >= 0.70 for row in genuine)
    assert f"mixed:{PLANTED}" not in rows
    assert (out / "mixed" / "work" / "part-00000.speaker_mismatch.parquet").is_file()
    index = json.loads((out / "mixed" / "index.json").read_text())
    assert index["counts"]["rejected_by_reason"] == {"speaker_mismatch": 1}
    assert index["counts"]["inputs"] == index["counts"]["kept"] + 1
    assert index["speaker_embedding"]["encoder"].startswith("resemblyzer-0.1.4-")
    assert index["speaker_embedding"]["near_duplicates"] == []
    stats = json.loads((out / "mixed" / "stats.json").read_text())
    profile = stats["speakers"]["p225"]["speaker_embedding"]
    assert len(profile["centroid"]) == 256 and profile["utterances"] == 4 and profile["similarity_mean"] > 0.7


@pytest.mark.slow
def test_a_speaker_below_the_minimum_count_is_never_judged(processed):
    _, out, _ = processed
    rows = _shard_rows(out)
    for row in rows.values():
        judged = row["speaker"] in ("p225", "SSB0139")  # p226: 2 utterances, LibriTTS speakers: 1 each
        assert (row["speaker_similarity"] is not None) == judged, row["utt_id"]
    stats = json.loads((out / "mixed" / "stats.json").read_text())
    assert stats["speakers"]["p226"]["speaker_embedding"]["similarity_mean"] is None


@pytest.mark.slow
def test_loader_serves_the_embeddings(processed):
    _, out, _ = processed
    shard_set = load_shard_set(str(out / "mixed"))
    items = list(ShardDataset(shard_set, load_symbol_maps(shard_set), features=("mel", "speaker_embedding"),
                              shuffle=False))
    batch = Collate()(items[:5])
    assert batch["speaker_embedding"].shape == (5, 256) and batch["speaker_embedding"].dtype == torch.float32
    stored = _shard_rows(out)
    expected = np.array([stored[item.utt_id]["speaker_embedding"] for item in items[:5]], np.float32)
    assert np.array_equal(batch["speaker_embedding"].numpy(), expected)


@pytest.mark.slow
def test_vc_pairs_carry_the_voices_similarity(processed):
    _, out, _ = processed
    pairs = pq.read_table(out / "mixed" / "pairs.parquet").to_pylist()
    stored = _shard_rows(out)
    assert pairs  # p225_001 and p226_001 read the same sentence
    for pair in pairs:
        source, target = (np.asarray(stored[pair[k]]["speaker_embedding"], np.float64)
                          for k in ("source_utt_id", "target_utt_id"))
        assert pair["speaker_similarity"] == pytest.approx(source @ target / np.linalg.norm(source) / np.linalg.norm(target),
                                                           abs=1e-6)


@pytest.mark.slow
def test_reruns_are_byte_identical_and_a_new_threshold_reruns_only_the_check(processed, tmp_path):
    base, out, first = processed
    before = {p.name: p.read_bytes() for p in (out / "mixed" / "shards").glob("*.parquet")}
    again = _run(base, out)
    assert all(s.skipped for s in again.shards)
    assert {p.name: p.read_bytes() for p in (out / "mixed" / "shards").glob("*.parquet")} == before

    fresh = _run(base, tmp_path / "fresh")  # another output: computed again from the audio
    assert _shard_rows(tmp_path / "fresh") == _shard_rows(out)

    lenient = _run(base, tmp_path / "fresh", threshold="null")  # the planted clip comes back, no shard re-run
    assert all(s.skipped for s in lenient.shards)
    rows = _shard_rows(tmp_path / "fresh")
    assert rows[f"mixed:{PLANTED}"]["speaker_similarity"] < 0.70
    assert lenient.index["counts"]["rejected"] == 0 and lenient.index["counts"]["kept"] == fresh.index["counts"]["inputs"]
    assert not (tmp_path / "fresh" / "mixed" / "work" / "part-00000.speaker_mismatch.parquet").exists()
    strict = _run(base, tmp_path / "fresh")  # and leaves again
    assert _shard_rows(tmp_path / "fresh") == _shard_rows(out)
    assert strict.index["counts"] == first.index["counts"]


def test_embeddings_do_not_depend_on_the_batch():
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, int(seconds * 16000)).astype(np.float32) for seconds in (1.2, 2.0, 3.3)]
    inputs = [encoder_input(w, 16000, trim_silences=False) for w in waves]
    encoder = SpeakerEncoder.shared()
    with torch_threads(1):
        together = encoder.embed_mels([m for m, _ in inputs], [s for _, s in inputs])
        alone = np.concatenate([encoder.embed_mels([m], [s]) for m, s in inputs])
    assert together.tobytes() == alone.tobytes()


def test_near_duplicate_voices_across_datasets(processed, tmp_path):
    _, out, _ = processed
    for name in ("a", "b"):  # the same dataset twice: every voice has a twin
        shutil.copytree(out / "mixed", tmp_path / name, ignore=shutil.ignore_patterns("shards", "work", "*.parquet"))
    pairs = update_similar_speakers(tmp_path)
    stats = json.loads((out / "mixed" / "stats.json").read_text())
    twins = [p for p in pairs if p["speakers"][0].split(":")[1] == p["speakers"][1].split(":")[1]]
    assert len(twins) == len(stats["speakers"]) and all(p["cosine"] == pytest.approx(1.0) for p in twins)
    assert json.loads((tmp_path / SIMILAR_SPEAKERS_FILE).read_text())["pairs"] == pairs

