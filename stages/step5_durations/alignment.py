"""Durations and per-token prosody for one utterance, by the aligner the dataset's config names.

``auto`` (the default) tries the built-in aligners of the utterance's language in order on the shard row's
own audio (the FLAC it stores, so a re-run that reuses the audio aligns the same samples): pocketsphinx's
HMM for English, then alignment by espeak-ng synthesis. The first that succeeds gives the durations and is
recorded (``alignment_method``); when all fail the utterance is rejected (``alignment_failed``, naming each
aligner's reason). Uniform guesses are never written. ``textgrid`` and ``mfa`` read TextGrids (MFA's
output, or a folder the user already has), with ARPAbet labels mapped into the G2P's IPA. ``none`` and
``tacotron2`` give none here: the Tacotron 2 aligner needs the finished shards to train on, and adds its
durations after. Every method gives durations on the features' frame grid that sum to ``num_frames / r``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

from ttsprep.aligners.arpabet import arpabet_to_ipa
from ttsprep.aligners.base import SILENCE, Alignment, SpeechAligner, SpeechInput
from ttsprep.aligners.textgrid import TextGridAligner
from ttsprep.stages.core.audio_io import decode_bytes
from ttsprep.stages.core.config import StageConfig
from ttsprep.stages.core.errors import AlignmentFailed, ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import local_id
from ttsprep.stages.step5_durations.token_prosody import interpolate_f0, token_means

TEXTGRID_METHODS = ("textgrid", "mfa")
#: TextGrid labels that are not ARPAbet phones and stay as they are (MFA's spoken noise).
KEPT_TEXTGRID_LABELS = frozenset({SILENCE, "spn"})


@functools.cache
def auto_aligners() -> tuple[SpeechAligner, ...]:
    """The aligners ``auto`` tries, best first; each is built once per process (models stay loaded)."""
    from ttsprep.aligners.pocketsphinx_aligner import PocketsphinxAligner
    from ttsprep.aligners.synthesis_aligner import SynthesisAligner

    return PocketsphinxAligner(), SynthesisAligner()


def start_shard() -> None:
    """Reset what the aligners carry from one utterance to the next (espeak-ng's synthesiser state,
    pocketsphinx's live cepstral mean), so a shard's durations depend on its own utterances alone, not on
    which shards its worker processed before."""
    # only aligners this process has loaded carry anything: the others are not imported for nothing
    # (pocketsphinx and espeak-ng's bindings where alignment is off)
    if (events := sys.modules.get("ttsprep.aligners.espeak_events")) is not None:
        events.reset_engine()
    if (pocketsphinx := sys.modules.get("ttsprep.aligners.pocketsphinx_aligner")) is not None:
        pocketsphinx.reset_decoder()


def durations_for(utt_id: str, language: str, config: StageConfig, *, audio_flac: bytes, num_frames: int,
                  trim_start_s: float, text: str | None, tokens: list[str] | None,
                  textgrid_dir: Path | None) -> tuple[Alignment, str] | None:
    """Tokens and durations (int32, units of r frames, summing to ``num_frames / r``) and the name of the
    aligner that gave them, or ``None`` without an aligner (or, for ``auto``, without tokens to align).

    Raises ``AlignmentFailed`` (e.g. reason ``no_textgrid``, ``alignment_failed``) when the aligner(s) have
    nothing for this utterance.
    """
    method = config.align.method
    if method in TEXTGRID_METHODS:
        return _from_textgrid(utt_id, config, num_frames=num_frames, trim_start_s=trim_start_s,
                              textgrid_dir=textgrid_dir), method
    if method != "auto" or not tokens:
        return None
    samples, sample_rate = decode_bytes(audio_flac)
    speech = SpeechInput(samples=samples, sample_rate=sample_rate, hop_length=config.features.hop_length,
                         num_frames=num_frames, reduction_factor=config.align.reduction_factor, text=text or "",
                         tokens=list(tokens), language=language)
    return align_auto(speech)


def align_auto(speech: SpeechInput) -> tuple[Alignment, str]:
    """The first alignment any of ``auto_aligners`` gives for ``speech``'s language, and that aligner's name.

    Raises ``AlignmentFailed`` naming every aligner's reason when none can align it.
    """
    failures = []
    for aligner in auto_aligners():
        if not aligner.supports(speech.language):
            continue
        try:
            return aligner.align(speech), aligner.name
        except AlignmentFailed as error:
            failures.append(f"{aligner.name}: {error}")
    if not failures:
        raise AlignmentFailed(f"no built-in aligner for language '{speech.language}'", reason=Reason.ALIGNMENT_FAILED)
    raise AlignmentFailed("; ".join(failures), reason=Reason.ALIGNMENT_FAILED)


def _from_textgrid(utt_id: str, config: StageConfig, *, num_frames: int, trim_start_s: float,
                   textgrid_dir: Path | None) -> Alignment:
    if textgrid_dir is None:
        raise ConfigError(f"align.method={config.align.method!r} needs a TextGrid folder (align.textgrid_dir)")
    aligned = TextGridAligner(textgrid_dir).align(
        local_id(utt_id), num_frames=num_frames, trim_start_s=trim_start_s, sample_rate=config.audio.sample_rate,
        hop_length=config.features.hop_length, reduction_factor=config.align.reduction_factor)
    if config.align.textgrid_phones == "as_is":
        return aligned
    return Alignment(tokens=[_ipa_of_textgrid_label(label, utt_id) for label in aligned.tokens],
                     durations=aligned.durations)


def _ipa_of_textgrid_label(label: str, utt_id: str) -> str:
    if label in KEPT_TEXTGRID_LABELS:
        return label
    try:
        return arpabet_to_ipa(label)
    except KeyError:
        raise AlignmentFailed(f"TextGrid label {label!r} of {local_id(utt_id)} is not an ARPAbet phone "
                              "(align.textgrid_phones: as_is keeps labels as they are)",
                              reason=Reason.TEXTGRID_UNKNOWN_PHONE) from None


def token_prosody(durations: np.ndarray, f0: np.ndarray, voiced: np.ndarray, energy: np.ndarray, *,
                  reduction_factor: int, interpolate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-token pitch and energy, float32 [N] each.

    Pitch is the mean F0 in Hz over each token's voiced frames (0 for a token without any), or with
    ``interpolate`` the mean of the continuous log-F0 over all its frames (FastSpeech2's variant; a fully
    unvoiced utterance then raises ``Rejected``). Energy is the mean over all the token's frames.
    """
    if interpolate:
        pitch = token_means(interpolate_f0(f0, voiced), durations, reduction_factor=reduction_factor)
    else:
        pitch = token_means(f0, durations, voiced=voiced, reduction_factor=reduction_factor)
    return pitch, token_means(energy, durations, reduction_factor=reduction_factor)
