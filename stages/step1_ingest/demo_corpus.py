"""A small synthetic corpus in genuine corpus layouts, spoken by espeak-ng, for demos and end-to-end tests.

``write_demo_corpus(root)`` writes two datasets (``utterances_per_speaker`` each per speaker)::

    root/vctk/VCTK-Corpus-0.92/                      # 3 English speakers, VCTK 0.92 layout, 48 kHz FLAC (mic1)
        wav48_silence_trimmed/p901/p901_001_mic1.flac, txt/p901/p901_001.txt, speaker-info.txt
    root/common_voice/cv-corpus-17.0-demo/de/        # 2 German speakers, Common Voice 17.0 layout, 48 kHz MP3
        clips/common_voice_de_90000001.mp3, validated.tsv

The first half of each speaker's prompts is the same for every speaker of a language (parallel data, e.g.
for DTW), the rest is the speaker's own. Every clip gets 0.3 s of leading and trailing silence and a
-55 dBFS Gaussian noise floor, so trimming and denoising have work to do. Output is deterministic (fixed
seeds; espeak-ng, FLAC and LAME are deterministic). ``write_demo_config(root)`` writes ``root/datasets.yaml``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import yaml

from ttsprep.stages.core.errors import ConfigError

SAMPLE_RATE = 48000
SILENCE_S = 0.3
NOISE_DBFS = -55.0
VCTK_ROOT = Path("vctk", "VCTK-Corpus-0.92")
CV_ROOT = Path("common_voice", "cv-corpus-17.0-demo", "de")
#: Common Voice's age groups by decade (its own spelling).
CV_AGE_GROUPS = {1: "teens", 2: "twenties", 3: "thirties", 4: "fourties", 5: "fifties", 6: "sixties"}
CV_COLUMNS = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
              "gender", "accents", "variant", "locale", "segment")


@dataclass(frozen=True)
class DemoSpeaker:
    """A synthetic speaker: an espeak-ng voice (``+f3``: a female variant), rate in words/min, pitch 0-99."""

    speaker: str
    voice: str
    words_per_minute: int
    pitch: int
    gender: str  # "M" / "F", as speaker-info.txt writes it
    age: int
    accent: str


ENGLISH_SPEAKERS = (
    DemoSpeaker("p901", "en-us", 165, 35, "M", 31, "American"),
    DemoSpeaker("p902", "en-us+f3", 150, 62, "F", 27, "American"),
    DemoSpeaker("p903", "en-gb-scotland", 175, 45, "M", 45, "Scottish"),
)
GERMAN_SPEAKERS = (
    DemoSpeaker("de_anna", "de+f2", 150, 60, "F", 34, "Deutschland Deutsch"),
    DemoSpeaker("de_bernd", "de", 160, 38, "M", 52, "Österreichisches Deutsch"),
)
ENGLISH_PROMPTS = (
    "Please call Stella.", "The rainbow is a division of white light into many beautiful colors.",
    "Ask her to bring these things with her from the store.", "Six spoons of fresh snow peas for her brother Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags.", "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.", "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.", "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.", "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
)
GERMAN_PROMPTS = (
    "Guten Morgen, wie geht es Ihnen heute?", "Der Zug nach Berlin fährt um acht Uhr ab.",
    "Im Sommer schwimmen wir gern im kalten See.", "Mein Bruder liest jeden Abend ein Buch.",
    "Die Katze schläft auf dem warmen Fensterbrett.", "Wir treffen uns morgen vor dem Rathaus.",
    "Das Wetter ist heute leider sehr schlecht.", "Bitte schließen Sie die Tür hinter sich.",
    "Der Bäcker verkauft frisches Brot und Brezeln.", "Im Garten blühen rote und gelbe Rosen.",
)


def _prompt_plan(num_speakers: int, per_speaker: int, num_prompts: int) -> list[list[int]]:
    """Prompt indices per speaker: the first ``ceil(n/2)`` shared by all, the rest each speaker's own."""
    shared = (per_speaker + 1) // 2
    own = per_speaker - shared
    needed = shared + num_speakers * own
    if per_speaker < 1 or needed > num_prompts:
        raise ConfigError(f"utterances_per_speaker={per_speaker} needs {needed} distinct prompts per language; "
                          f"the demo has {num_prompts}")
    return [list(range(shared)) + [shared + k * own + j for j in range(own)] for k in range(num_speakers)]


