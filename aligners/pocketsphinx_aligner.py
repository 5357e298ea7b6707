"""English forced alignment with pocketsphinx's HMM (the en-us acoustic model and CMU dictionary inside the
pocketsphinx wheel), timed onto the dataset's own espeak-ng IPA tokens.

Steps for one utterance:

1. Words of ``SpeechInput.text`` (lower case, letters and apostrophes); a word the dictionary lacks is added
   with the pronunciation of the G2P (``ttsprep.stages.step3_text.g2p.phonemize``) in ARPAbet (``ttsprep.aligners.arpabet``).
2. Two decoding passes over 16 kHz int16 audio: word alignment (``set_align_text``), then phone alignment
   (``set_alignment``) on the words and pauses it found. Phones come back in 10 ms frames.
3. The decoded ARPAbet phones are paired with the ARPAbet phones of the tokens (one token may stand for
   several, ``ˈɑːɹ`` = ``AA R``) by ``ttsprep.aligners.sequence.align_sequences``; a token gets the time of its
   phones, a decoded phone with no token goes to the token before it, and a token with no phone shares the
   time of its neighbour. Punctuation tokens get no time of their own: they sit at the pause (or boundary)
   after the previous phone, and ``ttsprep.aligners.spans.spans_to_alignment`` hands them the pause.

The decoder is loaded once per process (``_decoder``) and reused; ``reset_decoder`` starts afresh.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

import numpy as np
import scipy.fft
import soxr
from pocketsphinx import Decoder

from ttsprep.aligners.arpabet import ARPABET_TO_IPA, ipa_to_arpabet, phone_similarity
from ttsprep.aligners.base import Alignment, SpeechInput, TokenSpan
from ttsprep.aligners.sequence import align_sequences
from ttsprep.aligners.spans import spans_to_alignment
from ttsprep.stages.core.errors import AlignmentFailed, InvalidTranscript
from ttsprep.stages.step3_text.g2p import PUNCTUATION, phonemize_batch
from ttsprep.stages.step4_features.extract import mel_filters

#: pocketsphinx's en-us model works on 16 kHz audio.
MODEL_SAMPLE_RATE = 16000
#: Decoder frames per second (``-frate``).
FRAME_RATE = 100
#: Added to every decoded time: pocketsphinx reports a boundary as the first frame after it, so the middle of
#: that 10 ms step is the unbiased estimate. Measured median signed onset error without it: -20 ms against
#: LJSpeech's MFA TextGrids (19 clips), +5 ms against CMU ARCTIC slt's HTS labels (arctic_a0009); the two
#: references disagree by more than a frame, so no larger correction is justified.
BOUNDARY_OFFSET_S = 0.5 / FRAME_RATE
#: A boundary between two phone tokens moves to the largest spectral change within this many seconds of it;
#: no token becomes shorter than ``MIN_PHONE_S`` by it.
SNAP_WINDOW_S = 0.015
MIN_PHONE_S = 0.01
#: The spectral-change curve: MFCCs of ``CHANGE_WINDOW``-sample frames every ``CHANGE_HOP`` samples (16 kHz),
#: compared ``CHANGE_LAG_S`` before and after each frame.
CHANGE_HOP = 80
CHANGE_WINDOW = 400
CHANGE_FFT = 512
CHANGE_LAG_S = 0.02
#: A pause frame at most ``LOUD_PAUSE_DB`` below the median level of the phone frames is loud: speech the
#: transcript lacks. More than ``MAX_LOUD_PAUSE_S`` of it fails the utterance (measured: at most 0.03 s on
#: LJSpeech and ARCTIC with their own transcripts, 0.9-4.8 s with another clip's shorter transcript).
LOUD_PAUSE_DB = 10.0
MAX_LOUD_PAUSE_S = 0.3
#: Gap score of the phone-to-token pairing (a substitution inside a near group scores 0.3, a mismatch -1).
PAIRING_GAP = -0.5
#: Decoder options. Beams and Gaussian selection narrower than pocketsphinx's defaults (1e-48, 7e-29, 1e-48,
#: topn 4): 25 % faster, the same boundaries within 1 %. ``bestpath`` off: the lattice's word segmentation can
#: give a word fewer frames than its phones need, and the second pass then fails (cmusphinx/pocketsphinx#500).
DECODER_OPTIONS = {"beam": 1e-30, "wbeam": 1e-20, "pbeam": 1e-30, "topn": 2, "bestpath": False}

_WORD_RE = re.compile(r"(?:[^\W\d_]|')+")  # letters (any script) and apostrophes
_ALTERNATE_RE = re.compile(r"\(\d+\)$")  # "read(2)": the dictionary's second pronunciation


@dataclass(frozen=True)
class DecodedPhone:
    """One phone of pocketsphinx's alignment: ARPAbet ``name`` (``SIL`` and fillers are pauses) over
    frames ``[start, end)`` of 10 ms."""

    name: str
    start: int
    end: int

    @property
    def is_pause(self) -> bool:
        """Silence or a filler (noise), not a phone of the words."""
        return self.name not in ARPABET_TO_IPA


_similarity = functools.cache(phone_similarity)
_DECODER_LOCK = threading.Lock()  # one utterance at a time on the shared decoder


@functools.cache
def _decoder() -> Decoder:
    """The process's decoder: en-us model and dictionary from the wheel, no language model."""
    return Decoder(lm=None, loglevel="FATAL", samprate=MODEL_SAMPLE_RATE, frate=FRAME_RATE, **DECODER_OPTIONS)


