"""The accounting self-checks: a duplicated id passes them (its second listing is its own ledger row), and a
broken ledger fails them, after the index and the report are written."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import write_ljspeech
from ttsprep.stages.core.errors import InvariantViolation
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.run_dataset import run_dataset
from ttsprep.stages.step1_ingest.project import load_project
from ttsprep.stages.step7_finalize.finalize import finalize_dataset
from ttsprep.stages.step7_finalize.self_checks import accounting_checks, raise_if_failed


def _config(tmp_path):
    write_ljspeech(tmp_path / "LJ", {"D-1": "First of two.", "D-2": "Second one."},
                   extra_lines=("D-1|Listed again.|Listed again.",))
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  - name: tiny\n    importer: ljspeech\n    root: LJ\n"
                      "    stages: {filter: {min_snr_db: null}, align: {method: none}, text: {enabled: false}}\n")
    return load_project(config).datasets[0]


def test_a_duplicated_id_is_one_kept_row_and_one_ledger_row_and_every_check_holds(tmp_path):
    result = run_dataset(_config(tmp_path), tmp_path / "out", report=True)
    assert result.index["counts"]["inputs"] == 3 and result.index["counts"]["kept"] == 2
    ledger = pq.read_table(DatasetLayout(tmp_path / "out", "tiny").rejects).to_pylist()
    assert [(row["utt_id"], row["reason"]) for row in ledger] == [("tiny:D-1#2", "duplicate_id")]
    assert [check["violations"] for check in result.index["checks"]] == [0] * 6


def test_a_broken_ledger_fails_the_checks_after_the_index_is_written(tmp_path):
    dataset = _config(tmp_path)
    out = tmp_path / "out"
    run_dataset(dataset, out)
    layout = DatasetLayout(out, "tiny")
    part = layout.shard_rejects("part-00000")
    kept_row = {"utt_id": "tiny:D-2", "dataset": "tiny", "stage": "align", "reason": "alignment_failed",
                "detail": "planted", "audio_path": ""}
    pq.write_table(pa.concat_tables([pq.read_table(part), pa.Table.from_pylist([kept_row],
                                                                               pq.read_schema(part))]), part)
    index = finalize_dataset(layout, dataset.config, num_inputs=3)
    failed = {c["check"]: c["violations"] for c in index["checks"] if c["violations"]}
    assert failed == {"input utterances = kept + rejected": 1, "no utterance is both kept and rejected": 1}
    assert layout.index.is_file()
    with pytest.raises(InvariantViolation, match="self-check failed: input utterances = kept"):
        raise_if_failed("tiny", index["checks"])


def test_checks_count_each_kind_of_violation():
    checks = accounting_checks(4, ["a", "b", "c"], ["a", "a", "x"], ["b"])
    assert {c["check"]: c["violations"] for c in checks} == {
        "input utterances = kept + rejected": 0, "kept utt_ids are unique": 1, "rejected utt_ids are unique": 0,
        "no utterance is both kept and rejected": 0, "every manifest utterance is kept or rejected": 1,
        "every kept utterance is in the manifest": 1}
