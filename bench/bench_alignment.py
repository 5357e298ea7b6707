"""Benchmark: every built-in aligner against every reference alignment in ``../shared/corpora``.

References (independent of this pipeline): the LJSpeech MFA TextGrids (``ljspeech/alignments``, 19 clips,
ARPAbet mapped into the G2P's IPA with ``ttsprep.aligners.arpabet``), the CMU ARCTIC slt HTS phone labels
(``arctic_a0009``) and the JSUT Julius label (``BASIC5000_0001``, OpenJTalk phones, the pipeline's own ja
set). The VCTK label is left out: it does not match the 0.92 audio (its SOURCE.md).

Each clip is read at the pipeline's rate (22.05 kHz, hop 256) without trimming, so the reference times
apply as they are; its transcript goes through the pipeline's text front-end and every aligner of
``ttsprep.stages.step5_durations.alignment.auto_aligners`` that supports its language aligns the tokens. A boundary is a phone's
onset as the written durations give it (``ttsprep.aligners.durations.token_edges_s``: within half a frame, 5.8 ms,
of the aligner's own time). Our phones (no ``sil``, no punctuation) are paired with the reference's
non-silent phones by ``ttsprep.aligners.sequence.align_sequences``; each paired onset gives one error. The
uniform baseline spreads the tokens evenly over the speech the pipeline's trimming keeps.

Reported per corpus and method: clips aligned / failed, boundaries compared, median and mean absolute
onset error (ms), share within 20 ms, and x realtime per core (audio seconds per CPU second of ``align``,
one thread, model loading excluded by a warm-up clip).

    python bench/bench_alignment.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


from ttsprep.aligners.arpabet import arpabet_to_ipa  # noqa: E402
from ttsprep.aligners.base import SILENCE, SpeechInput  # noqa: E402
from ttsprep.aligners.durations import token_edges_s  # noqa: E402
from ttsprep.aligners.sequence import align_sequences  # noqa: E402
from ttsprep.aligners.textgrid import read_tier  # noqa: E402
from ttsprep.stages.core.audio_io import load_audio  # noqa: E402
from ttsprep.stages.core.config import AudioConfig  # noqa: E402
from ttsprep.stages.core.errors import AlignmentFailed  # noqa: E402
from ttsprep.stages.core.frames import num_frames_for  # noqa: E402
from ttsprep.stages.step2_audio.conditioning import condition_audio  # noqa: E402
from ttsprep.stages.step3_text import normalize_text, phonemize  # noqa: E402
from ttsprep.stages.step3_text.g2p import PUNCTUATION  # noqa: E402
from ttsprep.stages.step5_durations.alignment import auto_aligners  # noqa: E402

SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
SAMPLE_RATE, HOP_LENGTH = 22050, 256
HTK_UNITS_PER_S = 1e7
REFERENCE_SILENCES = frozenset({SILENCE, "pau", "sil", "ssil", ""})
_MARKS = re.compile("[ˈˌː]")


@dataclass(frozen=True)
class Clip:
    corpus: str
    utt_id: str
    wav: Path
    text: str
    language: str
    reference: list[tuple[str, float]]  # (phone in our symbols, onset seconds), silences left out


def _onsets(phones: list[tuple[str, float, float]]) -> list[tuple[str, float]]:
    return [(label, start) for label, start, _ in phones if label not in REFERENCE_SILENCES]


def _htk_phones(path: Path) -> list[tuple[str, float, float]]:
    """(phone, start_s, end_s) of an HTS/HTK full-context label: the phone sits between ``-`` and ``+``."""
    phones = []
    for line in path.read_text(encoding="utf-8").splitlines():
        start, end, context = line.split(maxsplit=2)
        phones.append((context.split("-", 1)[1].split("+", 1)[0], int(start) / HTK_UNITS_PER_S,
                       int(end) / HTK_UNITS_PER_S))
    return phones


def _festvox_to_ipa(phone: str) -> str:
    """A festvox radio phone (ARPAbet in lower case, no stress) in our IPA; silences as they are."""
    if phone in REFERENCE_SILENCES:
        return phone
    for candidate in (phone.upper(), phone.upper() + "1"):
        try:
            return _MARKS.sub("", arpabet_to_ipa(candidate))
        except KeyError:
            continue
    return phone


def ljspeech_clips(root: Path) -> list[Clip]:
    corpus = root / "ljspeech"
    texts = {}
    for line in (corpus / "LJSpeech-1.1" / "metadata.csv").read_text(encoding="utf-8").splitlines():
        utt_id, _, normalized = line.split("|", 2)
        texts[utt_id] = normalized
    clips = []
    for grid in sorted((corpus / "alignments").rglob("*.TextGrid")):
        wav = corpus / "LJSpeech-1.1" / "wavs" / f"{grid.stem}.wav"
        if wav.is_file() and grid.stem in texts:
            phones = [(SILENCE if i.label == SILENCE else arpabet_to_ipa(i.label) if i.label != "spn" else "spn",
                       i.start_s, i.end_s) for i in read_tier(grid)]
            clips.append(Clip("ljspeech", grid.stem, wav, texts[grid.stem], "en", _onsets(phones)))
    return clips


def arctic_clips(root: Path) -> list[Clip]:
    corpus = root / "cmu_arctic"
    prompts = dict(re.findall(r'\( (\S+) "(.*)" \)', (corpus / "cmu_us_slt_arctic" / "etc" / "txt.done.data")
                              .read_text(encoding="utf-8")))
    clips = []
    for label in sorted((corpus / "merlin_slt_arctic_demo" / "label_phone_align").glob("*.lab")):
        wav = corpus / "cmu_us_slt_arctic" / "wav" / f"{label.stem}.wav"
        if wav.is_file() and label.stem in prompts:
            phones = [(_festvox_to_ipa(p), s, e) for p, s, e in _htk_phones(label)]
            clips.append(Clip("cmu_arctic_slt", label.stem, wav, prompts[label.stem], "en", _onsets(phones)))
    return clips


def jsut_clips(root: Path) -> list[Clip]:
    corpus = root / "jsut" / "jsut_ver1.1" / "basic5000"
    texts = dict(line.split(":", 1) for line in (corpus / "transcript_utf8.txt").read_text(encoding="utf-8")
                 .splitlines() if ":" in line)
    return [Clip("jsut", lab.stem, corpus / "wav" / f"{lab.stem}.wav", texts[lab.stem], "ja",
                 _onsets(_htk_phones(lab)))
            for lab in sorted((corpus / "lab").glob("*.lab")) if lab.stem in texts]


def _speech(clip: Clip) -> SpeechInput:
    samples = load_audio(clip.wav, SAMPLE_RATE)
    text = normalize_text(clip.text, clip.language)
    return SpeechInput(samples=samples, sample_rate=SAMPLE_RATE, hop_length=HOP_LENGTH,
                       num_frames=num_frames_for(samples.size, HOP_LENGTH), reduction_factor=1, text=text,
                       tokens=phonemize(text, clip.language), language=clip.language)


def _our_onsets(tokens: list[str], durations: np.ndarray) -> list[tuple[str, float]]:
    starts = np.concatenate([[0.0], token_edges_s(durations, sample_rate=SAMPLE_RATE, hop_length=HOP_LENGTH)])
    return [(t, float(s)) for t, s in zip(tokens, starts) if t != SILENCE and t not in PUNCTUATION]


def _uniform_onsets(speech: SpeechInput) -> list[tuple[str, float]]:
    """Tokens spread evenly over the speech that the pipeline's trimming keeps."""
    kept = condition_audio(speech.samples, SAMPLE_RATE, AudioConfig())
    phones = [t for t in speech.tokens if t not in PUNCTUATION]
    span = kept.samples.size / SAMPLE_RATE
    return [(t, kept.trim_start_s + span * i / len(phones)) for i, t in enumerate(phones)]