def reset_decoder() -> None:
    """Make the next alignment load a fresh decoder (~0.4 s): live CMN carries state from one utterance to
    the next (a boundary may move by a frame), so a caller that needs outputs independent of what the
    process aligned before resets first."""
    _decoder.cache_clear()


def transcript_words(text: str) -> list[str]:
    """The words pocketsphinx aligns: lower-case runs of letters and apostrophes of ``text`` (hyphenated
    words split, digits dropped), apostrophes at a word's edges dropped."""
    words = (w.strip("'") for w in _WORD_RE.findall(text.lower()))
    return [w for w in words if w]


def _pronunciation(tokens: list[str]) -> str:
    """ARPAbet of one word's G2P tokens for ``Decoder.add_word``: ``"DH EH R AH N D ER"``; espeak's linking
    ``ɚ ɹ`` before a vowel is one ``ER``. Raises ``ValueError`` for a token without ARPAbet."""
    phones = [p for t in tokens if t not in PUNCTUATION for p in ipa_to_arpabet(t)]
    return " ".join(p for i, p in enumerate(phones) if not (p == "R" and i > 0 and phones[i - 1] == "ER"))


def _add_missing_words(decoder: Decoder, words: list[str]) -> None:
    """Add the words of ``words`` the dictionary lacks, pronounced by the G2P. Raises ``AlignmentFailed``
    when the G2P cannot pronounce one."""
    missing = sorted({w for w in words if decoder.lookup_word(w) is None})
    if not missing:
        return
    for i, (word, tokens) in enumerate(zip(missing, phonemize_batch(missing, "en"))):
        try:
            if isinstance(tokens, InvalidTranscript):
                raise ValueError(str(tokens))
            decoder.add_word(word, _pronunciation(tokens), update=i == len(missing) - 1)  # rebuild once
        except (ValueError, RuntimeError) as exc:
            raise AlignmentFailed(f"pocketsphinx: cannot pronounce {word!r}: {exc}") from None


