"""The pocketsphinx aligner (``ttsprep.aligners.pocketsphinx_aligner``) and the ARPAbet <-> IPA tables
(``ttsprep.aligners.arpabet``): token mapping on made-up phones, and real LJSpeech clips against their MFA TextGrids."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from ttsprep.aligners.arpabet import arpabet_to_ipa, ipa_similarity, ipa_to_arpabet
from ttsprep.aligners.base import SILENCE, SpeechInput
from ttsprep.aligners.durations import token_edges_s
from ttsprep.aligners.pocketsphinx_aligner import DecodedPhone, PocketsphinxAligner, token_spans, transcript_words
from ttsprep.aligners.sequence import align_sequences
from ttsprep.aligners.textgrid import read_tier
from ttsprep.stages.core.errors import AlignmentFailed
from ttsprep.stages.core.frames import num_frames_for
from ttsprep.stages.step3_text.g2p import PUNCTUATION, phonemize
from ttsprep.stages.step3_text.normalize import normalize_text

HOP, R = 256, 2


# --- ARPAbet <-> IPA -----------------------------------------------------------------------------------

def test_arpabet_to_ipa_follows_the_g2p_convention():
    assert arpabet_to_ipa("AE1") == "ˈæ" and arpabet_to_ipa("ae2") == "ˌæ"
    unstressed_and_stressed = [arpabet_to_ipa(p) for p in ("AH0", "ER0", "IY0", "AH1", "ER1", "IY1")]
    assert unstressed_and_stressed == ["ə", "ɚ", "i", "ˈʌ", "ˈɜː", "ˈiː"]
    assert arpabet_to_ipa("T") == "t" and arpabet_to_ipa("sp") == SILENCE and arpabet_to_ipa("pau") == SILENCE
    with pytest.raises(KeyError):
        arpabet_to_ipa("spn")
    # the CMU dictionary's "father" F AA1 DH ER0 is what espeak-ng writes
    assert [arpabet_to_ipa(p) for p in "F AA1 DH ER0".split()] == phonemize("father", "en")


def test_ipa_to_arpabet_splits_joined_tokens_and_similarity_ignores_marks():
    assert ipa_to_arpabet("ˈæ") == ("AE",)
    assert ipa_to_arpabet("ˈɑːɹ") == ("AA", "R") and ipa_to_arpabet("əl") == ("AH", "L")
    with pytest.raises(ValueError):
        ipa_to_arpabet("ʘ")
    assert ipa_similarity("ɑː", "ˈɑː") == 1.0 and ipa_similarity("ɜː", "ɚ") == 1.0
    assert 0 < ipa_similarity("ɑː", "ˈɑːɹ") < 1 and ipa_similarity("t", "ˈiː") < 0
    assert ipa_similarity(SILENCE, "t") < 0


def test_every_espeak_token_of_a_text_has_arpabet():
    text = "the quick brown fox, thereunder; fourpence? jumps over the lazy dog's yard and our water tower"
    assert all(ipa_to_arpabet(t) for t in phonemize(text, "en") if t not in PUNCTUATION)


# --- phones -> token spans -------------------------------------------------------------------------------

def test_token_spans_time_each_token_and_put_marks_at_pauses():
    tokens = ["k", "ˈɑːɹ", ",", "ð", "ə"]  # "car, the": one token for AA R, a comma at the pause
    phones = [DecodedPhone("K", 0, 5), DecodedPhone("AA", 5, 15), DecodedPhone("R", 15, 20),
              DecodedPhone("SIL", 20, 40), DecodedPhone("DH", 40, 44), DecodedPhone("AH", 44, 50)]
    spans = token_spans(tokens, phones)
    assert [s.token for s in spans] == [0, 1, 2, None, 3, 4]
    offset = spans[0].start_s
    assert [round(s.start_s - offset, 3) for s in spans] == [0.0, 0.05, 0.2, 0.2, 0.4, 0.44]
    assert spans[2].end_s == spans[2].start_s and spans[1].end_s - offset == pytest.approx(0.2)


def test_a_token_without_a_decoded_phone_shares_its_neighbours_time():
    tokens = ["h", "ə", "l", "ˈoʊ"]  # pocketsphinx heard no schwa
    phones = [DecodedPhone("HH", 0, 10), DecodedPhone("L", 10, 20), DecodedPhone("OW", 20, 40)]
    spans = token_spans(tokens, phones)
    assert [s.token for s in spans] == [0, 1, 2, 3]
    assert spans[0].end_s == spans[1].start_s and spans[1].end_s == spans[2].start_s
    assert spans[1].end_s - spans[0].start_s == pytest.approx(0.1)  # /h/'s 10 frames, split in two


def test_transcript_words():
    assert transcript_words("In 'being' comparatively-modern, don't.") == ["in", "being", "comparatively",
                                                                          "modern", "don't"]


# --- real speech -----------------------------------------------------------------------------------------

def speech_input(samples: np.ndarray, sample_rate: int, text: str) -> SpeechInput:
    text = normalize_text(text, "en")
    frames = num_frames_for(samples.size, HOP)
    return SpeechInput(samples=samples, sample_rate=sample_rate, hop_length=HOP,
                       num_frames=math.ceil(frames / R) * R, reduction_factor=R, text=text,
                       tokens=phonemize(text, "en"), language="en")


@pytest.fixture(scope="module")
def ljspeech(shared_corpora):
    """``load(clip_id, text=None) -> SpeechInput`` of an LJSpeech clip (its own transcript by default)."""
    root = shared_corpora / "ljspeech" / "LJSpeech-1.1"
    transcripts = dict(line.rstrip("\n").split("|")[::2] for line in (root / "metadata.csv").open(encoding="utf-8"))

    def load(clip_id: str, text: str | None = None) -> SpeechInput:
        samples, sample_rate = sf.read(root / "wavs" / f"{clip_id}.wav", dtype="float32")
        return speech_input(samples, sample_rate, transcripts[clip_id] if text is None else text)

    return load


def mean_onset_error_s(speech: SpeechInput, durations: np.ndarray, tokens: list[str], textgrid) -> float:
    """Mean |onset - MFA onset| over the phones paired with the TextGrid's (through ``ipa_similarity``)."""
    edges = np.concatenate([[0.0], token_edges_s(durations, sample_rate=speech.sample_rate, hop_length=HOP,
                                                 reduction_factor=R)])
    ours = [(t, e) for t, e in zip(tokens, edges) if t != SILENCE and t not in PUNCTUATION]
    reference = [(arpabet_to_ipa(i.label), i.start_s) for i in read_tier(textgrid) if i.label not in (SILENCE, "spn")]
    pairs = align_sequences([r[0] for r in reference], [o[0] for o in ours], ipa_similarity, gap=-0.5)
    errors = [abs(ours[j][1] - reference[i][1]) for i, j in pairs
              if i is not None and j is not None and ipa_similarity(reference[i][0], ours[j][0]) > 0]
    assert len(errors) > 0.9 * len(reference)
    return float(np.mean(errors))


