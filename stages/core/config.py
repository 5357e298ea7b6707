"""Typed stage settings: every stage's knobs (``StageConfig``), validated strictly before any work.

A dataset's ``stages:`` in ``datasets.yaml`` (merged over ``defaults:``) validates into one ``StageConfig``
(``step1_ingest.project`` reads the file). Unknown keys are errors that name the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterConfig(Strict):
    """Cheap metadata filters (before decoding) and signal filters (after decoding)."""

    min_duration_s: float = Field(0.3, ge=0)
    max_duration_s: float = Field(30.0, gt=0)
    #: Utterances longer than this (after trimming) do not fit GPU memory in training.
    max_gpu_duration_s: float = Field(20.0, gt=0)
    #: Characters-per-second outliers per language: |cps - median| > cps_mad_factor * MAD.
    cps_rule: Literal["mad", "iqr", "none"] = "mad"
    cps_mad_factor: float = Field(5.0, gt=0)
    cps_iqr_factor: float = Field(3.0, gt=0)
    #: Minimum number of utterances of a language before the cps rule applies.
    cps_min_count: int = Field(20, ge=3)
    #: Common Voice votes: drop when up_votes - down_votes < min_vote_margin, or down_votes > max_down_votes.
    min_vote_margin: int | None = 1
    max_down_votes: int | None = None
    #: A text file of utterance ids (one per line, ``#`` comments) to drop.
    blocklist: Path | None = None
    min_snr_db: float | None = 5.0
    #: Drop utterances whose DNSMOS P.835 overall score (``dnsmos_ovrl``, 1-5) is below this (``low_dnsmos``);
    #: needs ``features.dnsmos``. None = keep all.
    min_dnsmos: float | None = Field(None, ge=1, le=5)
    max_clipping_fraction: float = Field(0.01, ge=0, le=1)
    #: Speaker-label check (``ttsprep.stages.step7_finalize.speaker_check``, needs ``features.speaker_embedding``):
    #: after all shards, rows whose leave-one-out cosine to the rest of their speaker (``speaker_similarity``) is
    #: below this move to the ledger (``speaker_mismatch``). None = keep all (the column is still written).
    #: 0.70: on the shared clips every clip of another corpus planted under a speaker scored <= 0.715 and every
    #: genuine clip >= 0.76 (``bench/bench_speaker_embedding.py``).
    min_speaker_similarity: float | None = Field(None, ge=-1, le=1)
    #: Speakers with fewer kept utterances than this in the dataset are never judged (``speaker_similarity`` null).
    speaker_min_utterances: int = Field(3, ge=2)


class TrimConfig(Strict):
    """Leading/trailing silence removal with pydub's semantics, or webrtcvad."""

    method: Literal["energy", "webrtcvad", "none"] = "energy"
    #: Silence threshold in dBFS; ``relative`` makes it relative to the clip's own dBFS.
    silence_thresh_dbfs: float = -40.0
    relative: bool = True
    min_silence_len_ms: int = Field(300, ge=1)
    keep_silence_ms: int = Field(100, ge=0)
    seek_step_ms: int = Field(1, ge=1)
    vad_mode: int = Field(2, ge=0, le=3)


class PauseConfig(Strict):
    """Record internal pauses of at least ``min_silence_len_ms`` as segment boundaries."""

    enabled: bool = True
    min_silence_len_ms: int = Field(500, ge=1)
    silence_thresh_dbfs: float = -40.0
    relative: bool = True


