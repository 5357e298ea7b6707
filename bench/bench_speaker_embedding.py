"""Benchmark: GE2E speaker embeddings (``speaker_embedding.py``) on every clip of ``../shared/corpora``.

Reports, for the default settings (Resemblyzer's exact preprocessing) and cheaper variants:

* cosine to stock Resemblyzer (``VoiceEncoder().embed_utterance(preprocess_wav(path))``) on every 6th clip;
* EER over all clip pairs: same-speaker pairs from the speakers with two or more clips (VCTK's mic1/mic2 copies of
  one utterance are not paired with each other), different-speaker pairs over all clips;
* planted mislabels: every clip of another corpus listed under each speaker with >= 3 clips; leave-one-out
  similarity below ``--threshold`` must flag the planted clip and none of the speaker's own;
* speed: audio seconds per CPU second (``time.process_time``, one thread, best of ``--passes``) of the embedding
  step from decoded audio at its native rate (resample + VAD + mel + encoder); model load timed apart.

    python bench/bench_speaker_embedding.py            # needs: pip install --no-deps resemblyzer==0.1.4; torch
"""

from __future__ import annotations

import argparse
import csv
import os
import time
import warnings
from collections import defaultdict
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
VARIANTS = {  # name -> SpeakerEncoder.embed keyword arguments
    "exact (default)": {},
    "no VAD trim": {"trim_silences": False},
    "no volume norm": {"normalize_volume": False},
    "neither": {"trim_silences": False, "normalize_volume": False},
    "rate 0.625 (no overlap)": {"rate": 0.625},
}


def shared_clips(root: Path) -> list[tuple[str, str, str, Path]]:
    """(corpus, speaker, utterance, path) of every clip, the speaker read from each corpus's layout or metadata."""
    clips = []
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".wav", ".flac", ".mp3")):
        corpus, stem = path.relative_to(root).parts[0], path.stem
        if corpus == "common_voice":
            speaker = _common_voice_speakers(path.parents[1] / "validated.tsv")[path.name]
        elif corpus == "cmu_arctic":
            speaker = path.parents[1].name.split("_")[2]  # cmu_us_<spk>_arctic
        elif corpus in ("ljspeech", "jsut"):
            speaker = corpus  # single-speaker corpora
        else:  # aishell3, librispeech, libritts, vctk: <speaker>/[<chapter>/]<clip>
            speaker = path.parents[1 if corpus in ("librispeech", "libritts") else 0].name
        utterance = stem.rsplit("_mic", 1)[0]  # VCTK: one utterance, two microphones
        clips.append((corpus, f"{corpus}/{speaker}", utterance, path))
    return clips


def _common_voice_speakers(tsv: Path, _cache={}) -> dict[str, str]:
    if tsv not in _cache:
        with tsv.open(newline="", encoding="utf-8") as f:
            _cache[tsv] = {row["path"]: row["client_id"][:8] for row in csv.DictReader(f, delimiter="\t",
                                                                                     quoting=csv.QUOTE_NONE)}
    return _cache[tsv]


