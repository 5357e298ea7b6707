"""Transcript normalisation: an ordered list of named rules, each ``(text, language) -> text``.

``normalize_text`` applies ``RULES`` in order; a rule that cannot handle a transcript raises ``ValueError``
and ``normalize_text`` turns it into ``InvalidTranscript(reason="text_<rule name>")``.

Decisions:

* Unicode NFKC for every language. For ja/zh this maps full-width ASCII variants to ASCII (``，！？：；（）``
  and full-width digits/letters become ``,!?:;()``, half-width katakana becomes full-width, ``…`` becomes
  ``...``) and keeps the CJK marks that have no ASCII twin (``。、「」『』・``); the G2P maps ``。`` and
  ``、`` to the shared pause tokens ``.`` and ``,``.
* Whitespace runs collapse to one space; in ja/zh a space survives only between two ASCII letters/digits
  (elsewhere it carries no pause and would split pypinyin's phrase look-up).
* Numbers are read with num2words in the language; ja becomes kanji numerals (``2.5`` -> ``二点五``), zh uses
  cn2an's ``an2cn`` transform (years digit by digit: ``2020年`` -> ``二零二零年``, ``50%`` -> ``百分之五十``).
  Decimal separator ``.`` in en/ja/zh, ``,`` elsewhere (thousands ``,`` resp. ``.``). English only:
  ordinals (``21st``), years (4-digit numbers 1100-1999: ``1813`` -> ``eighteen thirteen``), currency
  (``£500`` -> ``five hundred pounds``) and the abbreviations in ``_EN_ABBREVIATIONS``.
* Lowercase for cased scripts; ja/zh text keeps its case (OpenJTalk spells capital letters).
* A transcript without any letter is empty (``text_empty``); letters outside the language's scripts
  (``_SCRIPTS``, by Unicode character name) are ``text_script``. zh is not script-checked here: characters
  pypinyin cannot read are rejected by the G2P (``g2p_failed``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from num2words import CONVERTER_CLASSES, num2words

from ttsprep.stages.core.errors import InvalidTranscript

#: Languages written without case or word spaces.
_CJK = frozenset({"ja", "zh"})
#: Languages whose decimal separator is ``.`` (thousands ``,``); the others use ``,`` (thousands ``.``).
_DECIMAL_POINT = frozenset({"en", "ja", "zh"})
#: Unicode character-name prefixes allowed for letters, per language; unlisted languages are not checked.
_SCRIPTS: dict[str, tuple[str, ...]] = {
    **{lang: ("LATIN",) for lang in ("en", "de", "fr", "es", "nl", "hu", "it", "pt", "pl", "cs", "sv")},
    "ru": ("CYRILLIC",),
    "uk": ("CYRILLIC",),
    "ja": ("CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC", "LATIN"),
}
_EN_ABBREVIATIONS = {
    "mrs": "missus", "mr": "mister", "dr": "doctor", "st": "saint", "co": "company", "jr": "junior",
    "maj": "major", "gen": "general", "drs": "doctors", "rev": "reverend", "lt": "lieutenant",
    "hon": "honorable", "sgt": "sergeant", "capt": "captain", "esq": "esquire", "ltd": "limited",
    "col": "colonel", "ft": "fort",
}
_EN_ABBREVIATION_RE = re.compile(rf"\b({'|'.join(_EN_ABBREVIATIONS)})\.", re.IGNORECASE)
#: Currency symbol -> (unit, units, subunit, subunits), English.
_EN_CURRENCIES = {
    "£": ("pound", "pounds", "penny", "pence"),
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
}
_EN_CURRENCY_RE = re.compile(r"([£$€])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d\d))?(?!\d)")
_EN_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_POINT_NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_COMMA_NUMBER_RE = re.compile(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:,\d+)?")
_THOUSANDS_COMMA_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CJK_SPACE_RE = re.compile(r"(?<![A-Za-z0-9]) | (?![A-Za-z0-9])")


def base_language(language: str) -> str:
    """The primary subtag of a language tag, lowercase: ``"zh-CN"`` -> ``"zh"``, ``"en_US"`` -> ``"en"``."""
    return language.replace("_", "-").split("-")[0].lower()


@dataclass(frozen=True)
class Rule:
    """A named normalisation step; ``apply(text, base_language)`` raises ``ValueError`` to reject."""

    name: str
    apply: Callable[[str, str], str]


def _nfkc(text: str, language: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _whitespace(text: str, language: str) -> str:
    text = " ".join(text.split())
    return _CJK_SPACE_RE.sub("", text) if language in _CJK else text


def _abbreviations(text: str, language: str) -> str:
    if language != "en":
        return text
    return _EN_ABBREVIATION_RE.sub(lambda m: _EN_ABBREVIATIONS[m.group(1).lower()], text)


def _currency(text: str, language: str) -> str:
    if language != "en":
        return text

    def spell(match: re.Match[str]) -> str:
        unit, units, subunit, subunits = _EN_CURRENCIES[match.group(1)]
        amount = int(match.group(2).replace(",", ""))
        words = f"{_cardinal(amount, 'en')} {unit if amount == 1 else units}"
        if match.group(3) and (cents := int(match.group(3))):
            words += f" {_cardinal(cents, 'en')} {subunit if cents == 1 else subunits}"
        return words

    return _EN_CURRENCY_RE.sub(spell, text)


def _cardinal(value: int | Decimal, language: str) -> str:
    """``value`` in words; num2words' commas ("five thousand, seven hundred") are dropped: they are not pauses."""
    try:
        return num2words(value, lang=language).replace(",", "")
    except (OverflowError, NotImplementedError) as exc:
        raise ValueError(f"cannot read the number {value} in '{language}': {exc}") from None


