"""Webhook notifications with the run's numbers, on flow completion and failure and on a refused run.

Set ``TTSPREP_WEBHOOK_URL`` to receive a JSON POST per run::

    {"flow", "state", "message", "flow_run_id", "ui_url",
     "run": {"out_dir", "inputs", "kept", "rejected", "rejected_by_reason", "hours", "failed_shards",
             "datasets": {name: {"inputs", "kept", "rejected", "rejected_by_reason", "hours"}}},
     "held_back": {"count", "states"}}

``run`` is what the flow recorded in ``OUT/run_summary.json`` (absent when the run failed before writing it).
At most one message per ``TTSPREP_WEBHOOK_MIN_INTERVAL_S`` seconds (default 60) per flow and state, tracked
in a small file so that separate processes share the limit; a message held back by the limit is logged and
counted, and the next message sent for that flow carries the count (``held_back``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from ttsprep.stages.core.atomic import write_json

logger = logging.getLogger(__name__)
RUN_SUMMARY = "run_summary.json"


def _rate_file() -> Path:
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    return home / "ttsprep-webhook.json"


def _read_rate_file() -> dict[str, Any]:
    try:
        data = json.loads(_rate_file().read_text())
        return data if isinstance(data, dict) and "sent" in data else {"sent": {}, "held": {}}
    except (OSError, ValueError):
        return {"sent": {}, "held": {}}


def send(flow_name: str, state_name: str, message: str, flow_run_id: str = "",
         run: dict[str, Any] | None = None) -> bool:
    """POST one notification if a webhook is configured and the rate limit allows; True when sent."""
    url = os.environ.get("TTSPREP_WEBHOOK_URL")
    if not url:
        return False
    min_interval_s = float(os.environ.get("TTSPREP_WEBHOOK_MIN_INTERVAL_S", "60"))
    record = _read_rate_file()
    key, now = f"{flow_name}:{state_name}", time.time()
    held = record["held"].setdefault(flow_name, {"count": 0, "states": {}})
    if now - record["sent"].get(key, 0.0) < min_interval_s:
        held["count"] += 1
        held["states"][state_name] = held["states"].get(state_name, 0) + 1
        write_json(_rate_file(), record)
        logger.warning("webhook: %s %s held back by the rate limit (%d held back since the last message; "
                       "the next one counts them)", flow_name, state_name, held["count"])
        return False
    body = {"flow": flow_name, "state": state_name, "message": message, "flow_run_id": flow_run_id,
            "ui_url": _ui_link(flow_run_id), "run": run, "held_back": dict(held)}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except OSError as error:  # a broken webhook must never fail the pipeline
        logger.warning("webhook %s failed: %s", url, error)
        return False
    record["sent"][key] = now
    record["held"][flow_name] = {"count": 0, "states": {}}
    write_json(_rate_file(), record)
    return True


def _ui_link(flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI, when a UI URL is configured (``PREFECT_UI_URL``)."""
    if not flow_run_id:
        return ""
    from prefect.settings import get_current_settings

    ui_url = get_current_settings().ui_url
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui_url else ""


def write_run_summary(out_dir: Path, indexes: dict[str, dict], failed_shards: list[str]) -> dict[str, Any]:
    """``OUT/run_summary.json``: this run's counts per dataset and in total (what a notification reports)."""
    datasets = {name: {**index["counts"], "hours": index["hours"]["total"]} for name, index in indexes.items()}
    by_reason: dict[str, int] = {}
    for counts in datasets.values():
        for reason, count in counts["rejected_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + count
    summary = {"out_dir": str(out_dir), "failed_shards": failed_shards,
               **{k: sum(c[k] for c in datasets.values()) for k in ("inputs", "kept", "rejected")},
               "rejected_by_reason": dict(sorted(by_reason.items())),
               "hours": round(sum(c["hours"] for c in datasets.values()), 6), "datasets": datasets}
    write_json(Path(out_dir) / RUN_SUMMARY, summary)
    return summary


def read_run_summary(out_dir: str | Path, since: float) -> dict[str, Any] | None:
    """The run summary in ``out_dir`` if it was written at or after ``since`` (epoch seconds), else None."""
    path = Path(out_dir) / RUN_SUMMARY
    try:
        return json.loads(path.read_text()) if path.stat().st_mtime >= since else None
    except (OSError, ValueError):
        return None


def flow_state_hook(flow, flow_run, state) -> None:
    """Prefect ``on_completion`` / ``on_failure`` hook: the run's numbers from the summary it wrote."""
    out_dir = (flow_run.parameters or {}).get("out_dir")
    started = flow_run.start_time.timestamp() if flow_run.start_time else 0.0
    run = read_run_summary(out_dir, started) if out_dir else None
    send(flow.name, state.name, str(state.message or ""), str(flow_run.id), run)