def _speak(text: str, speaker: DemoSpeaker, scratch: Path, seed: int) -> np.ndarray:
    """espeak-ng's rendering of ``text``, resampled to ``SAMPLE_RATE`` and padded, float32 [N] in [-1, 1]."""
    wav = scratch / "tts.wav"
    subprocess.run(["espeak-ng", "-v", speaker.voice, "-s", str(speaker.words_per_minute), "-p", str(speaker.pitch),
                    "-w", str(wav), text], check=True, capture_output=True)
    samples, rate = sf.read(wav, dtype="float32")
    speech = soxr.resample(samples, rate, SAMPLE_RATE)
    silence = np.zeros(int(SILENCE_S * SAMPLE_RATE), dtype=np.float32)
    signal = np.concatenate([silence, speech, silence])
    signal += np.random.default_rng(seed).normal(0.0, 10 ** (NOISE_DBFS / 20), signal.size).astype(np.float32)
    return np.clip(signal, -1.0, 1.0)


def _write_vctk(root: Path, per_speaker: int, scratch: Path) -> None:
    plan = _prompt_plan(len(ENGLISH_SPEAKERS), per_speaker, len(ENGLISH_PROMPTS))
    rows = ["ID  AGE  GENDER  ACCENTS  REGION COMMENTS "]
    for index, (speaker, prompts) in enumerate(zip(ENGLISH_SPEAKERS, plan)):
        rows.append(f"{speaker.speaker}  {speaker.age}  {speaker.gender}    {speaker.accent}    "
                    f"espeak-ng {speaker.voice}")
        (root / "txt" / speaker.speaker).mkdir(parents=True)
        (root / "wav48_silence_trimmed" / speaker.speaker).mkdir(parents=True)
        for number, prompt in enumerate(prompts, start=1):
            utt = f"{speaker.speaker}_{number:03d}"
            text = ENGLISH_PROMPTS[prompt]
            (root / "txt" / speaker.speaker / f"{utt}.txt").write_text(text + "\n", encoding="utf-8")
            sf.write(root / "wav48_silence_trimmed" / speaker.speaker / f"{utt}_mic1.flac",
                     _speak(text, speaker, scratch, seed=index * 1000 + number), SAMPLE_RATE, subtype="PCM_16")
    (root / "speaker-info.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _write_common_voice(root: Path, per_speaker: int, scratch: Path) -> None:
    plan = _prompt_plan(len(GERMAN_SPEAKERS), per_speaker, len(GERMAN_PROMPTS))
    (root / "clips").mkdir(parents=True)
    genders = {"M": "male_masculine", "F": "female_feminine"}  # Common Voice 17.0 values
    lines = ["\t".join(CV_COLUMNS)]
    clip_number = 90000000
    for index, (speaker, prompts) in enumerate(zip(GERMAN_SPEAKERS, plan)):
        client_id = hashlib.sha512(speaker.speaker.encode()).hexdigest()
        for prompt in prompts:
            clip_number += 1
            text = GERMAN_PROMPTS[prompt]
            name = f"common_voice_de_{clip_number}.mp3"
            sf.write(root / "clips" / name, _speak(text, speaker, scratch, seed=100_000 + clip_number), SAMPLE_RATE,
                     format="MP3", subtype="MPEG_LAYER_III")
            row = {"client_id": client_id, "path": name, "sentence_id": hashlib.sha256(text.encode()).hexdigest(),
                   "sentence": text, "up_votes": "2", "down_votes": "0", "age": CV_AGE_GROUPS[speaker.age // 10],
                   "gender": genders[speaker.gender],
                   "accents": speaker.accent, "locale": "de"}
            lines.append("\t".join(row.get(column, "") for column in CV_COLUMNS))
    (root / "validated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_demo_corpus(root: Path, *, utterances_per_speaker: int = 4) -> Path:
    """Write the demo datasets under ``root`` (created; must not already hold them) and return ``root``.

    Raises ``ConfigError`` when espeak-ng is not installed or ``utterances_per_speaker`` is out of range.
    """
    if shutil.which("espeak-ng") is None:
        raise ConfigError("the demo corpus is spoken by espeak-ng, which is not installed "
                          "(Debian/Ubuntu: apt-get install espeak-ng)")
    root = Path(root)
    with tempfile.TemporaryDirectory() as scratch:
        _write_vctk(root / VCTK_ROOT, utterances_per_speaker, Path(scratch))
        _write_common_voice(root / CV_ROOT, utterances_per_speaker, Path(scratch))
    return root


def write_demo_config(root: Path) -> Path:
    """Write ``root/datasets.yaml`` listing the demo datasets (roots relative to it) and return its path."""
    config = {"datasets": [
        {"name": "demo_vctk", "importer": "vctk", "root": VCTK_ROOT.as_posix()},
        {"name": "demo_cv_de", "importer": "common_voice", "root": CV_ROOT.as_posix()},
    ]}
    path = Path(root) / "datasets.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
