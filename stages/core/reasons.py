"""Every reason code the rejects ledger can hold, with the stage that writes it and what it means.

A ledger row's ``reason`` is one of ``Reason`` (``Reject`` refuses any other): the README's table of
reasons is generated from ``REASONS`` and a test keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A ledger reason code (a ``str``: written to Parquet and JSON as its value)."""

    # ingest: the corpus as found on disk
    MISSING_AUDIO = "missing_audio"
    UNREADABLE_AUDIO = "unreadable_audio"
    EMPTY_AUDIO = "empty_audio"
    TRUNCATED_AUDIO = "truncated_audio"
    NON_FINITE_AUDIO = "non_finite_audio"
    MISSING_TRANSCRIPT = "missing_transcript"
    EMPTY_TRANSCRIPT = "empty_transcript"
    INVALID_ENCODING = "invalid_encoding"
    DUPLICATE_ID = "duplicate_id"
    PATH_ESCAPES_ROOT = "path_escapes_root"
    MALFORMED_METADATA = "malformed_metadata"
    # filter: metadata, before any audio is decoded
    BLOCKLISTED = "blocklisted"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    DOWN_VOTES = "down_votes"
    CPS_OUTLIER = "cps_outlier"
    # decode and condition: the audio itself
    INVALID_AUDIO = "invalid_audio"
    CLIPPING = "clipping"
    ALL_SILENCE = "all_silence"
    TOO_SHORT_AFTER_TRIM = "too_short_after_trim"
    TOO_LONG_FOR_GPU = "too_long_for_gpu"
    LOW_SNR = "low_snr"
    LOW_DNSMOS = "low_dnsmos"
    # text front-end
    INVALID_TRANSCRIPT = "invalid_transcript"
    G2P_FAILED = "g2p_failed"
    G2P_UNSUPPORTED_LANGUAGE = "g2p_unsupported_language"
    # durations
    ALIGNMENT_FAILED = "alignment_failed"
    ALIGNMENT_OUTSIDE_AUDIO = "alignment_outside_audio"
    ALIGNMENT_TOO_SHORT = "alignment_too_short"
    EMPTY_ALIGNMENT = "empty_alignment"
    NO_TEXTGRID = "no_textgrid"
    BAD_TEXTGRID = "bad_textgrid"
    AMBIGUOUS_TEXTGRID = "ambiguous_textgrid"
    TEXTGRID_UNKNOWN_PHONE = "textgrid_unknown_phone"
    DUPLICATE_UTTERANCE_NAME = "duplicate_utterance_name"
    MFA_FAILED = "mfa_failed"
    NO_PHONEMES = "no_phonemes"
    TOO_FEW_FRAMES = "too_few_frames"
    ATTENTION_LOW_QUALITY = "attention_low_quality"
    NO_VOICED_FRAMES = "no_voiced_frames"
    # the dataset as a whole, after all shards
    SPEAKER_MISMATCH = "speaker_mismatch"
    # the shard as a whole, and defects of ours
    INVARIANT = "invariant"
    SHARD_FAILED = "shard_failed"
    INTERNAL_ERROR = "internal_error"
    # not ledger reasons: the codes of errors that stop a command instead
    CONFIG = "config"
    ERROR = "error"
    FILTERED = "filtered"
    TRAINING_DIVERGED = "training_diverged"


