"""F0 on the shared frame grid with pyworld: DIO + StoneMask (fast) or Harvest (slow, ~20x the cost).

Frame ``t`` of pyworld's output is centred on ``t * frame_period``; with ``frame_period = hop_length /
sample_rate`` (in ms) that is the centre of STFT frame ``t``, so F0 and the mel share one grid, whatever
rate the F0 is analysed at. pyworld rounds the frame count on its own, and ``fit_to_frames`` reconciles it
with ``num_frames``.

DIO + StoneMask run on the waveform resampled to ``analysis_rate`` (soxr HQ) when that is below the
input's rate: DIO's FFTs and StoneMask's per-frame FFTs shrink with the rate, and an F0 of 800 Hz keeps
its first four harmonics at 8 kHz. Harvest always gets the input: it decimates to ~8 kHz on its own, and
resampling first made it ~25 % slower, not faster.

Harvest's cost grows steeply with its search range (LJ001-0001: 2.7x realtime at 71-800 Hz, 4.5x at
100-400, 15x at 120-240). With ``harvest_range="per_utterance"`` a DIO pass sets the range first
(``two_pass_range``, the two-pass method of De Looze & Hirst 2008, as used with Praat).

Two passes (``first_pass`` / ``final_pass``): a DIO pass over the configured (wide) range, octave- and
range-corrected by ``ttsprep.stages.step4_features.pitch_refine.refine_f0`` (no voicing decision), gives each
speaker's range (``speaker_ranges``: Hirst's quartile rule over the speaker's utterances in the shard, per utterance
where the speaker has too few); the final F0 is the same DIO track corrected into that range (octave folding, NCCF
voicing), or Harvest searching it. Correcting rather than re-tracking: re-running DIO in the narrow range cost ~1.6
ms per audio second more and decided voicing worse against RAPT (``bench/bench_f0_accuracy.py``). ``extract_f0``
does both passes on one utterance.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soxr

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.frames import fit_to_frames
from ttsprep.stages.step4_features.pitch_refine import Periodicity, periodicity, refine_f0
from ttsprep.stages.step4_features.pitch_swift import swift_f0_track


@functools.cache
def _pyworld():
    """pyworld's compiled module (``dio``, ``stonemask``, ``harvest``), loaded where a shard needs DIO or Harvest.

    Loaded from its file, without the package's ``__init__``: that only imports the deprecated pkg_resources
    to read pyworld's version (0.13 CPU-s per worker, a third of what the F0 of a 200-utterance shard costs
    beyond DIO itself). Falls back to ``import pyworld`` where the package has no such file."""
    package = importlib.util.find_spec("pyworld")
    folder = Path(package.origin).parent if package is not None and package.origin else None
    compiled = [path for suffix in importlib.machinery.EXTENSION_SUFFIXES
                for path in (folder.glob(f"pyworld{suffix}") if folder else ())]
    if not compiled:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pyworld 0.3.5 imports the deprecated pkg_resources
            import pyworld
        return pyworld
    spec = importlib.util.spec_from_file_location("pyworld.pyworld", compiled[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


F0Method = Literal["dio", "harvest", "swift_f0", "none"]
RangeMode = Literal["speaker", "utterance", "configured"]
HarvestRange = Literal["configured", "per_utterance"]
#: Fewer voiced frames than this in the DIO pass: Harvest searches the configured range.
MIN_VOICED_FRAMES = 10
#: DIO's decimated rate stays at or above this multiple of ``f0_ceil``: ``dio_speed`` is lowered where needed
#: (8 kHz and the default 800 Hz ceiling allow up to 4, i.e. DIO at 2 kHz).
DIO_MIN_RATE_PER_CEIL = 2.5


@dataclass(frozen=True)
class PitchSettings:
    """What the two passes need from ``FeatureConfig`` (``from_config``), plus the grid."""

    method: F0Method = "dio"
    f0_floor: float = 71.0
    f0_ceil: float = 800.0
    dio_speed: int = 3
    analysis_rate: int | None = None
    harvest_range: HarvestRange = "configured"
    refine: bool = True
    voicing_threshold: float = 0.5
    min_voiced_run: int = 3
    swift_confidence: float = 0.5

    @classmethod
    def from_config(cls, cfg) -> PitchSettings:  # cfg: ttsprep.stages.core.config.FeatureConfig
        return cls(method=cfg.f0_method, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, dio_speed=cfg.dio_speed,
                   analysis_rate=cfg.f0_sample_rate, harvest_range=cfg.harvest_range, refine=cfg.f0_refine,
                   voicing_threshold=cfg.f0_voicing_threshold, min_voiced_run=cfg.f0_min_voiced_run,
                   swift_confidence=cfg.f0_swift_confidence)


@dataclass(frozen=True)
class FirstPass:
    """One utterance's first pass: what the final pass needs, kept in memory for the shard."""

    raw: np.ndarray  # float32[T], DIO + StoneMask (or SwiftF0) over the first pass's range, Hz, 0 = unvoiced
    f0: np.ndarray  # float32[T], ``raw`` cleaned up within that range: what ranges are estimated from
    analysis: Periodicity | None  # NCCF at the analysis rate (None without ``refine``, and for SwiftF0)
    samples: np.ndarray | None  # the input waveform at ``sample_rate`` (Harvest only)
    sample_rate: int
    frame_period_ms: float
    f0_range: tuple[float, float]


