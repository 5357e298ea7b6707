"""What a run shows in the Prefect UI besides logs: per-dataset artifacts and readable run names.

The dataset summary artifact carries the report's key content (accounting and its self-checks, hours per
split, language and speaker, rejects, durations by aligner), so the UI answers "what did this run produce"
without opening ``report.html``, whose path it also gives.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.step7_finalize.report_html import shortened

TOP_SPEAKERS = 10  # speakers listed in the summary artifact (largest by hours)


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from name parts."""
    return "-".join(parts).replace("_", "-").replace("/", "-").lower()


def run_name(config_path: str) -> str:
    """A flow run's name: the config's file name and the local start time (``datasets 2026-12-06 03:00:00``)."""
    return f"{Path(config_path).stem} {datetime.now():%Y-%m-%d %H:%M:%S}"


def dataset_artifacts(dataset: str, out_dir: str, index: dict) -> None:
    """The rejects table and the markdown summary of one dataset, from its ``index.json``."""
    counts = index["counts"]
    create_table_artifact(key=artifact_key(dataset, "rejects"),
                          description=f"{dataset}: rejected utterances by reason (details in rejects.parquet)",
                          table=[{"reason": r, "count": n} for r, n in counts["rejected_by_reason"].items()]
                          or [{"reason": "(none)", "count": 0}])
    create_markdown_artifact(key=artifact_key(dataset, "summary"), markdown=summary_markdown(dataset, out_dir, index),
                             description=f"{dataset}: counts, self-checks, hours and alignment of the last finalize")


def summary_markdown(dataset: str, out_dir: str, index: dict) -> str:
    """The report's key content as markdown (the Prefect UI renders it)."""
    layout = DatasetLayout(Path(out_dir), dataset)
    counts, hours = index["counts"], index["hours"]
    num_pairs = pq.ParquetFile(layout.pairs).metadata.num_rows if layout.pairs.is_file() else 0
    lines = [f"# {dataset}", "",
             f"* inputs: {counts['inputs']} = kept {counts['kept']} ({hours['total']:.3f} h) + rejected "
             f"{counts['rejected']}",
             f"* shards: {len(index['shards'])}; voice-conversion pairs: {num_pairs}",
             f"* report: `{layout.report.resolve()}` ([open]({layout.report.resolve().as_uri()}) on this machine)",
             "", "## Self-checks", "", "| check | result |", "|---|---|"]
    for check in index.get("checks", []):
        bad = check["violations"]
        result = "ok" if not bad else f"FAILED: {bad} utterance" + ("s" if bad != 1 else "")
        lines.append(f"| {check['check']} | {result} |")
    lines += ["", "## Hours", "", "| by | value | hours |", "|---|---|---:|"]
    for by in ("split", "language"):
        lines += [f"| {by} | {key} | {value:.3f} |" for key, value in hours[f"by_{by}"].items()]
    speakers = sorted(hours["by_speaker"].items(), key=lambda item: -item[1])
    lines += [f"| speaker | {shortened(key)} | {value:.3f} |" for key, value in speakers[:TOP_SPEAKERS]]
    if len(speakers) > TOP_SPEAKERS:
        lines.append(f"| speaker | {len(speakers) - TOP_SPEAKERS} more | "
                     f"{sum(v for _, v in speakers[TOP_SPEAKERS:]):.3f} |")
    alignment = index.get("alignment") or {}
    if alignment.get("rows_by_aligner"):
        lines += ["", "## Durations", "", "| aligner | rows |", "|---|---:|"]
        lines += [f"| {name} | {rows} |" for name, rows in alignment["rows_by_aligner"].items()]
    return "\n".join(lines) + "\n"

