"""Fixtures of the sweep tests: tiny synthetic traces, the bundled sample capture, Ray on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray (when a test starts it) stays on this machine's loopback and sends no usage report: set
# before anything imports ray, which reads both when imported
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from tests.conftest import SAMPLES
from tests.sweep.traces import write_trace

SAMPLE_CAPTURE = SAMPLES / "debian12-6.1-small"


@pytest.fixture(scope="session")
def tiny_traces(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny synthetic traces (Parquet, no snapshot)."""
    d = tmp_path_factory.mktemp("traces")
    return [write_trace(d / "alpha.parquet", seed=1), write_trace(d / "beta.parquet", seed=2, cpus=3)]


@pytest.fixture(scope="session")
def sample_capture() -> Path:
    """The bundled real capture (Linux 6.1, 25k events, proc_before/ and proc_after/)."""
    return SAMPLE_CAPTURE

