"""Montreal Forced Aligner around the pipeline: export a corpus in MFA's layout, run ``mfa``, find its TextGrids.

MFA (conda-forge only: it needs Kaldi) runs as a subprocess over a whole corpus before the shards are
processed; ``ttsprep.aligners.textgrid.TextGridAligner`` then reads its output folder. The exported audio is the
untrimmed source audio, so the TextGrids share its time base and ``trim_start_s`` maps them onto the
trimmed features.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from ttsprep.stages.core.audio_io import load_audio
from ttsprep.stages.core.errors import AlignmentFailed, ConfigError, InvalidTranscript
from ttsprep.stages.core.reasons import Reason

#: Lines of MFA's stderr quoted in the error when it fails.
STDERR_TAIL_LINES = 20

_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


def mfa_file_stem(name: str) -> str:
    """``name`` as a portable file or folder name: characters outside ``[A-Za-z0-9._-]`` and a leading dot
    become ``_``."""
    stem = _UNSAFE_CHARACTERS.sub("_", name)
    return "_" + stem[1:] if stem.startswith(".") else stem


def export_mfa_corpus(utterances: list[tuple[str, str, Path | np.ndarray, str]], out_dir: Path, *,
                      sample_rate: int = 16000) -> Path:
    """Write ``<out_dir>/<speaker>/<local_id>.wav`` (PCM-16 mono) and ``.lab`` (the transcript) per utterance.

    ``utterances``: ``(speaker, local_id, audio, transcript)``; ``audio`` is a file path (decoded and
    resampled to ``sample_rate``) or float samples already at ``sample_rate``. Names pass through
    ``mfa_file_stem``. Raises ``AlignmentFailed`` (reason ``duplicate_utterance_name``) when two utterances
    get the same file stem (MFA's TextGrids are found by stem alone), ``InvalidTranscript`` for an empty
    transcript and ``InvalidAudio`` for undecodable audio. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    seen: dict[str, str] = {}
    for speaker, local_id, audio, transcript in utterances:
        stem = mfa_file_stem(local_id)
        if stem in seen:
            raise AlignmentFailed(f"utterances '{seen[stem]}' and '{local_id}' both export as '{stem}'",
                                  reason=Reason.DUPLICATE_UTTERANCE_NAME)
        seen[stem] = local_id
        if not transcript.strip():
            raise InvalidTranscript(f"{local_id}: empty transcript", reason=Reason.EMPTY_TRANSCRIPT)
        samples = load_audio(Path(audio), sample_rate) if isinstance(audio, (str, Path)) else np.asarray(audio)
        speaker_dir = out_dir / mfa_file_stem(speaker)
        speaker_dir.mkdir(parents=True, exist_ok=True)
        sf.write(speaker_dir / f"{stem}.wav", np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16")
        (speaker_dir / f"{stem}.lab").write_text(transcript.strip() + "\n", encoding="utf-8")
    return out_dir


def mfa_available() -> bool:
    """Whether the ``mfa`` command is on ``PATH``."""
    return shutil.which("mfa") is not None


def run_mfa_align(corpus_dir: Path, dictionary: str, acoustic_model: str | None, out_dir: Path, *, jobs: int = 1,
                  clean: bool = True) -> Path:
    """Align ``corpus_dir`` into TextGrids under ``out_dir`` and return ``out_dir``.

    ``dictionary`` / ``acoustic_model``: paths or MFA model names (``english_us_arpa``). Without an acoustic
    model one is trained on the corpus (``mfa train``), saved as ``<out_dir>/acoustic_model.zip``, and the
    corpus is aligned with it. Raises ``ConfigError`` when MFA is not installed and ``AlignmentFailed``
    (reason ``mfa_failed``, with the command and the tail of MFA's stderr) when it fails.
    """
    executable = shutil.which("mfa")
    if executable is None:
        raise ConfigError("align.method 'mfa' needs the Montreal Forced Aligner on PATH "
                          "(conda install -c conda-forge montreal-forced-aligner)")
    out_dir = Path(out_dir)
    options = ["--clean"] if clean else []
    options += ["-j", str(jobs)]
    if acoustic_model is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        command = [executable, "train", *options, str(corpus_dir), dictionary, str(out_dir / "acoustic_model.zip"),
                   "--output_directory", str(out_dir)]
    else:
        command = [executable, "align", *options, str(corpus_dir), dictionary, acoustic_model, str(out_dir)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-STDERR_TAIL_LINES:])
        raise AlignmentFailed(f"`{' '.join(command)}` exited with status {result.returncode}:\n{tail}",
                              reason=Reason.MFA_FAILED)
    _textgrid_index.cache_clear()
    return out_dir


@lru_cache(maxsize=8)
def _textgrid_index(textgrid_dir: Path) -> dict[str, list[Path]]:
    """Every ``*.TextGrid`` under ``textgrid_dir`` by file stem (built once per folder and process)."""
    index: dict[str, list[Path]] = {}
    for path in sorted(textgrid_dir.rglob("*.TextGrid")):
        index.setdefault(path.stem, []).append(path)
    return index


def find_textgrid(textgrid_dir: Path, local_id: str) -> Path | None:
    """``<textgrid_dir>/**/<local_id>.TextGrid`` (or the ``mfa_file_stem`` of it), None when absent.

    The folder is indexed on the first call; ``run_mfa_align`` refreshes the index. Raises
    ``AlignmentFailed`` (reason ``ambiguous_textgrid``) when several files have that name.
    """
    index = _textgrid_index(Path(textgrid_dir).resolve())
    matches = index.get(local_id) or index.get(mfa_file_stem(local_id)) or []
    if len(matches) > 1:
        raise AlignmentFailed(f"{len(matches)} files named {local_id}.TextGrid: {[str(p) for p in matches]}",
                              reason=Reason.AMBIGUOUS_TEXTGRID)
    return matches[0] if matches else None