def _resampled(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """float32 audio ``[N]`` at ``sample_rate`` Hz -> float32 ``[M]`` at 16 kHz."""
    audio = samples.astype(np.float32, copy=False)
    return audio if sample_rate == MODEL_SAMPLE_RATE else soxr.resample(audio, sample_rate, MODEL_SAMPLE_RATE)


def _pcm16(audio: np.ndarray) -> bytes:
    """float 16 kHz audio ``[M]`` -> little-endian int16 bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _decode(decoder: Decoder, pcm: bytes) -> None:
    """One pass of the current search over the whole utterance."""
    decoder.start_utt()
    try:
        decoder.process_raw(pcm, full_utt=True)
    finally:
        decoder.end_utt()


def decode_phones(words: list[str], pcm: bytes) -> list[DecodedPhone]:
    """Phones (and pauses) of ``words`` spoken in ``pcm`` (16 kHz int16), in order, tiling the decoded frames.

    Raises ``AlignmentFailed`` when pocketsphinx finds no alignment of all the words.
    """
    decoder = _decoder()
    with _DECODER_LOCK:
        _add_missing_words(decoder, words)
        try:
            decoder.set_align_text(" ".join(words))
            _decode(decoder, pcm)
            heard = [_ALTERNATE_RE.sub("", s.word) for s in decoder.seg() or [] if s.word[:1] not in "<[+"]
            if heard != words:
                raise AlignmentFailed(f"pocketsphinx could not align the {len(words)} words to the audio "
                                      f"(it found {len(heard)})")
            decoder.set_alignment()
            _decode(decoder, pcm)
            phones = [DecodedPhone(phone.name, phone.start, phone.start + phone.duration)
                      for word in decoder.get_alignment() or [] for phone in word]
        except RuntimeError as exc:
            raise AlignmentFailed(f"pocketsphinx found no alignment: {exc}") from None
    if not phones:
        raise AlignmentFailed("pocketsphinx: the phone alignment is empty")
    return phones


def frame_levels_db(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """Mean power in dB of each decoder frame (``[num_frames]``; frame ``t``: 16 kHz samples from
    ``t * 16000 / FRAME_RATE``, one 25 ms window long)."""
    hop, window = MODEL_SAMPLE_RATE // FRAME_RATE, MODEL_SAMPLE_RATE // 40
    padded = np.pad(audio, (0, max(0, num_frames * hop + window - audio.size)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:num_frames]
    return 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)


def check_pauses(phones: list[DecodedPhone], audio: np.ndarray) -> None:
    """Raise ``AlignmentFailed`` when the pauses cover more than ``MAX_LOUD_PAUSE_S`` of loud audio: the
    aligner put speech it could not match to the transcript into pauses (16 kHz ``audio``)."""
    levels = frame_levels_db(audio, phones[-1].end)
    in_pause = np.zeros(levels.size, dtype=bool)
    for phone in phones:
        in_pause[phone.start:phone.end] = phone.is_pause
    if in_pause.all():
        raise AlignmentFailed("pocketsphinx: the alignment is all pause")
    loud_s = np.sum(levels[in_pause] > np.median(levels[~in_pause]) - LOUD_PAUSE_DB) / FRAME_RATE
    if loud_s > MAX_LOUD_PAUSE_S:
        raise AlignmentFailed(f"pocketsphinx: {loud_s:.2f} s of speech-level audio aligned as pause "
                              f"(the transcript lacks words?)")


def _token_phones(tokens: list[str]) -> tuple[list[str], list[int]]:
    """The ARPAbet phones of the phone tokens and, per phone, the index of its token."""
    phones: list[str] = []
    owners: list[int] = []
    for k, token in enumerate(tokens):
        if token in PUNCTUATION:
            continue
        try:
            expansion = ipa_to_arpabet(token)
        except ValueError:
            expansion = ("",)  # an unknown symbol: paired by a gap, timed by its neighbours
        phones.extend(expansion)
        owners.extend([k] * len(expansion))
    return phones, owners


def token_frames(tokens: list[str], phones: list[DecodedPhone]) -> list[tuple[int, int] | None]:
    """Frames ``[start, end)`` of each token heard in ``phones`` (pauses excluded), ``None`` for tokens no
    decoded phone paired with (punctuation, deletions); ``len(tokens)`` entries."""
    spoken = [p for p in phones if not p.is_pause]
    units, owners = _token_phones(tokens)
    frames: list[tuple[int, int] | None] = [None] * len(tokens)
    current: int | None = None
    pending_start: int | None = None  # decoded phones before the first paired one
    for i, j in align_sequences([p.name for p in spoken], units, _similarity, gap=PAIRING_GAP):
        if j is not None and i is not None:
            current = owners[j]
        if i is None:
            continue
        phone = spoken[i]
        if current is None:
            pending_start = phone.start if pending_start is None else pending_start
            continue
        start, end = frames[current] or (phone.start if pending_start is None else pending_start, phone.end)
        frames[current] = (min(start, phone.start), max(end, phone.end))
        pending_start = None
    return frames


def _share_unheard(tokens: list[str], frames: list[tuple[int, int] | None]) -> list[tuple[float, float]]:
    """Frames of every phone token (float, a shared frame may be split): a run of unheard phone tokens splits
    the span of the heard token before it (after it when a punctuation mark or the start comes between)
    into equal parts. Punctuation tokens get an empty span at the end of the previous token."""
    spans: list[tuple[float, float] | None] = [None if f is None else (float(f[0]), float(f[1])) for f in frames]
    k = 0
    while k < len(tokens):
        if spans[k] is not None or tokens[k] in PUNCTUATION:
            k += 1
            continue
        run_end = k
        while run_end < len(tokens) and spans[run_end] is None and tokens[run_end] not in PUNCTUATION:
            run_end += 1
        host = k - 1 if k > 0 and spans[k - 1] is not None and tokens[k - 1] not in PUNCTUATION else None
        if host is None:
            host = _next_heard(spans, tokens, run_end)
        _split(spans, sorted([host, *range(k, run_end)]) if host is not None else [])
        k = run_end
    cursor = 0.0
    filled: list[tuple[float, float]] = []
    for span in spans:
        span = span or (cursor, cursor)
        filled.append(span)
        cursor = span[1]
    return filled


def _next_heard(spans: list[tuple[float, float] | None], tokens: list[str], k: int) -> int | None:
    """The first heard phone token at or after ``k``."""
    for j in range(k, len(tokens)):
        if spans[j] is not None and tokens[j] not in PUNCTUATION:
            return j
    return None


def _split(spans: list[tuple[float, float] | None], members: list[int]) -> None:
    """Share the one heard span among ``members`` (consecutive token indices) in equal parts, in place."""
    heard = [spans[m] for m in members if spans[m] is not None]
    if not heard:
        return
    start, end = heard[0]
    edges = np.linspace(start, end, len(members) + 1)
    for m, a, b in zip(members, edges[:-1], edges[1:]):
        spans[m] = (float(a), float(b))


def _seconds(frame: float) -> float:
    """A decoded frame boundary in seconds (``BOUNDARY_OFFSET_S``)."""
    return frame / FRAME_RATE + BOUNDARY_OFFSET_S


def token_spans(tokens: list[str], phones: list[DecodedPhone]) -> list[TokenSpan]:
    """Spans in seconds of every token, in order, with the decoded pauses as ``token=None`` spans."""
    frames = token_frames(tokens, phones)
    if all(f is None for f in frames):
        raise AlignmentFailed("pocketsphinx: no decoded phone matches the tokens")
    spans = [TokenSpan(k, _seconds(a), _seconds(b)) for k, (a, b) in enumerate(_share_unheard(tokens, frames))]
    merged: list[TokenSpan] = []
    for pause in (TokenSpan(None, _seconds(p.start), _seconds(p.end)) for p in phones if p.is_pause):
        while spans and spans[0].start_s <= pause.start_s:  # a mark at the pause's start goes before it
            merged.append(spans.pop(0))
        merged.append(pause)
    return merged + spans


def spectral_change(audio: np.ndarray) -> np.ndarray:
    """How fast the spectrum changes: float ``[1 + M // CHANGE_HOP]`` for 16 kHz float32 audio ``[M]``, frame
    ``t`` centred on sample ``t * CHANGE_HOP``: the distance between the 13 MFCCs (c0 left out: loudness is not
    a boundary) ``CHANGE_LAG_S`` after and before it."""
    window = np.hanning(CHANGE_WINDOW).astype(np.float32)
    padded = np.pad(audio, CHANGE_WINDOW // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, CHANGE_WINDOW)[::CHANGE_HOP] * window
    spectrum = scipy.fft.rfft(frames, CHANGE_FFT, axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    mfcc = scipy.fft.dct(np.log(power @ mel_filters(MODEL_SAMPLE_RATE, CHANGE_FFT, 40, 60.0, 7600.0).T + 1e-6), norm="ortho", axis=1)[:, 1:14]
    lag = round(CHANGE_LAG_S * MODEL_SAMPLE_RATE / CHANGE_HOP)
    edged = np.pad(mfcc, ((lag, lag), (0, 0)), mode="edge")
    return np.linalg.norm(edged[2 * lag:] - edged[:-2 * lag], axis=1)


def snap_boundaries(spans: list[TokenSpan], change: np.ndarray) -> list[TokenSpan]:
    """``spans`` with each boundary between two touching, non-empty token spans (phones) moved to the peak of
    ``change`` (``spectral_change``) within ``SNAP_WINDOW_S``, keeping both at least ``MIN_PHONE_S`` long."""
    snapped = list(spans)
    step_s = CHANGE_HOP / MODEL_SAMPLE_RATE
    for i in range(1, len(snapped)):
        before, after = snapped[i - 1], snapped[i]
        if (before.token is None or after.token is None or before.end_s != after.start_s
                or before.end_s == before.start_s or after.end_s == after.start_s):  # pauses, marks
            continue
        low = max(after.start_s - SNAP_WINDOW_S, before.start_s + MIN_PHONE_S)
        high = min(after.start_s + SNAP_WINDOW_S, after.end_s - MIN_PHONE_S)
        first, last = int(np.ceil(low / step_s)), min(int(np.floor(high / step_s)), change.size - 1)
        if last < first:
            continue
        boundary = (first + int(np.argmax(change[first:last + 1]))) * step_s
        snapped[i - 1] = TokenSpan(before.token, before.start_s, boundary)
        snapped[i] = TokenSpan(after.token, boundary, after.end_s)
    return snapped


class PocketsphinxAligner:
    """``SpeechAligner`` for English on pocketsphinx's en-us HMM (module docstring)."""

    name = "pocketsphinx"

    def supports(self, language: str) -> bool:
        """American English (``en``, ``en-us``, ``en_US``...)."""
        return language.lower().replace("_", "-") in ("en", "en-us")

    def align(self, speech: SpeechInput) -> Alignment:
        """Durations of ``speech.tokens`` (plus ``sil``) in units of ``r`` frames, summing to
        ``num_frames / r``. Raises ``AlignmentFailed`` when pocketsphinx cannot align the words to the audio."""
        words = transcript_words(speech.text)
        if not words:
            raise AlignmentFailed(f"pocketsphinx: no words in {speech.text!r}")
        audio = _resampled(speech.samples, speech.sample_rate)
        phones = decode_phones(words, _pcm16(audio))
        check_pauses(phones, audio)
        spans = token_spans(speech.tokens, phones)
        return spans_to_alignment(speech, snap_boundaries(spans, spectral_change(audio)))