class DenoiseConfig(Strict):
    #: ``gate``: spectral gating on the shared STFT (noisereduce's stationary algorithm, fast);
    #: ``noisereduce``: the noisereduce package itself; ``none``: off.
    method: Literal["gate", "noisereduce", "none"] = "gate"
    stationary: bool = True
    prop_decrease: float = Field(1.0, ge=0, le=1)
    n_std_thresh: float = Field(1.5, gt=0)
    #: Stationary: the per-bin noise statistics come from this fraction of the quietest STFT frames (the
    #: noise clip noisereduce's ``y_noise`` expects). 1.0 = every frame, noisereduce without a noise clip:
    #: speech then raises the threshold and is gated away (output SNR ~2 dB even on clean speech).
    noise_frame_fraction: float = Field(0.1, gt=0, le=1)
    #: Mask smoothing spans (noisereduce's ``freq_mask_smooth_hz`` / ``time_mask_smooth_ms``; its defaults
    #: 500 Hz / 50 ms blur harmonics and cost ~8 dB of SNR on speech); 0 = no smoothing along that axis.
    freq_mask_smooth_hz: float = Field(100.0, ge=0)
    time_mask_smooth_ms: float = Field(25.0, ge=0)
    #: Denoise only utterances whose estimated SNR (``ttsprep.stages.step2_audio.signal_quality.estimate_snr_db`` on the conditioned
    #: audio, the shards' ``snr_db``) is below this; the rest pass untouched. None = denoise every utterance.
    #: The 77 clips of the shared corpora estimate at 18.9-62 dB (median 35); clean speech plus white or pink
    #: noise at 10 dB at 13-18 dB, where the gate gains 4-7 dB of SI-SDR; at 30 dB (estimates 26-35) it
    #: loses ~2 dB (``bench/bench_denoise.py``).
    snr_threshold_db: float | None = 18.0
    #: The most the denoiser may attenuate any STFT bin, in dB: its gain mask never falls below
    #: ``10 ** (-max_attenuation_db / 20)`` (for ``noisereduce``: ``prop_decrease`` is capped at one minus
    #: that). None = unbounded (noisereduce's hard zero at ``prop_decrease`` 1, which punches holes at the
    #: log-mel floor). 20 dB keeps 90-100 % of the unbounded gate's SNR gain at 0-10 dB input SNR.
    max_attenuation_db: float | None = Field(20.0, gt=0)
    #: Gaussian dither, in 16-bit LSBs (Kaldi's ``dither=1``: -90 dBFS), added in power to the log-mel and the
    #: energy (``ttsprep.stages.step4_features.extract.dither_power``; the waveform is left alone): digital silence and bands a codec
    #: emptied read as that noise floor instead of sitting at the log-mel floor. 0 = none (librosa's mel).
    mel_dither_lsb: float = Field(1.0, ge=0)


class LoudnessConfig(Strict):
    method: Literal["lufs", "peak", "none"] = "lufs"
    target_lufs: float = -23.0
    target_peak_dbfs: float = -1.0


class AudioConfig(Strict):
    sample_rate: int = Field(22050, ge=8000, le=192000)
    remove_dc: bool = True
    highpass_hz: float | None = Field(None, gt=0)
    trim: TrimConfig = TrimConfig()
    pauses: PauseConfig = PauseConfig()
    denoise: DenoiseConfig = DenoiseConfig()
    loudness: LoudnessConfig = LoudnessConfig()


