"""The Parquet layouts: manifest, rejects ledger and training shards, plus the shard invariants.

Shard row (one utterance after conditioning; per-frame arrays share one frame grid)::

    utt_id, dataset, speaker, language, accent, gender, split   string
    text            string   transcript as given by the corpus
    text_normalized string   normalised text (null when the text front-end is off)
    pinyin          string   the corpus's own pinyin (AISHELL-3), else null
    audio           binary   conditioned audio, FLAC PCM-16, mono, ``sample_rate`` Hz
    sample_rate     int32    Hz
    num_samples     int64    samples of ``audio``
    duration_s      float32  seconds of ``audio`` (after trimming)
    source_duration_s float32 seconds of the source file
    trim_start_s, trim_end_s float32  kept region of the source, seconds
    num_frames      int32    T = 1 + num_samples // hop_length (rounded up to a multiple of r)
    mel             list<fixed_size_list<float32>[n_mels]>   [T, n_mels] natural-log mel magnitude
    f0              list<float32>   [T] Hz, 0 where unvoiced
    voiced          list<bool>      [T]
    energy          list<float32>   [T] L2 norm of the STFT magnitude per frame
    snt_duration    list<int32>     frames per pause-delimited segment; sums to T
    snr_db, clipping_fraction float32  signal estimates before denoising
    dnsmos_sig, dnsmos_bak, dnsmos_ovrl float32  DNSMOS P.835 MOS (1-5) of the audio before denoising
                    (``ttsprep.stages.step2_audio.dnsmos``), null unless ``features.dnsmos``
    speaker_embedding fixed_size_list<float32>[256]  GE2E speaker embedding of ``audio``, unit L2 norm
                    (``ttsprep.stages.step4_features.speaker_embedding``), null unless ``features.speaker_embedding``
    speaker_similarity float32  cosine of ``speaker_embedding`` to the mean of the speaker's other utterances in the
                    dataset (``ttsprep.stages.step7_finalize.speaker_check``); null where the speaker has fewer
                    than ``filter.speaker_min_utterances`` utterances or the embedding is off
    phonemes        list<string>    tokens (null when the text front-end is off)
    durations       list<int32>     frames per token / r; sums to T / r (null without an aligner)
    alignment_method string  the aligner that gave the durations (``pocketsphinx``, ``espeak_synthesis``,
                             ``textgrid``, ``mfa``, ``tacotron2``), null without durations
    token_pitch, token_energy list<float32>  per-token means (null without durations)
    checksum        string   SHA-256 of the source audio file

List elements are declared non-null (a list may be null, an element never is): with float32 leaves
stored BYTE_STREAM_SPLIT (``ttsprep.stages.core.atomic.write_parquet``) that makes the columns a training loader reads
~1.5x faster to decode, and the shards a quarter smaller (``bench/bench_loader.py --storage``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ttsprep.stages.core.errors import InvariantViolation

SCHEMA_VERSION = 5  # 2: non-null list elements; 3: alignment_method; 4: dnsmos_sig, dnsmos_bak, dnsmos_ovrl;
#                    5: speaker_embedding, speaker_similarity
#: Values per ``speaker_embedding``.
SPEAKER_EMBEDDING_DIM = 256


def list_of(value_type: pa.DataType, list_size: int = -1) -> pa.DataType:
    """A list (fixed-size when ``list_size`` >= 0) whose elements are never null."""
    return pa.list_(pa.field("element", value_type, nullable=False), list_size)

MANIFEST_SCHEMA = pa.schema([
    ("utt_id", pa.string()), ("dataset", pa.string()), ("speaker", pa.string()), ("language", pa.string()),
    ("text", pa.string()), ("audio_path", pa.string()), ("sample_rate", pa.int32()), ("channels", pa.int16()),
    ("num_samples", pa.int64()), ("duration_s", pa.float64()), ("checksum", pa.string()),
    ("audio_format", pa.string()), ("text_normalized", pa.string()), ("pinyin", pa.string()),
    ("accent", pa.string()), ("gender", pa.string()), ("split", pa.string()),
    ("extra", pa.map_(pa.string(), pa.string())),
])

REJECTS_SCHEMA = pa.schema([
    ("utt_id", pa.string()), ("dataset", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
    ("detail", pa.string()), ("audio_path", pa.string()),
])


def shard_schema(n_mels: int) -> pa.Schema:
    """The training-shard schema for ``n_mels`` mel bins (see the module docstring)."""
    string_columns = ["utt_id", "dataset", "speaker", "language", "accent", "gender", "split", "text",
                      "text_normalized", "pinyin"]
    return pa.schema(
        [(name, pa.string()) for name in string_columns]
        + [
            ("audio", pa.binary()), ("sample_rate", pa.int32()), ("num_samples", pa.int64()),
            ("duration_s", pa.float32()), ("source_duration_s", pa.float32()),
            ("trim_start_s", pa.float32()), ("trim_end_s", pa.float32()),
            ("num_frames", pa.int32()),
            ("mel", list_of(list_of(pa.float32(), n_mels))),
            ("f0", list_of(pa.float32())), ("voiced", list_of(pa.bool_())), ("energy", list_of(pa.float32())),
            ("snt_duration", list_of(pa.int32())),
            ("snr_db", pa.float32()), ("clipping_fraction", pa.float32()),
            ("dnsmos_sig", pa.float32()), ("dnsmos_bak", pa.float32()), ("dnsmos_ovrl", pa.float32()),
            ("speaker_embedding", list_of(pa.float32(), SPEAKER_EMBEDDING_DIM)), ("speaker_similarity", pa.float32()),
            ("phonemes", list_of(pa.string())), ("durations", list_of(pa.int32())), ("alignment_method", pa.string()),
            ("token_pitch", list_of(pa.float32())), ("token_energy", list_of(pa.float32())),
            ("checksum", pa.string()),
        ],
        metadata={b"ttsprep.schema_version": str(SCHEMA_VERSION).encode()},
    )


def check_row_invariants(row: dict[str, Any], *, n_mels: int, reduction_factor: int = 1) -> None:
    """Raise ``InvariantViolation`` unless the frame-grid invariants hold for one shard row.

    mel, f0, voiced and energy have exactly ``num_frames`` rows; ``snt_duration`` sums to
    ``num_frames``; ``durations`` (when present) sum to ``num_frames / r`` and match ``phonemes``.
    """
    utt = row.get("utt_id", "?")
    frames = int(row["num_frames"])
    if frames <= 0 or frames % reduction_factor:
        raise InvariantViolation(f"{utt}: num_frames={frames} is not a positive multiple of r={reduction_factor}")
    mel = np.asarray(row["mel"])
    if mel.shape != (frames, n_mels):
        raise InvariantViolation(f"{utt}: mel has shape {mel.shape}, expected ({frames}, {n_mels})")
    for name in ("f0", "voiced", "energy"):
        if len(row[name]) != frames:
            raise InvariantViolation(f"{utt}: {name} has {len(row[name])} frames, expected {frames}")
    if row.get("snt_duration") is not None and int(np.sum(row["snt_duration"])) != frames:
        raise InvariantViolation(f"{utt}: snt_duration sums to {int(np.sum(row['snt_duration']))}, expected {frames}")
    durations = row.get("durations")
    if durations is not None:
        if int(np.sum(durations)) != frames // reduction_factor:
            raise InvariantViolation(
                f"{utt}: durations sum to {int(np.sum(durations))}, expected num_frames / r = {frames // reduction_factor}")
        if row.get("phonemes") is not None and len(row["phonemes"]) != len(durations):
            raise InvariantViolation(f"{utt}: {len(row['phonemes'])} phonemes but {len(durations)} durations")
