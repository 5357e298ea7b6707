"""What every aligner produces: tokens with durations on the feature frame grid, and the protocol behind
the ``align.method`` config switch.

Durations are counted in units of the reduction factor ``r`` (Tacotron-style decoder steps of ``r``
frames): an ``Alignment`` of an utterance with ``num_frames`` frames (already a multiple of ``r``) has
``durations.sum() == num_frames // r``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: The one token for silence, whatever the aligner called it (MFA: empty interval, ``sil`` or ``sp``).
SILENCE = "sil"


@dataclass(frozen=True)
class Interval:
    """A labelled time span ``[start_s, end_s)`` in seconds, e.g. one phone of a TextGrid tier."""

    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Alignment:
    """Tokens and their durations: int32 ``[len(tokens)]``, in units of ``r`` frames."""

    tokens: list[str]
    durations: np.ndarray


class Aligner(Protocol):
    """Durations for one utterance of the features' frame grid.

    ``local_id``: the utterance id within its corpus (the TextGrid / MFA file name); ``num_frames``: frames
    of the features (a multiple of ``reduction_factor``); ``trim_start_s``: seconds cut from the start of the
    source audio before the features were computed. Raises ``AlignmentFailed`` when it has no alignment.
    """

    def align(self, local_id: str, *, num_frames: int, trim_start_s: float, sample_rate: int, hop_length: int,
              reduction_factor: int) -> Alignment: ...


@dataclass(frozen=True)
class SpeechInput:
    """What an audio-based aligner (``auto``'s pocketsphinx and synthesis aligners) sees of one utterance.

    ``samples`` float32 [N] is the conditioned (trimmed, denoised) audio at ``sample_rate`` Hz whose features
    were computed: frame ``t`` is centred on sample ``t * hop_length``, and the grid has ``num_frames`` frames
    (a multiple of ``reduction_factor``). ``tokens`` are the dataset's own G2P tokens (phones and the
    punctuation marks of ``ttsprep.stages.step3_text.g2p.PUNCTUATION``), ``text`` the normalised text they came from.
    """

    samples: np.ndarray
    sample_rate: int
    hop_length: int
    num_frames: int
    reduction_factor: int
    text: str
    tokens: list[str]
    language: str


@dataclass(frozen=True)
class TokenSpan:
    """Where an aligner heard token ``tokens[token]`` (``None``: a pause it found), ``[start_s, end_s)`` in
    seconds of ``SpeechInput.samples``; ``ttsprep.aligners.spans.spans_to_alignment`` turns spans into durations."""

    token: int | None
    start_s: float
    end_s: float


class SpeechAligner(Protocol):
    """An aligner of ``align.method: auto``: the dataset's own tokens timed on the audio itself.

    ``name`` is what ``index.json`` and the shards record (``alignment_method``). ``align`` raises
    ``AlignmentFailed`` (with a detail naming the cause) when it cannot align the utterance; ``auto`` then
    tries the next aligner of the language.
    """

    name: str

    def supports(self, language: str) -> bool: ...

    def align(self, speech: SpeechInput) -> Alignment: ...
