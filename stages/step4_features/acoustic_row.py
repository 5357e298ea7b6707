"""The audio columns of a shard row: decode, condition, signal filters and frame features (the costly part).

Everything these columns depend on lives in ``stages/core``, ``stages/step2_audio`` and ``stages/step4_features``:
``acoustic_code_version`` hashes those folders, so editing any module here recomputes the cached audio.
The F0 is computed in two passes over a shard's utterances (``acoustic_rows``): a first pass per utterance,
each speaker's range from it, then the final F0 in that range. With ``features.speaker_embedding`` the shard's
utterances go through the speaker encoder together, once, on one torch thread.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ttsprep.stages.core.audio_io import encode_flac, load_audio
from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.errors import Rejected, stage
from ttsprep.stages.core.frames import pad_to_multiple
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import Utterance
from ttsprep.stages.core.versions import acoustic_code_version, tool_versions
from ttsprep.stages.step2_audio.conditioning import condition_audio
from ttsprep.stages.step2_audio.dnsmos import DNSMOS_COLUMNS, dnsmos_columns
from ttsprep.stages.step2_audio.signal_quality import clipping_fraction, estimate_snr_db
from ttsprep.stages.step2_audio.silence import segment_frames
from ttsprep.stages.step4_features import pitch
from ttsprep.stages.step4_features import speaker_embedding as speaker_encoder
from ttsprep.stages.step4_features.extract import extract_features

#: Shard columns computed from the audio alone (``acoustic_row``), and the stages that compute them.
ACOUSTIC_LIST_COLUMNS = ("mel", "f0", "voiced", "energy", "snt_duration")
ACOUSTIC_COLUMNS = ("audio", "sample_rate", "num_samples", "duration_s", "num_frames", *ACOUSTIC_LIST_COLUMNS,
                    "snr_db", "clipping_fraction", "source_duration_s", "trim_start_s", "trim_end_s", *DNSMOS_COLUMNS,
                    "speaker_embedding")
ACOUSTIC_STAGES = ("decode", "condition", "features")


def _condition_and_measure(utt: Utterance, config: StageConfig) -> tuple[dict[str, Any], Any]:
    with stage("decode"):
        samples = load_audio(Path(utt.audio_path), config.audio.sample_rate)
    with stage("condition"):
        return _condition(samples, config)


def _condition(samples: np.ndarray, config: StageConfig) -> tuple[dict[str, Any], Any]:
    clipping = clipping_fraction(samples)
    if clipping > config.filter.max_clipping_fraction:
        raise Rejected(f"clipping_fraction={clipping:.4f} > {config.filter.max_clipping_fraction}", reason=Reason.CLIPPING)
    conditioned = condition_audio(samples, config.audio.sample_rate, config.audio)
    duration_s = conditioned.samples.size / config.audio.sample_rate
    if duration_s < config.filter.min_duration_s:
        raise Rejected(f"duration after trimming {duration_s:.3f}s < min_duration_s={config.filter.min_duration_s}",
                       reason=Reason.TOO_SHORT_AFTER_TRIM)
    if duration_s > config.filter.max_gpu_duration_s:
        raise Rejected(f"duration after trimming {duration_s:.3f}s > max_gpu_duration_s="
                       f"{config.filter.max_gpu_duration_s}", reason=Reason.TOO_LONG_FOR_GPU)
    snr_db = estimate_snr_db(conditioned.samples, config.audio.sample_rate)
    if config.filter.min_snr_db is not None and snr_db < config.filter.min_snr_db:
        raise Rejected(f"estimated snr_db={snr_db:.1f} < min_snr_db={config.filter.min_snr_db}", reason=Reason.LOW_SNR)
    quality = dnsmos_columns(conditioned.samples, config.audio.sample_rate, enabled=config.features.dnsmos)
    if config.filter.min_dnsmos is not None and quality["dnsmos_ovrl"] is not None \
            and quality["dnsmos_ovrl"] < config.filter.min_dnsmos:
        raise Rejected(f"DNSMOS overall {quality['dnsmos_ovrl']:.2f} < min_dnsmos={config.filter.min_dnsmos} "
                       f"(signal {quality['dnsmos_sig']:.2f}, background {quality['dnsmos_bak']:.2f})",
                       reason=Reason.LOW_DNSMOS)
    measures = {"snr_db": snr_db, "clipping_fraction": clipping, "source_duration_s": samples.size / config.audio.sample_rate,
                "trim_start_s": conditioned.trim_start_s, "trim_end_s": conditioned.trim_end_s, **quality}
    return measures, conditioned


def acoustic_row(utt: Utterance, config: StageConfig) -> dict[str, Any]:
    """The audio and frame-feature columns of ``utt``'s shard row: the costly part, reusable while the
    filter, audio and feature settings and the code under ``ACOUSTIC_FOLDERS`` are unchanged. Alone, the F0 range is the
    utterance's own (``acoustic_rows`` does the shard's speaker pass)."""
    result = acoustic_rows([utt], config)[0][utt.utt_id]
    if isinstance(result, Exception):
        raise result
    return result


def acoustic_rows(utterances: list[Utterance], config: StageConfig,
                  known_ranges: dict[str, dict[str, Any]] | None = None
                  ) -> tuple[dict[str, dict[str, Any] | Exception], dict[str, dict[str, Any]]]:
    """``acoustic_row`` of each utterance (or the exception that rejects it), by ``utt_id``, with F0 in two
    passes over them all: a first pass per utterance, each speaker's range from its first-pass F0
    (``features.f0_range_mode``), then the final F0 in that range. ``known_ranges`` (a previous run's
    record) fixes the range of the speakers it lists as ``speaker``-wide. Also returns the ranges used per
    speaker: ``{speaker: {"floor_hz", "ceil_hz", "source", "utterances"}}``, source ``explicit`` (from
    ``speaker_f0_range``), ``speaker``, ``utterance`` (floor/ceil: the widest over them) or ``configured``."""
    features_cfg = config.features
    first: dict[str, Any] = {}
    speaker_inputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for utt in utterances:
        try:
            row, pitch_pass, speaker_input = _acoustic_first_pass(utt, config)
        except Exception as error:  # noqa: BLE001 - rejected by the caller
            first[utt.utt_id] = error
            continue
        first[utt.utt_id] = row, pitch_pass
        if speaker_input is not None:
            speaker_inputs[utt.utt_id] = speaker_input
    _add_speaker_embeddings({utt_id: first[utt_id][0] for utt_id in speaker_inputs}, speaker_inputs)
    passes_by_speaker: dict[str, list[np.ndarray]] = {}
    for utt in utterances:
        if not isinstance(first[utt.utt_id], Exception) and first[utt.utt_id][1] is not None:
            passes_by_speaker.setdefault(utt.speaker, []).append(first[utt.utt_id][1].f0)
    floor, ceil = features_cfg.f0_floor, features_cfg.f0_ceil
    min_utterances = features_cfg.f0_speaker_min_utterances if features_cfg.f0_range_mode == "speaker" else 10**9
    by_speaker = pitch.speaker_ranges(passes_by_speaker, floor, ceil, min_utterances)
    for speaker, known in (known_ranges or {}).items():
        if known.get("source") == "speaker" and speaker in by_speaker:
            by_speaker[speaker] = (known["floor_hz"], known["ceil_hz"])
    results: dict[str, dict[str, Any] | Exception] = {}
    used: dict[str, dict[str, Any]] = {}
    for utt in utterances:
        if isinstance(first[utt.utt_id], Exception):
            results[utt.utt_id] = first[utt.utt_id]
            continue
        row, pitch_pass = first[utt.utt_id]
        explicit = features_cfg.speaker_f0_range.get(utt.speaker)
        if pitch_pass is not None:
            if explicit:
                f0_range, source = tuple(explicit), "explicit"
            elif features_cfg.f0_range_mode == "configured":
                f0_range, source = (floor, ceil), "configured"
            elif by_speaker.get(utt.speaker) is not None:
                f0_range, source = by_speaker[utt.speaker], "speaker"
            else:
                f0_range, source = pitch.two_pass_range(pitch_pass.f0, floor, ceil), "utterance"
            try:
                with stage("features"):
                    f0, voiced = pitch.final_pass(pitch_pass, f0_range, pitch.PitchSettings.from_config(features_cfg),
                                                  pitch_pass.raw.size)
            except Exception as error:  # noqa: BLE001 - rejected by the caller
                results[utt.utt_id] = error
                continue
            record = used.setdefault(utt.speaker, {"floor_hz": f0_range[0], "ceil_hz": f0_range[1],
                                                   "source": source, "utterances": 0})
            record["floor_hz"] = min(record["floor_hz"], float(f0_range[0]))
            record["ceil_hz"] = max(record["ceil_hz"], float(f0_range[1]))
            record["utterances"] += 1
            r = config.align.reduction_factor
            row["f0"], row["voiced"] = pad_to_multiple(f0, r), pad_to_multiple(voiced, r)
        results[utt.utt_id] = row
    return results, used


def _add_speaker_embeddings(rows: dict[str, dict[str, Any]], inputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Set ``speaker_embedding`` (float32 [256]) in ``rows`` from their encoder inputs, all in one encoder pass
    (an utterance's embedding does not depend on the others: ``SpeakerEncoder.embed_mels``) on one torch thread."""
    if not inputs:
        return
    with stage("features"), speaker_encoder.torch_threads(1):
        embeddings = speaker_encoder.SpeakerEncoder.shared().embed_mels(*map(list, zip(*inputs.values())))
    for utt_id, embedding in zip(inputs, embeddings):
        rows[utt_id]["speaker_embedding"] = embedding


