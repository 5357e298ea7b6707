"""Webhook notifications (delivery and rate limit) and the new-data trigger's change detection."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pipelines import notify, watch


@pytest.fixture
def webhook(monkeypatch, tmp_path):
    """A local HTTP endpoint collecting JSON bodies; PREFECT_HOME (the rate-limit file) in tmp_path."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("TTSPREP_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()


def test_webhook_receives_one_message_per_interval(webhook, monkeypatch):
    monkeypatch.setenv("TTSPREP_WEBHOOK_MIN_INTERVAL_S", "3600")
    assert notify.send("ttsprep-run", "Failed", "boom", "run-1")
    assert not notify.send("ttsprep-run", "Failed", "boom again", "run-2")  # rate-limited
    assert notify.send("ttsprep-run", "Completed", "", "run-3")  # another state has its own limit
    assert webhook == [{"flow": "ttsprep-run", "state": "Failed", "message": "boom", "flow_run_id": "run-1"},
                       {"flow": "ttsprep-run", "state": "Completed", "message": "", "flow_run_id": "run-3"}]
    monkeypatch.setenv("TTSPREP_WEBHOOK_MIN_INTERVAL_S", "0")
    assert notify.send("ttsprep-run", "Failed", "later", "run-4") and len(webhook) == 3


def test_unreachable_webhook_never_fails_the_pipeline(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("TTSPREP_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens-here")
    assert notify.send("ttsprep-run", "Failed", "boom") is False
    monkeypatch.delenv("TTSPREP_WEBHOOK_URL")
    assert notify.send("ttsprep-run", "Failed", "boom") is False


def test_changed_files_sees_additions_edits_and_removals(tmp_path):
    root, out = tmp_path / "corpus", tmp_path / "out"
    (root / "wavs").mkdir(parents=True)
    (root / "wavs" / "a.wav").write_bytes(b"a")
    (root / "wavs" / "b.wav").write_bytes(b"b")
    assert watch.changed_files(root, out, "d") == ["wavs/a.wav", "wavs/b.wav"]  # never seen: everything
    watch.record_snapshot(root, out, "d")
    assert watch.changed_files(root, out, "d") == []
    (root / "wavs" / "c.wav").write_bytes(b"c")
    (root / "wavs" / "a.wav").write_bytes(b"aa")
    (root / "wavs" / "b.wav").unlink()
    assert watch.changed_files(root, out, "d") == ["wavs/a.wav", "wavs/b.wav", "wavs/c.wav"]
    os.utime(root / "wavs" / "c.wav", ns=(1, 1))
    (root / "top.txt").write_bytes(b"t")
    (root / "wavs" / "dangling.wav").symlink_to(root / "nowhere.wav")  # a broken link is not a file
    watch.record_snapshot(root, out, "d")
    assert watch.changed_files(root, out, "d") == []
    assert sorted(watch.snapshot(root)) == ["top.txt", "wavs/a.wav", "wavs/c.wav"]
