"""The same sweep through the local pool and through Ray gives byte-identical folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray  # (in the test extra: Ray really runs here)

from replay.sweep.execute import run_sweep
from replay.sweep.spec import spec_from_cli
from tests.sweep.traces import tree


@pytest.fixture(scope="module")
def ray_session():
    """Ray on this machine only (loopback: tests/sweep/conftest.py), two CPUs, no dashboard.

    ``address="local"``: a private instance even when another one runs here (the other xdist
    worker's, or a ``ray start`` of someone's), never a connection to it."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_pool_and_ray_write_the_same_bytes(ray_session, sample_capture: Path, tiny_traces: list[Path],
                                           tmp_path: Path) -> None:
    spec = spec_from_cli([str(sample_capture), str(tiny_traces[0])], policies=["none,kernel-eager,list-promo"],
                         costs=["tdx-4k,snp-4k"], axes=["guest_size=traced,16G"])
    pool = run_sweep(spec, tmp_path / "pool", jobs=2, progress=False)
    on_ray = run_sweep(spec, tmp_path / "ray", ray="auto", progress=False)
    assert (pool.ran, pool.failed) == (on_ray.ran, on_ray.failed) == (24, 0)
    assert on_ray.executor == "ray" and on_ray.workers == 2
    assert tree(tmp_path / "pool") == tree(tmp_path / "ray")


def test_a_failing_point_on_ray_is_recorded(ray_session, tiny_traces: list[Path], tmp_path: Path) -> None:
    spec = spec_from_cli([str(tiny_traces[0])], policies=["none,list-promo"], axes=["guest_size=1G,traced"])
    res = run_sweep(spec, tmp_path, ray="auto", progress=False)
    assert (res.ran, res.failed) == (4, 2)
    assert all(e.startswith("GuestShapeError: ") for _, e in res.failures)