def first_pass(samples: np.ndarray, sample_rate: int, hop_length: int, num_frames: int,
               settings: PitchSettings) -> FirstPass:
    """DIO + StoneMask over ``settings``' range at the analysis rate (or SwiftF0,
    ``ttsprep.stages.step4_features.pitch_swift``), and its clean-up (``refine_f0``)."""
    rate = sample_rate if settings.analysis_rate is None else min(sample_rate, settings.analysis_rate)
    if samples.size * rate < sample_rate:  # under one sample at the analysis rate: soxr would return none
        rate = sample_rate
    signal = samples if rate == sample_rate else soxr.resample(samples, sample_rate, rate, quality="HQ")
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    frame_period_ms = 1000.0 * hop_length / sample_rate
    floor, ceil = settings.f0_floor, settings.f0_ceil
    if settings.method == "swift_f0":
        raw = swift_f0_track(samples, sample_rate, hop_length, num_frames, f0_floor=floor, f0_ceil=ceil,
                             confidence=settings.swift_confidence)
    else:
        raw = fit_to_frames(_dio_stonemask(signal, rate, frame_period_ms, floor, ceil, settings.dio_speed)
                            .astype(np.float32), num_frames, what="dio f0")
    analysis, cleaned = None, _in_range(raw, floor, ceil)
    if settings.refine and settings.method != "swift_f0":
        typical = float(np.median(cleaned[cleaned > 0])) if (cleaned > 0).any() else None
        analysis = periodicity(signal, rate, hop_length * rate / sample_rate, num_frames, floor, typical)
        # Octave and range clean-up only: the quartiles need no voicing decision, which the final pass makes
        # (fused: one NCCF voicing search per utterance; VDE vs RAPT 12.1 -> 12.0 %, ~0.1 ms/s less).
        cleaned = refine_f0(raw, analysis, floor, ceil, voicing_threshold=None,
                            min_voiced_run=settings.min_voiced_run)
    return FirstPass(raw=raw, f0=cleaned, analysis=analysis,
                     samples=samples if settings.method == "harvest" else None, sample_rate=sample_rate,
                     frame_period_ms=frame_period_ms, f0_range=(floor, ceil))


