"""The symbol maps shared by every dataset of an output directory, written after the datasets are final.

``OUT/vocab.json`` (one multilingual phone table), ``speakers.json`` (``dataset:speaker``),
``languages.json`` and ``accents.json``: each ``{key: id}``, ids in sorted key order after the special
tokens, so the same shards always give the same ids. Built from the shards that ``OUT/*/index.json`` lists.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from stages.text import build_language_map, build_vocab, write_table

MAP_COLUMNS = ["dataset", "speaker", "language", "accent", "phonemes"]


def _indexed_shards(out_dir: Path) -> list[Path]:
    shards = []
    for index_path in sorted(out_dir.glob("*/index.json")):
        index = json.loads(index_path.read_text(encoding="utf-8"))
        shards += [index_path.parent / shard["path"] for shard in index["shards"]]
    return shards


def write_symbol_maps(out_dir: Path) -> dict[str, int]:
    """Write the four maps into ``out_dir``; returns how many keys each has."""
    tokens: dict[str, set[str]] = defaultdict(set)
    speakers: set[str] = set()
    languages: set[str] = set()
    accents: set[str] = set()
    for shard in _indexed_shards(out_dir):
        table = pq.read_table(shard, columns=MAP_COLUMNS)
        columns = [table.column(c).to_pylist() for c in MAP_COLUMNS]
        for dataset, speaker, language, accent, phonemes in zip(*columns):
            speakers.add(f"{dataset}:{speaker}")
            languages.add(language)
            if accent:
                accents.add(accent)
            tokens[language].update(phonemes or ())
    tables = {"vocab": build_vocab(tokens), "speakers": {k: i for i, k in enumerate(sorted(speakers))},
              "languages": build_language_map(languages), "accents": build_language_map(accents)}
    for name, table in tables.items():
        write_table(out_dir / f"{name}.json", table)
    return {name: len(table) for name, table in tables.items()}
