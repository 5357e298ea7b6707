"""Grapheme-to-phoneme conversion: normalised text -> a list of phone tokens, per language.

Token conventions (what ``phonemize`` returns; ``ttsprep.stages.step3_text.vocab`` prefixes phones with their language):

* No word-boundary token: spaces are dropped.
* ``PUNCTUATION`` marks (``, . ? ! ; :``) are kept as tokens where the text has them (pause cues; a run of
  one mark, ``...``, is one token; ``。`` is ``.``, ``、`` is ``,``); other punctuation (quotes, brackets,
  dashes) is dropped. Not in ja, where OpenJTalk marks pauses itself.
* zh (Mandarin tags ``_MANDARIN``): pypinyin ``Style.TONE3`` syllables with ``neutral_tone_with_five``
  (phrase-aware, no tone sandhi: 你好 -> ni3 hao3), or the corpus's own pinyin when given (it records what
  was said). Each syllable is split into its initial and its tone-bearing final with pypinyin's
  ``strict=True`` tables, as ESPnet's ``pypinyin_g2p_phone`` does: ``y``/``w`` are not initials
  (yi2 -> i2, wu2 -> u2), ü is ``v`` (ju4 -> j v4, yue4 -> ve4) and finals are written in full
  (liu2 -> l iou2, gui4 -> g uei4). ``zi``/``zhi``/``ji`` share the final ``i``; the initial tells them
  apart. Syllabic nasals (m, n, ng, hm, hng) stay whole (``m2``).
* ja: ``pyopenjtalk.g2p`` phones (``OPENJTALK_PHONES``), ``pau`` at commas, devoiced vowels upper case.
* Other languages: espeak-ng through phonemizer, IPA with the stress mark on its vowel (``ˈæ``) and the
  length mark on its phone (``iː``); espeak's language-switch flags and clitic hyphens are removed.

Failures raise ``InvalidTranscript`` with reason ``g2p_failed`` or ``g2p_unsupported_language``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import unicodedata
from types import ModuleType

# phonemizer and pypinyin are imported where a language needs them (0.1 and 0.17 CPU-s; every shard worker and
# the flow's process import this module, most of them for one language).
from ttsprep.stages.core.errors import InvalidTranscript
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.step3_text.normalize import base_language

PUNCTUATION = frozenset(",.?!;:")
_CJK_PUNCTUATION = {"。": ".", "、": ","}
_PUNCTUATION_RUN_RE = re.compile(r"([,.?!;:]+)")
_MANDARIN = frozenset({"zh", "zh-cn", "zh-sg", "zh-tw"})
_JAPANESE = frozenset({"ja", "ja-jp"})
#: Short language codes -> espeak-ng voices; other tags are used as voices when espeak-ng knows them.
_ESPEAK_VOICES = {"en": "en-us", "fr": "fr-fr", "de": "de", "es": "es", "ru": "ru", "nl": "nl", "hu": "hu"}
_PHONEMIZER_LOG = logging.getLogger(__name__ + ".phonemizer")
_PHONEMIZER_LOG.setLevel(logging.ERROR)  # phonemizer warns about every language switch it removes
_PINYIN_RE = re.compile(r"([a-zê]+)([1-5])")

#: OpenJTalk's phone set as ``pyopenjtalk.g2p`` writes it (``sil`` is never emitted by ``g2p``).
OPENJTALK_PHONES = frozenset(
    "a i u e o A I U E O N cl pau b by ch d dy f fy g gw gy h hy j k kw ky m my n ny p py r ry s sh t ts ty"
    " v w y z".split()
)


def _fail(text: str, language: str, detail: str) -> InvalidTranscript:
    return InvalidTranscript(f"{language} G2P failed on {text!r}: {detail}", reason=Reason.G2P_FAILED)


def _unsupported(language: str) -> InvalidTranscript:
    return InvalidTranscript(f"no G2P for language '{language}' (pypinyin: {sorted(_MANDARIN)}, "
                             f"pyopenjtalk: {sorted(_JAPANESE)}, espeak-ng: its voices)",
                             reason=Reason.G2P_UNSUPPORTED_LANGUAGE)


@functools.cache
def _espeak_voices() -> frozenset[str]:
    from phonemizer.backend import EspeakBackend

    return frozenset(EspeakBackend.supported_languages())


def supported_languages() -> list[str]:
    """Every language code with a G2P: pypinyin's and pyopenjtalk's tags and espeak-ng's voices (sorted)."""
    return sorted(_MANDARIN | _JAPANESE | _ESPEAK_VOICES.keys() | _espeak_voices())


