"""Shared fixtures. The Prefect harness is session-scoped and only started by tests that ask for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Every ``ttsprep`` command a test runs (in-process or as a subprocess inheriting this environment) starts and
# stops its own embedded Prefect server, rather than leaving the detached local server running: only the tests
# of that server (tests/pipelines/test_embedded_api.py) set ``TTSPREP_SERVER=local`` for their commands.
os.environ["TTSPREP_SERVER"] = "embedded"

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPORA = REPO_ROOT.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    """``../shared/corpora`` beside the repository; tests using it are skipped where it is absent."""
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"{SHARED_CORPORA} not present (real-corpus samples live beside the repo in CI)")
    return SHARED_CORPORA
