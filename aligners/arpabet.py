"""ARPAbet (CMU dictionary, pocketsphinx, MFA's ``english_us_arpa``, Festival/HTS labels) and the espeak-ng
IPA tokens of ``ttsprep.stages.step3_text.g2p`` for American English, in both directions.

* ``arpabet_to_ipa("AE1") == "ˈæ"``: the G2P's convention, stress mark on the vowel (``1`` -> ``ˈ``,
  ``2`` -> ``ˌ``), length mark on the phone. espeak writes a few vowels differently when unstressed
  (``AH0`` -> ``ə``, ``ER0`` -> ``ɚ``, ``IY0`` -> ``i``); a phone without a stress digit (pocketsphinx,
  HTS labels) gets the stressed quality without a mark (``AH`` -> ``ʌ``). Silence labels map to ``sil``.
* ``ipa_to_arpabet("ˈɑːɹ") == ("AA", "R")``: the stressless ARPAbet phones of one G2P token (espeak joins
  r-coloured vowels and syllabic consonants into one token, so a token may be several phones).
* ``phone_similarity`` / ``ipa_similarity``: substitution scores for ``ttsprep.aligners.sequence.align_sequences``
  (1 for the same phone, partial credit for a near phone, -1 otherwise).
"""

from __future__ import annotations

from ttsprep.aligners.base import SILENCE

#: ARPAbet phone (no stress digit, upper case) -> espeak-style IPA of its stressed form, without the stress mark.
ARPABET_TO_IPA: dict[str, str] = {
    "AA": "ɑː", "AE": "æ", "AH": "ʌ", "AO": "ɔː", "AW": "aʊ", "AX": "ə", "AXR": "ɚ", "AY": "aɪ", "EH": "ɛ",
    "ER": "ɜː", "EY": "eɪ", "IH": "ɪ", "IY": "iː", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ", "UW": "uː",
    "B": "b", "CH": "tʃ", "D": "d", "DH": "ð", "DX": "ɾ", "F": "f", "G": "ɡ", "HH": "h", "JH": "dʒ", "K": "k",
    "L": "l", "M": "m", "N": "n", "NG": "ŋ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ",
    "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ",
}

#: Vowels espeak writes with another symbol when unstressed (stress digit 0).
_UNSTRESSED_IPA = {"AH": "ə", "ER": "ɚ", "IY": "i"}
_STRESS_MARKS = {"0": "", "1": "ˈ", "2": "ˌ"}
#: Labels of silence in MFA TextGrids, HTS labels and pocketsphinx.
SILENCE_LABELS = frozenset({"", "SIL", "SP", "PAU", "H#"})

#: espeak-ng en-us IPA token (stress mark removed) -> ARPAbet phones; what the table lacks is looked up
#: again without length marks.
_IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    **{ipa: (arpa,) for arpa, ipa in ARPABET_TO_IPA.items() if arpa not in ("AX", "AXR", "DX")},
    "ə": ("AH",), "ɐ": ("AH",), "ɚ": ("ER",), "ᵻ": ("IH",), "i": ("IY",), "u": ("UW",), "ɑ": ("AA",),
    "ɒ": ("AA",), "ɔ": ("AO",), "o": ("OW",), "e": ("EH",), "a": ("AA",), "ɾ": ("T",), "ʔ": ("T",),
    "x": ("K",), "r": ("R",), "g": ("G",), "ç": ("HH",), "ʍ": ("W",), "ɬ": ("L",), "ɫ": ("L",),
    "ɑɹ": ("AA", "R"), "ɔɹ": ("AO", "R"), "oɹ": ("AO", "R"), "ʊɹ": ("UH", "R"), "ɪɹ": ("IH", "R"),
    "ɛɹ": ("EH", "R"), "əl": ("AH", "L"), "n̩": ("AH", "N"), "aɪɚ": ("AY", "ER"), "aɪə": ("AY", "AH"),
    "iə": ("IY", "AH"), "oː": ("OW",),
}