class FeatureConfig(Strict):
    """One frame grid for mel, pitch and energy: frame ``t`` covers samples centred at ``t * hop_length``."""

    n_fft: int = Field(1024, ge=64)
    hop_length: int = Field(256, ge=16)
    win_length: int = Field(1024, ge=16)
    window: Literal["hann", "hamming"] = "hann"
    n_mels: int = Field(80, ge=1)
    fmin: float = Field(0.0, ge=0)
    fmax: float | None = 8000.0
    #: ``dio`` (pyworld DIO + StoneMask, the default), ``harvest`` (pyworld, ~40x DIO's cost), ``swift_f0``
    #: (SwiftF0's ONNX model, ``ttsprep.stages.step4_features.pitch_swift``, within the speaker ranges, no refinement: against RAPT
    #: GPE 1.0 % / VDE 10.8 % / octave-up 0.5 % where DIO has 2.2 / 12.0 / 0.1 %, for ~7.5 ms of CPU per audio
    #: second where DIO takes ~1.6: the default path would fall under 150x realtime); ``none`` writes f0 = 0 and
    #: voiced = False on every frame (mel and energy only).
    f0_method: Literal["dio", "harvest", "swift_f0", "none"] = "dio"
    #: DIO + StoneMask analyse the waveform resampled (soxr HQ) to this rate where the input's is higher;
    #: None: the input's rate. Their cost grows with the rate: at 8 kHz they agree with the 22.05 kHz analysis
    #: within 1 cent (median, LJSpeech), match the SPTK references as well, and run 3-5x faster. Not Harvest's.
    f0_sample_rate: int | None = Field(8000, ge=4000)
    #: pyworld DIO's decimation factor below ``f0_sample_rate`` (1 = none); StoneMask refines at that rate.
    #: Lowered where the decimated rate would fall under 2.5 x f0_ceil (``ttsprep.stages.step4_features.pitch.dio_decimation``).
    #: At 8 kHz, 3 (DIO at 2.67 kHz) costs ~20 % less than 2 and is as close to Harvest and to the SPTK
    #: tracks; its voicing differs from a 22.05 kHz DIO's on 3 % of frames, against 2 % for 2 and 4 % for 4
    #: (``bench/bench_f0_accuracy.py``: 33 clips of 8 corpora).
    dio_speed: int = Field(3, ge=1, le=12)
    f0_floor: float = Field(71.0, gt=0)
    f0_ceil: float = Field(800.0, gt=0)
    #: Harvest only. ``per_utterance``: a DIO pass first, then Harvest searches 0.75 x its first to 1.5 x its
    #: third F0 quartile (De Looze & Hirst's two-pass method), within f0_floor-f0_ceil: ~2x faster, and as
    #: close to the SPTK references (stages/step4_features/pitch.py). ``configured``: f0_floor to f0_ceil.
    harvest_range: Literal["configured", "per_utterance"] = "per_utterance"
    #: Per-speaker F0 range overrides: {speaker: [floor_hz, ceil_hz]}.
    speaker_f0_range: dict[str, tuple[float, float]] = {}
    #: The final F0 range. ``speaker``: a first pass over f0_floor-f0_ceil for every utterance of the shard,
    #: then 0.75 x Q1 to 1.5 x Q3 of each speaker's first-pass F0 (De Looze & Hirst), per utterance for a
    #: speaker with fewer than ``f0_speaker_min_utterances`` in the shard; ``utterance``: always per
    #: utterance; ``configured``: f0_floor-f0_ceil. ``speaker_f0_range`` wins. Recorded per speaker in
    #: stats.json (``f0_range``). Against RAPT on ../shared/corpora it removes the octave-up frames (2.6 %
    #: of voiced frames to 0.2 %) (``bench/bench_f0_accuracy.py``).
    f0_range_mode: Literal["speaker", "utterance", "configured"] = "speaker"
    f0_speaker_min_utterances: int = Field(5, ge=1)
    #: Octave-jump correction, folding into the range and a periodicity voicing decision on the analysis-rate
    #: signal (``ttsprep.stages.step4_features.pitch_refine``), for DIO and Harvest: GPE vs RAPT 3.6 -> 2.2 %, VDE 16.0 -> 12.0 %,
    #: for ~0.35 ms per audio second. False: the trackers' own voicing, values outside the range unvoiced.
    #: Not applied to ``swift_f0`` (it made its GPE worse).
    f0_refine: bool = True
    #: A frame is voiced where the NCCF at its F0 period reaches this (0.4: VDE -0.4 points, GPE +0.8).
    f0_voicing_threshold: float = Field(0.5, gt=0, lt=1)
    #: Voiced runs shorter than this (frames) are unvoiced.
    f0_min_voiced_run: int = Field(3, ge=1)
    #: ``swift_f0`` only: a frame is voiced where SwiftF0's confidence exceeds this (0.7: VDE 14.1 %, 0.9: 31 %).
    f0_swift_confidence: float = Field(0.5, gt=0, lt=1)
    #: DNSMOS P.835 speech quality (``ttsprep.stages.step2_audio.dnsmos``): the shard columns ``dnsmos_sig``, ``dnsmos_bak`` and
    #: ``dnsmos_ovrl`` (1-5, on the conditioned audio before denoising, at 16 kHz), null when off. Costs
    #: ~0.36 s of CPU per clip up to 9 s (one 9.01 s window), one more per second beyond (``ttsprep.stages.step2_audio.dnsmos``).
    dnsmos: bool = False
    #: Speaker embedding for zero-shot voice cloning (``ttsprep.stages.step4_features.speaker_embedding``): the shard
    #: column ``speaker_embedding`` (float32 [256], unit norm; null when off), Resemblyzer's GE2E encoder on the
    #: shard's audio, and the dataset-level speaker-label check (``speaker_similarity``,
    #: ``filter.min_speaker_similarity``). Needs torch and ``pip install --no-deps resemblyzer==0.1.4`` (its
    #: weights). Costs 4.5-6 ms of CPU per audio second (the default path: 18-29 with durations, ~4 without;
    #: ``bench/bench_pipeline.py``), so it is off by default.
    speaker_embedding: bool = False


class TextConfig(Strict):
    enabled: bool = True
    #: Use the corpus's own pinyin (AISHELL-3) rather than pypinyin's when present.
    prefer_corpus_pinyin: bool = True


