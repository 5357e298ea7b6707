"""Length bucketing and category-balanced sampling of utterances into batches.

Bucketing (the seeds' semantics): take ``batch_size * group_size`` items, sort them by length (frames),
cut them into ``group_size`` batches and shuffle those batches. Utterances of similar length share a batch,
so little of a padded batch is padding, while the order of batches stays random. ``bucket_stream`` does this
over a stream (a buffer of one window); the samplers do it over in-memory lengths for map-style datasets.

Balancing: ``balance_weights`` gives each utterance a weight ∝ ``1 / count(category) ** alpha``
(``alpha = 0``: natural frequencies, ``alpha = 1``: every category equally likely), and
``WeightedBucketBatchSampler`` draws an epoch with replacement from those weights.

All randomness comes from ``numpy.random.default_rng([seed, epoch, ...])``; ``set_epoch`` changes the order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

T = TypeVar("T")


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the explicit values, else ``torch.distributed``'s when initialised, else (0, 1)."""
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sorted_batches(lengths: np.ndarray, *, batch_size: int, rng: np.random.Generator,
                   drop_last: bool = False) -> list[np.ndarray]:
    """Positions ``0..len(lengths)-1`` sorted by length, cut into batches of ``batch_size``, batches shuffled.

    With ``drop_last`` a final batch smaller than ``batch_size`` is dropped.
    """
    order = np.argsort(lengths, kind="stable")
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return [batches[i] for i in rng.permutation(len(batches))]


def bucket(indices: np.ndarray, lengths: np.ndarray, *, batch_size: int, group_size: int,
           rng: np.random.Generator, drop_last: bool = False) -> list[np.ndarray]:
    """Bucket ``indices`` (in their given order) window by window; ``lengths[i]`` is item ``i``'s length."""
    window = batch_size * group_size
    batches = []
    for start in range(0, len(indices), window):
        chunk = indices[start:start + window]
        batches += [chunk[b] for b in sorted_batches(lengths[chunk], batch_size=batch_size, rng=rng,
                                                     drop_last=drop_last)]
    return batches


def bucket_stream(items: Iterable[T], length: Callable[[T], int], *, batch_size: int, group_size: int,
                  rng: np.random.Generator, drop_last: bool = False,
                  partition: Callable[[T], Hashable] | None = None) -> Iterator[list[T]]:
    """Bucket a stream: buffer ``batch_size * group_size`` items, yield them as sorted-then-shuffled batches.

    With ``partition`` (e.g. the language id) each key has its own buffer, so every batch holds one key.
    """
    window = batch_size * group_size
    buffers: dict[Hashable, list[T]] = {}

    def flush(buffer: list[T]) -> Iterator[list[T]]:
        lengths = np.fromiter((length(item) for item in buffer), dtype=np.int64, count=len(buffer))
        for positions in sorted_batches(lengths, batch_size=batch_size, rng=rng, drop_last=drop_last):
            yield [buffer[p] for p in positions]

    for item in items:
        buffer = buffers.setdefault(partition(item) if partition else None, [])
        buffer.append(item)
        if len(buffer) == window:
            yield from flush(buffer)
            buffer.clear()
    for buffer in buffers.values():
        if buffer:
            yield from flush(buffer)


class BucketBatchSampler(Sampler[list[int]]):
    """Map-style bucketing over ``lengths`` (frames per item): an epoch is a shuffled order, bucketed.

    Under distributed training each rank takes every ``world_size``-th index of the shuffled order (trimmed to
    a multiple of ``world_size`` so every rank gets as many items).
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, *, batch_size: int, group_size: int, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.group_size, self.drop_last = batch_size, group_size, drop_last
        self.seed, self.shuffle = seed, shuffle
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        order = order[:len(order) - len(order) % self.world_size][self.rank::self.world_size]
        return bucket(order, self.lengths, batch_size=self.batch_size, group_size=self.group_size, rng=rng,
                      drop_last=self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def balance_weights(categories: Sequence[Hashable] | np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Sampling probabilities ∝ ``1 / count(category) ** alpha`` per item, summing to 1 (float64 [n]).

    Each category's total probability is then ∝ ``count ** (1 - alpha)``. To balance a combination (language
    and accent), pass one combined key per item.
    """
    _, inverse, counts = np.unique(np.asarray(categories), return_inverse=True, return_counts=True)
    weights = counts[inverse].astype(np.float64) ** -alpha
    return weights / weights.sum()


class WeightedBucketBatchSampler(Sampler[list[int]]):
    """Draws ``num_samples`` items per epoch with replacement from ``weights`` and buckets them by ``lengths``.

    ``languages`` (one id per item) makes single-language batches: the draws are bucketed per language and
    the batches of all languages shuffled together. Each rank draws ``num_samples // world_size`` items with
    its own stream (``seed, epoch, rank``).
    """

    def __init__(self, weights: np.ndarray, lengths: Sequence[int] | np.ndarray, *, batch_size: int,
                 group_size: int, num_samples: int | None = None, languages: Sequence[int] | np.ndarray | None = None,
                 seed: int = 0, drop_last: bool = False, rank: int | None = None, world_size: int | None = None):
        self.probabilities = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.lengths = np.asarray(lengths)
        self.languages = None if languages is None else np.asarray(languages)
        self.batch_size, self.group_size, self.drop_last = batch_size, group_size, drop_last
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.num_samples = (len(self.lengths) if num_samples is None else num_samples) // self.world_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        draws = rng.choice(len(self.probabilities), size=self.num_samples, p=self.probabilities)
        options = dict(batch_size=self.batch_size, group_size=self.group_size, rng=rng, drop_last=self.drop_last)
        if self.languages is None:
            return bucket(draws, self.lengths, **options)
        batches = []
        for language in np.unique(self.languages[draws]):
            batches += bucket(draws[self.languages[draws] == language], self.lengths, **options)
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.batches())

    def __len__(self) -> int:
        return len(self.batches())
