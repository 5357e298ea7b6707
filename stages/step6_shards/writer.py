"""The one writer of a shard's files: its ledger part, its statistics part, then the shard itself.

Each file is written atomically. The shard goes last: the Tacotron 2 aligner marks a rewritten shard done in
the shard's own metadata, and ``process_shard`` marks it done with the summary it writes after this.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ttsprep.stages.core.atomic import rows_to_table, write_parquet
from ttsprep.stages.core.config import ShardConfig
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.schema import REJECTS_SCHEMA
from ttsprep.stages.step6_shards.stats import RunningStats


def write_shard_files(layout: DatasetLayout, name: str, shard: pa.Table, ledger_rows: list[dict[str, Any]],
                      stats: RunningStats, settings: ShardConfig) -> None:
    """Write shard ``name``'s ledger part (``REJECTS_SCHEMA`` rows), statistics part and Parquet file
    (row groups and compression from ``settings``)."""
    write_parquet(layout.shard_rejects(name), rows_to_table(ledger_rows, REJECTS_SCHEMA))
    stats.save(layout.shard_stats(name))
    write_parquet(layout.shard(name), shard, row_group_size=settings.row_group_size,
                  compression_level=settings.compression_level)