class AlignConfig(Strict):
    #: ``auto``: the built-in aligners of the utterance's language, in order (``ttsprep.stages.step5_durations.alignment.auto_aligners``:
    #: pocketsphinx's HMM for English, then alignment by espeak-ng synthesis for every language it speaks,
    #: Japanese and Mandarin included); an utterance that none can align goes to the ledger
    #: (``alignment_failed``). ``textgrid``: a folder of TextGrids you have; ``mfa``: Montreal Forced Aligner;
    #: ``tacotron2``: ``ttsprep train-aligner``; ``none``: no durations.
    method: Literal["auto", "none", "textgrid", "mfa", "tacotron2"] = "auto"
    #: The phone set of the TextGrids (``textgrid``, ``mfa``). ``arpabet`` (MFA's english_us_arpa, the published
    #: LJSpeech alignments): mapped into the G2P's IPA (``ttsprep.aligners.arpabet``), so a language keeps one phone
    #: set in an output. ``as_is``: labels kept; the output may then hold no other dataset of that language.
    textgrid_phones: Literal["arpabet", "as_is"] = "arpabet"
    #: A folder of TextGrids named ``<local_id>.TextGrid`` (searched recursively) for ``textgrid``.
    textgrid_dir: Path | None = None
    mfa_acoustic_model: str | None = None
    mfa_dictionary: str | None = None
    reduction_factor: int = Field(1, ge=1, le=8)
    #: Per-token pitch: mean F0 over the token's voiced frames, or FastSpeech2's interpolated log-F0 mean.
    token_pitch: Literal["voiced_mean", "interpolated_log"] = "voiced_mean"
    #: ``tacotron2``: utterances whose teacher-forced attention is blurred (mean max weight per decoder step
    #: below this) or not monotonic (argmax-vs-step correlation below the next) go to the rejects ledger.
    attention_min_focus_rate: float = Field(0.5, ge=0, le=1)
    attention_min_diagonality: float = Field(0.9, ge=-1, le=1)


class SplitAssignConfig(Strict):
    """How to assign train/dev/test where the corpus has no split of its own."""

    held_out_speakers: list[str] = []
    dev_fraction: float = Field(0.02, ge=0, lt=1)
    test_fraction: float = Field(0.02, ge=0, lt=1)


class ShardConfig(Strict):
    #: Utterances per shard task and file; also bounded by ``target_mb``.
    max_utterances: int = Field(500, ge=1)
    target_mb: float = Field(256.0, gt=0)
    #: Shards under this fraction of both limits are merged with new utterances or with each other at the
    #: next planning (``plan.plan_shards``): no one-row shards from data that arrives a few files a day.
    compact_below: float = Field(0.25, ge=0, le=1)
    row_group_size: int = Field(64, ge=1)
    compression_level: int = Field(3, ge=1, le=22)


class PairsConfig(Strict):
    """Voice-conversion pairs aligned with DTW (``OUT/<dataset>/pairs.parquet``).

    ``parallel_text``: every ordered pair of two speakers reading the same sentence (this grows with the
    square of the speakers per sentence: narrow it with ``source_speakers`` / ``target_speakers``);
    ``list``: the pairs in ``pair_list``, a CSV with columns ``source,target`` of corpus-local ids.
    """

    mode: Literal["none", "parallel_text", "list"] = "none"
    pair_list: Path | None = None
    source_speakers: list[str] | None = None
    target_speakers: list[str] | None = None
    #: Mel-cepstral order for the DTW features and the distortion.
    mcep_order: int = Field(24, ge=1)


#: Settings read only after all shards, by the dataset-level speaker-label check: changing them re-runs no shard.
DATASET_LEVEL_SETTINGS = {"filter": ("min_speaker_similarity", "speaker_min_utterances")}


class StageConfig(Strict):
    filter: FilterConfig = FilterConfig()
    audio: AudioConfig = AudioConfig()
    features: FeatureConfig = FeatureConfig()
    text: TextConfig = TextConfig()
    align: AlignConfig = AlignConfig()
    splits: SplitAssignConfig = SplitAssignConfig()
    shards: ShardConfig = ShardConfig()
    pairs: PairsConfig = PairsConfig()

    def fingerprint(self, *sections: str, shard_level: bool = False) -> str:
        """SHA-256 of the named sections (all when none), for cache keys. ``shard_level``: without the settings only
        the dataset-level steps read (``DATASET_LEVEL_SETTINGS``), for the keys of per-shard work."""
        data = self.model_dump(mode="json")
        if shard_level:
            for section, names in DATASET_LEVEL_SETTINGS.items():
                data[section] = {k: v for k, v in data[section].items() if k not in names}
        chosen = {k: data[k] for k in (sections or data.keys())}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Each problem as ``<prefix><dotted key path>: <message>``, joined by ``; ``."""
    parts = []
    for item in error.errors():
        where = prefix + ".".join(str(p) for p in item["loc"])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{where or '(top level)'}: {message}")
    return "; ".join(parts)


