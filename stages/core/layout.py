"""Where every output of a dataset lives under ``OUT/<dataset>/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetLayout:
    out_dir: Path
    name: str

    @property
    def root(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def manifest(self) -> Path:
        """Every utterance that passed ingest (probed audio header), kept or later rejected."""
        return self.root / "manifest.parquet"

    @property
    def rejects(self) -> Path:
        """The rejects ledger: one row per utterance dropped at any stage, with reason and detail."""
        return self.root / "rejects.parquet"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    def shard(self, name: str) -> Path:
        return self.shards_dir / f"{name}.parquet"

    def shard_summary(self, name: str) -> Path:
        """Written after the shard: its key, counts, stats path; marks the shard as complete."""
        return self.root / "work" / f"{name}.summary.json"

    def shard_inputs(self, name: str) -> Path:
        return self.root / "work" / f"{name}.inputs.parquet"

    def shard_rejects(self, name: str) -> Path:
        return self.root / "work" / f"{name}.rejects.parquet"

    def shard_stats(self, name: str) -> Path:
        return self.root / "work" / f"{name}.stats.npz"

    @property
    def ingest_rejects(self) -> Path:
        return self.root / "work" / "ingest.rejects.parquet"

    @property
    def probe_cache(self) -> Path:
        """Audio headers and checksums of the last ingest, reused for unchanged files."""
        return self.root / "work" / "probes.json"

    @property
    def finalize_key(self) -> Path:
        """The inputs' key of the last completed finalize (written after the report)."""
        return self.root / "work" / "finalize.key"

    @property
    def plan(self) -> Path:
        return self.root / "work" / "plan.json"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    @property
    def mfa_dir(self) -> Path:
        """The MFA run: ``corpus/`` (exported audio and .lab files), ``textgrids/`` and its input key."""
        return self.root / "work" / "mfa"

    @property
    def pairs(self) -> Path:
        """Voice-conversion pairs with their DTW durations (``ttsprep.stages.step7_finalize.vc_pairs``)."""
        return self.root / "pairs.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report.html"
