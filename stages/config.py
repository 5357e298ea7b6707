"""Typed configuration: ``datasets.yaml`` and every stage's knobs, validated strictly before any work.

Layout of ``datasets.yaml``::

    defaults:            # optional: stage settings shared by every dataset
      audio: {sample_rate: 22050}
    datasets:
      - name: lj                       # required, [a-z0-9_]+
        importer: ljspeech             # required, see stages.importers.IMPORTERS
        root: /data/LJSpeech-1.1       # required, a directory (relative paths: to the yaml file)
        language: en                   # optional, the importer's default otherwise
        mic: mic2                      # importer options sit beside the common keys (here: vctk)
        stages:                        # optional per-dataset overrides of ``defaults``
          filter: {max_duration_s: 12}

Unknown keys anywhere are errors that name the dataset and the key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stages.errors import ConfigError
from stages.quality import dnsmos_available


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


class SplitConfig(Strict):
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
    #: Denoise only utterances whose estimated SNR (``stages.signal_quality.estimate_snr_db`` on the conditioned
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
    #: energy (``stages.features.dither_power``; the waveform is left alone): digital silence and bands a codec
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
    split: SplitConfig = SplitConfig()
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
    #: (SwiftF0's ONNX model, ``stages.pitch_swift``, within the speaker ranges, no refinement: against RAPT
    #: GPE 1.0 % / VDE 10.8 % / octave-up 0.5 % where DIO has 2.2 / 12.0 / 0.1 %, for ~7.5 ms of CPU per audio
    #: second where DIO takes ~1.6: the default path would fall under 150x realtime); ``none`` writes f0 = 0 and
    #: voiced = False on every frame (mel and energy only).
    f0_method: Literal["dio", "harvest", "swift_f0", "none"] = "dio"
    #: DIO + StoneMask analyse the waveform resampled (soxr HQ) to this rate where the input's is higher;
    #: None: the input's rate. Their cost grows with the rate: at 8 kHz they agree with the 22.05 kHz analysis
    #: within 1 cent (median, LJSpeech), match the SPTK references as well, and run 3-5x faster. Not Harvest's.
    f0_sample_rate: int | None = Field(8000, ge=4000)
    #: pyworld DIO's decimation factor below ``f0_sample_rate`` (1 = none); StoneMask refines at that rate.
    #: Lowered where the decimated rate would fall under 2.5 x f0_ceil (``stages.pitch.dio_decimation``).
    #: At 8 kHz, 3 (DIO at 2.67 kHz) costs ~20 % less than 2 and is as close to Harvest and to the SPTK
    #: tracks; its voicing differs from a 22.05 kHz DIO's on 3 % of frames, against 2 % for 2 and 4 % for 4
    #: (``bench/bench_f0_accuracy.py``: 33 clips of 8 corpora).
    dio_speed: int = Field(3, ge=1, le=12)
    f0_floor: float = Field(71.0, gt=0)
    f0_ceil: float = Field(800.0, gt=0)
    #: Harvest only. ``per_utterance``: a DIO pass first, then Harvest searches 0.75 x its first to 1.5 x its
    #: third F0 quartile (De Looze & Hirst's two-pass method), within f0_floor-f0_ceil: ~2x faster, and as
    #: close to the SPTK references (stages/pitch.py). ``configured``: f0_floor to f0_ceil.
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
    #: signal (``stages.pitch_refine``), for DIO and Harvest: GPE vs RAPT 3.6 -> 2.2 %, VDE 16.0 -> 12.0 %,
    #: for ~0.35 ms per audio second. False: the trackers' own voicing, values outside the range unvoiced.
    #: Not applied to ``swift_f0`` (it made its GPE worse).
    f0_refine: bool = True
    #: A frame is voiced where the NCCF at its F0 period reaches this (0.4: VDE -0.4 points, GPE +0.8).
    f0_voicing_threshold: float = Field(0.5, gt=0, lt=1)
    #: Voiced runs shorter than this (frames) are unvoiced.
    f0_min_voiced_run: int = Field(3, ge=1)
    #: ``swift_f0`` only: a frame is voiced where SwiftF0's confidence exceeds this (0.7: VDE 14.1 %, 0.9: 31 %).
    f0_swift_confidence: float = Field(0.5, gt=0, lt=1)
    #: DNSMOS P.835 speech quality (``stages.quality``): the shard columns ``dnsmos_sig``, ``dnsmos_bak`` and
    #: ``dnsmos_ovrl`` (1-5, on the conditioned audio before denoising, at 16 kHz), null when off. Costs
    #: ~0.36 s of CPU per clip up to 9 s (one 9.01 s window), one more per second beyond (``stages.quality``).
    dnsmos: bool = False


class TextConfig(Strict):
    enabled: bool = True
    #: Use the corpus's own pinyin (AISHELL-3) rather than pypinyin's when present.
    prefer_corpus_pinyin: bool = True


class AlignConfig(Strict):
    #: ``auto``: the built-in aligners of the utterance's language, in order (``stages.alignment.auto_aligners``:
    #: pocketsphinx's HMM for English, then alignment by espeak-ng synthesis for every language it speaks,
    #: Japanese and Mandarin included); an utterance that none can align goes to the ledger
    #: (``alignment_failed``). ``textgrid``: a folder of TextGrids you have; ``mfa``: Montreal Forced Aligner;
    #: ``tacotron2``: ``ttsprep train-aligner``; ``none``: no durations.
    method: Literal["auto", "none", "textgrid", "mfa", "tacotron2"] = "auto"
    #: The phone set of the TextGrids (``textgrid``, ``mfa``). ``arpabet`` (MFA's english_us_arpa, the published
    #: LJSpeech alignments): mapped into the G2P's IPA (``aligners.arpabet``), so a language keeps one phone
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


class StageConfig(Strict):
    filter: FilterConfig = FilterConfig()
    audio: AudioConfig = AudioConfig()
    features: FeatureConfig = FeatureConfig()
    text: TextConfig = TextConfig()
    align: AlignConfig = AlignConfig()
    splits: SplitAssignConfig = SplitAssignConfig()
    shards: ShardConfig = ShardConfig()
    pairs: PairsConfig = PairsConfig()

    def fingerprint(self, *sections: str) -> str:
        """SHA-256 of the named sections (all when none), for cache keys."""
        data = self.model_dump(mode="json")
        chosen = {k: data[k] for k in (sections or data.keys())}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


class DatasetEntry(BaseModel):
    """One entry of ``datasets:``. Keys that are not common keys are the importer's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    importer: str
    root: Path
    language: str | None = None
    stages: dict[str, Any] = {}

    @property
    def importer_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Dataset(BaseModel):
    """A fully validated dataset: its entry, the importer's options and the effective stage config."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    importer: str
    root: Path
    language: str | None
    options: BaseModel
    config: StageConfig


class Project(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    datasets: list[Dataset]
    source: str = "<memory>"

    def select(self, names: list[str] | None) -> list[Dataset]:
        if not names:
            return list(self.datasets)
        known = {d.name: d for d in self.datasets}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"unknown dataset(s) {unknown}; {self.source} declares {sorted(known)}")
        return [known[n] for n in names]


class _File(Strict):
    defaults: dict[str, Any] = {}
    datasets: list[dict[str, Any]]

    @field_validator("datasets")
    @classmethod
    def _not_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("must list at least one dataset")
        return value


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, prefix: str = "") -> str:
    """Each problem as ``<prefix><dotted key path>: <message>``, joined by ``; ``."""
    parts = []
    for item in error.errors():
        where = prefix + ".".join(str(p) for p in item["loc"])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{where or '(top level)'}: {message}")
    return "; ".join(parts)


def _dataset_label(source: str, index: int, raw: Any) -> str:
    """How errors name entry ``index`` (0-based) of ``datasets:``: ``<source>: dataset #1 'lj'``."""
    name = f" '{raw['name']}'" if isinstance(raw, dict) and "name" in raw else ""
    return f"{source}: dataset #{index + 1}{name}"