@pytest.mark.parametrize("clip_id", ["LJ001-0002", "LJ002-0120", "LJ050-0131"])  # 0120: fourpence, 0131: thereunder
def test_ljspeech_clips_align_close_to_mfa(ljspeech, shared_corpora, clip_id):
    speech = ljspeech(clip_id)
    alignment = PocketsphinxAligner().align(speech)
    assert [t for t in alignment.tokens if t != SILENCE] == speech.tokens
    assert alignment.durations.dtype == np.int32 and alignment.durations.min() >= 0
    assert alignment.durations.sum() == speech.num_frames // R
    textgrids = shared_corpora / "ljspeech" / "alignments" / "mfa_fastspeech2" / "TextGrid" / "LJSpeech"
    textgrid = textgrids / f"{clip_id}.TextGrid"
    assert mean_onset_error_s(speech, alignment.durations, alignment.tokens, textgrid) < 0.03


def test_out_of_vocabulary_words_are_added_and_alignment_is_deterministic(ljspeech):
    speech = ljspeech("LJ050-0131")
    assert "thereunder" in transcript_words(speech.text)
    first, second = PocketsphinxAligner().align(speech), PocketsphinxAligner().align(speech)
    assert first.tokens == second.tokens and np.array_equal(first.durations, second.durations)


@pytest.mark.parametrize("clip_id, text", [
    ("LJ001-0001", "in being comparatively modern."),  # a short transcript of long speech
    ("LJ001-0002", "the woodcutters of the netherlands, by a similar process, produced the block books."),
])
def test_a_transcript_of_other_speech_fails(ljspeech, clip_id, text):
    with pytest.raises(AlignmentFailed, match="pocketsphinx"):
        PocketsphinxAligner().align(ljspeech(clip_id, text))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_synthesised_speech_fails_cleanly(tmp_path):
    text = "the birch canoe slid on the smooth planks. glue the sheet to the dark blue background."
    wav = tmp_path / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
    samples, sample_rate = sf.read(wav, dtype="float32")
    with pytest.raises(AlignmentFailed, match="pocketsphinx"):
        PocketsphinxAligner().align(speech_input(samples, sample_rate, text))


def test_supports_english_only():
    aligner = PocketsphinxAligner()
    assert aligner.supports("en") and aligner.supports("en_US") and not aligner.supports("de")
