"""PyTorch datasets over the training shards: a streaming ``ShardDataset`` and a map-style ``ShardRowDataset``.

``ShardDataset`` reads row group by row group and only the columns the chosen ``features`` need (never
``audio`` unless asked). Each consumer, i.e. one DataLoader worker of one distributed rank, gets its own
disjoint part: whole shards when there are at least as many shards as consumers, else row groups. The order
of shards, row groups and rows is a pure function of ``(seed, epoch)``; call ``set_epoch`` before each epoch.
Parallelism comes from DataLoader workers, so pyarrow reads single-threaded.

``ShardBatches`` wraps a ``ShardDataset`` into length-bucketed, collated batches made inside each worker
(use it with ``DataLoader(batch_size=None)``). ``ShardRowDataset`` serves random access for the weighted
samplers of ``ttsprep.train.sampler``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ttsprep.stages.core.arrow_lists import contiguous_array, flat_list, row_views, valid_rows
from ttsprep.stages.core.errors import ConfigError
from ttsprep.train.collate import Batch, TrainItem
from ttsprep.train.prosody import ProsodyNormaliser
from ttsprep.train.sampler import bucket_stream, resolve_rank
from ttsprep.train.shards import (LIGHT_COLUMNS, ShardSet, SymbolMaps, encode_phonemes, lookup_ids, open_shard,
                                  speaker_keys)

#: Feature name -> the shard column holding it.
FEATURE_COLUMNS = {
    "mel": "mel", "f0": "f0", "energy": "energy", "voiced": "voiced", "tokens": "phonemes", "durations": "durations",
    "token_pitch": "token_pitch", "token_energy": "token_energy", "audio": "audio",
    "speaker_embedding": "speaker_embedding",
}
DEFAULT_FEATURES = ("mel", "f0", "energy", "voiced", "tokens", "durations", "token_pitch", "token_energy")


def shard_columns(features: Sequence[str]) -> list[str]:
    """The shard columns to read for ``features``; raises ``ValueError`` on an unknown feature name."""
    unknown = set(features) - set(FEATURE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; choose from {sorted(FEATURE_COLUMNS)}")
    needed = {FEATURE_COLUMNS[f] for f in features} | ({"language"} if "tokens" in features else set())
    return list(LIGHT_COLUMNS) + sorted(needed - set(LIGHT_COLUMNS))


def rows_to_items(table: pa.Table, maps: SymbolMaps, features: Sequence[str],
                  prosody: ProsodyNormaliser | None = None) -> list[TrainItem]:
    """One ``TrainItem`` per row of ``table`` (``LIGHT_COLUMNS`` plus the columns of ``features``).

    Arrays are views into one flat array per column; a null list (e.g. no durations) gives ``None``.
    ``prosody``: per-token pitch and energy become z-scores (``ttsprep.train.prosody``).
    """
    items = [TrainItem(utt_id, frames, speaker, language, accent)
             for utt_id, frames, speaker, language, accent in zip(
                 table.column("utt_id").to_pylist(), table.column("num_frames").to_pylist(),
                 lookup_ids(speaker_keys(table), maps.speakers, "speaker").tolist(),
                 lookup_ids(table.column("language").to_pylist(), maps.languages, "language").tolist(),
                 lookup_ids(table.column("accent").to_pylist(), maps.accents, "accent").tolist())]
    for feature in features:
        if feature == "audio":
            views = table.column("audio").to_pylist()
        elif feature == "tokens":
            views = row_views(*encode_phonemes(table.column("phonemes"), table.column("language"), maps.vocab))
        elif feature == "speaker_embedding":
            views = _vector_views(table.column("speaker_embedding"))
            if (missing := next((i for i, view in enumerate(views) if view is None), None)) is not None:
                raise ConfigError(f"{items[missing].utt_id}: no speaker_embedding in its shard (its dataset was "
                                  "prepared without features.speaker_embedding)")
        else:
            views = row_views(*flat_list(table.column(FEATURE_COLUMNS[feature])))
        for item, view in zip(items, views):
            setattr(item, feature, view)
    if prosody is not None:
        prosody.apply(items, table.column("dataset").to_pylist(), table.column("speaker").to_pylist())
    return items


def _vector_views(column: pa.ChunkedArray) -> list[np.ndarray | None]:
    """A fixed-size list column (``speaker_embedding``) as one read-only row view each (None for a null row)."""
    array = contiguous_array(column)
    width = array.type.list_size
    values = array.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)  # null rows are skipped
    rows = np.cumsum(valid_rows(array)) - 1
    return [values[row] if present else None for row, present in zip(rows.tolist(), valid_rows(array).tolist())]


def _check_prosody(prosody: ProsodyNormaliser | None, features: Sequence[str]) -> None:
    if prosody is not None and not {"token_pitch", "token_energy"} <= set(features):
        raise ValueError("normalising prosody needs both 'token_pitch' and 'token_energy' in features")


def _consumer(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(index, count)`` of this reader among all DataLoader workers of all ranks."""
    rank, world_size = resolve_rank(rank, world_size)
    worker = get_worker_info()
    worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
    return rank * num_workers + worker_id, world_size * num_workers


