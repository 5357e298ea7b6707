"""SwiftF0 (``swift-f0``, MIT; a 135 KB ONNX model inside the wheel, no torch) on the shared frame grid.

SwiftF0 analyses 16 kHz audio in 16 ms frames (frame ``i`` at ``i * 16`` ms) and gives a pitch and a
confidence per frame. Frame ``t`` of the pipeline's grid (centred on sample ``t * hop_length``) takes the
SwiftF0 frame nearest in time; a frame is voiced where the confidence exceeds ``confidence``. The session
runs on one thread, so a track is the same wherever the shard runs.

Measured against SPTK RAPT on every clip of ``../shared/corpora`` (``bench/bench_f0_accuracy.py``, hop 256 at
22.05 kHz, within the speaker ranges): gross pitch error 1.0 %, voicing decision error 10.8 % at confidence
0.5, against DIO + refinement's 2.2 % / 12.0 %; but ~7.5 ms of CPU per audio second against DIO's ~1.6,
which would take the default feature path under 150x realtime: selectable (``features.f0_method:
swift_f0``), not the default.
"""

from __future__ import annotations

import functools

import numpy as np
import soxr

#: SwiftF0's input rate (Hz) and frame period (s).
SWIFT_RATE = 16000
SWIFT_FRAME_S = 0.016


@functools.cache
def _detector():
    from swift_f0 import SwiftF0  # here: onnxruntime's session is built only when the tracker is used

    return SwiftF0(threads=1, spin=False)


def swift_f0_track(samples: np.ndarray, sample_rate: int, hop_length: int, num_frames: int, *,
                   f0_floor: float, f0_ceil: float, confidence: float) -> np.ndarray:
    """F0 in Hz float32[num_frames] (0 = unvoiced) of float32[N] ``samples`` at ``sample_rate`` Hz, searched
    within ``[f0_floor, f0_ceil]`` (clipped to SwiftF0's own 46.875-2093.75 Hz)."""
    audio = samples if sample_rate == SWIFT_RATE else soxr.resample(samples, sample_rate, SWIFT_RATE, quality="HQ")
    if audio.size < SWIFT_RATE * SWIFT_FRAME_S:
        return np.zeros(num_frames, np.float32)
    result = _detector().detect(np.ascontiguousarray(audio, dtype=np.float32), SWIFT_RATE,
                                fmin=max(f0_floor, 46.875), fmax=min(f0_ceil, 2093.75))
    times_s = np.arange(num_frames) * hop_length / sample_rate
    nearest = np.clip(np.rint(times_s / SWIFT_FRAME_S).astype(np.int64), 0, len(result.pitch_hz) - 1)
    voiced = np.asarray(result.confidence)[nearest] > confidence
    return np.where(voiced, np.asarray(result.pitch_hz)[nearest], 0.0).astype(np.float32)