def _existing(path: Path | None, base_dir: Path, where: str, *, is_dir: bool) -> Path | None:
    """``path`` made absolute (relative to the yaml's folder); ``ConfigError`` unless it exists."""
    if path is None:
        return None
    path = path if path.is_absolute() else (base_dir / path).resolve()
    if not (path.is_dir() if is_dir else path.is_file()):
        raise ConfigError(f"{where}: '{path}' is not a {'directory' if is_dir else 'file'}")
    return path


def _resolve_paths(config: StageConfig, base_dir: Path, label: str) -> StageConfig:
    """Make the file paths in ``config`` absolute (relative to the yaml's folder) and check they exist."""
    blocklist = _existing(config.filter.blocklist, base_dir, f"{label}: stages.filter.blocklist", is_dir=False)
    textgrid_dir = _existing(config.align.textgrid_dir, base_dir, f"{label}: stages.align.textgrid_dir", is_dir=True)
    pair_list = _existing(config.pairs.pair_list, base_dir, f"{label}: stages.pairs.pair_list", is_dir=False)
    if config.align.method == "textgrid" and textgrid_dir is None:
        raise ConfigError(f"{label}: stages.align.method 'textgrid' needs stages.align.textgrid_dir")
    if config.align.method == "mfa" and not config.align.mfa_dictionary:
        raise ConfigError(f"{label}: stages.align.method 'mfa' needs stages.align.mfa_dictionary "
                          "(an MFA dictionary name such as english_us_arpa, or a path)")
    if config.align.method == "mfa" and shutil.which("mfa") is None:
        raise ConfigError(f"{label}: stages.align.method 'mfa' needs the Montreal Forced Aligner's `mfa` "
                          "command on PATH (conda install -c conda-forge montreal-forced-aligner)")
    if config.pairs.mode == "list" and pair_list is None:
        raise ConfigError(f"{label}: stages.pairs.mode 'list' needs stages.pairs.pair_list")
    if config.filter.min_dnsmos is not None and not config.features.dnsmos:
        raise ConfigError(f"{label}: stages.filter.min_dnsmos needs stages.features.dnsmos: true "
                          "(the filter reads the DNSMOS score, which is computed only when that is on)")
    if config.features.dnsmos and not dnsmos_available():
        raise ConfigError(f"{label}: stages.features.dnsmos needs the packages speechmos and onnxruntime "
                          "(pip install 'speechmos>=0.0.1' onnxruntime)")
    return config.model_copy(update={
        "filter": config.filter.model_copy(update={"blocklist": blocklist}),
        "align": config.align.model_copy(update={"textgrid_dir": textgrid_dir}),
        "pairs": config.pairs.model_copy(update={"pair_list": pair_list}),
    })