def g2p_engine(language: str) -> str:
    """``"pinyin"``, ``"openjtalk"`` or the espeak-ng voice for ``language``; raises when there is none."""
    tag = language.lower().replace("_", "-")
    if tag in _MANDARIN:
        return "pinyin"
    if tag in _JAPANESE:
        return "openjtalk"
    base = base_language(tag)
    for voice in (_ESPEAK_VOICES.get(tag, tag), _ESPEAK_VOICES.get(base, base)):
        if voice in _espeak_voices():
            return voice
    raise _unsupported(language)


def _dedupe_punctuation(tokens: list[str]) -> list[str]:
    """Collapse a run of one punctuation token (``. . .`` -> ``.``)."""
    return [t for i, t in enumerate(tokens) if not (t in PUNCTUATION and i > 0 and tokens[i - 1] == t)]


# --- Mandarin ----------------------------------------------------------------------------------------------

@functools.cache
def _pinyin_syllables() -> frozenset[str]:
    """Every toneless syllable of pypinyin's character dictionary (``zhi``, ``lve``, ``hng``...)."""
    from pypinyin.contrib.tone_convert import to_tone3
    from pypinyin.pinyin_dict import pinyin_dict

    readings = {reading for value in pinyin_dict.values() for reading in value.split(",")}
    matches = (_PINYIN_RE.fullmatch(to_tone3(r, neutral_tone_with_five=True)) for r in readings)
    return frozenset(m.group(1) for m in matches if m)


def _split_syllable(syllable: str) -> list[str]:
    """``"guang3"`` -> ``["g", "uang3"]``; ``"yi2"`` -> ``["i2"]``; ``"m2"`` -> ``["m2"]`` (see module doc)."""
    match = _PINYIN_RE.fullmatch(syllable.lower().replace("ü", "v").replace("u:", "v"))
    if match is None or match.group(1) not in _pinyin_syllables():
        raise ValueError(f"{syllable!r} is not a pinyin syllable with a tone digit 1-5")
    base, tone = match.groups()
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    initial, final = to_initials(base, strict=True), to_finals(base, strict=True)
    if not final:
        return [base + tone]
    return [initial, final + tone] if initial else [final + tone]


def _non_han(chunk: str) -> list[str]:
    """pypinyin's ``errors`` callback: pause marks become tokens, other punctuation goes, the rest fails."""
    tokens = []
    for ch in chunk:
        mark = _CJK_PUNCTUATION.get(ch) or unicodedata.normalize("NFKC", ch)  # ，-> ,
        if mark in PUNCTUATION:
            tokens.append(mark)
        elif not (ch.isspace() or unicodedata.category(ch).startswith("P")):
            raise ValueError(f"pypinyin cannot read {ch!r}")
    return tokens


def _mandarin(text: str, pinyin: str | None) -> list[str]:
    if pinyin is not None:
        syllables = pinyin.split()
    else:
        from pypinyin import Style, lazy_pinyin

        syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=_non_han)
    tokens = [t for s in syllables for t in ([s] if s in PUNCTUATION else _split_syllable(s))]
    return _dedupe_punctuation(tokens)


# --- Japanese ----------------------------------------------------------------------------------------------

@functools.cache
def _pyopenjtalk() -> ModuleType:
    with contextlib.redirect_stdout(io.StringIO()):  # pyopenjtalk-plus prints an ONNX Runtime notice
        import pyopenjtalk
    return pyopenjtalk


def _japanese(text: str) -> list[str]:
    try:
        return _pyopenjtalk().g2p(text).split()
    except RuntimeError as exc:
        raise ValueError(f"pyopenjtalk: {exc}") from None


# --- espeak-ng ---------------------------------------------------------------------------------------------

@functools.cache
def _espeak_backend(voice: str) -> EspeakBackend:
    """One backend per voice: creating one loads a copy of libespeak-ng (0.1-0.5 s)."""
    from phonemizer.backend import EspeakBackend

    return EspeakBackend(voice, preserve_punctuation=False, with_stress=True,
                         language_switch="remove-flags", logger=_PHONEMIZER_LOG)


