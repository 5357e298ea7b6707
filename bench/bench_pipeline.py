"""Benchmark: end-to-end x realtime per CPU core of one shard through ``ttsprep.stages.step6_shards.process.process_shard``.

The whole per-utterance path runs as the shard task runs it, without Prefect: text front-end, decode,
signal filters, conditioning (trim, pause split, loudness), features (denoise, STFT, mel, F0, energy),
FLAC encode, statistics and the Parquet shard write. Corpora are built with the importers and ingest:

* ``lj``: the LJSpeech clips in ``../shared/corpora`` (22.05 kHz PCM-16 wav);
* ``cv``: the Common Voice clips there (48 kHz mp3; en, ja and zh-CN, one shard per locale);
* ``generated``: espeak-ng speech with pauses, silences and noise (``bench/make_load_corpus.py``), the
  default where ``../shared`` is absent.

Each utterance is listed ``--copies`` times in its shard, so the per-shard costs weigh as in a real shard.
x realtime = seconds of input audio per CPU second (``time.process_time``; every thread pool pinned to one
thread; glibc told to keep freed memory, see ``keep_freed_memory``, unless ``--stock-malloc``), the median
over ``--passes`` passes after one warm-up pass per corpus (imports, caches). Each pass writes a fresh
shard, so nothing is reused between passes. Where lhotse is installed, its 80-bin fbank on the same
decoded audio is measured in the same rounds, as a reference taken under the same load (other tenants
change this machine's speed by 2x within minutes). Every pass also splits its CPU time by stage: the
functions ``process_shard`` calls are wrapped (``StageClock``; ~7 us per call here, under 0.5 % of a
pass), each stage's time excludes the wrapped stages it calls, and ``other`` is the rest of
``process_shard``. The split printed is the median pass's.

    python bench/bench_pipeline.py
    python bench/bench_pipeline.py --corpora generated --passes 5 --variants dio no-pitch-no-denoise
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

from make_load_corpus import write_load_corpus  # noqa: E402  (bench/ is the script's folder)
from ttsprep.stages.core.atomic import rows_to_table, write_parquet  # noqa: E402
from ttsprep.stages.core.audio_io import load_audio  # noqa: E402
from ttsprep.stages.core.config import StageConfig  # noqa: E402
from ttsprep.stages.core.layout import DatasetLayout  # noqa: E402
from ttsprep.stages.core.records import Utterance  # noqa: E402
from ttsprep.stages.core.schema import MANIFEST_SCHEMA  # noqa: E402
from ttsprep.stages.step1_ingest.ingest import ingest_dataset  # noqa: E402
from ttsprep.stages.step1_ingest.project import build_project  # noqa: E402
from ttsprep.stages.step2_audio import conditioning
from ttsprep.stages.step3_text import front_end as text_stage  # noqa: E402
from ttsprep.stages.step4_features import acoustic_row
from ttsprep.stages.step4_features import extract as features
from ttsprep.stages.step4_features import speaker_embedding
from ttsprep.stages.step4_features import pitch
from ttsprep.stages.step5_durations import alignment
from ttsprep.stages.step6_shards import process, writer
from ttsprep.stages.step6_shards.stats import RunningStats  # noqa: E402

SHARED_CORPORA = REPO_ROOT.parent / "shared" / "corpora"
CV_RELEASE = SHARED_CORPORA / "common_voice" / "cv-corpus-6.1-2020-12-11"
#: Lhotse's 80-bin fbank, one core, measured on this machine type (``/work/shared/notes``, issue 3).
LHOTSE_FBANK_X_REALTIME = 870

#: Variant name -> the ``StageConfig`` sections it changes from the defaults.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "dio": {},
    "dio-no-align": {"align": {"method": "none"}},  # the feature path alone: default settings, no durations
    "dio-no-denoise": {"audio": {"denoise": {"method": "none"}}},
    "harvest": {"features": {"f0_method": "harvest"}},  # its range from a DIO pass (the default)
    # Harvest over the whole configured range, 71-800 Hz
    "harvest-configured-range": {"features": {"f0_method": "harvest", "harvest_range": "configured"}},
    "no-pitch-no-denoise": {"features": {"f0_method": "none"}, "audio": {"denoise": {"method": "none"}}},
    # issue 17's comparison with Lhotse's fbank export: no pitch, denoising, text or durations
    "features-only": {"features": {"f0_method": "none"}, "audio": {"denoise": {"method": "none"}},
                      "text": {"enabled": False}, "align": {"method": "none"}},
    # the GE2E speaker embedding (needs torch and resemblyzer's weights), with and without durations
    "dio-speaker-embedding": {"features": {"speaker_embedding": True}},
    "dio-no-align-speaker-embedding": {"align": {"method": "none"}, "features": {"speaker_embedding": True}},
}
SLOW_VARIANTS = frozenset({"harvest", "harvest-configured-range"})

#: (owner, attribute, stage): the functions ``process_shard`` reaches, by the name it reaches them through.
TIMED_FUNCTIONS: tuple[tuple[Any, str, str], ...] = (
    (process, "read_utterances", "read shard inputs"),
    (process, "acoustic_key", "cache keys"),
    (text_stage, "front_end", "text front-end"),
    (acoustic_row, "load_audio", "decode + resample"),
    (acoustic_row, "clipping_fraction", "signal quality (clipping, snr)"),
    (acoustic_row, "estimate_snr_db", "signal quality (clipping, snr)"),
    (acoustic_row, "condition_audio", "condition: dc, high-pass"),
    (conditioning, "trim_silence", "condition: trim"),
    (conditioning, "split_at_pauses", "condition: pause split"),
    (conditioning, "normalize_loudness", "condition: loudness"),
    (acoustic_row, "extract_features", "features: rest"),
    (features, "denoise_with_noisereduce", "features: noisereduce"),
    (features, "stft", "features: stft"),
    (features, "spectral_gate", "features: gate mask"),
    (features, "istft", "features: istft"),
    (features, "mel_and_energy", "features: mel + energy"),
    (features, "first_pass", "features: pitch"),
    (features, "extract_f0", "features: pitch"),
    (pitch, "final_pass", "features: pitch"),
    (acoustic_row, "encode_flac", "flac encode"),
    (speaker_embedding, "encoder_input", "speaker embedding: resample, vad, mel"),
    (speaker_embedding.SpeakerEncoder, "embed_mels", "speaker embedding: encoder"),
    (alignment, "align_auto", "align (auto)"),
    (process, "finish_row", "align, prosody, invariants"),
    (RunningStats, "add", "statistics: add"),
    (RunningStats, "save", "statistics: save (per shard)"),
    (process, "rows_to_table", "arrow table build"),
    (writer, "write_parquet", "parquet write (+ per-shard files)"),
)


class StageClock:
    """Exclusive CPU seconds per stage: a wrapped call's time minus that of the wrapped calls inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._open_children: list[float] = []

    def wrap(self, stage: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            self._open_children.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.process_time() - start
                self.seconds[stage] += elapsed - self._open_children.pop()
                if self._open_children:
                    self._open_children[-1] += elapsed
        return timed

    @contextmanager
    def installed(self) -> Iterator[StageClock]:
        originals = [(owner, name, getattr(owner, name)) for owner, name, _ in TIMED_FUNCTIONS]
        for (owner, name, stage), (_, _, function) in zip(TIMED_FUNCTIONS, originals):
            setattr(owner, name, self.wrap(stage, function))
        try:
            yield self
        finally:
            for owner, name, function in originals:
                setattr(owner, name, function)


@dataclass
class Shard:
    """One shard's utterances and the stage settings of the dataset they come from."""

    utterances: list[Utterance]
    config: StageConfig

    @property
    def audio_s(self) -> float:
        return sum(u.duration_s for u in self.utterances)


@dataclass
class Outcome:
    cpu_s: list[float] = field(default_factory=list)
    rows: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)


