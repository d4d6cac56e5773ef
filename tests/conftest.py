"""Fixtures shared by the whole suite.

The real traces live in ``../shared/traces`` beside the checkout (or ``$PAGEREPLAY_SHARED_TRACES``).
A test that needs them takes the ``traces_dir`` fixture: without them it is skipped on a
developer's machine and **fails** when ``CI`` is set, so a green CI run always includes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"


def shared_traces() -> Path | None:
    """``../shared/traces`` beside the checkout (or ``$PAGEREPLAY_SHARED_TRACES``), if present."""
    env = os.environ.get("PAGEREPLAY_SHARED_TRACES")
    for c in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "traces"]:
        if c.is_dir():
            return c
    return None


def require_traces() -> Path:
    """The shared traces folder; skip (fail under ``CI``) when it is missing."""
    d = shared_traces()
    if d is None:
        msg = "../shared/traces not found (set PAGEREPLAY_SHARED_TRACES)"
        if os.environ.get("CI"):
            pytest.fail(msg + ": CI expects the real traces")
        pytest.skip(msg)
    return d


def require_trace_file(rel: str) -> Path:
    """One file or folder under the shared traces (same rule as ``require_traces``)."""
    p = require_traces() / rel
    if not p.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{rel} missing from the shared traces")
        pytest.skip(f"{rel} not in the shared traces")
    return p


@pytest.fixture(scope="session")
def traces_dir() -> Path:
    return require_traces()
