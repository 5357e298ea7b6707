"""Webhook notifications on flow completion and failure, rate-limited.

Set ``TTSPREP_WEBHOOK_URL`` to receive a JSON POST ``{"flow", "state", "message", "flow_run_id"}``;
at most one message per ``TTSPREP_WEBHOOK_MIN_INTERVAL_S`` seconds (default 60) per flow and state,
tracked in a small file so that separate processes share the limit.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)


def _rate_file() -> Path:
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    return home / "ttsprep-webhook.json"


def _allowed(key: str, min_interval_s: float) -> bool:
    path = _rate_file()
    try:
        sent = json.loads(path.read_text())
    except (OSError, ValueError):
        sent = {}
    now = time.time()
    if now - sent.get(key, 0.0) < min_interval_s:
        return False
    sent[key] = now
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sent))
    return True


def send(flow_name: str, state_name: str, message: str, flow_run_id: str = "") -> bool:
    """POST one notification if a webhook is configured and the rate limit allows; True when sent."""
    url = os.environ.get("TTSPREP_WEBHOOK_URL")
    if not url:
        return False
    min_interval_s = float(os.environ.get("TTSPREP_WEBHOOK_MIN_INTERVAL_S", "60"))
    if not _allowed(f"{flow_name}:{state_name}", min_interval_s):
        return False
    body = json.dumps({"flow": flow_name, "state": state_name, "message": message,
                       "flow_run_id": flow_run_id}).encode()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except OSError as error:  # a broken webhook must never fail the pipeline
        logger.warning("webhook %s failed: %s", url, error)
        return False


def flow_state_hook(flow, flow_run, state) -> None:
    """Prefect ``on_completion`` / ``on_failure`` hook."""
    send(flow.name, state.name, str(state.message or ""), str(flow_run.id))