def dataset_entries(corpus: str, scratch: Path, generated_utterances: int) -> list[dict[str, Any]]:
    """``datasets:`` entries (as in ``datasets.yaml``) that make up ``corpus``."""
    if corpus == "lj":
        return [{"name": "ljspeech", "importer": "ljspeech", "root": str(SHARED_CORPORA / "ljspeech" / "LJSpeech-1.1")}]
    if corpus == "cv":
        return [{"name": f"cv_{locale.replace('-', '_').lower()}", "importer": "common_voice",
                 "root": str(CV_RELEASE / locale)} for locale in ("en", "ja", "zh-CN")]
    root = scratch / "generated"
    manifest = write_load_corpus(root, generated_utterances)
    return [{"name": "generated", "importer": "manifest", "root": str(root), "file": manifest.name, "language": "en"}]


def load_corpus(corpus: str, scratch: Path, generated_utterances: int, copies: int) -> list[Shard]:
    """Ingest ``corpus`` (importer, header probe, checksum): one shard per dataset, default stage settings.

    Each utterance is listed ``copies`` times (ids ``<utt_id>~<k>``), so that the per-shard costs (Parquet
    file, statistics file, cache keys) are spread over a shard closer to a real one (up to 500 utterances)
    than the few clips in ``../shared``; every copy is decoded and processed in full.
    """
    project = build_project({"datasets": dataset_entries(corpus, scratch, generated_utterances)}, base_dir=scratch)
    shards = []
    for dataset in project.datasets:
        ingested = ingest_dataset(dataset)
        if ingested.rejects:
            print(f"  {dataset.name}: {len(ingested.rejects)} files rejected at ingest", file=sys.stderr)
        utterances = [replace(u, utt_id=f"{u.utt_id}~{k}") for k in range(copies) for u in ingested.utterances]
        shards.append(Shard(utterances, dataset.config))
    return shards


