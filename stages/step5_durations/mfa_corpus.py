"""Montreal Forced Aligner over a dataset's planned utterances (``align.method: mfa``), before its shards run.

MFA aligns a whole corpus at once, so it runs once per dataset between planning and the shards; each shard
then reads its utterances' TextGrids (``textgrid_dir``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ttsprep.aligners.mfa import export_mfa_corpus, run_mfa_align
from ttsprep.stages.core.layout import DatasetLayout
from ttsprep.stages.core.records import local_id
from ttsprep.stages.core.versions import tool_versions
from ttsprep.stages.step1_ingest.plan import load_plan, read_utterances
from ttsprep.stages.step1_ingest.project import Dataset


def textgrid_dir(dataset: Dataset, out_dir: Path) -> Path | None:
    """Where the dataset's TextGrids are: the user's folder, or this pipeline's MFA output."""
    align = dataset.config.align
    if align.method == "mfa":
        return DatasetLayout(Path(out_dir), dataset.name).mfa_dir / "textgrids"
    return align.textgrid_dir


def align_with_mfa(dataset: Dataset, out_dir: Path, jobs: int) -> Path:
    """Export the planned utterances in MFA's layout and run ``mfa align`` (or ``mfa train``) over them.

    Skipped when the TextGrids exist for the same utterances (checksums and text) and MFA settings.
    Returns the TextGrid folder.
    """
    layout = DatasetLayout(Path(out_dir), dataset.name)
    align = dataset.config.align
    utterances = [u for spec in load_plan(layout.plan) for u in read_utterances(layout.shard_inputs(spec.name))]
    digest = hashlib.sha256(json.dumps([align.mfa_dictionary, align.mfa_acoustic_model, tool_versions()["mfa"]]
                                       + sorted((u.utt_id, u.checksum, u.text) for u in utterances)).encode())
    key_path, textgrids = layout.mfa_dir / "key.txt", textgrid_dir(dataset, out_dir)
    if key_path.is_file() and key_path.read_text() == digest.hexdigest():
        return textgrids
    corpus = layout.mfa_dir / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    export_mfa_corpus([(u.speaker, local_id(u.utt_id), Path(u.audio_path), u.text) for u in utterances], corpus)
    run_mfa_align(corpus, align.mfa_dictionary, align.mfa_acoustic_model, textgrids, jobs=jobs)
    key_path.write_text(digest.hexdigest())
    return textgrids
