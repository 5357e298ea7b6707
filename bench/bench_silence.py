"""Benchmark: x realtime of ``ttsprep.stages.step2_audio.silence.detect_nonsilent_ms`` against ``pydub.silence.detect_nonsilent``.

Both see the same 16-bit PCM of real LJSpeech clips (decoding excluded); the numpy detector is also timed on
float32 input (what ``load_audio`` returns, converted to PCM inside). x realtime = audio seconds per CPU
second (``time.process_time``, one thread), median of ``--passes`` passes after one warm-up call. Every
clip's ranges are checked to be identical to pydub's.

    python bench/bench_silence.py                          # ../shared/corpora/ljspeech, 500 ms, dBFS - 40
    python bench/bench_silence.py --min-silence-ms 300 --seek-step-ms 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from pydub import AudioSegment  # noqa: E402
from pydub.silence import detect_nonsilent  # noqa: E402

from ttsprep.stages.step2_audio.silence import clip_dbfs, detect_nonsilent_ms  # noqa: E402

DEFAULT_WAVS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "ljspeech" / "LJSpeech-1.1" / "wavs"


def cpu_seconds(call, passes: int) -> float:
    """Median CPU seconds of ``call()`` over ``passes`` runs, after one warm-up run."""
    call()
    times = []
    for _ in range(passes):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wavs", type=Path, default=DEFAULT_WAVS, help="folder of 16-bit wav files")
    parser.add_argument("--min-silence-ms", type=int, default=500)
    parser.add_argument("--relative-db", type=float, default=-40.0, help="threshold = clip dBFS + this")
    parser.add_argument("--seek-step-ms", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3, help="pydub passes (numpy gets 10x as many)")
    args = parser.parse_args()

    paths = sorted(args.wavs.glob("*.wav"))
    if not paths:
        raise SystemExit(f"no wav files in {args.wavs}")
    header = f"{'clip':<16}{'audio s':>8}{'pydub ms':>10}{'numpy ms':>10}{'f32 ms':>8}{'pydub xRT':>11}" \
             f"{'numpy xRT':>11}{'f32 xRT':>10}{'speedup':>9}  same"
    print(header)
    totals = np.zeros(4)
    for path in paths:
        pcm, sample_rate = sf.read(path, dtype="int16")
        as_float = pcm.astype(np.float32) / 32768
        segment = AudioSegment(pcm.tobytes(), frame_rate=sample_rate, sample_width=2, channels=1)
        thresh_dbfs = clip_dbfs(pcm) + args.relative_db
        kwargs = dict(min_silence_len_ms=args.min_silence_ms, silence_thresh_dbfs=thresh_dbfs,
                      seek_step_ms=args.seek_step_ms)
        expected = [tuple(r) for r in detect_nonsilent(segment, args.min_silence_ms, thresh_dbfs, args.seek_step_ms)]
        same = detect_nonsilent_ms(pcm, sample_rate, **kwargs) == expected == \
            detect_nonsilent_ms(as_float, sample_rate, **kwargs)
        pydub_s = cpu_seconds(lambda: detect_nonsilent(segment, args.min_silence_ms, thresh_dbfs, args.seek_step_ms),
                              args.passes)
        numpy_s = cpu_seconds(lambda: detect_nonsilent_ms(pcm, sample_rate, **kwargs), 10 * args.passes)
        float_s = cpu_seconds(lambda: detect_nonsilent_ms(as_float, sample_rate, **kwargs), 10 * args.passes)
        audio_s = pcm.size / sample_rate
        totals += (audio_s, pydub_s, numpy_s, float_s)
        print(f"{path.stem:<16}{audio_s:>8.2f}{pydub_s * 1e3:>10.1f}{numpy_s * 1e3:>10.3f}{float_s * 1e3:>8.3f}"
              f"{audio_s / pydub_s:>11.0f}{audio_s / numpy_s:>11.0f}{audio_s / float_s:>10.0f}"
              f"{pydub_s / numpy_s:>9.0f}  {'yes' if same else 'NO'}")
    audio_s, pydub_s, numpy_s, float_s = totals
    print(f"{'total':<16}{audio_s:>8.2f}{pydub_s * 1e3:>10.1f}{numpy_s * 1e3:>10.3f}{float_s * 1e3:>8.3f}"
          f"{audio_s / pydub_s:>11.0f}{audio_s / numpy_s:>11.0f}{audio_s / float_s:>10.0f}{pydub_s / numpy_s:>9.0f}")


if __name__ == "__main__":
    main()
