"""Benchmark: what denoising does to clean and to noisy speech, and what it costs (not a timed test).

Every clip of ``../shared/corpora`` (or ``--corpora``) goes through the pipeline's own path:
``load_audio`` -> ``condition_audio`` -> ``extract_features`` with the default ``StageConfig`` (F0 off in the
quality sections: it does not touch the mel). Four settings are compared:

* ``before``: the old default (spectral gate on every utterance, hard zero, no dither);
* ``off``: no denoising, no dither;
* ``after``: the defaults now (gate only below ``snr_threshold_db``, bounded by ``max_attenuation_db``, dither);
* ``gate forced``: the bounded gate on every utterance (``snr_threshold_db=None``).

Sections:

1. log-mel floor per corpus: share of mel values at log(LOG_MEL_FLOOR) (the clamp), of frames entirely at
   it, and of frames with energy exactly 0; the estimated SNR (``estimate_snr_db``) and how many clips the
   defaults denoise.
2. mel distance on clean speech per corpus: mean |log-mel difference| in dB (20 log10 of the mel magnitude)
   against the undenoised mel: ``after`` and ``gate forced`` vs ``off`` with the same dither (the denoiser
   alone), ``before`` vs ``off`` (the old gate), ``after`` vs ``off`` without dither (everything).
3. noisy speech: ``--clips-per-corpus`` clean clips per corpus plus white, pink or babble noise (four clips of
   other corpora summed) at ``--snrs`` dB (over the whole clip); per method the SI-SDR and segmental-SNR
   (20 ms frames within 40 dB of the loudest, clamped to [-10, 35] dB) improvement over the noisy input,
   measured on the returned waveform against the known clean one; the estimated SNR of the noisy input
   and the share the default threshold denoises; a sweep of ``max_attenuation_db`` for the forced gate.
4. cost: CPU ms per audio second of the whole ``extract_features`` with the default features (DIO at 8 kHz),
   median of ``--passes`` passes after a warm-up, on the clean clips (which the defaults pass untouched)
   and on the noisy ones at 5 dB (which they gate).

    python bench/bench_denoise.py
    python bench/bench_denoise.py --clips-per-corpus 1 --snrs 0 10 --passes 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


from ttsprep.stages.core.audio_io import load_audio  # noqa: E402
from ttsprep.stages.core.config import DenoiseConfig, StageConfig  # noqa: E402
from ttsprep.stages.core.errors import TtsprepError  # noqa: E402
from ttsprep.stages.step2_audio.conditioning import condition_audio  # noqa: E402
from ttsprep.stages.step2_audio.signal_quality import estimate_snr_db  # noqa: E402
from ttsprep.stages.step4_features import extract as features  # noqa: E402

DEFAULT_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus"}
DB_PER_NEPER = 20 / np.log(10)  # log-mel is ln(magnitude): dB = 20 log10 = 8.69 ln
FLOOR = np.float32(np.log(features.LOG_MEL_FLOOR))
DEFAULT = DenoiseConfig()
SETTINGS = {
    "before": DenoiseConfig(snr_threshold_db=None, max_attenuation_db=None, mel_dither_lsb=0.0),
    "off": DenoiseConfig(method="none", mel_dither_lsb=0.0),
    "after": DEFAULT,
    "gate forced": DenoiseConfig(snr_threshold_db=None),
}
NO_DITHER = {"before", "off"}


def run(samples: np.ndarray, rate: int, feature_cfg, name: str, denoise: DenoiseConfig | None = None,
        snr_db: float | None = None, use_dither: bool | None = None) -> features.Features:
    denoise = denoise or SETTINGS[name]
    dithered = name not in NO_DITHER if use_dither is None else use_dither
    denoise = denoise.model_copy(update={"mel_dither_lsb": DEFAULT.mel_dither_lsb if dithered else 0.0})
    return features.extract_features(samples, rate, feature_cfg, denoise, snr_db=snr_db)


def load_corpora(root: Path, config: StageConfig) -> dict[str, list[np.ndarray]]:
    clips: dict[str, list[np.ndarray]] = {}
    for corpus in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            try:
                samples = load_audio(path, config.audio.sample_rate)
                conditioned = condition_audio(samples, config.audio.sample_rate, config.audio).samples
            except TtsprepError as exc:  # as the pipeline would: rejected, not in the shards
                print(f"  skipped {path.relative_to(root)}: {exc}", file=sys.stderr)
                continue
            clips.setdefault(corpus.name, []).append(conditioned)
    return clips


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def floor_shares(mels_energies: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    values = frames = all_floor = zero_energy = 0
    for mel, energy in mels_energies:
        at = mel <= FLOOR
        values += int(at.sum())
        all_floor += int(at.all(axis=1).sum())
        zero_energy += int((energy == 0).sum())
        frames += mel.shape[0]
    return 100 * values / (frames * mels_energies[0][0].shape[1]), 100 * all_floor / frames, 100 * zero_energy / frames


def mel_section(clips: dict[str, list[np.ndarray]], config: StageConfig) -> None:
    rate, feature_cfg = config.audio.sample_rate, config.features.model_copy(update={"f0_method": "none"})
    floor_rows, distance_rows = [], []
    totals: dict[str, list] = {name: [] for name in SETTINGS}
    for corpus, samples_list in clips.items():
        out: dict[str, list] = {name: [] for name in SETTINGS}
        off_dithered, snrs = [], []
        for samples in samples_list:
            snr = estimate_snr_db(samples, rate)
            snrs.append(snr)
            for name in SETTINGS:
                feats = run(samples, rate, feature_cfg, name, snr_db=snr)
                out[name].append((feats.mel, feats.energy))
            off_dithered.append(run(samples, rate, feature_cfg, "off", use_dither=True).mel)
        for name in SETTINGS:
            totals[name] += out[name]
        denoised = sum(snr < DEFAULT.snr_threshold_db for snr in snrs) if DEFAULT.snr_threshold_db is not None \
            else len(snrs)
        seconds = sum(s.size for s in samples_list) / rate
        shares = {name: floor_shares(out[name]) for name in SETTINGS}
        floor_rows.append([corpus, str(len(samples_list)), f"{seconds:.0f}",
                           f"{np.median(snrs):.1f} ({np.min(snrs):.1f})", f"{denoised}/{len(snrs)}"]
                          + [" / ".join(f"{v:.2f}" for v in shares[name]) for name in SETTINGS])

        def distance(name: str, reference: list[np.ndarray]) -> str:
            diffs = np.concatenate([np.abs(mel - ref).ravel() for (mel, _), ref in zip(out[name], reference)])
            return f"{DB_PER_NEPER * diffs.mean():.3f}"

        off_raw = [mel for mel, _ in out["off"]]
        distance_rows.append([corpus, distance("after", off_dithered), distance("gate forced", off_dithered),
                              distance("before", off_raw), distance("after", off_raw)])
    floor_rows.append(["**all**", str(sum(map(len, clips.values()))), "", "", ""]
                      + [" / ".join(f"{v:.2f}" for v in floor_shares(totals[name])) for name in SETTINGS])
    print("## 1. log-mel floor on the clean corpora: % of mel values at the floor / % of frames all at it / "
          "% of frames with energy 0\n")
    table(["corpus", "clips", "audio s", "est. SNR dB median (min)", "denoised by default"]
          + [f"{name}" for name in SETTINGS], floor_rows)
    print("## 2. mean |log-mel difference| on clean speech, dB\n")
    table(["corpus", "after vs off (denoiser; same dither)", "gate forced vs off (same dither)",
           "before vs off (old gate)", "after vs off without dither (all changes)"], distance_rows)


def si_sdr(clean: np.ndarray, estimate: np.ndarray) -> float:
    clean, estimate = clean.astype(np.float64), estimate.astype(np.float64)
    target = clean * (estimate @ clean) / (clean @ clean)
    return float(10 * np.log10((target @ target) / np.sum((estimate - target) ** 2)))


def segmental_snr(clean: np.ndarray, estimate: np.ndarray, rate: int) -> float:
    frame = round(0.02 * rate)
    count = clean.size // frame
    ref = clean[:count * frame].reshape(count, frame).astype(np.float64)
    err = ref - estimate[:count * frame].reshape(count, frame)
    power = np.sum(ref**2, axis=1)
    active = power > power.max() * 1e-4
    seg = 10 * np.log10(power[active] / np.maximum(np.sum(err[active] ** 2, axis=1), 1e-20))
    return float(np.mean(np.clip(seg, -10, 35)))


def make_noise(kind: str, size: int, rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(size)
    if kind == "pink":  # 1/f power
        spectrum = np.fft.rfft(rng.standard_normal(size))
        spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
        return np.fft.irfft(spectrum, n=size)
    picks = rng.choice(len(others), size=4, replace=False)  # babble: four talkers of other corpora
    babble = np.zeros(size)
    for index in picks:
        talker = np.resize(others[index], size).astype(np.float64)
        babble += talker / np.sqrt(np.mean(talker**2))
    return babble


def noisy_section(clips: dict[str, list[np.ndarray]], config: StageConfig, per_corpus: int,
                  snrs: list[float], caps: list[float | None]) -> list[tuple[np.ndarray, int]]:
    rate, feature_cfg = config.audio.sample_rate, config.features.model_copy(update={"f0_method": "none"})
    rng = np.random.default_rng(0)
    methods = {"before (gate, hard zero)": SETTINGS["before"], "after: gate (defaults)": DEFAULT,
               "after: noisereduce": DEFAULT.model_copy(update={"method": "noisereduce"})}
    sweep = {f"gate forced, max_attenuation_db={cap}": DenoiseConfig(snr_threshold_db=None, max_attenuation_db=cap)
             for cap in caps}
    rows, sweep_rows, at_5db = [], [], []
    for kind in ("white", "pink", "babble"):
        for snr in snrs:
            gains: dict[str, list[tuple[float, float]]] = {name: [] for name in {**methods, **sweep}}
            estimates, floor_values = [], []
            for corpus, samples_list in clips.items():
                others = [s for c, lst in clips.items() if c != corpus for s in lst]
                for clean in samples_list[:per_corpus]:
                    noise = make_noise(kind, clean.size, rng, others)
                    noise *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (snr / 10))
                    noisy = (clean + noise).astype(np.float32)
                    if kind == "white" and snr == 5:
                        at_5db.append(noisy)
                    estimate = estimate_snr_db(noisy, rate)
                    estimates.append(estimate)
                    base = (si_sdr(clean, noisy), segmental_snr(clean, noisy, rate))
                    for name, cfg in {**methods, **sweep}.items():
                        if name in sweep and kind == "babble":
                            continue
                        feats = run(noisy, rate, feature_cfg, "x", cfg, snr_db=estimate, use_dither=name[:6] != "before")
                        if name == "after: gate (defaults)":
                            floor_values.append(float(np.mean(feats.mel <= FLOOR)))
                        gains[name].append((si_sdr(clean, feats.samples) - base[0],
                                            segmental_snr(clean, feats.samples, rate) - base[1]))
            share = 100 * np.mean([e < DEFAULT.snr_threshold_db for e in estimates]) \
                if DEFAULT.snr_threshold_db is not None else 100.0
            rows.append([kind, f"{snr:g}", f"{np.median(estimates):.1f} ({np.min(estimates):.1f}-{np.max(estimates):.1f})",
                         f"{share:.0f}"]
                        + [f"{np.mean([g[0] for g in gains[n]]):+.2f} / {np.mean([g[1] for g in gains[n]]):+.2f}"
                           for n in methods] + [f"{100 * np.mean(floor_values):.2f}"])
            if kind != "babble":
                sweep_rows.append([kind, f"{snr:g}"] + [
                    f"{np.mean([g[0] for g in gains[n]]):+.2f} / {np.mean([g[1] for g in gains[n]]):+.2f}" for n in sweep])
    count = sum(min(per_corpus, len(v)) for v in clips.values())
    print(f"## 3. noisy speech ({count} clean clips + noise): SI-SDR / segmental-SNR improvement, dB\n")
    table(["noise", "input SNR dB", "est. SNR dB median (range)", "% denoised by default"] + list(methods)
          + ["% mel at floor (after: gate)"], rows)
    print("Forced gate (every utterance), sweep of the attenuation bound: SI-SDR / segmental-SNR improvement, dB\n")
    table(["noise", "input SNR dB"] + [n.split(", ")[1] for n in sweep], sweep_rows)
    return [(s, rate) for s in at_5db]


def cost_section(clips: list[np.ndarray], noisy: list[tuple[np.ndarray, int]], config: StageConfig,
                 passes: int) -> None:
    rate, feature_cfg = config.audio.sample_rate, config.features
    clean = [(s, rate) for s in clips]
    variants: dict[str, Callable[[np.ndarray, int, float], object]] = {
        "off (no denoise, no dither)": lambda s, r, snr: run(s, r, feature_cfg, "off"),
        "before (gate on every utterance)": lambda s, r, snr: run(s, r, feature_cfg, "before"),
        "after (defaults, snr_db passed in)": lambda s, r, snr: run(s, r, feature_cfg, "after", snr_db=snr),
        "after (defaults, snr_db estimated inside)": lambda s, r, snr: run(s, r, feature_cfg, "after"),
        "gate forced (bounded)": lambda s, r, snr: run(s, r, feature_cfg, "gate forced"),
    }
    rows = []
    for label, corpus in (("clean corpora", clean), ("white noise at 5 dB", noisy)):
        seconds = sum(s.size / r for s, r in corpus)
        snrs = [estimate_snr_db(s, r) for s, r in corpus]  # the pipeline has them already (process.py)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for pass_index in range(passes + 1):  # interleaved, so contention hits every variant alike
            for name, fn in variants.items():
                start = time.process_time()
                for (samples, rate_), snr in zip(corpus, snrs):
                    fn(samples, rate_, snr)
                if pass_index:
                    times[name].append(1000 * (time.process_time() - start) / seconds)
        for name in variants:
            rows.append([label, name, f"{statistics.median(times[name]):.2f}", f"{min(times[name]):.2f}"])
    print(f"## 4. cost: CPU ms per audio second of extract_features (default features, DIO), {passes} passes\n")
    table(["audio", "variant", "median ms/s", "best ms/s"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--clips-per-corpus", type=int, default=2, help="clean clips per corpus for section 3")
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 5.0, 10.0, 20.0])
    parser.add_argument("--caps", type=float, nargs="+", default=[10.0, 20.0, 30.0],
                        help="max_attenuation_db values swept in section 3 (unbounded is added)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes in section 4")
    parser.add_argument("--skip", nargs="*", default=[], choices=["mel", "noisy", "cost"])
    args = parser.parse_args()
    config = StageConfig()
    print(f"defaults: {DEFAULT!r}; LOG_MEL_FLOOR={features.LOG_MEL_FLOOR}\n")
    clips = load_corpora(args.corpora, config)
    print(f"{sum(map(len, clips.values()))} clips, "
          f"{sum(s.size for v in clips.values() for s in v) / config.audio.sample_rate:.0f} s after conditioning\n")
    if "mel" not in args.skip:
        mel_section(clips, config)
    noisy = []
    if "noisy" not in args.skip:
        noisy = noisy_section(clips, config, args.clips_per_corpus, args.snrs, [*args.caps, None])
    if "cost" not in args.skip:
        subset = [s for v in clips.values() for s in v[:args.clips_per_corpus]]
        cost_section(subset, noisy or [(s, config.audio.sample_rate) for s in subset], config, args.passes)


if __name__ == "__main__":
    main()
