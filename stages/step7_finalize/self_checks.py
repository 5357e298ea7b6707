"""The accounting self-checks of a finished dataset: every input utterance is exactly one shard row or ledger row.

``finalize_dataset`` records them in ``index.json`` (``checks``); the report shows that record, and the run fails
(exit status 1, the flow run Failed) when any check failed, so the report, the exit status and the Prefect
state always agree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ttsprep.stages.core.errors import InvariantViolation


def accounting_checks(num_inputs: int, manifest_ids: list[str], kept_ids: list[str],
                      rejected_ids: list[str]) -> list[dict[str, Any]]:
    """``[{"check": what must hold, "violations": how many utterances break it}]``, in a fixed order.

    ``manifest_ids``: utterances that passed ingest; ``kept_ids``: shard rows; ``rejected_ids``: ledger rows.
    """
    manifest, kept, rejected = set(manifest_ids), set(kept_ids), set(rejected_ids)
    repeated = lambda ids: sum(n - 1 for n in Counter(ids).values())  # noqa: E731 - one line, local
    checks = [
        ("input utterances = kept + rejected", abs(num_inputs - len(kept_ids) - len(rejected_ids))),
        ("kept utt_ids are unique", repeated(kept_ids)),
        ("rejected utt_ids are unique", repeated(rejected_ids)),
        ("no utterance is both kept and rejected", len(kept & rejected)),
        ("every manifest utterance is kept or rejected", len(manifest - kept - rejected)),
        ("every kept utterance is in the manifest", len(kept - manifest)),
    ]
    return [{"check": name, "violations": int(bad)} for name, bad in checks]


def raise_if_failed(dataset: str, checks: list[dict[str, Any]]) -> None:
    """``InvariantViolation`` naming every failed check of ``dataset`` (after its index and report are written)."""
    failed = [f"{c['check']} ({c['violations']} utterance{'s' if c['violations'] != 1 else ''})"
              for c in checks if c["violations"]]
    if failed:
        raise InvariantViolation(f"{dataset}: self-check failed: {'; '.join(failed)} (see its report.html)")
