"""Two runs over the same corpus and config give identical output.

One run in this process, one in a fresh interpreter with another ``PYTHONHASHSEED`` (set and dict-of-set
iteration order differ) that processes the shards in reverse order (as a process pool may finish them).
Compared: decoded shard columns (hash per column, rows sorted by utt_id; audio decoded to samples), the
rejects ledger, index.json, stats.json, report.html and the symbol maps, and the shard files byte for byte.

Not deterministic, by design, and so not compared:

* ``work/snapshot.json`` records the corpus files' sizes and mtimes (it detects changed inputs);
* ``work/<shard>.summary.json`` says how many utterances reused the previous run's audio and features
  (``reused_acoustics``): it describes a run's history, not its output;
* ``.ttsprep.lock`` holds the pid of the last run; Prefect's database (flow-run ids and names, logs,
  artifacts) lives in ``PREFECT_HOME``, outside the output directory;
* file modification times.

Reproducible on one machine and software environment (``index.json`` records the tool versions); float
features are not promised bit-identical across CPUs or library versions (SIMD paths in FFT, BLAS and
resampling may round differently).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.reliability.support import output_digests, run_without_prefect, write_config, write_espeak_ljspeech

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_two_runs_give_identical_shards_ledger_and_index(tmp_path: Path):
    corpus = write_espeak_ljspeech(tmp_path / "LJ", 8, missing=(2,), clipped=(5,))
    config = write_config(tmp_path / "datasets.yaml", corpus, max_utterances=3)
    other_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from tests.reliability.support import run_without_prefect; "
         "run_without_prefect(Path(sys.argv[1]), 'rel', Path(sys.argv[2]), reverse_shards=True)",
         str(config), str(tmp_path / "b")],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONHASHSEED": other_seed}, stderr=subprocess.PIPE, text=True)
    index = run_without_prefect(config, "rel", tmp_path / "a")
    _, errors = other.communicate(timeout=120)
    assert other.returncode == 0, errors

    assert index["counts"] == {"inputs": 8, "kept": 6, "rejected": 2,
                               "rejected_by_reason": {"clipping": 1, "missing_audio": 1}}
    assert len(index["shards"]) == 3
    first, second = output_digests(tmp_path / "a" / "rel"), output_digests(tmp_path / "b" / "rel")
    assert set(first["shards"]) >= {"audio", "mel", "f0", "energy", "phonemes", "utt_id"}
    assert first == second
    for shard in index["shards"]:
        first_bytes, second_bytes = ((tmp_path / run / "rel" / shard["path"]).read_bytes() for run in "ab")
        assert first_bytes == second_bytes, shard["path"]
