"""SynthesisAligner: espeak-ng's own speech, real clips of ../shared (JSUT, AISHELL-3) and failures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from tests.helpers import tone_bursts
from ttsprep.aligners.base import SpeechInput
from ttsprep.aligners.espeak_events import engine, reset_engine
from ttsprep.aligners.synthesis_aligner import SynthesisAligner, _segments
from ttsprep.aligners.synthesis_tokens import plan_speech
from ttsprep.stages.core.errors import AlignmentFailed
from ttsprep.stages.step3_text.g2p import phonemize

SR, HOP = 22050, 256
SENTENCE = "The quick brown fox jumps over the lazy dog, then sleeps in the sun."


def _speech(samples: np.ndarray, text: str, language: str, *, r: int = 1,
            pinyin: str | None = None) -> SpeechInput:
    num_frames = (samples.size // HOP + 1 + r - 1) // r * r
    return SpeechInput(samples=samples.astype(np.float32), sample_rate=SR, hop_length=HOP, num_frames=num_frames,
                       reduction_factor=r, text=text, tokens=phonemize(text, language, pinyin=pinyin),
                       language=language)


def _load(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32")
    return resample_poly(samples, SR, rate).astype(np.float32) if rate != SR else samples


@pytest.fixture(scope="module")
def aligner() -> SynthesisAligner:
    return SynthesisAligner()


def test_generated_speech_recovers_espeak_boundaries_within_a_frame(aligner):
    tokens = phonemize(SENTENCE, "en")
    plan = plan_speech(SENTENCE, tokens, "en")
    synth = engine().synthesize(plan.text, plan.voice)
    speech = _speech(synth.samples, SENTENCE, "en")
    labels, starts = _segments(plan, synth)
    truth = {label: start / synth.sample_rate for label, start in zip(labels, starts) if label is not None}
    spans = aligner.spans(speech)
    errors = [abs(spans[k].start_s - truth[k]) for k in truth if k > 0]
    assert len(errors) >= len([t for t in tokens if t not in ",."]) - 2
    assert max(errors) <= HOP / SR


def test_durations_sum_to_the_frame_grid(aligner):
    synth = engine().synthesize(SENTENCE, "en-us")
    speech = _speech(synth.samples, SENTENCE, "en", r=2)
    alignment = aligner.align(speech)
    assert alignment.durations.sum() == speech.num_frames // 2
    assert [t for t in alignment.tokens if t != "sil"] == speech.tokens


def test_a_fresh_engine_makes_durations_independent_of_earlier_utterances(aligner):
    speech = _speech(engine().synthesize(SENTENCE, "en-us").samples, SENTENCE, "en")
    other = "Hello there, how are you doing on this fine and windy morning?"
    reset_engine()
    first = aligner.align(speech).durations
    aligner.align(_speech(engine().synthesize(other, "en-us").samples, other, "en"))
    reset_engine()
    assert np.array_equal(aligner.align(speech).durations, first)


def test_a_transcript_of_other_speech_fails(aligner):
    synth = engine().synthesize(SENTENCE, "en-us")
    with pytest.raises(AlignmentFailed, match="do not match"):
        aligner.align(_speech(synth.samples, "Hello.", "en"))


def test_a_real_clip_with_another_sentence_fails(aligner, shared_corpora):
    samples = _load(shared_corpora / "cmu_arctic" / "cmu_us_slt_arctic" / "wav" / "arctic_a0009.wav")
    aligner.align(_speech(samples, "He turned sharply, and faced Gregson across the table.", "en"))
    with pytest.raises(AlignmentFailed, match="do not match"):
        aligner.align(_speech(samples, "Seventy two people waited at the old railway station for hours.", "en"))


@pytest.mark.parametrize("language, text", [("en", SENTENCE), ("ja", "水をマレーシアから買わなくてはならないのです。")])
def test_tone_bursts_fail(aligner, language, text):
    with pytest.raises(AlignmentFailed, match="does not sound like speech"):
        aligner.align(_speech(tone_bursts(SR, bursts=4), text, language))


def test_white_noise_fails(aligner):
    noise = np.random.default_rng(0).normal(0, 0.05, 4 * SR)
    with pytest.raises(AlignmentFailed, match="do not match"):
        aligner.align(_speech(noise, SENTENCE, "en"))


def test_unsupported_language_fails(aligner):
    assert not aligner.supports("tlh")
    assert aligner.supports("ja") and aligner.supports("zh") and aligner.supports("de")
    speech = _speech(np.zeros(SR, np.float32), "hello", "en")
    with pytest.raises(AlignmentFailed, match="does not speak"):
        aligner.align(SpeechInput(**{**speech.__dict__, "language": "tlh"}))


def _hts_starts(path: Path) -> list[tuple[str, float]]:
    """(phone, start s) of an HTS full-context label, silences dropped."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    phones = [(re.search(r"-(.+?)\+", label).group(1), int(start) / 1e7) for start, _, label in rows]
    return [(p, s) for p, s in phones if p != "sil"]


def test_jsut_matches_its_label(aligner, shared_corpora):
    root = shared_corpora / "jsut" / "jsut_ver1.1" / "basic5000"
    text = "水をマレーシアから買わなくてはならないのです。"
    speech = _speech(_load(root / "wav" / "BASIC5000_0001.wav"), text, "ja")
    reference = _hts_starts(root / "lab" / "BASIC5000_0001.lab")
    assert [p for p, _ in reference] == speech.tokens
    errors = np.abs([span.start_s - s for span, (_, s) in zip(aligner.spans(speech), reference)])
    assert np.median(errors) <= 0.025
    assert np.mean(errors <= 0.02) >= 0.6


def test_aishell3_durations_are_plausible(aligner, shared_corpora):
    root = shared_corpora / "aishell3" / "data_aishell3" / "train"
    line = next(l for l in (root / "content.txt").read_text().splitlines() if l.startswith("SSB01390003"))
    words = line.split("\t")[1].split()
    speech = _speech(_load(root / "wav" / "SSB0139" / "SSB01390003.wav"), "".join(words[0::2]), "zh",
                     pinyin=" ".join(words[1::2]))
    alignment = aligner.align(speech)
    seconds = alignment.durations * HOP / SR
    phones = np.array([t != "sil" for t in alignment.tokens])
    assert np.mean(seconds[phones] == 0) <= 0.05
    assert np.all(seconds[phones][1:-1] < 0.4)  # no syllable part swallows a pause
    assert 0.04 <= np.median(seconds[phones]) <= 0.2
