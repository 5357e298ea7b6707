"""Per-token pitch and energy as z-scores in the loader, with the statistics each dataset's ``stats.json`` holds.

The shards store them raw (Hz or log-F0, and L2 energy), so statistics recomputed after a dataset is added
or re-filtered never require rewriting shards. ``ttsprep.stages.step5_durations.token_prosody.normalise_token_prosody`` does the maths:
voiced-mean pitch is logged first (tokens without voiced frames stay 0), the interpolated variant
(``align.token_pitch: interpolated_log``, recorded in ``index.json``) is normalised as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step5_durations.token_prosody import normalise_token_prosody
from ttsprep.train.collate import TrainItem
from ttsprep.train.shards import ShardSet, read_json_at


@dataclass(frozen=True)
class ProsodyNormaliser:
    """``stats`` and ``pitch_is_log`` per dataset name; ``per_speaker``: each speaker's statistics, else the
    dataset's global ones."""

    stats: Mapping[str, dict]
    pitch_is_log: Mapping[str, bool]
    per_speaker: bool = True

    @classmethod
    def load(cls, shard_set: ShardSet, *, per_speaker: bool = True) -> ProsodyNormaliser:
        """Read ``index.json`` and ``stats.json`` of every root; ``ConfigError`` when one is missing."""
        stats, pitch_is_log = {}, {}
        for root in shard_set.roots:
            index, dataset_stats = read_json_at(root, "index.json"), read_json_at(root, "stats.json")
            if index is None or dataset_stats is None:
                raise ConfigError(f"{root}: index.json or stats.json missing (is the dataset finalized?)")
            stats[index["dataset"]] = dataset_stats
            pitch_is_log[index["dataset"]] = index["features"].get("token_pitch") == "interpolated_log"
        return cls(stats, pitch_is_log, per_speaker)

    def apply(self, items: Sequence[TrainItem], datasets: Sequence[str], speakers: Sequence[str]) -> None:
        """Replace each item's ``token_pitch`` and ``token_energy`` [N] by float32 z-scores, in place (items
        without durations, hence without per-token values, are left as they are)."""
        for item, dataset, speaker in zip(items, datasets, speakers):
            if item.token_pitch is None or item.token_energy is None:
                continue
            item.token_pitch, item.token_energy = normalise_token_prosody(
                item.token_pitch, item.token_energy, self.stats[dataset],
                speaker=speaker if self.per_speaker else None, pitch_is_log=self.pitch_is_log[dataset])