#: reason -> (the stage that writes it, what it means). Only the codes that reach the ledger.
REASONS: dict[Reason, tuple[str, str]] = {
    Reason.MISSING_AUDIO: ("ingest", "the manifest names an audio file that does not exist"),
    Reason.UNREADABLE_AUDIO: ("ingest", "the audio header cannot be read (not audio, unknown format)"),
    Reason.EMPTY_AUDIO: ("ingest, decode", "the file holds no samples"),
    Reason.TRUNCATED_AUDIO: ("ingest, decode", "the file ends before its header says"),
    Reason.NON_FINITE_AUDIO: ("decode", "samples are NaN or infinite"),
    Reason.MISSING_TRANSCRIPT: ("ingest", "an audio file without a transcript"),
    Reason.EMPTY_TRANSCRIPT: ("ingest, align", "the transcript is empty"),
    Reason.INVALID_ENCODING: ("ingest", "a metadata or transcript file is not UTF-8"),
    Reason.DUPLICATE_ID: ("ingest", "an utterance id seen before in the dataset (the later occurrence)"),
    Reason.PATH_ESCAPES_ROOT: ("ingest", "an audio path that leads outside the dataset's root"),
    Reason.MALFORMED_METADATA: ("ingest", "a metadata line the importer cannot parse"),
    Reason.BLOCKLISTED: ("filter", "listed in filter.blocklist"),
    Reason.TOO_SHORT: ("filter", "source duration below filter.min_duration_s"),
    Reason.TOO_LONG: ("filter", "source duration above filter.max_duration_s"),
    Reason.DOWN_VOTES: ("filter", "Common Voice down-votes at or above filter.max_down_votes"),
    Reason.CPS_OUTLIER: ("filter", "characters per second far from the dataset's median"),
    Reason.INVALID_AUDIO: ("decode", "the audio cannot be decoded"),
    Reason.CLIPPING: ("condition", "clipped samples above filter.max_clipping_fraction"),
    Reason.ALL_SILENCE: ("condition", "nothing above the silence threshold"),
    Reason.TOO_SHORT_AFTER_TRIM: ("condition", "shorter than filter.min_duration_s after trimming"),
    Reason.TOO_LONG_FOR_GPU: ("condition", "longer than filter.max_gpu_duration_s after trimming"),
    Reason.LOW_SNR: ("condition", "estimated SNR below filter.min_snr_db"),
    Reason.LOW_DNSMOS: ("condition", "DNSMOS overall below filter.min_dnsmos"),
    Reason.INVALID_TRANSCRIPT: ("text", "the transcript cannot be normalised"),
    Reason.G2P_FAILED: ("text", "the G2P returned no phones or failed"),
    Reason.G2P_UNSUPPORTED_LANGUAGE: ("text", "no G2P for the utterance's language"),
    Reason.ALIGNMENT_FAILED: ("align", "every aligner of the language failed (each one's reason in the detail)"),
    Reason.ALIGNMENT_OUTSIDE_AUDIO: ("align", "the alignment ends after the audio does"),
    Reason.ALIGNMENT_TOO_SHORT: ("align", "the alignment covers too little of the audio"),
    Reason.EMPTY_ALIGNMENT: ("align", "the alignment has no tokens"),
    Reason.NO_TEXTGRID: ("align", "no TextGrid for the utterance"),
    Reason.BAD_TEXTGRID: ("align", "the TextGrid cannot be read or has no usable tier"),
    Reason.AMBIGUOUS_TEXTGRID: ("align", "several TextGrids match the utterance"),
    Reason.TEXTGRID_UNKNOWN_PHONE: ("align", "a TextGrid label that is not ARPAbet (textgrid_phones: arpabet)"),
    Reason.DUPLICATE_UTTERANCE_NAME: ("align", "two utterances would share a name in the MFA corpus"),
    Reason.MFA_FAILED: ("align", "Montreal Forced Aligner produced no TextGrid"),
    Reason.NO_PHONEMES: ("align", "no phonemes to align (Tacotron 2 aligner)"),
    Reason.TOO_FEW_FRAMES: ("align", "fewer frames than tokens: some token would get no frame"),
    Reason.ATTENTION_LOW_QUALITY: ("align", "Tacotron 2 attention below align.attention_min_*"),
    Reason.NO_VOICED_FRAMES: ("prosody", "no voiced frame in the utterance"),
    Reason.SPEAKER_MISMATCH: ("speaker_check", "the voice does not match the speaker's other utterances: "
                                                "leave-one-out embedding cosine below filter.min_speaker_similarity"),
    Reason.INVARIANT: ("write", "a shard row broke an invariant (a defect: please report it)"),
    Reason.SHARD_FAILED: ("shard", "the shard's task failed outright; the next run retries it"),
    Reason.INTERNAL_ERROR: ("any", "an unexpected exception (a defect: the detail names it)"),
}


def readme_table() -> str:
    """The README's table of ledger reasons, as markdown."""
    lines = ["| reason | stage | meaning |", "|---|---|---|"]
    lines += [f"| `{reason}` | {stage} | {meaning} |" for reason, (stage, meaning) in REASONS.items()]
    return "\n".join(lines)
