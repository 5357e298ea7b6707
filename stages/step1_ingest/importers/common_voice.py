"""Mozilla Common Voice, any release (https://commonvoice.mozilla.org/datasets, CC0 1.0).

Crowd-sourced read speech in 100+ languages: MP3 clips (48 kHz mono in recent releases; sample rates vary
in old ones), many speakers per locale, each clip up/down-voted by other contributors. The root is one
locale folder of a release::

    cv-corpus-6.1-2020-12-11/en/clips/common_voice_en_18091118.mp3
    cv-corpus-6.1-2020-12-11/en/{validated,train,dev,test,other,invalidated}.tsv

Sample line of the 6.1 ``validated.tsv`` (tab-separated, first line is the header)::

    client_id  path  sentence  up_votes  down_votes  age  gender  accent  locale  segment
    e59d…85fc  common_voice_en_18091118.mp3  My empire reaches from the ocean …  2  0  twenties  male  us  en

Quirks: the columns change between releases (v1 has no ``locale``/``segment``; 17.0 renames ``accent`` to
free-text ``accents`` and adds ``sentence_id``, ``sentence_domain``, ``variant``), so columns are read by
header name. Quotes are literal (no CSV quoting). In v1 the ``path`` is a bare hash without ``.mp3``.
train/dev/test are subsets of validated, so a clip listed by several TSVs is yielded once, from the first
TSV in ``splits``. zh-CN's ``accent`` holds the birthplace province's numeric code (``320000``), mapped to its
name (``ZH_CN_ACCENTS``). ``segment=Benchmark`` marks single-word clips. Recent releases (e.g. 17.0) write
gender as ``male_masculine``/``female_feminine`` (mapped to male/female; other values are kept as given).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path, PurePosixPath
from typing import Iterator, Literal

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import ImporterOptions, Problem, read_table, source_utterance

#: Empty: the language comes from each row's ``locale`` column, else from the locale folder's name.
DEFAULT_LANGUAGE = ""
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
#: Columns kept in ``extra`` when present and non-empty (``gender``/``accent(s)`` go to the typed fields).
EXTRA_COLUMNS = ("up_votes", "down_votes", "age", "locale", "variant", "sentence_domain", "segment", "sentence_id")
CORPUS_SPLITS = frozenset({"train", "dev", "test"})
#: Locales whose language is not the part before the hyphen.
LOCALE_LANGUAGES = {"zh-HK": "yue"}
GENDERS = {"male_masculine": "male", "female_feminine": "female"}
#: zh-CN's ``accent`` values: the speaker's birthplace province (出生地) as a GB/T 2260 code, from the list the
#: Common Voice site offered (common-voice/common-voice ``web/src/stores/demographics.ts``, ``zh-CN``, labels
#: ``出生地：32 江苏省``; kept there as ``LEGACY_ACCENTS`` since accents became free text in 2021). Mapped to the
#: province name; the code stays in ``extra["accent_code"]``. A label written out (``出生地：32 江苏省``, later
#: releases) gives the same name. Other values are kept as given.
ZH_CN_ACCENTS = {
    "110000": "北京市", "120000": "天津市", "130000": "河北省", "140000": "山西省", "150000": "内蒙古自治区",
    "210000": "辽宁省", "220000": "吉林省", "230000": "黑龙江省", "310000": "上海市", "320000": "江苏省",
    "330000": "浙江省", "340000": "安徽省", "350000": "福建省", "360000": "江西省", "370000": "山东省",
    "410000": "河南省", "420000": "湖北省", "430000": "湖南省", "440000": "广东省", "450000": "广西壮族自治区",
    "460000": "海南省", "500000": "重庆市", "510000": "四川省", "520000": "贵州省", "530000": "云南省",
    "540000": "西藏自治区", "610000": "陕西省", "620000": "甘肃省", "630000": "青海省", "640000": "宁夏回族自治区",
    "650000": "新疆维吾尔自治区", "710000": "台湾省", "810000": "香港特别行政区", "820000": "澳门特别行政区",
}
_ZH_CN_LABEL = re.compile(r"^出生地：(\d{2}) (\S+)$")


class Options(ImporterOptions):
    #: The TSVs to read, in priority order (a clip listed by several is taken from the first).
    splits: list[Literal["validated", "train", "dev", "test", "other", "invalidated"]] = ["validated"]


def language_of(locale: str) -> str:
    """Short language code of a Common Voice locale: ``zh-CN`` -> ``zh``, ``sv-SE`` -> ``sv``, ``zh-HK`` -> ``yue``."""
    return LOCALE_LANGUAGES.get(locale, locale.split("-")[0])


def zh_cn_accent(value: str) -> tuple[str, str | None]:
    """A zh-CN ``accent`` value as (province name, GB/T 2260 code); unknown values as (value, None)."""
    if value in ZH_CN_ACCENTS:
        return ZH_CN_ACCENTS[value], value
    label = _ZH_CN_LABEL.match(value)
    code = f"{label.group(1)}0000" if label else None
    if code in ZH_CN_ACCENTS and ZH_CN_ACCENTS[code] == label.group(2):
        return ZH_CN_ACCENTS[code], code
    return value, None


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    tables = [root / f"{split}.tsv" for split in options.splits]
    missing = [table.name for table in tables if not table.is_file()]
    if missing:
        raise ConfigError(f"common_voice: {missing} not found in {root} (root must be the locale folder of a "
                          f"release, e.g. cv-corpus-6.1-2020-12-11/en)")
    earlier: set[str] = set()  # ids (kept or not) from the TSVs already read
    for split, table in zip(options.splits, tables):
        current: set[str] = set()
        for item in _scan_table(root, table, split, language):
            if item.local_id not in earlier:
                current.add(item.local_id)
                yield item
        earlier |= current


def _scan_table(root: Path, table: Path, split: str, language: str) -> Iterator[SourceUtterance | Problem]:
    for number, row in read_table(table, delimiter="\t", quoting=csv.QUOTE_NONE):
        if isinstance(row, Problem):
            yield row
            continue
        absent = [column for column in REQUIRED_COLUMNS if column not in row]
        if absent:
            raise ConfigError(f"common_voice: {table} has no column(s) {absent}; its header: {sorted(row)}")
        path, speaker = row["path"], row["client_id"]
        if not path or not speaker:
            yield Problem(f"{table.name}:{number}", Reason.MALFORMED_METADATA, f"{table.name} line {number}: empty path "
                          f"or client_id")
            continue
        if not PurePosixPath(path).suffix:  # v1 lists bare hashes
            path += ".mp3"
        locale = row.get("locale") or root.name
        extra = {column: row[column] for column in EXTRA_COLUMNS if row.get(column)}
        extra |= {"locale": locale, "tsv": split}
        gender = row.get("gender") or None
        accent = row.get("accents") or row.get("accent") or None
        if accent and locale == "zh-CN":
            accent, code = zh_cn_accent(accent)
            if code:
                extra["accent_code"] = code
        yield source_utterance(
            root, Path("clips", path), local_id=PurePosixPath(path).stem, text=row["sentence"], speaker=speaker,
            language=language or language_of(locale), gender=GENDERS.get(gender, gender),
            accent=accent,
            split=split if split in CORPUS_SPLITS else None, extra=extra)
