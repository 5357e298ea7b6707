"""Webhook notifications (delivery and rate limit) and the new-data trigger's change detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ttsprep.pipelines import notify, watch
from ttsprep.pipelines.lock import output_lock
from ttsprep.stages.core.errors import ConfigError


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


def test_webhook_receives_one_message_per_interval_and_counts_those_held_back(webhook, monkeypatch, caplog):
    monkeypatch.setenv("TTSPREP_WEBHOOK_MIN_INTERVAL_S", "3600")
    assert notify.send("ttsprep-run", "Failed", "boom", "run-1")
    assert not notify.send("ttsprep-run", "Failed", "boom again", "run-2")  # rate-limited: logged, counted
    assert "held back by the rate limit" in caplog.text
    assert notify.send("ttsprep-run", "Completed", "", "run-3")  # another state has its own limit
    assert [(m["state"], m["message"], m["flow_run_id"]) for m in webhook] == [("Failed", "boom", "run-1"),
                                                                              ("Completed", "", "run-3")]
    assert webhook[0]["held_back"]["count"] == 0
    assert webhook[1]["held_back"] == {"count": 1, "states": {"Failed": 1}}  # the one held back is reported
    monkeypatch.setenv("TTSPREP_WEBHOOK_MIN_INTERVAL_S", "0")
    assert notify.send("ttsprep-run", "Failed", "later", "run-4") and webhook[2]["held_back"]["count"] == 0


def test_the_message_carries_the_runs_numbers(webhook, tmp_path):
    index = {"counts": {"inputs": 5, "kept": 3, "rejected": 2, "rejected_by_reason": {"low_snr": 2}},
             "hours": {"total": 0.01}}
    notify.write_run_summary(tmp_path / "out", {"lj": index, "cv": index}, ["cv/part-00001"])
    run = notify.read_run_summary(tmp_path / "out", since=0.0)
    assert notify.send("ttsprep-run", "Completed", "", "run-1", run)
    (message,) = webhook
    assert message["run"]["inputs"] == 10 and message["run"]["kept"] == 6 and message["run"]["hours"] == 0.02
    assert message["run"]["rejected_by_reason"] == {"low_snr": 4}
    assert message["run"]["failed_shards"] == ["cv/part-00001"]
    assert message["run"]["datasets"]["lj"]["kept"] == 3 and message["run"]["out_dir"] == str(tmp_path / "out")
    assert notify.read_run_summary(tmp_path / "out", since=time.time() + 60) is None  # an older run's summary


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


def test_a_run_refused_by_the_output_lock_notifies(webhook, tmp_path):
    out = tmp_path / "out"
    holder_code = ("import sys; from pathlib import Path; from ttsprep.pipelines.lock import output_lock\n"
                   "with output_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "TTSPREP_WEBHOOK_URL": ""})
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ConfigError, match="is locked"):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    (message,) = webhook
    assert message["state"] == "Refused" and "is locked" in message["message"]
    assert message["run"] == {"out_dir": str(out)}