def final_pass(first: FirstPass, f0_range: tuple[float, float], settings: PitchSettings,
               num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``(f0 float32[T], voiced bool[T])`` within ``f0_range``: the first pass's DIO track corrected into it,
    or Harvest searching it (``harvest_range="per_utterance"``) or the first pass's range (``configured``).
    SwiftF0's track is only kept within the range: the refinement (NCCF octave checks and voicing) made it
    worse against RAPT (GPE 1.0 -> 2.6 %, octave-up 0.5 -> 0.4 %, VDE 10.8 -> 10.0 %)."""
    floor, ceil = f0_range
    if settings.method == "harvest":
        search = f0_range if settings.harvest_range == "per_utterance" else first.f0_range
        track, _ = _pyworld().harvest(np.ascontiguousarray(first.samples, dtype=np.float64), first.sample_rate,
                                   f0_floor=search[0], f0_ceil=search[1], frame_period=first.frame_period_ms)
        track = fit_to_frames(track.astype(np.float32), num_frames, what="harvest f0")
    else:
        track = first.raw
    if first.analysis is not None:
        f0 = refine_f0(track, first.analysis, floor, ceil, voicing_threshold=settings.voicing_threshold,
                       min_voiced_run=settings.min_voiced_run)
    else:
        f0 = _in_range(track, floor, ceil)
    return f0, f0 > 0


def speaker_ranges(first_passes: dict[str, list[np.ndarray]], f0_floor: float, f0_ceil: float,
                   min_utterances: int) -> dict[str, tuple[float, float] | None]:
    """Each speaker's ``two_pass_range`` over the first-pass F0 of all its utterances (a dict speaker -> list
    of float[T]); None for a speaker with fewer than ``min_utterances`` (ranges per utterance instead)."""
    return {speaker: two_pass_range(np.concatenate(tracks), f0_floor, f0_ceil)
            if len(tracks) >= min_utterances else None for speaker, tracks in first_passes.items()}


def extract_f0(samples: np.ndarray, sample_rate: int, hop_length: int, num_frames: int, *,
               method: F0Method = "dio", f0_floor: float = 71.0, f0_ceil: float = 800.0,
               dio_speed: int = 3, analysis_rate: int | None = None,
               harvest_range: HarvestRange = "configured", refine: bool = True,
               range_mode: RangeMode = "utterance", voicing_threshold: float = 0.5,
               min_voiced_run: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz per frame and the voiced mask of one utterance: ``(f0 float32[num_frames], voiced bool[num_frames])``.

    ``samples`` is float32[N] at ``sample_rate`` Hz; frame ``t`` is centred on sample ``t * hop_length``.
    Unvoiced frames have f0 = 0; voiced values lie within ``[f0_floor, f0_ceil]``. ``method="none"`` returns
    zeros and an all-False mask without analysing the signal. ``analysis_rate`` (Hz, None = ``sample_rate``)
    caps the rate DIO and StoneMask run at; ``dio_speed`` is DIO's decimation factor below that rate (1 =
    none), at most ``dio_decimation`` allows. ``range_mode="utterance"``: the final range is the
    ``two_pass_range`` of the first pass (``configured``: ``f0_floor`` to ``f0_ceil``). Harvest searches that
    range with ``harvest_range="per_utterance"``, else ``f0_floor`` to ``f0_ceil``. ``refine``: octave and
    voicing clean-up (``ttsprep.stages.step4_features.pitch_refine``).
    """
    if method == "none":
        return np.zeros(num_frames, np.float32), np.zeros(num_frames, bool)
    if method not in ("dio", "harvest", "swift_f0"):
        raise ConfigError(f"unknown f0 method {method!r}; expected 'dio', 'harvest', 'swift_f0' or 'none'")
    settings = PitchSettings(method=method, f0_floor=f0_floor, f0_ceil=f0_ceil, dio_speed=dio_speed,
                             analysis_rate=analysis_rate, harvest_range=harvest_range, refine=refine,
                             voicing_threshold=voicing_threshold, min_voiced_run=min_voiced_run)
    first = first_pass(samples, sample_rate, hop_length, num_frames, settings)
    final_range = two_pass_range(first.f0, f0_floor, f0_ceil) if range_mode != "configured" else (f0_floor, f0_ceil)
    return final_pass(first, final_range, settings, num_frames)


def _in_range(f0: np.ndarray, f0_floor: float, f0_ceil: float) -> np.ndarray:
    """Voiced values outside ``[f0_floor, f0_ceil]`` unvoiced (StoneMask can move a value out of DIO's range)."""
    return np.where((f0 >= f0_floor) & (f0 <= f0_ceil), f0, 0.0).astype(np.float32)


def _dio_stonemask(signal: np.ndarray, rate: int, frame_period_ms: float, f0_floor: float, f0_ceil: float,
                   dio_speed: int) -> np.ndarray:
    """DIO + StoneMask F0 (Hz, float64, pyworld's frame count) of ``signal`` at ``rate`` Hz (already the
    analysis rate: ``first_pass`` resamples)."""
    signal = np.ascontiguousarray(signal, dtype=np.float64)
    pyworld = _pyworld()
    coarse_hz, times_s = pyworld.dio(signal, rate, f0_floor=f0_floor, f0_ceil=f0_ceil,
                                     frame_period=frame_period_ms, speed=dio_decimation(rate, dio_speed, f0_ceil))
    return pyworld.stonemask(signal, coarse_hz, times_s, rate)


def dio_decimation(rate: int, dio_speed: int, f0_ceil: float) -> int:
    """DIO's decimation factor at ``rate`` Hz: ``dio_speed``, lowered so that the decimated rate stays at or
    above ``DIO_MIN_RATE_PER_CEIL * f0_ceil`` (an F0 near the ceiling keeps its band below Nyquist); >= 1."""
    return max(1, min(dio_speed, int(rate // (DIO_MIN_RATE_PER_CEIL * f0_ceil))))


def two_pass_range(first_pass_f0: np.ndarray, f0_floor: float, f0_ceil: float) -> tuple[float, float]:
    """The speaker-adapted F0 search range of De Looze & Hirst (2008): 0.75 x the first quartile to 1.5 x
    the third quartile of a first pass's voiced F0 (Hz, 0 = unvoiced), kept within ``[f0_floor, f0_ceil]``.
    The configured range when the first pass has fewer than ``MIN_VOICED_FRAMES`` voiced frames."""
    voiced = first_pass_f0[first_pass_f0 > 0]
    if voiced.size < MIN_VOICED_FRAMES:
        return f0_floor, f0_ceil
    first_quartile, third_quartile = np.percentile(voiced, [25, 75])
    return max(f0_floor, 0.75 * float(first_quartile)), min(f0_ceil, 1.5 * float(third_quartile))