def _numbers(text: str, language: str) -> str:
    if not any(ch.isdigit() for ch in text):
        return text
    if language == "zh":
        import cn2an  # 0.1 CPU-s: only where Chinese text has digits

        return cn2an.transform(_THOUSANDS_COMMA_RE.sub("", text), "an2cn")
    if language not in CONVERTER_CLASSES:
        raise ValueError(f"no number reader for language '{language}'")
    if language == "en":
        text = _EN_ORDINAL_RE.sub(lambda m: num2words(int(m.group(1)), lang="en", to="ordinal"), text)

    def spell(match: re.Match[str]) -> str:
        digits = match.group(0)
        if language in _DECIMAL_POINT:
            plain = digits.replace(",", "")
        else:
            plain = digits.replace(".", "").replace(",", ".")
        if language == "en" and digits.isdigit() and len(digits) == 4 and 1100 <= int(digits) <= 1999:
            return num2words(int(plain), lang="en", to="year")
        return _cardinal(int(plain) if plain.isdigit() else Decimal(plain), language)

    return (_POINT_NUMBER_RE if language in _DECIMAL_POINT else _COMMA_NUMBER_RE).sub(spell, text)


def _lowercase(text: str, language: str) -> str:
    return text if language in _CJK else text.lower()


def _empty(text: str, language: str) -> str:
    if not any(unicodedata.category(ch).startswith("L") for ch in text):
        raise ValueError("no letters left after normalisation")
    return text


def _script(text: str, language: str) -> str:
    allowed = _SCRIPTS.get(language)
    if allowed is None:
        return text
    foreign = sorted({ch for ch in text if unicodedata.category(ch).startswith("L")
                      and not unicodedata.name(ch, "").startswith(allowed)})
    if foreign:
        raise ValueError(f"letters outside the {'/'.join(allowed)} script(s): {''.join(foreign)!r}")
    return text


#: Applied in this order; a rule's name forms the reject reason ``text_<name>``.
RULES: tuple[Rule, ...] = (
    Rule("nfkc", _nfkc),
    Rule("whitespace", _whitespace),
    Rule("abbreviations", _abbreviations),
    Rule("currency", _currency),
    Rule("numbers", _numbers),
    Rule("lowercase", _lowercase),
    Rule("whitespace", _whitespace),
    Rule("empty", _empty),
    Rule("script", _script),
)


def normalize_text(text: str, language: str) -> str:
    """``text`` after every rule in ``RULES`` for ``language`` (a tag such as ``"en"`` or ``"zh-CN"``).

    Raises ``InvalidTranscript`` with reason ``text_<rule>`` naming the first rule that rejected it.
    """
    base = base_language(language)
    normalized = text
    for rule in RULES:
        try:
            normalized = rule.apply(normalized, base)
        except ValueError as exc:
            raise InvalidTranscript(f"{language} transcript {text!r}: {exc}", reason=f"text_{rule.name}") from None
    return normalized
