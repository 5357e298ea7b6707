"""The symbol maps shared by every dataset of an output directory, written after the datasets are final.

``OUT/vocab.json`` (one multilingual phone table), ``speakers.json`` (``dataset:speaker``),
``languages.json`` and ``accents.json``: each ``{key: id}``, ids in sorted key order after the special
tokens, so the same shards always give the same ids. Built from the shards that ``OUT/*/index.json`` lists;
``update_symbol_maps`` rebuilds them only when an index or our code changed (``OUT/symbol_maps.key``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from ttsprep.stages.core.atomic import write_text
from ttsprep.stages.core.versions import code_version

MAP_COLUMNS = ["dataset", "speaker", "language", "accent", "phonemes"]
MAP_NAMES = ("vocab", "speakers", "languages", "accents")
KEY_FILE = "symbol_maps.key"


def _indexed_shards(out_dir: Path) -> list[Path]:
    shards = []
    for index_path in sorted(out_dir.glob("*/index.json")):
        index = json.loads(index_path.read_text(encoding="utf-8"))
        shards += [index_path.parent / shard["path"] for shard in index["shards"]]
    return shards


def _maps_key(out_dir: Path) -> str:
    """What the maps are built from: every dataset's ``index.json`` (rewritten by each finalize) and our code."""
    digest = hashlib.sha256(code_version().encode())
    for index_path in sorted(out_dir.glob("*/index.json")):
        digest.update(index_path.parent.name.encode() + b"\0" + index_path.read_bytes())
    return digest.hexdigest()


def update_symbol_maps(out_dir: Path) -> bool:
    """Write the maps unless they exist and were built from the same indexes and code; True if written."""
    key, key_path = _maps_key(out_dir), out_dir / KEY_FILE
    if (key_path.is_file() and key_path.read_text(encoding="utf-8") == key
            and all((out_dir / f"{name}.json").is_file() for name in MAP_NAMES)):
        return False
    write_symbol_maps(out_dir)
    write_text(key_path, key)
    return True


def write_symbol_maps(out_dir: Path) -> dict[str, int]:
    """Write the four maps into ``out_dir``; returns how many keys each has."""
    # The G2P stack (~1 s to import) only when the maps are built, not in every flow process.
    from ttsprep.stages.step3_text import build_language_map, build_vocab, write_table

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
