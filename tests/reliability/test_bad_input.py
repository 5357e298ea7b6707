"""Bad input (issue 7): every case of ``bad_corpus`` is kept or rejected exactly as expected, nothing is lost.

The pipeline runs as the flow runs it, minus Prefect: ``ingest_and_plan``, ``process_shard`` for each
shard, ``finalize_dataset`` (which itself raises when inputs != kept + rejected). Configuration errors
must stop everything with one ``ConfigError`` line naming the dataset entry and the key.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.reliability.bad_corpus import KEPT, SAMPLE_RATE, Case, write_bad_corpora
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.run_dataset import run_dataset
from ttsprep.stages.step1_ingest.project import load_project

REPO_ROOT = Path(__file__).resolve().parents[2]
KEPT_VARIANTS = ("LJ-pcm8", "LJ-pcm24", "LJ-float32", "LJ-stereo", "LJ-96k")
DATASETS = ("lj", "mcsv", "mjsonl", "vctk", "cv")


@dataclass(frozen=True)
class Outcome:
    reason: str
    stage: str
    detail: str


@dataclass(frozen=True)
class Run:
    cases: list[Case]
    indexes: dict[str, dict]
    #: ``{utt_id: [Outcome, ...]}``: a kept row, ledger rows, or both (a duplicate id's second line).
    outcomes: dict[str, list[Outcome]]
    #: ``{utt_id: shard row}`` of every kept utterance.
    kept_rows: dict[str, dict]


def _run_dataset(config: Path, name: str, out_dir: Path) -> tuple[dict, list[dict], list[dict]]:
    """Ingest, every shard and finalize for dataset ``name``: ``(index, kept shard rows, ledger rows)``."""
    index = run_dataset(load_project(config).select([name])[0], out_dir).index
    layout = DatasetLayout(out_dir, name)
    kept = [row for shard in index["shards"] for row in pq.read_table(layout.root / shard["path"]).to_pylist()]
    return index, kept, pq.read_table(layout.rejects).to_pylist()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("bad_input")
    config, cases = write_bad_corpora(root / "corpora")
    indexes, outcomes, kept_rows = {}, {}, {}
    for name in dict.fromkeys(case.dataset for case in cases):
        indexes[name], kept, rejects = _run_dataset(config, name, root / "out")
        for row in kept:
            kept_rows[row["utt_id"]] = row
            outcomes.setdefault(row["utt_id"], []).append(Outcome(KEPT, "", ""))
        for row in rejects:
            outcomes.setdefault(row["utt_id"], []).append(Outcome(row["reason"], row["stage"], row["detail"]))
    return Run(cases, indexes, outcomes, kept_rows)


def _mismatch(case: Case, outcomes: list[Outcome]) -> str | None:
    """Why ``outcomes`` (of the case's utt_id) lack the case's expected outcome, or None when they hold it."""
    found = [outcome for outcome in outcomes if outcome.reason == case.reason]
    if not found:
        return f"{case.utt_id} ({case.what}): expected {case.reason}, got {[(o.reason, o.stage) for o in outcomes]}"
    outcome = found[0]
    if case.reason != KEPT and (outcome.stage != case.stage or not re.search(case.detail, outcome.detail)):
        return (f"{case.utt_id} ({case.what}): expected stage {case.stage!r} and a detail matching {case.detail!r}, "
                f"got {outcome.stage!r}: {outcome.detail!r}")
    return None


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_case_is_kept_or_rejected_with_its_reason(run, dataset):
    mismatches = [mismatch for case in run.cases if case.dataset == dataset
                  if (mismatch := _mismatch(case, run.outcomes.get(case.utt_id, [])))]
    assert mismatches == []


@pytest.mark.parametrize("dataset", DATASETS)
def test_inputs_equal_kept_plus_rejected(run, dataset):
    cases = [case for case in run.cases if case.dataset == dataset]
    counts = run.indexes[dataset]["counts"]
    assert counts["inputs"] == len(cases) == counts["kept"] + counts["rejected"]
    assert sum(counts["rejected_by_reason"].values()) == counts["rejected"]
    # every input line or file accounted for exactly once: no silent drop, no double count
    produced = {utt_id: len(found) for utt_id, found in run.outcomes.items() if utt_id.startswith(f"{dataset}:")}
    assert Counter(produced) == Counter(case.utt_id for case in cases)


def _median_f0_hz(row: dict) -> float:
    return float(np.median(np.asarray(row["f0"])[np.asarray(row["voiced"])]))


def test_kept_audio_is_mono_at_the_configured_rate_with_its_pitch(run):
    reference = run.kept_rows["lj:LJ-pcm16"]
    reference_voiced = int(np.sum(reference["voiced"]))
    assert 170 < _median_f0_hz(reference) < 195  # tone_bursts: 160, 176 and 192 Hz
    assert {f"lj:{local_id}" for local_id in KEPT_VARIANTS} <= run.kept_rows.keys()
    for utt_id, row in run.kept_rows.items():
        info = sf.info(io.BytesIO(row["audio"]))
        assert (info.channels, info.samplerate, row["sample_rate"]) == (1, SAMPLE_RATE, SAMPLE_RATE), utt_id
        assert info.frames == row["num_samples"], utt_id
        # a wrong rate conversion or a misread sample format would move or lose the pitch
        assert _median_f0_hz(row) == pytest.approx(_median_f0_hz(reference), rel=0.01), utt_id
        assert int(np.sum(row["voiced"])) == pytest.approx(reference_voiced, rel=0.2), utt_id
        assert reference["duration_s"] - 0.01 <= row["duration_s"] <= row["source_duration_s"], utt_id


LJ = "{name: lj, importer: ljspeech, root: LJ"


@pytest.mark.parametrize("text, message", [
    (f"datasets:\n  - {LJ}, colour: red}}\n", "dataset #1 'lj': colour: unknown key (options of importer 'ljspeech')"),
    (f"datasets:\n  - {LJ}, stages: {{filter: {{max_durations: 12}}}}}}\n",
     "dataset #1 'lj': stages.filter.max_durations: unknown key"),
    (f"defaults: {{audio: {{sampel_rate: 16000}}}}\ndatasets:\n  - {LJ}}}\n", "defaults.audio.sampel_rate: unknown key"),
    ("datasets:\n  - {name: lj, importer: ljspeach, root: LJ}\n",
     "dataset #1 'lj': unknown importer 'ljspeach' (did you mean 'ljspeech'?); known: aishell3, cmu_arctic, common_voice"),
    (f"datasets:\n  - {LJ}}}\n  - {{name: vc, importer: vctk, root: VCTK}}\n",
     "dataset #2 'vc': root: '{tmp}/VCTK' is not a directory"),
    ("datasets:\n  - name: lj\n    importer: ljspeech\n    root: LJ\n"
     "    stages: !!python/object:stages.config.StageConfig {}\n",
     "dataset #1 'lj': stages: not valid YAML: the tag '!!python/object:stages.config.StageConfig' (line 5) is refused"),
    ("datasets:\n  - name: lj\n    importer: ljspeech\n    root: !!python/object/apply:os.system ['touch {tmp}/pwned']\n",
     "dataset #1 'lj': root: not valid YAML: the tag '!!python/object/apply:os.system' (line 4) is refused"),
    ("datasets:\n  - {name: lj, importer: ljspeech, root: !include LJ}\n",
     "dataset #1 'lj': root: not valid YAML: the tag '!include' (line 2) is refused"),
], ids=["importer_option", "stage_key", "defaults_key", "importer", "root", "python_object", "python_apply",
        "custom_tag"])
def test_config_error_is_one_message_naming_entry_and_key(tmp_path, text, message):
    (tmp_path / "LJ").mkdir()
    config = tmp_path / "bad.yaml"
    config.write_text(text.replace("{tmp}", str(tmp_path)), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_project(config)
    assert str(error.value).startswith(f"{config}: ")
    assert message.replace("{tmp}", str(tmp_path)) in str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "pwned").exists()


def test_cli_stops_on_a_bad_config_with_status_2_before_any_work(tmp_path):
    (tmp_path / "LJ").mkdir()
    config = tmp_path / "bad.yaml"
    config.write_text(f"datasets:\n  - {LJ}, stages: {{filter: {{max_durations: 12}}}}}}\n", encoding="utf-8")
    out = tmp_path / "out"
    for command in (["validate"], ["run", "--out", str(out)]):
        result = subprocess.run([sys.executable, "-m", "ttsprep.pipelines.cli", *command, "--config", str(config)],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout) == (2, ""), command
        assert result.stderr == f"ttsprep: error: {config}: dataset #1 'lj': stages.filter.max_durations: unknown key\n"
    assert not out.exists()
