"""The shard stage on a real Dask cluster (scheduler + two workers on 127.0.0.1) equals the local run."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.helpers import write_ljspeech
from tests.pipelines.services import api_post, dask_cluster, eventually, prefect_server, run_ttsprep, service_env

pytestmark = pytest.mark.slow


def _sorted_table(paths: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(path) for path in paths]).sort_by("utt_id")


def _outputs(dataset_dir: Path) -> dict:
    """Everything a run leaves for training: shard rows (every column, by utt_id), ledger, index, stats."""
    shards = sorted((dataset_dir / "shards").glob("*.parquet"))
    return {"shard_files": [path.name for path in shards], "rows": _sorted_table(shards).to_pylist(),
            "rejects": _sorted_table([dataset_dir / "rejects.parquet"]).to_pylist(),
            "index": json.loads((dataset_dir / "index.json").read_text()),
            "stats": json.loads((dataset_dir / "stats.json").read_text())}


def _differences(rows: list[dict], expected: list[dict]) -> list[tuple[str, str]]:
    """``(utt_id, column)`` of every value that differs (rows paired in utt_id order)."""
    if [row["utt_id"] for row in rows] != [row["utt_id"] for row in expected]:
        return [("utt_id", "the two runs kept different utterances")]
    return [(row["utt_id"], column) for row, other in zip(rows, expected) for column in row
            if row[column] != other[column]]


def test_shards_on_dask_workers_equal_the_local_run(tmp_path: Path):
    texts = {f"T-{i:02d}": f"Sentence number {i} is here." for i in range(8)}
    corpus = write_ljspeech(tmp_path / "LJ", texts, missing=("T-07",))
    sf.write(corpus / "wavs" / "T-03.wav", np.zeros(22050, np.float32), 22050, subtype="PCM_16")  # all silence
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {shards: {max_utterances: 2}, filter: {min_snr_db: null}, align: {method: none}}\n")
    run = ["run", "--config", str(config), "--out"]

    with ExitStack() as services:
        with ThreadPoolExecutor(2) as starting:  # both start at once: each takes 10-30 s on 2 busy cores
            server = starting.submit(services.enter_context, prefect_server(tmp_path / "server-home"))
            cluster = starting.submit(services.enter_context,
                                      dask_cluster(2, service_env(tmp_path / "worker-home"), tmp_path / "dask"))
        api_url, address = server.result(), cluster.result()
        env = service_env(tmp_path / "client-home", api_url)
        on_dask = run_ttsprep([*run, str(tmp_path / "dask-out"), "--dask-address", address], env)
        shard_runs = eventually(
            lambda: api_post(api_url, "task_runs/filter", {"task_runs": {"name": {"like_": "tiny/part-"}}}),
            lambda rows: len(rows) == 4 and all(row["state_type"] == "COMPLETED" for row in rows))
        local = run_ttsprep([*run, str(tmp_path / "local-out"), "--workers", "2"], env)
    worker_logs = [(tmp_path / "dask" / f"dask-worker-{n}.log").read_text() for n in range(2)]

    assert on_dask == local
    assert on_dask["tiny"]["rejected_by_reason"] == {"missing_audio": 1, "all_silence": 1}
    dask_outputs, local_outputs = _outputs(tmp_path / "dask-out" / "tiny"), _outputs(tmp_path / "local-out" / "tiny")
    assert len(dask_outputs["shard_files"]) == 4 and len(dask_outputs["rows"]) == 6
    assert _differences(dask_outputs["rows"], local_outputs["rows"]) == []  # every column: audio bytes, mel, ...
    for part in ("shard_files", "rejects", "index", "stats"):
        assert dask_outputs[part] == local_outputs[part], part
    # The shards ran on both workers, and the workers reported their task runs to the same Prefect server.
    assert all("Task run 'tiny/part-" in log for log in worker_logs)
    assert sorted(run["state_type"] for run in shard_runs) == ["COMPLETED"] * 4


@pytest.mark.parametrize("api_url, dask_address, warned", [
    ("http://127.0.0.1:40001/api", "tcp://10.1.2.3:8786", True),
    ("http://localhost:4200/api", "tcp://dask-scheduler:8786", True),
    ("http://127.0.0.1:40001/api", "tcp://127.0.0.1:8786", False),  # a cluster on this host
    ("http://prefect.internal:4200/api", "tcp://10.1.2.3:8786", False),  # a server the workers can reach
])
def test_a_loopback_prefect_api_with_a_remote_scheduler_is_warned_about(api_url, dask_address, warned):
    from ttsprep.pipelines.cli import unreachable_api_warning

    warning = unreachable_api_warning(api_url, dask_address)
    assert (warning is not None) == warned
    assert warning is None or api_url in warning and "PREFECT_API_URL" in warning