def _similarity(a: str, b: str) -> float:
    return 1.0 if _MARKS.sub("", a).lower() == _MARKS.sub("", b).lower() else -0.5


def boundary_errors_s(ours: list[tuple[str, float]], reference: list[tuple[str, float]]) -> list[float]:
    """|onset difference| in seconds of each of our phones paired with a reference phone."""
    pairs = align_sequences([p for p, _ in ours], [p for p, _ in reference], _similarity)
    return [abs(ours[i][1] - reference[j][1]) for i, j in pairs if i is not None and j is not None]


@dataclass
class Score:
    aligned: int = 0
    failed: int = 0
    audio_s: float = 0.0
    cpu_s: float = 0.0
    errors: list[float] | None = None

    def row(self) -> list[str]:
        errors = np.asarray(self.errors or [np.nan]) * 1000
        speed = f"{self.audio_s / self.cpu_s:.0f}x" if self.cpu_s else "-"
        return [f"{self.aligned}/{self.aligned + self.failed}", str(len(self.errors or [])),
                f"{np.median(errors):.1f}", f"{np.mean(errors):.1f}", f"{np.mean(errors <= 20) * 100:.0f} %", speed]


def score(clips: list[Clip]) -> dict[tuple[str, str], Score]:
    results: dict[tuple[str, str], Score] = {}
    warmed: set[str] = set()
    for clip in clips:
        speech = _speech(clip)
        duration_s = speech.samples.size / SAMPLE_RATE
        uniform = results.setdefault((clip.corpus, "uniform"), Score(errors=[]))
        uniform.aligned += 1
        uniform.errors += boundary_errors_s(_uniform_onsets(speech), clip.reference)
        for aligner in auto_aligners():
            if not aligner.supports(clip.language):
                continue
            if aligner.name not in warmed:  # load models outside the timed call
                warmed.add(aligner.name)
                try:
                    aligner.align(speech)
                except AlignmentFailed:
                    pass
            result = results.setdefault((clip.corpus, aligner.name), Score(errors=[]))
            start = time.process_time()
            try:
                alignment = aligner.align(speech)
            except AlignmentFailed as error:
                result.failed += 1
                print(f"  {clip.utt_id}: {aligner.name} failed: {error}", file=sys.stderr)
                continue
            result.cpu_s += time.process_time() - start
            result.audio_s += duration_s
            result.aligned += 1
            result.errors += boundary_errors_s(_our_onsets(alignment.tokens, alignment.durations), clip.reference)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=SHARED_CORPORA)
    args = parser.parse_args()
    if not args.corpora.is_dir():
        sys.exit(f"{args.corpora} not found: the references live in ../shared/corpora")
    clips = ljspeech_clips(args.corpora) + arctic_clips(args.corpora) + jsut_clips(args.corpora)
    print(f"{len(clips)} clips with reference alignments; hop {HOP_LENGTH} at {SAMPLE_RATE} Hz "
          f"({1000 * HOP_LENGTH / SAMPLE_RATE:.1f} ms frames)\n")
    headers = ["corpus", "method", "aligned", "boundaries", "median ms", "mean ms", "<= 20 ms", "x realtime"]
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for (corpus, method), result in sorted(score(clips).items()):
        print("| " + " | ".join([corpus, method, *result.row()]) + " |")


if __name__ == "__main__":
    main()
