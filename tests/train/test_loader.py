"""The training loader on small synthetic shards: partitioning, order, bucketing, balancing, collation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

import ttsprep.train.dataset
from ttsprep.stages.core.errors import InvariantViolation
from ttsprep.stages.core.schema import shard_schema
from ttsprep.stages.step3_text.vocab import build_vocab, symbol
from ttsprep.train.collate import Collate, TrainItem
from ttsprep.train.dataset import ShardBatches, ShardDataset, ShardRowDataset
from ttsprep.train.prosody import ProsodyNormaliser
from ttsprep.train.sampler import BucketBatchSampler, WeightedBucketBatchSampler, balance_weights
from ttsprep.train.shards import load_shard_set, load_symbol_maps, read_light_index

N_MELS = 8
ROWS_PER_SHARD = 40
ROW_GROUP_SIZE = 8
#: Speaker, language, accent and share of rows: deliberately imbalanced.
SPEAKERS = [("a", "en-US", None, 0.7), ("b", "en-US", "scottish", 0.2), ("c", "zh-CN", None, 0.1)]
TOKENS = {"en-US": ["h", "ə", "l", "oʊ", ","], "zh-CN": ["n", "i3", "h", "ao3"]}


def make_row(utt_id: str, rng: np.random.Generator, reduction_factor: int = 1) -> dict:
    speaker, language, accent, _ = SPEAKERS[rng.choice(len(SPEAKERS), p=[s[3] for s in SPEAKERS])]
    num_steps = int(rng.integers(10, 300 // reduction_factor))
    num_frames = num_steps * reduction_factor
    num_tokens = int(rng.integers(2, min(30, num_steps)))
    cuts = np.sort(rng.choice(np.arange(1, num_steps), num_tokens - 1, replace=False))
    durations = np.diff(np.concatenate([[0], cuts, [num_steps]]))
    return {
        "utt_id": utt_id, "dataset": "toy", "speaker": speaker, "language": language, "accent": accent,
        "split": "train", "text": "x", "num_frames": num_frames, "num_samples": (num_frames - 1) * 256,
        "sample_rate": 22050, "audio": b"flac",
        "mel": rng.normal(-5, 1, (num_frames, N_MELS)).astype(np.float32).tolist(),
        "f0": rng.uniform(0, 300, num_frames).tolist(), "energy": rng.uniform(0, 1, num_frames).tolist(),
        "voiced": (rng.uniform(size=num_frames) > 0.3).tolist(), "snt_duration": [num_frames],
        "phonemes": list(rng.choice(TOKENS[language], num_tokens)), "durations": durations.tolist(),
        "token_pitch": rng.uniform(0, 300, num_tokens).tolist(), "token_energy": rng.uniform(0, 1, num_tokens).tolist(),
    }


def write_dataset(root: str, rows_per_shard: list[list[dict]], *, reduction_factor: int = 1) -> None:
    """Shards, and an index.json listing them, under ``root`` (a local path or fsspec URL); no map files."""
    fs, path = fsspec.core.url_to_fs(root)
    fs.makedirs(f"{path}/shards", exist_ok=True)
    shards = []
    for number, rows in enumerate(rows_per_shard):
        relative = f"shards/part-{number:05d}.parquet"
        with fs.open(f"{path}/{relative}", "wb") as handle:
            pq.write_table(pa.Table.from_pylist(rows, schema=shard_schema(N_MELS)), handle,
                           row_group_size=ROW_GROUP_SIZE)
        shards.append({"path": relative, "num_rows": len(rows)})
    index = {"shards": shards, "features": {"n_mels": N_MELS, "hop_length": 256, "sample_rate": 22050,
                                            "reduction_factor": reduction_factor}}
    with fs.open(f"{path}/index.json", "w") as handle:
        json.dump(index, handle)


def toy_rows(num_shards: int = 3, seed: int = 0, reduction_factor: int = 1) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[make_row(f"toy_{shard}_{row:03d}", rng, reduction_factor) for row in range(ROWS_PER_SHARD)]
            for shard in range(num_shards)]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("out") / "toy"
    rows = toy_rows()
    write_dataset(str(root), rows)
    shard_set = load_shard_set(str(root))
    light = read_light_index(shard_set)
    return SimpleNamespace(root=root, rows={r["utt_id"]: r for shard in rows for r in shard}, shard_set=shard_set,
                           light=light, maps=load_symbol_maps(shard_set, light))


def consumer_ids(toy, *, num_workers: int, world_size: int, epoch: int = 0) -> list[list[str]]:
    """utt_ids read by each (rank, worker), simulating workers through ``get_worker_info``."""
    parts = []
    for rank in range(world_size):
        for worker in range(num_workers):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ttsprep.train.dataset, "get_worker_info",
                              lambda worker=worker: SimpleNamespace(id=worker, num_workers=num_workers))
                dataset = ShardDataset(toy.shard_set, toy.maps, features=(), rank=rank, world_size=world_size)
                dataset.set_epoch(epoch)
                parts.append([item.utt_id for item in dataset])
    return parts


@pytest.mark.parametrize(("num_workers", "world_size"), [(1, 1), (2, 1), (1, 3), (2, 2), (3, 3)])
def test_worker_rank_partitions_cover_every_row_once(toy, num_workers, world_size):
    parts = consumer_ids(toy, num_workers=num_workers, world_size=world_size)
    counts = Counter(utt for part in parts for utt in part)
    assert set(counts) == set(toy.rows)
    assert set(counts.values()) == {1}
    assert all(parts), "every consumer gets work (15 row groups >= 9 consumers)"


def _identity(item):
    return item


def test_dataloader_workers_read_disjoint_parts(toy):
    # spawned workers: forking a test process that runs Prefect's server threads can kill the child
    dataset = ShardDataset(toy.shard_set, toy.maps, features=(), rank=0, world_size=1)
    utt_ids = [item.utt_id for item in DataLoader(dataset, batch_size=None, num_workers=2,
                                                   collate_fn=_identity, multiprocessing_context="spawn")]
    assert sorted(utt_ids) == sorted(toy.rows)


def test_order_is_a_function_of_seed_and_epoch(toy):
    first = consumer_ids(toy, num_workers=2, world_size=2, epoch=0)
    again = consumer_ids(toy, num_workers=2, world_size=2, epoch=0)
    later = consumer_ids(toy, num_workers=2, world_size=2, epoch=1)
    assert first == again
    assert first != later
    assert sorted(sum(first, [])) == sorted(sum(later, []))
    stored = [item.utt_id for item in ShardDataset(toy.shard_set, toy.maps, features=(), shuffle=False)]
    assert stored == sorted(toy.rows)


def padded_fraction(batches) -> float:
    masks = [batch["mel_mask"] for batch in batches]
    return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def test_bucketing_reduces_padding(toy):
    items = ShardDataset(toy.shard_set, toy.maps, features=("f0",), seed=3)
    collate = Collate(reduction_factor=1)
    bucketed = list(ShardBatches(items, collate, batch_size=4, group_size=10))
    unbucketed = list(ShardBatches(items, collate, batch_size=4, group_size=1))
    assert sorted(u for b in bucketed for u in b["utt_ids"]) == sorted(toy.rows)
    assert padded_fraction(bucketed) < 0.5 * padded_fraction(unbucketed)


def test_bucket_batch_sampler_epoch_and_windows(toy):
    lengths = toy.light.column("num_frames").to_numpy()
    sampler = BucketBatchSampler(lengths, batch_size=4, group_size=5, seed=1)
    epoch0 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(len(lengths)))
    assert len(sampler) == len(epoch0) == 30
    for start in range(0, len(epoch0), 5):  # each window of 5 batches is cut from one sorted run of 20 items
        window = sorted(epoch0[start:start + 5], key=lambda b: lengths[b].min())
        edges = [(lengths[b].min(), lengths[b].max()) for b in window]
        assert all(high <= next_low for (_, high), (next_low, _) in zip(edges, edges[1:]))
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    halves = [BucketBatchSampler(lengths, batch_size=4, group_size=5, seed=1, rank=r, world_size=2) for r in (0, 1)]
    indices = [set(i for b in half for i in b) for half in halves]
    assert not indices[0] & indices[1] and len(indices[0] | indices[1]) == len(lengths)


def test_balanced_sampling_evens_out_speakers(toy):
    speakers = np.asarray([f"toy:{s}" for s in toy.light.column("speaker").to_pylist()])
    lengths = toy.light.column("num_frames").to_numpy()
    natural = Counter(speakers)
    assert natural.most_common()[0][1] > 4 * natural.most_common()[-1][1]
    sampler = WeightedBucketBatchSampler(balance_weights(speakers, alpha=1.0), lengths, batch_size=8,
                                         group_size=4, num_samples=6000)
    drawn = Counter(speakers[i] for batch in sampler for i in batch)
    assert sum(drawn.values()) == 6000
    assert all(abs(count - 2000) < 200 for count in drawn.values()), drawn
    half = Counter(speakers[i] for b in WeightedBucketBatchSampler(balance_weights(speakers, alpha=0.5), lengths,
                                                                    batch_size=8, group_size=4, num_samples=6000)
                   for i in b)
    assert drawn["toy:a"] < half["toy:a"] < 6000 * natural["toy:a"] / len(speakers)


def test_weighted_sampler_feeds_map_style_dataset(toy):
    languages = toy.light.column("language").to_pylist()
    language_ids = np.asarray([toy.maps.languages[x] for x in languages])
    sampler = WeightedBucketBatchSampler(balance_weights(language_ids), toy.light.column("num_frames").to_numpy(),
                                         batch_size=6, group_size=3, languages=language_ids, seed=5)
    dataset = ShardRowDataset(toy.shard_set, toy.maps, toy.light, features=("mel", "tokens", "durations"))
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collate())
    utt_ids = toy.light.column("utt_id").to_pylist()
    for indices, batch in zip(sampler, loader):
        assert batch["utt_ids"] == [utt_ids[i] for i in indices]
        assert len(set(batch["language_ids"].tolist())) == 1
        for row, utt in enumerate(batch["utt_ids"]):
            expected = np.asarray(toy.rows[utt]["mel"], dtype=np.float32)
            np.testing.assert_array_equal(batch["mel"][row, :len(expected)].numpy(), expected)


def test_streamed_single_language_batches(toy):
    items = ShardDataset(toy.shard_set, toy.maps, features=(), seed=2)
    batches = list(ShardBatches(items, Collate(), batch_size=4, group_size=3, single_language=True))
    assert all(len(set(b["language_ids"].tolist())) == 1 for b in batches)
    assert sum(len(b["utt_ids"]) for b in batches) == len(toy.rows)


def test_items_match_rows_and_maps_are_built(toy):
    inverse_vocab = {i: s for s, i in toy.maps.vocab.items()}
    assert toy.maps.vocab == build_vocab({"en-US": TOKENS["en-US"], "zh-CN": TOKENS["zh-CN"]})
    assert toy.maps.speakers == {"toy:a": 0, "toy:b": 1, "toy:c": 2}
    assert toy.maps.accents == {"scottish": 0}
    for item in ShardDataset(toy.shard_set, toy.maps, shuffle=False):
        row = toy.rows[item.utt_id]
        assert [inverse_vocab[t] for t in item.tokens] == [symbol(p, row["language"]) for p in row["phonemes"]]
        np.testing.assert_array_equal(item.durations, row["durations"])
        np.testing.assert_array_equal(item.voiced, row["voiced"])
        np.testing.assert_allclose(item.f0, row["f0"], rtol=1e-6)
        assert item.mel.shape == (row["num_frames"], N_MELS) and item.audio is None
        assert item.accent_id == (0 if row["accent"] else -1)
        assert item.speaker_id == toy.maps.speakers[f"toy:{row['speaker']}"]


def test_written_maps_are_used(tmp_path):
    root = tmp_path / "out" / "toy"
    write_dataset(str(root), toy_rows(num_shards=1))
    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3, "<blank>": 4, "en:h": 5}
    (tmp_path / "out" / "vocab.json").write_text(json.dumps({"symbols": vocab}))
    (root / "speakers.json").write_text(json.dumps({"toy:a": 7, "toy:b": 8, "toy:c": 9}))
    shard_set = load_shard_set(str(root))
    maps = load_symbol_maps(shard_set)
    assert maps.vocab == vocab and maps.speakers["toy:c"] == 9
    item = next(iter(ShardDataset(shard_set, maps, features=("tokens", "audio"))))
    assert item.speaker_id in (7, 8, 9) and item.audio == b"flac"
    assert set(item.tokens.tolist()) <= {1, 5}


def test_memory_filesystem(toy):
    write_dataset("memory://out/toy", toy_rows())
    shard_set = load_shard_set("memory://out/toy")
    assert shard_set.paths[0] == "memory://out/toy/shards/part-00000.parquet"
    maps = load_symbol_maps(shard_set)
    assert maps == toy.maps
    items = list(ShardDataset(shard_set, maps, features=("mel",), seed=4))
    assert sorted(i.utt_id for i in items) == sorted(toy.rows)


def test_collate_shapes_masks_and_blanks():
    items = [TrainItem("u1", 4, 0, 1, -1, mel=np.ones((4, 3), np.float32), f0=np.arange(4, dtype=np.float32),
                       voiced=np.array([1, 1, 0, 1], bool), tokens=np.array([7, 8]), durations=np.array([1, 3]),
                       token_pitch=np.array([1.5, 2.5], np.float32)),
             TrainItem("u2", 2, 1, 0, 2, mel=np.full((2, 3), 2, np.float32), f0=np.ones(2, np.float32),
                       voiced=np.array([1, 0], bool), tokens=np.array([9]), durations=np.array([2]),
                       token_pitch=np.array([3.5], np.float32))]
    batch = Collate(add_blank=True, blank_id=4, pad_id=0)(items)
    assert batch["mel"].shape == (2, 4, 3) and batch["mel"].dtype == torch.float32
    assert batch["mel_lengths"].tolist() == [4, 2]
    assert batch["mel_mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert batch["mel"][1, 2:].abs().sum() == 0 and batch["mel"][1, :2].min() == 2
    assert batch["voiced"].dtype == torch.bool and batch["voiced"][0].tolist() == [True, True, False, True]
    assert batch["tokens"].tolist() == [[4, 7, 4, 8, 4], [4, 9, 4, 0, 0]]
    assert batch["token_lengths"].tolist() == [5, 3]
    assert batch["token_mask"].tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert batch["durations"].tolist() == [[0, 1, 0, 3, 0], [0, 2, 0, 0, 0]]
    assert batch["durations"].sum(1).tolist() == batch["mel_lengths"].tolist()
    assert batch["speaker_ids"].tolist() == [0, 1] and batch["accent_ids"].tolist() == [-1, 2]
    assert batch["token_pitch"].tolist() == [[0, 1.5, 0, 2.5, 0], [0, 3.5, 0, 0, 0]]
    assert "energy" not in batch and "token_energy" not in batch
    plain = Collate()(items)
    assert plain["tokens"].tolist() == [[7, 8], [9, 0]] and plain["durations"].tolist() == [[1, 3], [2, 0]]
    assert plain["token_lengths"].tolist() == [2, 1] and plain["token_pitch"].tolist() == [[1.5, 2.5], [3.5, 0]]


@pytest.mark.parametrize(("change", "message"), [
    (dict(f0=np.zeros(3, np.float32)), "bad_one: f0 has 3 frames"),
    (dict(durations=np.array([1, 2])), "bad_one: durations sum to 3"),
    (dict(tokens=np.array([5])), "bad_one: 1 phonemes but 2 durations"),
    (dict(durations=None), "bad_one: has no durations while other utterances of its batch do"),
])
def test_invariant_violation_names_the_utterance(change, message):
    good = TrainItem("good", 4, 0, 0, -1, f0=np.zeros(4, np.float32), tokens=np.array([5, 6]),
                     durations=np.array([2, 2]))
    bad = TrainItem("bad_one", 4, 0, 0, -1, **{**dict(f0=np.zeros(4, np.float32), tokens=np.array([5, 6]),
                                                       durations=np.array([2, 2])), **change})
    Collate()([good, good])
    with pytest.raises(InvariantViolation, match=message):
        Collate()([good, bad])


def _loaded(root: Path, rows: list[dict], reduction_factor: int) -> tuple:
    write_dataset(str(root), [rows], reduction_factor=reduction_factor)
    shard_set = load_shard_set(str(root))
    assert shard_set.reduction_factor == reduction_factor
    return shard_set, load_symbol_maps(shard_set)


def test_reduction_factor_and_violation_from_a_shard(tmp_path):
    rows = toy_rows(num_shards=1, reduction_factor=2)[0]
    items = ShardDataset(*_loaded(tmp_path / "good", rows, reduction_factor=2), features=("durations",))
    batches = list(ShardBatches(items, Collate(reduction_factor=2), batch_size=8, group_size=1))
    assert all((b["durations"].sum(1) * 2 == b["mel_lengths"]).all() for b in batches)
    rows[5]["durations"] = [d * 2 for d in rows[5]["durations"]]  # sums to num_frames: right only for r = 1
    items = ShardDataset(*_loaded(tmp_path / "bad", rows, reduction_factor=2), features=("durations",))
    with pytest.raises(InvariantViolation, match=rows[5]["utt_id"]):
        list(ShardBatches(items, Collate(reduction_factor=2), batch_size=len(rows), group_size=1))


@pytest.mark.parametrize("per_speaker, token_pitch", [(True, "voiced_mean"), (False, "interpolated_log")])
def test_prosody_is_normalised_with_the_datasets_stats(tmp_path, per_speaker, token_pitch):
    """z-scores with stats.json: per speaker or global; voiced-mean pitch (Hz) is logged first, 0 Hz stays 0,
    the interpolated variant (already log-F0, as index.json records) is used as it is."""
    root = tmp_path / "toy"
    rows = toy_rows(num_shards=1)
    rows[0][0]["token_pitch"][0] = 0.0  # a token without voiced frames
    write_dataset(str(root), rows)
    index = json.loads((root / "index.json").read_text())
    index["dataset"], index["features"]["token_pitch"] = "toy", token_pitch
    (root / "index.json").write_text(json.dumps(index))
    stats = {"global": {"log_f0": {"mean": 5.0, "std": 0.5}, "energy": {"mean": 0.4, "std": 0.2}},
             "speakers": {name: {"log_f0": {"mean": 4.0 + number, "std": 0.25 * (number + 1)},
                                 "energy": {"mean": 0.1 * number, "std": 0.3}}
                          for number, (name, *_) in enumerate(SPEAKERS)}}
    (root / "stats.json").write_text(json.dumps(stats))
    shard_set = load_shard_set(str(root))
    prosody = ProsodyNormaliser.load(shard_set, per_speaker=per_speaker)
    items = list(ShardDataset(shard_set, load_symbol_maps(shard_set), shuffle=False, prosody=prosody))
    assert len(items) == ROWS_PER_SHARD
    for item in items:
        row = rows[0][int(item.utt_id[-3:])]
        chosen = stats["speakers"][row["speaker"]] if per_speaker else stats["global"]
        pitch, energy = np.asarray(row["token_pitch"]), np.asarray(row["token_energy"])
        if token_pitch == "voiced_mean":
            with np.errstate(divide="ignore"):
                expected = np.where(pitch > 0, (np.log(pitch) - chosen["log_f0"]["mean"]) / chosen["log_f0"]["std"], 0)
        else:
            expected = (pitch - chosen["log_f0"]["mean"]) / chosen["log_f0"]["std"]
        np.testing.assert_allclose(item.token_pitch, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(item.token_energy, (energy - chosen["energy"]["mean"]) / chosen["energy"]["std"],
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="token_pitch"):
        ShardDataset(shard_set, load_symbol_maps(shard_set), features=("mel", "token_energy"), prosody=prosody)
