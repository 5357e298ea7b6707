"""Arrow list columns <-> numpy: one array per row, built from and read as a flat buffer plus offsets.

Shard columns such as ``mel`` (``list<fixed_size_list<float32, n_mels>>``), ``f0`` or ``durations`` hold one
variable-length array per row. Going through Python objects element by element is slow; these helpers build
and read them as a single buffer with offsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def list_array(values: list[Any], list_type: pa.ListType) -> pa.Array:
    """A list column from numpy arrays (``[T]`` or ``[T, C]`` for a fixed-size inner list) or ``None``s,
    built from one flat buffer and offsets instead of element by element."""
    inner = list_type.value_type
    arrays = [None if v is None else np.asarray(v) for v in values]
    lengths = np.array([0 if a is None else a.shape[0] for a in arrays], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    present = [a.reshape(-1) for a in arrays if a is not None]
    if pa.types.is_fixed_size_list(inner):
        flat = pa.array(np.concatenate(present) if present else np.zeros(0), type=inner.value_type)
        children = pa.FixedSizeListArray.from_arrays(flat, type=inner)
    else:
        children = pa.array(np.concatenate(present) if present else [], type=inner)
    mask = pa.array([a is None for a in arrays], type=pa.bool_())
    return pa.ListArray.from_arrays(offsets, children, type=list_type, mask=mask)


def contiguous_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array (a row group's column is one chunk: taken without copying)."""
    if isinstance(column, pa.Array):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def valid_rows(array: pa.Array) -> np.ndarray:
    """bool [n]: False for null rows (``is_null`` is slow on list arrays, so only called when needed)."""
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    return ~array.is_null().to_numpy(zero_copy_only=False)


def flat_list(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list column as ``(values, offsets, valid)``: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    ``values`` is numpy (a fixed-size-list element becomes a 2-D ``[total, size]`` array), a view of the
    Arrow buffer except for booleans (bit-packed in Arrow); ``valid`` is False for null rows.
    """
    array = contiguous_array(column)
    offsets = array.offsets.to_numpy()
    inner = array.values
    if pa.types.is_fixed_size_list(inner.type):
        values = inner.flatten().to_numpy().reshape(-1, inner.type.list_size)
    else:
        values = inner.to_numpy(zero_copy_only=False)
    return values, offsets, valid_rows(array)


def row_views(values: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> list[np.ndarray | None]:
    """``flat_list``'s triple as one array view per row (``None`` for a null row)."""
    return [values[start:end] if present else None
            for start, end, present in zip(offsets[:-1].tolist(), offsets[1:].tolist(), valid.tolist())]