#: Groups of ARPAbet phones close enough to be confused: a substitution inside a group gets partial credit.
_NEAR_GROUPS = (
    frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}),
    frozenset({"P", "B", "T", "D", "K", "G"}),
    frozenset({"F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH"}),
    frozenset({"CH", "JH", "SH", "ZH", "T", "D"}),
    frozenset({"M", "N", "NG"}),
    frozenset({"L", "R", "W", "Y", "ER"}),
)
NEAR_SCORE = 0.3
MISMATCH_SCORE = -1.0


def _split_stress(phone: str) -> tuple[str, str]:
    """``"ae1"`` -> ``("AE", "1")``; ``"AE"`` -> ``("AE", "")``."""
    phone = phone.strip().upper()
    if phone[-1:] in _STRESS_MARKS:
        return phone[:-1], phone[-1]
    return phone, ""


def arpabet_to_ipa(phone: str) -> str:
    """The G2P token for one ARPAbet phone with or without a stress digit, any case (module docstring):
    ``"AE1"`` -> ``"ˈæ"``, ``"IY0"`` -> ``"i"``, ``"t"`` -> ``"t"``, ``"sp"`` -> ``"sil"``.

    Raises ``KeyError`` for a label that is neither an ARPAbet phone nor silence (e.g. MFA's ``spn``).
    """
    base, stress = _split_stress(phone)
    if base in SILENCE_LABELS:
        return SILENCE
    if base not in ARPABET_TO_IPA:
        raise KeyError(f"{phone!r} is not an ARPAbet phone")
    if stress == "0":
        return _UNSTRESSED_IPA.get(base, ARPABET_TO_IPA[base])
    return _STRESS_MARKS.get(stress, "") + ARPABET_TO_IPA[base]


def strip_marks(token: str, *, length: bool = False) -> str:
    """``token`` without stress marks (``ˈ ˌ``), and without length marks (``ː``) when ``length``."""
    token = token.replace("ˈ", "").replace("ˌ", "")
    return token.replace("ː", "") if length else token


def ipa_to_arpabet(token: str) -> tuple[str, ...]:
    """The stressless ARPAbet phones of one G2P token: ``"ˈæ"`` -> ``("AE",)``, ``"ˈɑːɹ"`` -> ``("AA", "R")``.

    Raises ``ValueError`` for a symbol outside espeak-ng's American English set.
    """
    bare = strip_marks(token)
    phones = _IPA_TO_ARPABET.get(bare) or _IPA_TO_ARPABET.get(strip_marks(bare, length=True))
    if phones is None:
        raise ValueError(f"no ARPAbet phone for the IPA token {token!r}")
    return phones


def phone_similarity(a: str, b: str) -> float:
    """Substitution score of two ARPAbet phones, stress digits ignored: 1, ``NEAR_SCORE`` or ``MISMATCH_SCORE``."""
    a, b = _split_stress(a)[0], _split_stress(b)[0]
    if a == b:
        return 1.0
    if any(a in group and b in group for group in _NEAR_GROUPS):
        return NEAR_SCORE
    return MISMATCH_SCORE


def ipa_similarity(a: str, b: str) -> float:
    """Substitution score of two IPA tokens (e.g. a reference's ``arpabet_to_ipa`` phones against G2P
    tokens), stress and length marks ignored: 1 for the same phones, the best ``phone_similarity`` of their
    ARPAbet phones otherwise (``"ɑː"`` against ``"ˈɑːɹ"`` shares ``AA``: ``NEAR_SCORE``); ``sil`` only
    matches ``sil``."""
    if strip_marks(a, length=True) == strip_marks(b, length=True):
        return 1.0
    if SILENCE in (a, b):
        return MISMATCH_SCORE
    try:
        phones_a, phones_b = ipa_to_arpabet(a), ipa_to_arpabet(b)
    except ValueError:
        return MISMATCH_SCORE
    if phones_a == phones_b:
        return 1.0
    return min(NEAR_SCORE, max(phone_similarity(x, y) for x in phones_a for y in phones_b))
