"""Train/dev/test assignment and the leakage check between splits.

The corpus's own split wins (Common Voice train/dev/test, AISHELL-3 train/test, LibriTTS subsets);
otherwise held-out speakers go to ``test`` and the rest is split by a hash of the utterance id, which is
deterministic and stable when utterances are added.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Iterable

from ttsprep.stages.core.config import SplitAssignConfig
from ttsprep.stages.core.records import Utterance

SPLITS = ("train", "dev", "test")
_CORPUS_SPLIT = re.compile(r"^(train|dev|test|validation|valid|eval)(?![a-z])")


def corpus_split(name: str | None) -> str | None:
    """Map a corpus's split/subset name to train/dev/test (``train-clean-100`` -> train), else None."""
    match = _CORPUS_SPLIT.match((name or "").lower())
    if not match:
        return None
    word = match.group(1)
    return {"valid": "dev", "validation": "dev", "eval": "test"}.get(word, word)


def hash_fraction(key: str) -> float:
    """A deterministic number in [0, 1) from ``key``."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def assign_split(utt: Utterance, cfg: SplitAssignConfig) -> str:
    if (given := corpus_split(utt.split)) is not None:
        return given
    if utt.speaker in cfg.held_out_speakers:
        return "test"
    value = hash_fraction(utt.utt_id)
    if value < cfg.test_fraction:
        return "test"
    if value < cfg.test_fraction + cfg.dev_fraction:
        return "dev"
    return "train"


def split_overlap(rows: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, int | list[str]]]:
    """Texts and speakers shared between train and each held-out split, from ``(split, speaker, text)``.

    Returns ``{"dev": {"shared_texts": n, "shared_speakers": n, "examples": [...]}, "test": {...}}``.
    """
    texts: dict[str, set[str]] = defaultdict(set)
    speakers: dict[str, set[str]] = defaultdict(set)
    for split, speaker, text in rows:
        texts[split].add(" ".join(text.lower().split()))
        speakers[split].add(speaker)
    report: dict[str, dict[str, int | list[str]]] = {}
    for held_out in ("dev", "test"):
        shared_texts = texts["train"] & texts[held_out]
        shared_speakers = speakers["train"] & speakers[held_out]
        report[held_out] = {"shared_texts": len(shared_texts), "shared_speakers": len(shared_speakers),
                            "example_texts": sorted(shared_texts)[:5]}
    return report