def variant_config(config: StageConfig, changes: dict[str, dict[str, Any]]) -> StageConfig:
    """``config`` with the nested ``changes`` applied (validated like ``datasets.yaml`` overrides)."""
    data = config.model_dump()
    for section, values in changes.items():
        for key, value in values.items():
            data[section][key] = {**data[section][key], **value} if isinstance(value, dict) else value
    return StageConfig.model_validate(data)


def run_shards(shards: list[Shard], changes: dict[str, dict[str, Any]], scratch: Path, outcome: Outcome) -> float:
    """CPU seconds of ``process_shard`` over ``shards``, each into a fresh output folder."""
    cpu_s = 0.0
    outcome.rows, outcome.rejects = 0, {}
    for shard in shards:
        layout = DatasetLayout(Path(tempfile.mkdtemp(dir=scratch)), "bench")
        write_parquet(layout.shard_inputs("part-00000"), rows_to_table([u.to_row() for u in shard.utterances],
                                                                       MANIFEST_SCHEMA))
        config = variant_config(shard.config, changes)
        start = time.process_time()
        summary = process.process_shard(layout, "part-00000", "bench", config)
        cpu_s += time.process_time() - start
        outcome.rows += summary.num_rows
        for reason, count in summary.rejects_by_reason.items():
            outcome.rejects[reason] = outcome.rejects.get(reason, 0) + count
    return cpu_s


def measure(shards: list[Shard], variants: list[str], passes: int, slow_passes: int,
            scratch: Path) -> tuple[dict[str, Outcome], dict[str, list[float]]]:
    """Warm up once, then ``passes`` rounds over the variants and the references (interleaved, so load from
    other processes hits all alike). Every pass is instrumented; the stage split is that of each variant's
    median pass. Returns the outcomes and each reference's CPU seconds per pass."""
    outcomes = {name: Outcome() for name in variants}
    splits: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    references = reference_passes(shards)
    reference_s: dict[str, list[float]] = {name: [] for name in references}
    run_shards(shards, VARIANTS[variants[0]], scratch, Outcome())
    for reference in references.values():
        reference()
    for round_index in range(passes):
        for name in variants:
            if name in SLOW_VARIANTS and round_index >= slow_passes:
                continue
            clock = StageClock()
            with clock.installed():
                total_s = run_shards(shards, VARIANTS[name], scratch, outcomes[name])
            outcomes[name].cpu_s.append(total_s)
            splits[name].append({**clock.seconds, "other": total_s - sum(clock.seconds.values())})
        for name, reference in references.items():
            reference_s[name].append(reference())
    for name, outcome in outcomes.items():
        median_pass = sorted(range(len(outcome.cpu_s)), key=outcome.cpu_s.__getitem__)[len(outcome.cpu_s) // 2]
        outcome.stages = splits[name][median_pass]
    return outcomes, reference_s


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (``M_TRIM_THRESHOLD`` 256 MB) and serve blocks up to 32 MB from
    its heap (``M_MMAP_THRESHOLD``), as ``MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=33554432``
    in a worker's environment would. Otherwise every large per-utterance buffer (pyworld's FFT buffers,
    numpy temporaries) is mapped afresh and page-faulted in: pyworld ran ~2x slower that way. False where
    the C library has no ``mallopt`` (not glibc)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))


