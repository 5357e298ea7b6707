"""Voice-conversion pairs of a finished dataset: which utterances pair up, and their DTW alignment.

Reads the dataset's shards, pairs utterances (same sentence by two speakers, or a user's pair list),
aligns each pair with DTW on mel-cepstra of the shard's log-mel, and writes ``OUT/<dataset>/pairs.parquet``:

    source_utt_id, target_utt_id, source_speaker, target_speaker   string
    num_source_frames, num_target_frames                            int32
    durations        list<int32>  [num_source_frames] target frames per source frame; sums to num_target_frames
    mcd_db           float32      mel-cepstral distortion along the path (dB; see ``ttsprep.aligners.dtw``)
    snt_duration     list<int32>  [2 * S] source and target frames per matched pause-delimited segment,
                                  interleaved (s1, t1, s2, t2, ...); null when the pauses do not match
    speaker_similarity float32    cosine of the two utterances' ``speaker_embedding``s (how alike the voices
                                  are); null where either has none (``features.speaker_embedding`` off)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ttsprep.stages.core.atomic import rows_to_table, write_parquet
from ttsprep.stages.core.config import PairsConfig
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.layout import DatasetLayout

PAIRS_SCHEMA = pa.schema([
    ("source_utt_id", pa.string()), ("target_utt_id", pa.string()),
    ("source_speaker", pa.string()), ("target_speaker", pa.string()),
    ("num_source_frames", pa.int32()), ("num_target_frames", pa.int32()),
    ("durations", pa.list_(pa.int32())), ("mcd_db", pa.float32()), ("snt_duration", pa.list_(pa.int32())),
    ("speaker_similarity", pa.float32()),
])
#: Pairs aligned per batch of mel reads (bounds memory: two mels per pair).
PAIRS_PER_BATCH = 256


def _shards(layout: DatasetLayout) -> ds.Dataset:
    index = json.loads(layout.index.read_text(encoding="utf-8"))
    return ds.dataset([str(layout.root / shard["path"]) for shard in index["shards"]], format="parquet")


def _listed_pairs(path: Path, dataset: str, known: set[str]) -> list[tuple[str, str]]:
    """``(source_utt_id, target_utt_id)`` from a ``source,target`` CSV of local ids; both must be kept rows."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"source", "target"} <= set(reader.fieldnames or ()):
            raise ConfigError(f"{path}: needs the columns 'source' and 'target', has {reader.fieldnames}")
        pairs = [(f"{dataset}:{row['source']}", f"{dataset}:{row['target']}") for row in reader]
    return [(src, tgt) for src, tgt in pairs if src in known and tgt in known]


def find_pairs(records: list[tuple[str, str, str]], config: PairsConfig, dataset: str) -> list[tuple[str, str]]:
    """The pairs to align from the kept rows ``(utt_id, speaker, text)``, filtered by the speaker lists."""
    from ttsprep.aligners.dtw import pair_parallel_utterances  # the DTW stack (librosa, scipy): only to pair

    if config.mode == "list":
        pairs = _listed_pairs(config.pair_list, dataset, {utt_id for utt_id, _, _ in records})
    else:
        pairs = pair_parallel_utterances(records)
    speaker = {utt_id: spk for utt_id, spk, _ in records}
    return [(src, tgt) for src, tgt in pairs
            if (config.source_speakers is None or speaker[src] in config.source_speakers)
            and (config.target_speakers is None or speaker[tgt] in config.target_speakers)]


def align_pair(source: dict, target: dict, mcep_order: int) -> dict:
    """One pairs row from two shard rows holding ``utt_id, speaker, num_frames, mel, snt_duration``."""
    from ttsprep.aligners.dtw import (dtw_align, match_segments, mel_cepstral_distortion, mel_cepstrum,
                                      source_to_target_durations)

    src_mel = np.asarray(source["mel"], dtype=np.float32)
    tgt_mel = np.asarray(target["mel"], dtype=np.float32)
    src_mcep, tgt_mcep = mel_cepstrum(src_mel, mcep_order), mel_cepstrum(tgt_mel, mcep_order)
    path = dtw_align(src_mcep, tgt_mcep)
    segments = match_segments(source["snt_duration"], target["snt_duration"], path)
    return {
        "source_utt_id": source["utt_id"], "target_utt_id": target["utt_id"],
        "source_speaker": source["speaker"], "target_speaker": target["speaker"],
        "num_source_frames": src_mel.shape[0], "num_target_frames": tgt_mel.shape[0],
        "durations": source_to_target_durations(path, src_mel.shape[0], tgt_mel.shape[0]),
        "mcd_db": mel_cepstral_distortion(src_mcep, tgt_mcep, path),
        "snt_duration": None if segments is None else segments.reshape(-1),
        "speaker_similarity": _cosine(source.get("speaker_embedding"), target.get("speaker_embedding")),
    }


def _cosine(a, b) -> float | None:
    """Cosine of two embeddings (None when either is missing)."""
    if a is None or b is None:
        return None
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def write_pairs(layout: DatasetLayout, config: PairsConfig) -> int:
    """Write ``pairs.parquet`` for a finalized dataset; returns the number of pairs. Mode ``none`` writes
    none and removes the file an earlier run with pairs wrote (it would no longer match the shards)."""
    if config.mode == "none":
        layout.pairs.unlink(missing_ok=True)
        return 0
    shards = _shards(layout)
    light = shards.to_table(columns=["utt_id", "speaker", "text"])
    records = list(zip(*(light.column(c).to_pylist() for c in ("utt_id", "speaker", "text"))))
    pairs = find_pairs(records, config, layout.name)
    rows = []
    columns = ["utt_id", "speaker", "num_frames", "mel", "snt_duration"]
    columns += ["speaker_embedding"] if "speaker_embedding" in shards.schema.names else []
    for start in range(0, len(pairs), PAIRS_PER_BATCH):
        batch = pairs[start:start + PAIRS_PER_BATCH]
        needed = sorted({utt for pair in batch for utt in pair})
        table = shards.to_table(columns=columns,
                                filter=pc.field("utt_id").isin(needed))
        by_id = {row["utt_id"]: row for row in table.to_pylist()}
        rows += [align_pair(by_id[src], by_id[tgt], config.mcep_order) for src, tgt in batch]
    write_parquet(layout.pairs, rows_to_table(rows, PAIRS_SCHEMA))
    return len(rows)

