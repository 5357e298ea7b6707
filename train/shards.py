"""Finding and reading training shards: ``index.json``, the symbol maps, and row groups as flat numpy arrays.

A dataset root is ``OUT/<dataset>`` as a local path or an fsspec URL (``file://``, ``memory://``, ``s3://``).
Its ``index.json`` lists the shards (``{"shards": [{"path": "shards/part-00000.parquet", ...}], "features":
{...}}``). The maps ``vocab.json`` (``{"symbols": {symbol: id}}``), ``speakers.json`` (``{"dataset:speaker":
id}``), ``languages.json`` and ``accents.json`` (``{tag: id}``) are looked for in the root, then beside it in
``OUT/``; a missing map is built from the shards with the pipeline's own deterministic rules.

Row groups are converted column by column: a list column becomes one flat numpy array plus offsets, and an
utterance's arrays are views into it (no per-row Python lists).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from ttsprep.stages.core.arrow_lists import contiguous_array, valid_rows
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step3_text.vocab import build_language_map, build_speaker_map, build_vocab, symbol

#: The per-utterance columns every reader takes (small: no arrays).
LIGHT_COLUMNS = ("utt_id", "dataset", "speaker", "language", "accent", "num_frames")


@dataclass(frozen=True)
class ShardSet:
    """The shards of one or more dataset roots and the frame grid they share."""

    roots: tuple[str, ...]
    #: Shard URLs (or local paths), in index order, roots in the given order.
    paths: tuple[str, ...]
    num_rows: tuple[int, ...]
    n_mels: int
    hop_length: int
    sample_rate: int
    #: Frames per decoder step: ``sum(durations) == num_frames / reduction_factor``.
    reduction_factor: int


@dataclass(frozen=True)
class SymbolMaps:
    """``{key: id}`` tables: vocabulary symbols, ``dataset:speaker`` keys, language tags and accents."""

    vocab: Mapping[str, int]
    speakers: Mapping[str, int]
    languages: Mapping[str, int]
    accents: Mapping[str, int]


def _join(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}"


def read_json_at(root: str, name: str) -> dict | None:
    """The JSON file ``name`` under the dataset ``root`` (a path or fsspec URL), or None when absent."""
    fs, path = url_to_fs(_join(root, name))
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        return json.load(handle)


def load_shard_set(roots: str | Sequence[str]) -> ShardSet:
    """Read ``index.json`` of each dataset root; raises ``ConfigError`` when an index is missing or the
    roots disagree on the frame grid (``n_mels``, ``hop_length``, ``sample_rate``, ``reduction_factor``)."""
    roots = (roots,) if isinstance(roots, str) else tuple(roots)
    paths: list[str] = []
    num_rows: list[int] = []
    grids = set()
    for root in roots:
        index = read_json_at(root, "index.json")
        if index is None:
            raise ConfigError(f"{root}: no index.json (is the dataset finalized?)")
        features = index["features"]
        grids.add((features["n_mels"], features["hop_length"], features["sample_rate"],
                   features.get("reduction_factor", 1)))
        for shard in index["shards"]:
            paths.append(_join(root, shard["path"]))
            num_rows.append(int(shard["num_rows"]))
    if len(grids) != 1:
        raise ConfigError(f"dataset roots disagree on (n_mels, hop_length, sample_rate, r): {sorted(grids)}")
    (n_mels, hop_length, sample_rate, reduction_factor), = grids
    return ShardSet(roots, tuple(paths), tuple(num_rows), n_mels, hop_length, sample_rate, reduction_factor)


def open_shard(url: str) -> pq.ParquetFile:
    """A Parquet reader over a local path or fsspec URL (local files go through pyarrow's native I/O)."""
    fs, path = url_to_fs(url)
    return pq.ParquetFile(path, filesystem=fs)


def read_light_index(shard_set: ShardSet) -> pa.Table:
    """``LIGHT_COLUMNS`` of every shard plus ``shard`` (position in ``shard_set.paths``) and ``row``."""
    tables = []
    for shard, url in enumerate(shard_set.paths):
        table = open_shard(url).read(columns=list(LIGHT_COLUMNS), use_threads=False)
        tables.append(table.append_column("shard", pa.array(np.full(table.num_rows, shard, np.int32)))
                      .append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int64))))
    return pa.concat_tables(tables)