def reference_passes(shards: list[Shard]) -> dict[str, Callable[[], float]]:
    """Functions timing one pass (CPU s) over the same utterances, each decoded and resampled by
    ``load_audio`` as the pipeline does, then: this pipeline's STFT, log-mel and energy alone
    (``extract_features`` without pitch or denoising), and, where lhotse is installed (``pip install
    -e '.[bench]'``), Lhotse's 80-bin Kaldi fbank. Lhotse's torch import is paid here, before any pass."""

    def timed(extract: Callable[[np.ndarray, int, StageConfig], Any]) -> Callable[[], float]:
        def one_pass() -> float:
            start = time.process_time()
            for shard in shards:
                rate = shard.config.audio.sample_rate
                for utt in shard.utterances:
                    extract(load_audio(Path(utt.audio_path), rate), rate, shard.config)
            return time.process_time() - start
        return one_pass

    no_pitch = {id(shard.config): shard.config.features.model_copy(update={"f0_method": "none"}) for shard in shards}
    no_denoise = shards[0].config.audio.denoise.model_copy(update={"method": "none"})

    def own_features(samples: np.ndarray, rate: int, config: StageConfig) -> Any:
        return features.extract_features(samples, rate, no_pitch[id(config)], no_denoise)

    passes = {"reference: decode + this pipeline's STFT, log-mel and energy only": timed(own_features)}
    try:
        import torch
        from lhotse import Fbank, FbankConfig
    except ImportError:
        return passes
    torch.set_num_threads(1)
    extractors = {rate: Fbank(FbankConfig(num_mel_bins=80, sampling_rate=rate))
                  for rate in {shard.config.audio.sample_rate for shard in shards}}
    passes["reference: decode + Lhotse 80-bin fbank only"] = timed(
        lambda samples, rate, _config: extractors[rate].extract(samples, rate))
    return passes


def machine_sgemm_gflops() -> float:
    """Single-thread float32 matrix-multiply rate: the anchors were measured where it was 96-100 GFLOP/s."""
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    a @ a
    start, count = time.process_time(), 0
    while time.process_time() - start < 0.5:
        a @ a
        count += 1
    return count * 2 * 512**3 / (time.process_time() - start) / 1e9


def _speed_row(name: str, cpu_s: list[float], audio_s: float, rows: str, rejects: str) -> str:
    median_s = statistics.median(cpu_s)
    return (f"| {name} | {audio_s / median_s:.0f} | {audio_s / min(cpu_s):.0f} | {len(cpu_s)} "
            f"| {1000 * median_s / audio_s:.2f} | {rows} | {rejects} |")


def print_results(corpus: str, shards: list[Shard], outcomes: dict[str, Outcome],
                  reference_s: dict[str, list[float]]) -> None:
    audio_s, num_utterances = sum(shard.audio_s for shard in shards), sum(len(shard.utterances) for shard in shards)
    print(f"\n## {corpus}: {audio_s:.1f} s of input audio in {num_utterances} utterances\n")
    print("| variant | x realtime per core (median) | best pass | passes | ms CPU per audio s | rows | rejects |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, outcome in outcomes.items():
        rejects = ", ".join(f"{reason} {count}" for reason, count in sorted(outcome.rejects.items())) or "-"
        print(_speed_row(name, outcome.cpu_s, audio_s, str(outcome.rows), rejects))
    for name, cpu_s in reference_s.items():
        print(_speed_row(name, cpu_s, audio_s, "-", "-"))
    names = list(outcomes)
    print(f"\nCPU ms per audio second by stage (median pass):\n\n| stage | {' | '.join(names)} |")
    print("|---|" + "---:|" * len(names))
    stages = sorted({stage for outcome in outcomes.values() for stage in outcome.stages},
                    key=lambda stage: -max(o.stages.get(stage, 0.0) for o in outcomes.values()))
    for stage in stages:
        cells = []
        for outcome in outcomes.values():
            seconds, total = outcome.stages.get(stage, 0.0), sum(outcome.stages.values())
            cells.append(f"{1000 * seconds / audio_s:.2f} ({100 * seconds / total:.0f} %)" if seconds else "-")
        print(f"| {stage} | {' | '.join(cells)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", choices=("lj", "cv", "generated"),
                        default=["lj", "cv"] if SHARED_CORPORA.is_dir() else ["generated"])
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--slow-passes", type=int, default=1, help="passes of the Harvest variant")
    parser.add_argument("--generated-utterances", type=int, default=24)
    parser.add_argument("--copies", type=int, default=4, help="times each utterance is listed in its shard")
    parser.add_argument("--stock-malloc", action="store_true", help="leave glibc's allocator settings alone")
    args = parser.parse_args(argv)
    malloc = "glibc defaults" if args.stock_malloc or not keep_freed_memory() else "freed memory kept (mallopt)"
    print(f"one thread; allocator: {malloc}; CPU-time x realtime = input audio s / process CPU s; machine sgemm "
          f"{machine_sgemm_gflops():.0f} GFLOP/s single thread (96-100 when the anchors were measured, where "
          f"Lhotse's 80-bin fbank ran at ~{LHOTSE_FBANK_X_REALTIME}x per core)")
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for corpus in args.corpora:
            shards = load_corpus(corpus, scratch, args.generated_utterances, args.copies)
            print_results(corpus, shards, *measure(shards, args.variants, args.passes, args.slow_passes, scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