def _espeak_batch(texts: list[str], voice: str) -> list[list[str]]:
    """Phone tokens per text from one backend call; punctuation is split off here, not by phonemizer.

    Only chunks holding a letter go to espeak-ng, so its one-output-per-input-line contract holds.
    """
    plans: list[list[str | int]] = []  # per text: punctuation tokens and indices into ``chunks``
    chunks: list[str] = []
    for text in texts:
        plan: list[str | int] = []
        for i, segment in enumerate(_PUNCTUATION_RUN_RE.split(text)):
            if i % 2:
                plan.extend(segment)  # one token per mark; _dedupe_punctuation collapses runs
            elif any(unicodedata.category(ch).startswith("L") for ch in segment):
                plan.append(len(chunks))
                chunks.append(" ".join(segment.split()))
        plans.append(plan)
    from phonemizer.separator import Separator

    phonemized = _espeak_backend(voice).phonemize(chunks, separator=Separator(phone=" ", word=" | ", syllable=""),
                                                  strip=True, njobs=1)
    phones = [[p for p in (t.replace("-", "") for t in line.split()) if p and p != "|"] for line in phonemized]
    return [_dedupe_punctuation([t for item in plan for t in ([item] if isinstance(item, str) else phones[item])])
            for plan in plans]


# --- public ------------------------------------------------------------------------------------------------

def _checked(tokens: list[str], text: str, language: str) -> list[str]:
    if not any(t not in PUNCTUATION for t in tokens):
        raise _fail(text, language, "no phones")
    return tokens


def phonemize(text: str, language: str, *, pinyin: str | None = None) -> list[str]:
    """Phone tokens of normalised ``text`` (see the module doc); ``pinyin``: the corpus's syllables (zh).

    Raises ``InvalidTranscript`` (``g2p_failed``, ``g2p_unsupported_language``).
    """
    engine = g2p_engine(language)
    try:
        if engine == "pinyin":
            tokens = _mandarin(text, pinyin)
        elif engine == "openjtalk":
            tokens = _japanese(text)
        else:
            tokens = _espeak_batch([text], engine)[0]
    except (ValueError, RuntimeError) as exc:
        raise _fail(text, language, str(exc)) from None
    return _checked(tokens, text, language)


def phonemize_batch(texts: list[str], language: str,
                    pinyins: list[str | None] | None = None) -> list[list[str] | InvalidTranscript]:
    """``phonemize`` for many texts of one language: tokens, or the error, per text, in order.

    espeak-ng languages go through one backend call; if espeak-ng raises, each text is retried alone
    so that only the text that broke it fails.
    """
    try:
        engine = g2p_engine(language)
    except InvalidTranscript as error:
        return [error] * len(texts)
    if engine in ("pinyin", "openjtalk"):
        results: list[list[str] | InvalidTranscript] = []
        for text, pinyin in zip(texts, pinyins or [None] * len(texts), strict=True):
            try:
                results.append(phonemize(text, language, pinyin=pinyin))
            except InvalidTranscript as error:
                results.append(error)
        return results
    try:
        batch = _espeak_batch(texts, engine)
    except RuntimeError as exc:  # a text broke espeak-ng: isolate it
        if len(texts) > 1:
            return [r for text in texts for r in phonemize_batch([text], language)]
        return [_fail(texts[0], language, str(exc))]
    results = []
    for text, tokens in zip(texts, batch):
        try:
            results.append(_checked(tokens, text, language))
        except InvalidTranscript as error:
            results.append(error)
    return results


def inventory(language: str) -> frozenset[str] | None:
    """The closed phone set of ``language`` (zh, ja), or ``None`` for espeak-ng's open IPA set.

    zh: every initial, every final with tones 1-5 and every syllabic nasal with tones 1-5 that
    ``phonemize`` can produce from pypinyin's dictionary. Punctuation tokens are not phones.
    """
    tag = language.lower().replace("_", "-")  # as g2p_engine reads it, without asking espeak-ng for its voices
    if tag in _JAPANESE:
        return OPENJTALK_PHONES
    if tag not in _MANDARIN:
        return None
    phones: set[str] = set()
    for base in _pinyin_syllables():
        for tone in "12345":
            phones.update(_split_syllable(base + tone))
    return frozenset(phones)
