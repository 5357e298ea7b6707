"""What espeak-ng should say for an utterance's tokens, and which phoneme events each token expects.

espeak-ng languages are spoken from the text itself (the tokens came from espeak-ng's own G2P of it);
a token expects the IPA phoneme event of its own name (stress marks removed). Japanese (OpenJTalk phones)
and Mandarin (pinyin initials and tone-numbered finals) are spoken as espeak phoneme input ``[[...]]``
with the voices ``ja`` and ``cmn``: every token maps to espeak mnemonics here, and expects the IPA events
those mnemonics give when spoken alone. Punctuation tokens expect nothing (they mark pauses).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ttsprep.aligners.espeak_events import engine
from ttsprep.stages.step3_text.g2p import PUNCTUATION, g2p_engine

JA_VOICE, ZH_VOICE = "ja", "cmn"

#: OpenJTalk phone -> espeak ``ja`` mnemonics; ``cl`` (geminate closure) repeats the next consonant.
_JA = {**{v: v.lower() for v in "aiueoAIUEO"}, "N": "N\\", "pau": "_:",
       "b": "b", "by": "b_j", "ch": "t_s\\", "d": "d", "dy": "d_j", "f": "p\\", "fy": "p\\_j", "g": "g",
       "gw": "gw", "gy": "g_j", "h": "h", "hy": "C", "j": "d_z\\", "k": "k", "kw": "kw", "ky": "k_j",
       "m": "m", "my": "m_j", "n": "n", "ny": "n_j", "p": "p", "py": "p_j", "r": "r`", "ry": "r`_j",
       "s": "s", "sh": "s\\", "t": "t", "ts": "t_s", "ty": "t_j", "v": "v", "w": "w", "y": "j", "z": "z"}
_JA_MORAE_PER_WORD = 6  # phoneme input is cut into words of a few morae (espeak limits a word's length)

#: pinyin initial -> espeak ``cmn`` mnemonic.
_ZH_INITIALS = {"b": "p", "p": "ph", "m": "m", "f": "f", "d": "t", "t": "th", "n": "n", "l": "l", "g": "k",
                "k": "kh", "h": "x", "j": "tS;", "q": "tS;h", "x": "S;", "zh": "ts.", "ch": "ts.h", "sh": "s.",
                "r": "z.", "z": "ts", "c": "tsh", "s": "s"}
#: pinyin final (toneless) -> (nucleus, coda) mnemonics; the tone goes between them.
_ZH_FINALS = {"a": ("a", ""), "o": ("o", ""), "e": ("@", ""), "ai": ("ai", ""), "ei": ("ei", ""),
              "ao": ("Au", ""), "ou": ("ou", ""), "an": ("a", "n"), "en": ("@", "n"), "ang": ("A", "N"),
              "eng": ("@", "N"), "ong": ("u", "N"), "er": ("@r", ""), "ê": ("E", ""), "i": ("i", ""),
              "ia": ("iA", ""), "ie": ("iE", ""), "iao": ("iAu", ""), "iou": ("iou", ""), "io": ("io", ""),
              "ian": ("iE", "n"), "in": ("i", "n"), "iang": ("iA", "N"), "ing": ("i", "N"),
              "iong": ("y", "N"), "u": ("u", ""), "ua": ("uA", ""), "uo": ("uo", ""), "uai": ("uai", ""),
              "uei": ("uei", ""), "uan": ("ua", "n"), "uen": ("u@", "n"), "uang": ("uA", "N"),
              "ueng": ("u@", "N"), "v": ("y", ""), "ve": ("yE", ""), "van": ("yE", "n"), "vn": ("y", "n"),
              "m": ("m", ""), "n": ("n", ""), "ng": ("N-", ""), "hm": ("xm", ""), "hng": ("xN-", "")}
_ZH_TONES = {"1": "55", "2": "35", "3": "214", "4": "51", "5": "11"}
_ZH_APICAL_I = {"z": "i[", "c": "i[", "s": "i[", "zh": "i.", "ch": "i.", "sh": "i.", "r": "i."}
_STRESS_RE = re.compile("[ˈˌ]")


@dataclass(frozen=True)
class SpeechPlan:
    """espeak-ng's input for one utterance: ``text`` spoken by ``voice``; ``expected[k]``: the IPA phoneme
    events token ``k`` should produce, in order (empty for punctuation; ``""`` is a pause)."""

    voice: str
    text: str
    expected: list[list[str]]


def plan_speech(text: str, tokens: list[str], language: str) -> SpeechPlan:
    """The plan for ``tokens`` of ``language``; raises ``KeyError`` for a token of no table,
    ``ttsprep.stages.core.errors.InvalidTranscript`` for a language espeak-ng does not speak."""
    voice = g2p_engine(language)
    if voice == "openjtalk":
        return _japanese(tokens)
    if voice == "pinyin":
        return _mandarin(tokens)
    expected = [[] if t in PUNCTUATION else [_STRESS_RE.sub("", t)] for t in tokens]
    return SpeechPlan(voice, text, expected)


@functools.cache
def _events_of(mnemonics: str, voice: str) -> tuple[str, ...]:
    """The IPA events of ``mnemonics`` spoken alone, pauses dropped (``("",)`` for a pure pause)."""
    names = [p for p in engine().synthesize(f"[[{mnemonics}]]", voice).phonemes if p]
    return tuple(names) or ("",)


def _japanese(tokens: list[str]) -> SpeechPlan:
    mnemonics = [_JA[t] if t != "cl" else _geminate(tokens[k + 1:]) for k, t in enumerate(tokens)]
    words: list[str] = []
    word, morae = "", 0
    for token, mnemonic in zip(tokens, mnemonics):
        word += mnemonic
        morae += token in "aiueoAIUEON" or token == "pau"
        if morae >= _JA_MORAE_PER_WORD or token == "pau":
            words.append(word)
            word, morae = "", 0
    words.append(word)
    expected = [list(_events_of(m, JA_VOICE)) for m in mnemonics]
    return SpeechPlan(JA_VOICE, "[[" + " ".join(w for w in words if w) + "]]", expected)


def _geminate(following: list[str]) -> str:
    """``cl`` before a consonant is that consonant held (espeak's ``kk``); elsewhere a short pause."""
    if following and following[0] not in "aiueoAIUEON" and following[0] not in ("pau", "cl"):
        return _JA[following[0]][0]
    return "_"


def _mandarin(tokens: list[str]) -> SpeechPlan:
    syllables: list[str] = []
    mnemonics: list[str] = []
    initial = ""  # the pinyin initial waiting for its final
    for token in tokens:
        if token in PUNCTUATION:
            mnemonics.append("")
            syllables.append("_:")
        elif token in _ZH_INITIALS:
            mnemonics.append(_ZH_INITIALS[token])
            initial = token
            continue
        else:
            base, tone = token[:-1], token[-1]
            nucleus, coda = (_ZH_APICAL_I.get(initial, "i"), "") if base == "i" else _ZH_FINALS[base]
            mnemonics.append(nucleus + coda)
            syllables.append(_ZH_INITIALS.get(initial, "") + nucleus + _ZH_TONES[tone] + coda)
        initial = ""
    expected = [list(_events_of(m, ZH_VOICE)) if m else [] for m in mnemonics]
    return SpeechPlan(ZH_VOICE, "[[" + " ".join(syllables) + "]]", expected)
