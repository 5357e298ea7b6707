"""How ``write_parquet`` encodes each kind of column: float32 leaves byte-stream-split LZ4, the FLAC bytes stored
as they are (compressing them again gained nothing and cost time on write and read), the rest zstd."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ttsprep.stages.core.atomic import write_parquet
from ttsprep.stages.core.audio_io import encode_flac


def test_each_kind_of_column_gets_its_codec(tmp_path):
    rng = np.random.default_rng(0)
    flac = [encode_flac(rng.uniform(-0.5, 0.5, 22050).astype(np.float32), 22050) for _ in range(3)]
    table = pa.table({"utt_id": ["a", "b", "c"], "audio": pa.array(flac, pa.binary()),
                      # Arrow names this list's leaf "item", Parquet "element": the codec must still apply
                      "f0": pa.array([np.repeat(np.float32([0, 110, 220]), 50)] * 3, pa.list_(pa.float32())),
                      "num_frames": pa.array([50, 50, 50], pa.int64())})
    path = tmp_path / "part.parquet"
    write_parquet(path, table)

    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert columns["audio"].compression == "UNCOMPRESSED"
    assert columns["f0.list.element"].compression == "LZ4"  # LZ4_RAW, as pyarrow names it
    assert "BYTE_STREAM_SPLIT" in columns["f0.list.element"].encodings
    assert columns["utt_id"].compression == columns["num_frames"].compression == "ZSTD"
    assert pq.read_table(path).equals(table)