class ShardDataset(IterableDataset[TrainItem]):
    """Streams ``TrainItem``s from the shards of ``shard_set``.

    ``rank``/``world_size`` default to ``torch.distributed``'s when it is initialised, else 0/1. With
    ``shuffle=False`` shards, row groups and rows keep their stored order (validation).
    """

    def __init__(self, shard_set: ShardSet, maps: SymbolMaps, *, features: Sequence[str] = DEFAULT_FEATURES,
                 seed: int = 0, shuffle: bool = True, rank: int | None = None, world_size: int | None = None,
                 prosody: ProsodyNormaliser | None = None):
        _check_prosody(prosody, features)
        self.shard_set, self.maps, self.features, self.prosody = shard_set, maps, tuple(features), prosody
        self.columns = shard_columns(self.features)
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *keys])

    def _order(self, count: int, *keys: int) -> np.ndarray:
        return self._rng(*keys).permutation(count) if self.shuffle else np.arange(count)

    def work_units(self, consumer: int, num_consumers: int) -> Iterator[tuple[pq.ParquetFile, int, int]]:
        """``(reader, shard, row_group)`` for one consumer, in this epoch's order.

        Shards go round-robin over the consumers of a shuffled shard list; with fewer shards than
        consumers, every shard's footer is read and the (shard, row group) pairs are dealt instead.
        """
        num_shards = len(self.shard_set.paths)
        if num_shards >= num_consumers:
            for shard in self._order(num_shards)[consumer::num_consumers]:
                reader = open_shard(self.shard_set.paths[shard])
                for row_group in self._order(reader.num_row_groups, int(shard)):
                    yield reader, int(shard), int(row_group)
            return
        readers = [open_shard(path) for path in self.shard_set.paths]
        pairs = [(shard, group) for shard, reader in enumerate(readers) for group in range(reader.num_row_groups)]
        for unit in self._order(len(pairs))[consumer::num_consumers]:
            shard, row_group = pairs[unit]
            yield readers[shard], shard, row_group

    def __iter__(self) -> Iterator[TrainItem]:
        for reader, shard, row_group in self.work_units(*_consumer(self.rank, self.world_size)):
            table = reader.read_row_group(row_group, columns=self.columns, use_threads=False)
            items = rows_to_items(table, self.maps, self.features, self.prosody)
            for row in self._order(len(items), shard, row_group):
                yield items[row]


class ShardBatches(IterableDataset[Batch]):
    """Length-bucketed (``ttsprep.train.sampler.bucket_stream``) and collated batches of a ``ShardDataset``.

    With ``single_language`` every batch holds utterances of one language.
    """

    def __init__(self, items: ShardDataset, collate: Callable[[list[TrainItem]], Batch], *, batch_size: int,
                 group_size: int, drop_last: bool = False, single_language: bool = False):
        self.items, self.collate = items, collate
        self.batch_size, self.group_size, self.drop_last = batch_size, group_size, drop_last
        self.single_language = single_language

    def set_epoch(self, epoch: int) -> None:
        self.items.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        consumer, _ = _consumer(self.items.rank, self.items.world_size)
        rng = np.random.default_rng([self.items.seed, self.items.epoch, consumer])
        for batch in bucket_stream(self.items, lambda item: item.num_frames, batch_size=self.batch_size,
                                   group_size=self.group_size, rng=rng, drop_last=self.drop_last,
                                   partition=(lambda item: item.language_id) if self.single_language else None):
            yield self.collate(batch)


@dataclass(frozen=True)
class RowAddress:
    shard: int
    row_group: int
    row: int


class ShardRowDataset(Dataset[TrainItem]):
    """Random access to the rows of ``read_light_index``'s table (index ``i`` is its row ``i``).

    ``__getitems__`` (used by DataLoader with a batch sampler) reads each needed row group once; the
    ``cache_row_groups`` most recently decoded row groups are kept per worker.
    """

    def __init__(self, shard_set: ShardSet, maps: SymbolMaps, light: pa.Table, *,
                 features: Sequence[str] = DEFAULT_FEATURES, cache_row_groups: int = 8,
                 prosody: ProsodyNormaliser | None = None):
        _check_prosody(prosody, features)
        self.shard_set, self.maps, self.features, self.prosody = shard_set, maps, tuple(features), prosody
        self.columns = shard_columns(self.features)
        self.shards = light.column("shard").to_numpy()
        self.rows = light.column("row").to_numpy()
        self.cache_row_groups = cache_row_groups
        self._files: dict[int, pq.ParquetFile] = {}
        self._row_group_starts: dict[int, np.ndarray] = {}
        self._cache: OrderedDict[tuple[int, int], list[TrainItem]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.shards)

    def _address(self, index: int) -> RowAddress:
        shard, row = int(self.shards[index]), int(self.rows[index])
        if shard not in self._files:
            reader = open_shard(self.shard_set.paths[shard])
            sizes = [reader.metadata.row_group(g).num_rows for g in range(reader.num_row_groups)]
            self._files[shard], self._row_group_starts[shard] = reader, np.cumsum([0, *sizes])
        row_group = int(np.searchsorted(self._row_group_starts[shard], row, side="right")) - 1
        return RowAddress(shard, row_group, row - int(self._row_group_starts[shard][row_group]))

    def _row_group(self, shard: int, row_group: int) -> list[TrainItem]:
        key = (shard, row_group)
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            table = self._files[shard].read_row_group(row_group, columns=self.columns, use_threads=False)
            self._cache[key] = rows_to_items(table, self.maps, self.features, self.prosody)
            if len(self._cache) > self.cache_row_groups:
                self._cache.popitem(last=False)
        return self._cache[key]

    def __getitem__(self, index: int) -> TrainItem:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[TrainItem]:
        addresses = [self._address(int(i)) for i in indices]
        groups = {key: self._row_group(*key) for key in dict.fromkeys((a.shard, a.row_group) for a in addresses)}
        return [groups[a.shard, a.row_group][a.row] for a in addresses]