def equal_error_rate(target: np.ndarray, nontarget: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where the miss rate (target < t) meets the false-accept rate (nontarget >= t)."""
    thresholds = np.unique(np.concatenate([target, nontarget]))
    miss = np.array([(target < t).mean() for t in thresholds])
    false_accept = np.array([(nontarget >= t).mean() for t in thresholds])
    i = int(np.argmin(np.abs(miss - false_accept)))
    return float((miss[i] + false_accept[i]) / 2), float(thresholds[i])


def embed_all(encoder, audio, kwargs) -> np.ndarray:
    """Embeddings [N, 256] of decoded clips [(wav, rate)], one ``embed`` call per sample rate."""
    out = np.zeros((len(audio), 256), np.float32)
    by_rate = defaultdict(list)
    for i, (_, rate) in enumerate(audio):
        by_rate[rate].append(i)
    for rate, idx in by_rate.items():
        out[idx] = encoder.embed([audio[i][0] for i in idx], rate, **kwargs)
    return out


def plantings(emb, clips, threshold, loo):
    """Plant every clip of another corpus under each speaker with >= 3 clips: (caught, plantings, false alarms,
    highest planted LOO, lowest genuine LOO, per-speaker lines)."""
    speakers = defaultdict(list)
    for i, (_, spk, _, _) in enumerate(clips):
        speakers[spk].append(i)
    caught = total = false_alarms = 0
    worst_planted, worst_genuine, lines = -1.0, 2.0, []
    for spk, own in speakers.items():
        if len(own) < 3:
            continue
        corpus = clips[own[0]][0]
        others = [i for i, c in enumerate(clips) if c[0] != corpus]
        n_caught, n_false, hi, lo = 0, 0, -1.0, 2.0
        for x in others:
            sim = loo(emb[own + [x]], [spk] * (len(own) + 1))
            n_caught += sim[-1] < threshold
            n_false += int((sim[:-1] < threshold).sum())
            hi, lo = max(hi, sim[-1]), min(lo, sim[:-1].min())
        lines.append(f"{spk}: {n_caught}/{len(others)} caught, {n_false} false alarms, "
                     f"planted LOO <= {hi:.3f}, genuine LOO >= {lo:.3f}")
        caught, total, false_alarms = caught + n_caught, total + len(others), false_alarms + n_false
        worst_planted, worst_genuine = max(worst_planted, hi), min(worst_genuine, lo)
    return caught, total, false_alarms, worst_planted, worst_genuine, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=SHARED_CORPORA)
    parser.add_argument("--threshold", type=float, default=0.70, help="min_speaker_similarity (leave-one-out)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--no-stock", action="store_true", help="skip the stock Resemblyzer comparison")
    args = parser.parse_args()
    if not args.corpora.is_dir():
        print(f"SKIP: {args.corpora} not found (the real clips live in ../shared/corpora)")
        return
    try:
        import torch

        from ttsprep.stages.step4_features.speaker_embedding import (SpeakerEncoder, encoder_version,
                                                                     leave_one_out_similarity, speaker_centroids)
        encoder_version()
    except ModuleNotFoundError as exc:
        print(f"SKIP: {exc} (pip install torch; pip install --no-deps resemblyzer==0.1.4)")
        return
    torch.set_num_threads(1)

    clips = shared_clips(args.corpora)
    audio = [sf.read(str(c[3]), dtype="float32") for c in clips]
    seconds = sum(len(w) / sr for w, sr in audio)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    encoder = SpeakerEncoder()
    load_wall, load_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu

    spk = np.array([c[1] for c in clips])
    utt = np.array([c[2] for c in clips])
    counts = {s: int((spk == s).sum()) for s in np.unique(spk)}
    i, j = np.triu_indices(len(clips), 1)
    same = spk[i] == spk[j]
    keep = ~same | ((utt[i] != utt[j]) & np.array([counts[s] >= 2 for s in spk[i]]))
    i, j, same = i[keep], j[keep], same[keep]
    print(f"{len(clips)} clips ({seconds:.1f} s), {len(counts)} speakers ({sum(n >= 2 for n in counts.values())} "
          f"with >= 2 clips), {int(same.sum())} same-speaker + {int((~same).sum())} different-speaker trials; "
          f"{encoder_version()}; model load {load_wall:.2f} s wall / {load_cpu:.2f} s CPU; threshold {args.threshold}")

    results = {}
    for name, kwargs in VARIANTS.items():
        emb = embed_all(encoder, audio, kwargs)  # warm-up, and the embeddings
        cpu = []
        for _ in range(args.passes):
            start = time.process_time()
            embed_all(encoder, audio, kwargs)
            cpu.append(time.process_time() - start)
        assert np.array_equal(emb, embed_all(encoder, audio, kwargs)), "not deterministic"
        cos = np.einsum("ij,ij->i", emb[i], emb[j])
        eer, eer_at = equal_error_rate(cos[same], cos[~same])
        caught, total, false_alarms, hi, lo, lines = plantings(emb, clips, args.threshold, leave_one_out_similarity)
        results[name] = dict(emb=emb, eer=eer, eer_at=eer_at, same=cos[same].mean(), diff=cos[~same].mean(),
                             diff_max=cos[~same].max(), caught=f"{caught}/{total}", false=false_alarms, hi=hi,
                             lo=lo, speed=seconds / min(cpu), lines=lines)

    stock_cos, stock_speed = {}, float("nan")
    if not args.no_stock:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder, preprocess_wav
        stock, sample = VoiceEncoder("cpu", verbose=False), list(range(0, len(clips), 6))
        start, ref, sub_seconds = time.process_time(), [], sum(len(audio[k][0]) / audio[k][1] for k in sample)
        for k in sample:
            ref.append(stock.embed_utterance(preprocess_wav(audio[k][0], audio[k][1])))
        stock_speed = sub_seconds / (time.process_time() - start)
        stock_file = np.array([stock.embed_utterance(preprocess_wav(clips[k][3])) for k in sample])
        for name, r in results.items():
            stock_cos[name] = np.einsum("ij,ij->i", r["emb"][sample], stock_file)
        stock_cos["stock from arrays"] = np.einsum("ij,ij->i", np.array(ref), stock_file)

    print("\n| variant | cos to stock (min / mean, n) | EER | at cos | mean cos same / diff | max diff cos "
          "| planted caught | false alarms | planted LOO max | genuine LOO min | x realtime |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        c = stock_cos.get(name)
        cs = f"{c.min():.4f} / {c.mean():.4f}, {len(c)}" if c is not None else "-"
        print(f"| {name} | {cs} | {100 * r['eer']:.2f} % | {r['eer_at']:.3f} | {r['same']:.3f} / {r['diff']:.3f} "
              f"| {r['diff_max']:.3f} | {r['caught']} | {r['false']} | {r['hi']:.3f} | {r['lo']:.3f} "
              f"| {r['speed']:.0f}x |")
    if stock_cos:
        print(f"| stock Resemblyzer (preprocess_wav + embed_utterance per clip) | "
              f"{stock_cos['stock from arrays'].min():.4f} (arrays vs files) | | | | | | | | | {stock_speed:.0f}x |")

    exact = results["exact (default)"]
    print("\nplanted mislabels (exact):\n  " + "\n  ".join(exact["lines"]))
    loo = leave_one_out_similarity(exact["emb"], spk)
    print("own-label leave-one-out similarity (exact), speakers with >= 3 clips:")
    for s, c in speaker_centroids(exact["emb"], spk).items():
        if c["count"] >= 3:
            print(f"  {s}: n={c['count']}, cos to centroid {c['mean']:.3f} +- {c['std']:.3f}, "
                  f"LOO min {np.nanmin(loo[spk == s]):.3f}, flagged {int((loo[spk == s] < args.threshold).sum())}")


if __name__ == "__main__":
    main()
