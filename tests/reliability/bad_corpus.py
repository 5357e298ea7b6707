"""Corpora of bad and unusual inputs in genuine layouts, each utterance with its known outcome.

``write_bad_corpora(root)`` writes five datasets and a ``datasets.yaml`` over them:

* ``lj``: LJSpeech layout (``metadata.csv``, ``wavs/``): broken, empty, non-finite, silent, noisy and
  over-long audio; valid but unusual encodings (8-bit, 24-bit, float32, stereo, 96 kHz), which must be
  kept; missing and orphan audio, empty, whitespace-only, undecodable and duplicate transcripts, and
  ids or symlinks that lead outside the corpus root.
* ``mcsv`` / ``mjsonl``: the generic manifest importer over a CSV and a JSON Lines file, where a path can
  be absolute or climb out of the root.
* ``vctk``: VCTK 0.92 (48 kHz FLAC per speaker, one ``.txt`` per utterance).
* ``cv``: a Common Voice locale folder (MP3 clips, ``validated.tsv``).

Each utterance is a ``Case``: kept, or rejected at one stage with one reason code and a detail that says
what was measured or found. Files outside the corpora (the targets of escaping paths) lie in ``outside/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.helpers import tone_bursts

KEPT = "kept"
#: The pipeline's sample rate in the generated config; every kept input is converted to it.
SAMPLE_RATE = 16000
SOURCE_RATE = 22050
#: The over-long file: 10 minutes of 8 kHz digital silence (9.6 MB), rejected from its header alone.
LONG_FILE_S = 600
LONG_FILE_RATE = 8000


def _ledger_id(local_id: str, reason: str) -> str:
    """The id a case's outcome is found under: an id's second listing is its own ledger row, ``<id>#2``."""
    return f"{local_id}#2" if reason == "duplicate_id" else local_id


@dataclass(frozen=True)
class Case:
    """One input utterance and what the pipeline must do with it.

    ``reason`` is ``KEPT`` or the ledger's reason code; ``stage`` the ledger's stage; ``detail`` a regular
    expression the ledger's detail must match (it names the measured value or the offending input).
    """

    dataset: str
    local_id: str
    what: str
    reason: str
    stage: str = ""
    detail: str = ""

    @property
    def utt_id(self) -> str:
        return f"{self.dataset}:{self.local_id}"


def speech(sample_rate: int = SOURCE_RATE) -> np.ndarray:
    """3.3 s of harmonic bursts (F0 160-192 Hz) between near-silences, float32 [N] peaking near 0.5."""
    return tone_bursts(sample_rate)


def _write(path: Path, samples: np.ndarray, sample_rate: int = SOURCE_RATE, subtype: str = "PCM_16",
           audio_format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype=subtype, format=audio_format)
    return path


def _truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut ``path`` to ``fraction`` of its bytes, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def _non_finite(value: float) -> np.ndarray:
    samples = speech()
    samples[5000:5100] = value
    return samples


