"""The exception hierarchy: every error the pipeline raises on bad data or bad configuration.

Stages raise these at their boundaries; the shard runner turns a per-utterance error into a row of the
rejects ledger (its ``reason`` is the exception's ``reason`` code), so one bad file never stops a run.
"""

from __future__ import annotations

from contextlib import contextmanager

from ttsprep.stages.core.reasons import Reason


class TtsprepError(Exception):
    """Base class. ``reason`` is the short, stable code written to the rejects ledger."""

    reason = Reason.ERROR

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(TtsprepError):
    """datasets.yaml or a stage configuration is invalid; raised before any work starts."""

    reason = Reason.CONFIG


class InvalidAudio(TtsprepError):
    """Audio that cannot be decoded, is empty, or holds non-finite samples."""

    reason = Reason.INVALID_AUDIO


class InvalidTranscript(TtsprepError):
    """A transcript that is empty, undecodable, or that the text front-end cannot convert."""

    reason = Reason.INVALID_TRANSCRIPT


class AlignmentFailed(TtsprepError):
    """An aligner produced no usable durations for an utterance."""

    reason = Reason.ALIGNMENT_FAILED


class Rejected(TtsprepError):
    """A filter decided to drop an utterance (``reason`` names the filter, the message the value)."""

    reason = Reason.FILTERED


class InvariantViolation(TtsprepError):
    """A frame-grid invariant does not hold (e.g. ``len(f0) != num_frames``); checked at shard write."""

    reason = Reason.INVARIANT


@contextmanager
def stage(name: str):
    """Label any exception raised inside with the pipeline stage ``name`` (for the rejects ledger)."""
    try:
        yield
    except Exception as error:
        if not hasattr(error, "stage"):
            error.stage = name  # type: ignore[attr-defined]
        raise