def build_project(data: Any, *, base_dir: Path, source: str = "<memory>") -> Project:
    """Validate parsed YAML ``data`` into a ``Project``; raise ``ConfigError`` naming entry and key."""
    from stages.importers import IMPORTERS  # the registry imports the importer modules

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'datasets:' list")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    try:
        StageConfig.model_validate(parsed.defaults)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, 'defaults.')}") from None

    datasets: list[Dataset] = []
    for index, raw in enumerate(parsed.datasets):
        label = _dataset_label(source, index, raw)
        if not isinstance(raw, dict):
            raise ConfigError(f"{label}: expected a mapping")
        try:
            entry = DatasetEntry.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{label}: {_describe(exc)}") from None
        if entry.importer not in IMPORTERS:
            raise ConfigError(f"{label}: unknown importer '{entry.importer}'; known: {', '.join(sorted(IMPORTERS))}")
        root = entry.root if entry.root.is_absolute() else (base_dir / entry.root)
        if not root.is_dir():
            raise ConfigError(f"{label}: root: '{root}' is not a directory")
        importer = IMPORTERS[entry.importer]
        try:
            options = importer.Options.model_validate(entry.importer_options)
        except ValidationError as exc:
            raise ConfigError(f"{label}: {_describe(exc)} (options of importer '{entry.importer}')") from None
        try:
            config = StageConfig.model_validate(_deep_merge(parsed.defaults, entry.stages))
        except ValidationError as exc:
            raise ConfigError(f"{label}: {_describe(exc, 'stages.')}") from None
        config = _resolve_paths(config, base_dir, label)
        datasets.append(Dataset(name=entry.name, importer=entry.importer, root=root.resolve(),
                                language=entry.language, options=options, config=config))
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: dataset names must be unique; repeated: {duplicates}")
    _check_one_phone_set_per_language(datasets, source)
    return Project(datasets=datasets, source=source)