def _acoustic_first_pass(utt: Utterance, config: StageConfig
                         ) -> tuple[dict[str, Any], pitch.FirstPass | None, tuple[np.ndarray, np.ndarray] | None]:
    """The acoustic row of ``utt`` with zero F0 (final F0 to come), its F0 first pass (None: no F0), and its
    speaker encoder's input (``speaker_embedding.encoder_input`` of the shard's audio; None when that is off)."""
    features_cfg = config.features
    measures, conditioned = _condition_and_measure(utt, config)
    f0_range = features_cfg.speaker_f0_range.get(utt.speaker)
    with stage("features"):
        features = extract_features(conditioned.samples, config.audio.sample_rate, features_cfg,
                                    config.audio.denoise, f0_range=tuple(f0_range) if f0_range else None,
                                    snr_db=measures["snr_db"], f0_first_pass=True)
    r = config.align.reduction_factor
    mel, f0, voiced, energy = (pad_to_multiple(a, r) for a in (features.mel, features.f0, features.voiced, features.energy))
    segments = segment_frames(conditioned.pause_boundaries, conditioned.samples.size, features_cfg.hop_length)
    segments[-1] += mel.shape[0] - features.num_frames
    speaker_input = None
    if features_cfg.speaker_embedding:
        with stage("features"):
            speaker_input = speaker_encoder.encoder_input(features.samples, config.audio.sample_rate)
    return {
        "audio": encode_flac(features.samples, config.audio.sample_rate), "sample_rate": config.audio.sample_rate,
        "num_samples": int(features.samples.size), "duration_s": features.samples.size / config.audio.sample_rate,
        "num_frames": mel.shape[0], "mel": mel, "f0": f0, "voiced": voiced, "energy": energy,
        "snt_duration": segments, **measures, "speaker_embedding": None,
    }, features.pitch_pass, speaker_input


def acoustic_key(utterances: list[Utterance], config: StageConfig) -> str:
    """What ``acoustic_row`` depends on: the inputs, the acoustic settings, code and tool versions (with
    ``features.speaker_embedding``, the encoder's weights and torch's version too)."""
    encoder = ([speaker_encoder.encoder_version(), metadata.version("torch")]
               if config.features.speaker_embedding else None)
    payload = json.dumps([[(u.utt_id, u.checksum) for u in utterances],
                          config.fingerprint("filter", "audio", "features", shard_level=True),
                          config.align.reduction_factor, acoustic_code_version(), sorted(tool_versions().items()),
                          *([encoder] if encoder else [])])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]