def _write_lj(root: Path, outside: Path) -> list[Case]:
    wavs = root / "wavs"
    wavs.mkdir(parents=True)
    lines: list[bytes] = []
    cases: list[Case] = []

    def utterance(local_id: str, what: str, reason: str, stage: str = "", detail: str = "",
                  text: bytes = b"Printing, in the only sense with which we are at present concerned.") -> None:
        lines.append(local_id.encode() + b"|" + text + b"|" + text)
        cases.append(Case("lj", _ledger_id(local_id, reason), what, reason, stage, detail))

    clip = speech()
    for local_id, what, samples, rate, subtype in (
            ("LJ-pcm16", "16-bit PCM mono at 22.05 kHz (the reference)", clip, SOURCE_RATE, "PCM_16"),
            ("LJ-pcm8", "8-bit unsigned PCM", clip, SOURCE_RATE, "PCM_U8"),
            ("LJ-pcm24", "24-bit PCM", clip, SOURCE_RATE, "PCM_24"),
            ("LJ-float32", "32-bit float PCM", clip, SOURCE_RATE, "FLOAT"),
            ("LJ-stereo", "16-bit stereo (right channel at half level)", np.stack([clip, clip / 2], axis=1),
             SOURCE_RATE, "PCM_16"),
            ("LJ-96k", "24-bit PCM at 96 kHz", speech(96000), 96000, "PCM_24")):
        _write(wavs / f"{local_id}.wav", samples, rate, subtype)
        utterance(local_id, what, KEPT)

    _truncate(_write(wavs / "LJ-truncated.wav", clip))
    utterance("LJ-truncated", "wav cut to half its bytes (header declares twice the data)", "truncated_audio",
              "ingest", r"declares \d+ bytes of audio data, the file holds \d+")
    (wavs / "LJ-zero-bytes.wav").write_bytes(b"")
    utterance("LJ-zero-bytes", "zero-length file", "unreadable_audio", "ingest", "Format not recognised")
    _write(wavs / "LJ-no-frames.wav", np.zeros(0, np.float32))
    utterance("LJ-no-frames", "wav header with no sample frames", "empty_audio", "ingest", "holds no samples")
    (wavs / "LJ-garbage.wav").write_bytes(np.random.default_rng(7).bytes(4096))
    utterance("LJ-garbage", "random bytes named .wav", "unreadable_audio", "ingest", "Format not recognised")
    _write(wavs / "LJ-nan.wav", _non_finite(np.nan), subtype="FLOAT")
    utterance("LJ-nan", "float wav holding NaN", "non_finite_audio", "decode", "100 non-finite samples")
    _write(wavs / "LJ-inf.wav", _non_finite(np.inf), subtype="FLOAT")
    utterance("LJ-inf", "float wav holding +inf", "non_finite_audio", "decode", "100 non-finite samples")
    _write(wavs / "LJ-silence.wav", np.zeros(3 * SOURCE_RATE, np.float32))
    utterance("LJ-silence", "3 s of digital silence", "all_silence", "condition", "no sound")
    noise = np.random.default_rng(3).normal(0, 0.1, 3 * SOURCE_RATE).astype(np.float32)
    _write(wavs / "LJ-noise.wav", noise)
    utterance("LJ-noise", "3 s of white noise", "low_snr", "condition", r"snr_db=-?\d+\.\d < min_snr_db=5\.0")
    _write(wavs / "LJ-ten-minutes.wav", np.zeros(LONG_FILE_S * LONG_FILE_RATE, np.int16), LONG_FILE_RATE)
    utterance("LJ-ten-minutes", "10-minute file (8 kHz silence)", "too_long", "filter",
              r"duration_s=600\.000 > max_duration_s=30\.0")
    _write(wavs / "LJ-short.wav", clip[:SOURCE_RATE // 10])
    utterance("LJ-short", "0.1 s clip", "too_short", "filter", r"duration_s=0\.100 < min_duration_s=0\.3")

    utterance("LJ-missing", "transcript whose wav does not exist", "missing_audio", "ingest", "not found")
    for local_id, what, text, reason, detail in (
            ("LJ-empty-text", "empty transcript", b"", "empty_transcript", "the transcript is empty"),
            ("LJ-blank-text", "whitespace-only transcript", b" \t ", "empty_transcript", "only whitespace"),
            ("LJ-latin1", "transcript in Latin-1, not UTF-8", "Café au lait.".encode("latin-1"), "invalid_encoding",
             r"metadata.csv line \d+ is not UTF-8")):
        _write(wavs / f"{local_id}.wav", clip)
        utterance(local_id, what, reason, "ingest", detail, text=text)
    utterance("LJ-pcm16", "second line with the same id", "duplicate_id", "ingest", "listed more than once")
    utterance("../../etc/passwd", "id that climbs out of the root", "path_escapes_root", "ingest",
              "outside the corpus root")
    target = _write(outside / "elsewhere.wav", clip)
    os.symlink(target, wavs / "LJ-symlink.wav")
    utterance("LJ-symlink", "wav symlinked to a file outside the root", "path_escapes_root", "ingest",
              "outside the corpus root")
    lines.append(b"a line without any separator")
    cases.append(Case("lj", f"metadata.csv:{len(lines)}", "line without any |", "malformed_metadata", "ingest",
                      r"expected ID\|text\|normalized"))
    _write(wavs / "LJ-orphan.wav", clip)
    cases.append(Case("lj", "LJ-orphan", "wav that metadata.csv does not list", "missing_transcript", "ingest",
                      "no line in metadata.csv"))
    (root / "metadata.csv").write_bytes(b"\n".join(lines) + b"\n")
    return cases


def _write_manifests(root: Path, outside: Path) -> list[Case]:
    clip = speech()
    _write(root / "audio" / "a.wav", clip)
    _write(root / "audio" / "b.flac", clip)
    (root / "audio" / "notes.txt").write_text("not audio\n", encoding="utf-8")
    os.symlink(_write(outside / "linked.wav", clip), root / "audio" / "linked.wav")
    rows = [
        ("a", "audio/a.wav", "A plain row.", KEPT, "", ""),
        ("b", "audio/b.flac", "A FLAC file.", KEPT, "", ""),
        ("parent", "../../etc/passwd", "Climbs out.", "path_escapes_root", "ingest", "outside the corpus root"),
        ("absolute", "/etc/passwd", "Absolute.", "path_escapes_root", "ingest", "absolute path '/etc/passwd'"),
        ("linked", "audio/linked.wav", "Symlink out.", "path_escapes_root", "ingest", "outside the corpus root"),
        ("gone", "audio/gone.wav", "No such file.", "missing_audio", "ingest", "not found"),
        ("folder", "audio", "A directory.", "unreadable_audio", "ingest", "not a regular file"),
        ("notes", "audio/notes.txt", "A text file.", "unreadable_audio", "ingest", "Format not recognised"),
        ("blank", "audio/a.wav", "   ", "empty_transcript", "ingest", "only whitespace"),
        ("a", "audio/b.flac", "Same id again.", "duplicate_id", "ingest", "listed more than once"),
    ]
    cases = []
    csv_lines = [b"id,path,text"]
    jsonl_lines = []
    for local_id, path, text, reason, stage, detail in rows:
        csv_lines.append(f'{local_id},{path},"{text}"'.encode())
        jsonl_lines.append(json.dumps({"id": local_id, "path": path, "text": text}).encode())
        cases += [Case(name, _ledger_id(local_id, reason), f"manifest row {path!r}", reason, stage, detail)
                  for name in ("mcsv", "mjsonl")]
    csv_lines.append("c,audio/a.wav,Caf\xe9".encode("latin-1"))
    jsonl_lines.append('{"id": "c", "path": "audio/a.wav", "text": "Caf\xe9"}'.encode("latin-1"))
    cases += [Case("mcsv", f"m.csv:{len(csv_lines)}", "row in Latin-1", "invalid_encoding", "ingest", "not UTF-8"),
              Case("mjsonl", f"m.jsonl:{len(jsonl_lines)}", "row in Latin-1", "invalid_encoding", "ingest",
                   "not UTF-8")]
    csv_lines.append(b"d,audio/a.wav,one,two")
    cases.append(Case("mcsv", f"m.csv:{len(csv_lines)}", "row with an extra field", "malformed_metadata", "ingest",
                      "expected the 3 header columns, found 4 fields"))
    jsonl_lines.append(b'["audio/a.wav", "not an object"]')
    cases.append(Case("mjsonl", f"m.jsonl:{len(jsonl_lines)}", "JSON line that is not an object",
                      "malformed_metadata", "ingest", "not a JSON object"))
    (root / "m.csv").write_bytes(b"\n".join(csv_lines) + b"\n")
    (root / "m.jsonl").write_bytes(b"\n".join(jsonl_lines) + b"\n")
    return cases


def _write_vctk(root: Path) -> list[Case]:
    clip = speech(48000)
    audio, txt = root / "wav48_silence_trimmed" / "p225", root / "txt" / "p225"
    txt.mkdir(parents=True)
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION COMMENTS\np225  23  F    English    "
                                           "Southern  England\n", encoding="utf-8")
    texts = {"p225_001": b"Please call Stella.", "p225_003": b"  \n", "p225_004": "Ask her.".encode("utf-16"),
             "p225_005": b"Bring these things with her.", "p225_006": b"We also need a small plastic snake."}
    for utt, text in texts.items():
        (txt / f"{utt}.txt").write_bytes(text)
    for utt in ("p225_001", "p225_002", "p225_003", "p225_004", "p225_006"):
        _write(audio / f"{utt}_mic1.flac", clip, 48000)
    _truncate(audio / "p225_006_mic1.flac")
    return [
        Case("vctk", "p225_001", "48 kHz FLAC", KEPT),
        Case("vctk", "p225_002", "FLAC without a txt file", "missing_transcript", "ingest", "no txt/p225/p225_002.txt"),
        Case("vctk", "p225_003", "whitespace-only txt", "empty_transcript", "ingest", "the transcript is empty"),
        Case("vctk", "p225_004", "UTF-16 txt", "invalid_encoding", "ingest", "not UTF-8"),
        Case("vctk", "p225_005", "txt without a FLAC file", "missing_audio", "ingest", "not found"),
        Case("vctk", "p225_006", "FLAC cut to half its bytes", "invalid_audio", "decode",
             "cannot decode .*flac decoder lost sync"),
    ]


def _write_common_voice(root: Path) -> list[Case]:
    clip = speech(48000)
    clips = root / "clips"
    for name in ("cv_ok", "cv_truncated", "cv_blank"):
        _write(clips / f"{name}.mp3", clip, 48000, "MPEG_LAYER_III", "MP3")
    _truncate(clips / "cv_truncated.mp3")
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"
    rows = [("s1", "cv_ok.mp3", "Kept as it is."), ("s1", "cv_truncated.mp3", "Cut short."),
            ("s2", "cv_blank.mp3", " "), ("s2", "cv_gone.mp3", "No clip."), ("s1", "cv_ok.mp3", "Listed twice."),
            ("s3", "../../../etc/passwd", "Out.")]
    lines = [header] + [f"{speaker}\t{path}\t{text}\t2\t0\t\t\t\ten\t" for speaker, path, text in rows]
    (root / "validated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [
        Case("cv", "cv_ok", "48 kHz MP3", KEPT),
        Case("cv", "cv_truncated", "MP3 cut to half its bytes", "truncated_audio", "decode",
             r"decoded \d+ of the \d+ sample frames"),
        Case("cv", "cv_blank", "whitespace-only sentence", "empty_transcript", "ingest", "only whitespace"),
        Case("cv", "cv_gone", "row whose clip does not exist", "missing_audio", "ingest", "not found"),
        Case("cv", "cv_ok#2", "row listed twice", "duplicate_id", "ingest", "listed more than once"),
        Case("cv", "passwd", "path that climbs out of clips/", "path_escapes_root", "ingest",
             "outside the corpus root"),
    ]


def write_bad_corpora(root: Path) -> tuple[Path, list[Case]]:
    """Write the corpora under ``root`` and ``root/datasets.yaml``; return the config and every Case."""
    outside = root / "outside"
    corpora = {"lj": root / "LJSpeech-1.1", "manifest": root / "manifest", "vctk": root / "VCTK-Corpus-0.92",
               "cv": root / "cv-corpus" / "en"}
    cases = (_write_lj(corpora["lj"], outside) + _write_manifests(corpora["manifest"], outside)
             + _write_vctk(corpora["vctk"]) + _write_common_voice(corpora["cv"]))
    stages = ("{audio: {sample_rate: %d}, filter: {cps_rule: none}, align: {method: none}, "
              "shards: {max_utterances: 8}}" % SAMPLE_RATE)
    config = root / "datasets.yaml"
    config.write_text(f"""defaults: {stages}
datasets:
  - {{name: lj, importer: ljspeech, root: {corpora['lj']}}}
  - {{name: mcsv, importer: manifest, root: {corpora['manifest']}, file: m.csv, language: en}}
  - {{name: mjsonl, importer: manifest, root: {corpora['manifest']}, file: m.jsonl, language: en}}
  - {{name: vctk, importer: vctk, root: {corpora['vctk']}}}
  - {{name: cv, importer: common_voice, root: {corpora['cv']}}}
""", encoding="utf-8")
    return config, cases
