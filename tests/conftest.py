from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"


def shared_traces() -> Path | None:
    """../shared/traces beside the checkout (or $PAGEREPLAY_SHARED_TRACES)."""
    env = os.environ.get("PAGEREPLAY_SHARED_TRACES")
    cand = [Path(env)] if env else []
    cand += [ROOT.parent / "shared" / "traces", Path("/work/shared/traces")]
    for c in cand:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def traces_dir() -> Path:
    d = shared_traces()
    if d is None:
        pytest.skip("../shared/traces not found (set PAGEREPLAY_SHARED_TRACES)")
    return d