def _find_map(roots: Sequence[str], name: str) -> dict | None:
    for root in roots:
        fs, path = url_to_fs(root)
        for candidate in (posixpath.join(path, name), posixpath.join(posixpath.dirname(path.rstrip("/")), name)):
            if fs.exists(candidate):
                with fs.open(candidate, "rb") as handle:
                    return json.load(handle)
    return None


def _vocab_from_shards(shard_set: ShardSet) -> dict[str, int]:
    tokens: dict[str, set[str]] = {}
    for url in shard_set.paths:
        table = open_shard(url).read(columns=["language", "phonemes"], use_threads=False)
        for language in pc.unique(table.column("language")).to_pylist():
            rows = table.filter(pc.equal(table.column("language"), language))
            flat = pc.list_flatten(rows.column("phonemes"))
            tokens.setdefault(language, set()).update(pc.unique(flat).to_pylist())
    return build_vocab(tokens)


def load_symbol_maps(shard_set: ShardSet, light: pa.Table | None = None) -> SymbolMaps:
    """The maps written beside the shards; each missing one is built from the shards deterministically
    (``light`` is ``read_light_index``'s table, read here when not given)."""
    vocab = _find_map(shard_set.roots, "vocab.json")
    speakers = _find_map(shard_set.roots, "speakers.json")
    languages = _find_map(shard_set.roots, "languages.json")
    accents = _find_map(shard_set.roots, "accents.json")
    if None in (speakers, languages, accents):
        light = read_light_index(shard_set) if light is None else light
    if speakers is None:
        speakers = build_speaker_map(zip(light.column("dataset").to_pylist(), light.column("speaker").to_pylist()))
    if languages is None:
        languages = build_language_map(light.column("language").to_pylist())
    if accents is None:
        accents = {accent: i for i, accent in enumerate(sorted(set(light.column("accent").to_pylist()) - {None}))}
    vocab = _vocab_from_shards(shard_set) if vocab is None else vocab.get("symbols", vocab)
    return SymbolMaps(vocab, speakers, languages, accents)


def lookup_ids(keys: Iterable[str | None], table: Mapping[str, int], what: str) -> np.ndarray:
    """int64 ids of ``keys`` in ``table``; a null key gives -1, a key missing from the table ``ConfigError``."""
    ids = []
    for key in keys:
        if key is None:
            ids.append(-1)
        elif key in table:
            ids.append(table[key])
        else:
            raise ConfigError(f"{what} {key!r} is not in the {what} map")
    return np.asarray(ids, dtype=np.int64)


def speaker_keys(table: pa.Table) -> list[str]:
    """``dataset:speaker`` per row of a table holding both columns (the key of ``speakers.json``)."""
    return pc.binary_join_element_wise(table.column("dataset"), table.column("speaker"), ":").to_pylist()


def encode_phonemes(phonemes: pa.ChunkedArray, languages: pa.ChunkedArray,
                    vocab: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids of a ``phonemes`` column as ``(ids int64, offsets, valid)`` (see ``flat_list``).

    Each ``(language, token)`` pair that occurs is looked up once (``ttsprep.stages.step3_text.vocab.symbol``), through a
    table indexed by (language code, token code) of the row group's dictionaries; symbols missing from
    ``vocab`` become ``<unk>``.
    """
    array = contiguous_array(phonemes)
    offsets = array.offsets.to_numpy()
    tokens = array.values.slice(offsets[0], offsets[-1] - offsets[0]).dictionary_encode()
    language_codes = contiguous_array(languages).dictionary_encode()
    row_language = language_codes.indices.to_numpy(zero_copy_only=False)
    token_language = np.repeat(row_language, np.diff(offsets))
    num_tokens = len(tokens.dictionary)
    pairs = token_language.astype(np.int64) * num_tokens + tokens.indices.to_numpy(zero_copy_only=False)
    token_names = tokens.dictionary.to_pylist()
    language_names = language_codes.dictionary.to_pylist()
    unknown = vocab["<unk>"]
    lut = np.zeros(len(language_names) * num_tokens, dtype=np.int64)
    for pair in np.flatnonzero(np.bincount(pairs, minlength=len(lut))).tolist():
        lut[pair] = vocab.get(symbol(token_names[pair % num_tokens], language_names[pair // num_tokens]), unknown)
    return lut[pairs], offsets - offsets[0], valid_rows(array)
