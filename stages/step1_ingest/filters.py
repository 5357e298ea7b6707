"""Filters on manifest metadata (before any audio is decoded): each drop is a ledger row with the value.

Signal filters that need the decoded audio (SNR, clipping, duration after trimming) run in
``ttsprep.stages.step6_shards.process``; the rules here are cheap and see the whole dataset, which the per-language
characters-per-second outlier rule needs.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ttsprep.stages.core.config import FilterConfig
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import Reject, Utterance

STAGE = "filter"


def spoken_characters(text: str) -> int:
    """Letters and digits in ``text`` (spaces and punctuation are not spoken)."""
    return sum(map(str.isalnum, text))


def characters_per_second(utt: Utterance) -> float:
    return spoken_characters(utt.text_normalized or utt.text) / utt.duration_s if utt.duration_s > 0 else 0.0


def read_blocklist(path: Path) -> set[str]:
    """Utterance ids, one per line; ``#`` starts a comment. Ids may be ``dataset:local`` or local."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"filter.blocklist: cannot read {path}: {exc}") from None
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def cps_bounds(values: np.ndarray, cfg: FilterConfig) -> tuple[float, float]:
    """Accepted [low, high] characters per second for one language, by the robust rule in ``cfg``."""
    if cfg.cps_rule == "mad":
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median))) * 1.4826  # consistent with std for normal data
        return median - cfg.cps_mad_factor * mad, median + cfg.cps_mad_factor * mad
    q1, q3 = np.percentile(values, [25, 75])
    spread = cfg.cps_iqr_factor * (q3 - q1)
    return float(q1 - spread), float(q3 + spread)


def _vote_problem(utt: Utterance, cfg: FilterConfig) -> str | None:
    """Why the Common Voice votes disqualify ``utt``, or None (also None for corpora without votes)."""
    if "down_votes" not in utt.extra or "up_votes" not in utt.extra:
        return None
    try:
        down, up = int(utt.extra["down_votes"]), int(utt.extra["up_votes"])
    except ValueError:
        return f"votes not integers: up_votes={utt.extra['up_votes']!r} down_votes={utt.extra['down_votes']!r}"
    if cfg.max_down_votes is not None and down > cfg.max_down_votes:
        return f"down_votes={down} > max_down_votes={cfg.max_down_votes} (up_votes={up})"
    if cfg.min_vote_margin is not None and up - down < cfg.min_vote_margin:
        return f"up_votes - down_votes = {up - down} < min_vote_margin={cfg.min_vote_margin}"
    return None


def apply_metadata_filters(utterances: list[Utterance], cfg: FilterConfig) -> tuple[list[Utterance], list[Reject]]:
    """Split ``utterances`` into kept and rejected by duration, votes, blocklist and cps outliers."""
    blocked = read_blocklist(cfg.blocklist) if cfg.blocklist else set()
    kept: list[Utterance] = []
    rejects: list[Reject] = []

    def drop(utt: Utterance, reason: str, detail: str) -> None:
        rejects.append(Reject(utt.utt_id, utt.dataset, STAGE, reason, detail, utt.audio_path))

    for utt in utterances:
        local_id = utt.utt_id.split(":", 1)[1]
        vote_problem = _vote_problem(utt, cfg)
        if utt.utt_id in blocked or local_id in blocked:
            drop(utt, Reason.BLOCKLISTED, f"listed in {cfg.blocklist}")
        elif utt.duration_s < cfg.min_duration_s:
            drop(utt, Reason.TOO_SHORT, f"duration_s={utt.duration_s:.3f} < min_duration_s={cfg.min_duration_s}")
        elif utt.duration_s > cfg.max_duration_s:
            drop(utt, Reason.TOO_LONG, f"duration_s={utt.duration_s:.3f} > max_duration_s={cfg.max_duration_s}")
        elif vote_problem:
            drop(utt, Reason.DOWN_VOTES, vote_problem)
        else:
            kept.append(utt)
    if cfg.cps_rule == "none":
        return kept, rejects

    by_language: dict[str, list[Utterance]] = defaultdict(list)
    for utt in kept:
        by_language[utt.language].append(utt)
    survivors: list[Utterance] = []
    for language, group in by_language.items():
        rates = np.array([characters_per_second(u) for u in group])
        if len(group) < cfg.cps_min_count:
            survivors.extend(group)
            continue
        low, high = cps_bounds(rates, cfg)
        for utt, rate in zip(group, rates):
            if low <= rate <= high:
                survivors.append(utt)
            else:
                drop(utt, Reason.CPS_OUTLIER,
                     f"{rate:.2f} chars/s outside [{low:.2f}, {high:.2f}] ({cfg.cps_rule}, language {language})")
    order = {u.utt_id: i for i, u in enumerate(utterances)}
    survivors.sort(key=lambda u: order[u.utt_id])
    return survivors, rejects
