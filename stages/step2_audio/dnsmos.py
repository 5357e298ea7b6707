"""Speech quality: DNSMOS P.835 (Reddy et al., ICASSP 2022), signal / background / overall MOS in [1, 5].

The model is Microsoft's ONNX network shipped inside the ``speechmos`` wheel (MIT); this module runs it
directly with onnxruntime instead of calling ``speechmos.dnsmos.run``, which

* also runs the P.808 model (a second network and a mel spectrogram per window) whose score we do not keep;
* creates its sessions with onnxruntime's default thread pools: results depend on the thread count, and a
  shard must be bit-identical wherever it runs. Here the sessions run on one intra-op and one inter-op thread,
  sequentially, loaded once per process;
* tiles a clip shorter than the 9.01 s window by doubling it until it is at least that long, then slides
  the window over the tiled signal in 1 s hops: a 4.4 s clip becomes 17.6 s and 8 windows of the same
  repeated speech (a 1.6 s one: 3; an 8.1 s one: 7). Here a short clip is tiled cyclically to one window,
  which is the first of those windows. On the 77 clips of the shared corpora (1.6-11.7 s, 338 s) that scores
  78 windows instead of 321, and the scores differ from the 1 s-hop ones by 0.027 OVRL on average (absolute;
  95th percentile 0.09, largest 0.14 OVRL, 0.23 BAK, on noisy Common Voice clips; mean signed +0.006), inside
  DNSMOS's own error against listeners.

Clips of 9.01 s or longer get ``speechmos``'s windows (1 s hop) and scores (up to its thread rounding).
Cost on one core of the 2-core development VM: ~360 ms per window (~670 ms while other jobs shared the
cores), so ~40-220 ms per audio second for clips up to 9 s (one window), ~90-200 ms for 12-20 s clips;
~80 ms per audio second over the shared clips against ~340 ms for speechmos's windows on one thread.

No Prefect, and no import of speechmos or onnxruntime until the first score is asked for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import soxr

from ttsprep.stages.core.errors import ConfigError

SAMPLE_RATE = 16000
#: The P.835 network's input: 9.01 s at 16 kHz.
WINDOW_SAMPLES = 144160
#: ``speechmos`` (and Microsoft's ``dnsmos_local.py``) slide the window in 1 s hops over long clips.
HOP_SAMPLES = SAMPLE_RATE
#: Third-order maps from the network's raw outputs to MOS (``speechmos.dnsmos.DNSMOS.get_polyfit_val``,
#: the non-personalised model; from Microsoft's DNS-Challenge ``DNSMOS/dnsmos_local.py``, MIT).
_POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
_POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
_POLY_OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])
#: The shard columns (``ttsprep.stages.core.schema``), float32, null when ``features.dnsmos`` is off.
DNSMOS_COLUMNS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
_MODEL = ("dnsmos_models", "sig_bak_ovr.onnx")
_MISSING = ("DNSMOS (stages.features.dnsmos) needs the packages speechmos and onnxruntime "
            "(pip install 'speechmos>=0.0.1' onnxruntime); speechmos declares no dependencies of its own")


@dataclass(frozen=True)
class DnsmosScores:
    """DNSMOS P.835 MOS: speech signal (SIG), background noise (BAK, higher = quieter) and overall (OVRL)."""

    sig: float
    bak: float
    ovrl: float


def dnsmos_available() -> bool:
    """Whether speechmos and onnxruntime can be imported (without importing them)."""
    from importlib.util import find_spec

    return find_spec("speechmos") is not None and find_spec("onnxruntime") is not None


@functools.cache
def _session():
    """The P.835 ONNX session of this process: one thread, sequential execution, loaded once."""
    try:
        import onnxruntime as ort
        import speechmos
    except ImportError as error:
        raise ConfigError(f"{_MISSING} ({error})") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    model = resources.files(speechmos).joinpath(*_MODEL).read_bytes()
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def dnsmos_windows(samples_16k: np.ndarray) -> np.ndarray:
    """The ``[n, WINDOW_SAMPLES]`` float32 windows scored for a 16 kHz clip (see the module docstring)."""
    audio = np.asarray(samples_16k, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"DNSMOS needs a non-empty mono signal, got shape {audio.shape}")
    if audio.size < WINDOW_SAMPLES:
        return np.resize(audio, WINDOW_SAMPLES)[np.newaxis]  # cyclic tiling: the clip repeated, then cut
    # speechmos: int(floor(len / fs) - 9.01) + 1 hops of 1 s, windows that would run past the end skipped
    hops = int(np.floor(audio.size / SAMPLE_RATE) - WINDOW_SAMPLES / SAMPLE_RATE) + 1
    starts = [i * HOP_SAMPLES for i in range(hops) if i * HOP_SAMPLES + WINDOW_SAMPLES <= audio.size]
    return np.stack([audio[start:start + WINDOW_SAMPLES] for start in starts])


def dnsmos(samples: np.ndarray, sample_rate: int) -> DnsmosScores:
    """DNSMOS P.835 of a mono float signal in [-1, 1] at ``sample_rate`` (resampled to 16 kHz, soxr HQ).

    Samples beyond [-1, 1] are clipped first (as the shard's PCM-16 audio is). Each window is scored on its
    own (a batch would change the rounding), then the per-window MOS are averaged, as ``speechmos`` does.
    """
    audio = np.asarray(samples, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE, quality="HQ")
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)
    session = _session()
    raw = np.stack([session.run(None, {"input_1": window[np.newaxis]})[0][0] for window in dnsmos_windows(audio)])
    sig, bak, ovrl = (float(np.mean(poly(raw[:, column].astype(np.float64))))
                      for column, poly in enumerate((_POLY_SIG, _POLY_BAK, _POLY_OVRL)))
    return DnsmosScores(sig=sig, bak=bak, ovrl=ovrl)


def dnsmos_columns(samples: np.ndarray, sample_rate: int, *, enabled: bool) -> dict[str, float | None]:
    """``DNSMOS_COLUMNS`` of a shard row: the scores of ``samples`` when ``enabled``, else nulls."""
    if not enabled:
        return dict.fromkeys(DNSMOS_COLUMNS)
    scores = dnsmos(samples, sample_rate)
    return dict(zip(DNSMOS_COLUMNS, (scores.sig, scores.bak, scores.ovrl)))