def _phone_set(dataset: Dataset) -> str:
    """``"g2p"`` where the dataset's tokens are its G2P's (or ARPAbet TextGrids mapped into them), else the
    TextGrid folder or MFA dictionary whose labels are kept as they are."""
    align = dataset.config.align
    if align.method in ("textgrid", "mfa") and align.textgrid_phones == "as_is":
        return f"TextGrid labels of {align.textgrid_dir or align.mfa_dictionary}"
    return "the G2P's phones"


def _check_one_phone_set_per_language(datasets: list[Dataset], source: str) -> None:
    """Refuse an output where one language would hold two phone sets (``en:`` symbols of two systems)."""
    from stages.importers import IMPORTERS

    sets: dict[str, dict[str, list[str]]] = {}
    for dataset in datasets:
        language = (dataset.language or IMPORTERS[dataset.importer].DEFAULT_LANGUAGE).split("-")[0].lower()
        if language:
            sets.setdefault(language, {}).setdefault(_phone_set(dataset), []).append(dataset.name)
    for language, by_set in sorted(sets.items()):
        if len(by_set) > 1:
            described = "; ".join(f"{', '.join(names)} use {phones}" for phones, names in by_set.items())
            raise ConfigError(f"{source}: language '{language}' would mix phone sets in one output ({described}); "
                              "use align.textgrid_phones: arpabet, or process them into separate outputs")


@dataclass(frozen=True)
class _RefusedTag:
    """Stands in for a node whose tag ``yaml.safe_load`` would refuse (``!!python/object``, ``!custom``)."""

    tag: str
    line: int


class _PlainLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a node with a tag it cannot construct becomes a
    ``_RefusedTag`` (nothing is built from it) instead of an error, so the error can name its key."""


_PlainLoader.add_constructor(None, lambda loader, node: _RefusedTag(node.tag, node.start_mark.line + 1))


def _refused_tags(value: Any, keys: tuple = ()) -> Iterator[tuple[tuple, _RefusedTag]]:
    """``(key path, tag)`` for every ``_RefusedTag`` in parsed YAML (as a value or as a mapping key)."""
    if isinstance(value, _RefusedTag):
        yield keys, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _refused_tags(key, keys)
            yield from _refused_tags(item, keys + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _refused_tags(item, keys + (index,))


def _refused_tag_error(source: str, data: Any, keys: tuple, refused: _RefusedTag) -> ConfigError:
    label, inner = source, keys
    if len(keys) >= 2 and keys[0] == "datasets" and isinstance(keys[1], int):
        label, inner = _dataset_label(source, keys[1], data["datasets"][keys[1]]), keys[2:]
    where = ".".join(str(key) for key in inner)
    tag = refused.tag.replace("tag:yaml.org,2002:", "!!")
    return ConfigError(f"{label}: {where + ': ' if where else ''}not valid YAML: the tag '{tag}' (line {refused.line}) is refused; "
                       f"only plain YAML (mappings, lists, strings, numbers, booleans) is accepted")


def load_project(path: Path) -> Project:
    """Read ``datasets.yaml`` as plain YAML (``yaml.safe_load``'s rules: no tag builds an object), validate it.

    Raises ``ConfigError``; a refused tag is named with the dataset entry and key that hold it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader; refused tags become markers
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    refused = next(_refused_tags(data), None)
    if refused is not None:
        raise _refused_tag_error(str(path), data, *refused)
    return build_project(data, base_dir=path.parent.resolve(), source=str(path))
