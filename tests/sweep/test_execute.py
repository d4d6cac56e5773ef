"""Running sweeps: in one process or a forked pool, interrupted and resumed, with failing points."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from replay.sweep import execute
from replay.sweep.dataset import SweepDir
from replay.sweep.execute import run_sweep
from replay.sweep.grid import chunk_grid, expand_grid
from replay.sweep.spec import SweepSpec, spec_from_cli
from tests.sweep.traces import tree

POLICIES = ["none,kernel-eager,list-promo,post-alloc"]
AXES = ["guest_size=traced,8G", "vcpus=1,4"]


def _spec(traces: list[Path], **kw: object) -> SweepSpec:
    return spec_from_cli([str(t) for t in traces], policies=kw.pop("policies", POLICIES),  # type: ignore[arg-type]
                         costs=["tdx-4k,snp-2m"], axes=kw.pop("axes", AXES), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reference(tiny_traces: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepSpec, Path]:
    """The tiny sweep (2 traces x 4 policies x 2 presets x 4 shapes = 64 points), run in this process."""
    spec = _spec(tiny_traces)
    out = tmp_path_factory.mktemp("reference")
    res = run_sweep(spec, out, jobs=1, progress=False)
    assert (res.points, res.ran, res.failed, res.executor) == (64, 64, 0, "process")
    return spec, out


def test_the_pool_writes_the_same_bytes(reference, tmp_path: Path) -> None:
    spec, ref = reference
    res = run_sweep(spec, tmp_path, jobs=2, progress=False)
    assert (res.ran, res.failed, res.executor, res.workers) == (64, 0, "pool", 2)
    assert tree(tmp_path) == tree(ref)


def test_the_summary_has_a_row_per_point_with_every_axis(reference) -> None:
    spec, ref = reference
    s = pl.read_parquet(ref / "summary.parquet")
    points = expand_grid(spec)
    assert s["point"].to_list() == [p.id for p in points]  # grid order
    assert (s["status"] == "ok").all() and s["error"].null_count() == len(s)
    for c in ("trace", "policy", "costs", "platform", "unit_bytes", "host_backing", "calls_model",
              "background_cpu_budget", "init_threads", "guest_size_bytes", "vcpus", "firmware_accepted_bytes",
              "boot_accept_ns", "added_ns", "alloc_added_p50_ns", "alloc_added_p99_ns", "alloc_added_p999_ns"):
        assert c in s.columns, c
    assert set(s["host_backing"]) == {"4K", "2M"} and set(s["vcpus"]) == {1, 4}


def test_an_interrupted_sweep_resumes_to_the_same_bytes(reference, tmp_path: Path) -> None:
    spec, ref = reference
    seen: list[str] = []

    def stop(rec: object) -> None:
        seen.extend(rec.statuses)  # type: ignore[attr-defined]
        if len(seen) == 12:  # three chunks of four points
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path, jobs=2, progress=False, on_commit=stop)
    done = {p for rows in SweepDir(tmp_path).done().values() for p in rows}
    assert done == set(seen) and len(done) == 12
    assert len(pl.read_parquet(tmp_path / "summary.parquet")) == 12  # the points done so far
    # what a kill in the middle of a write leaves: a hidden half file, and a chunk's table files
    # without its rows: neither is a point done
    part = next((tmp_path / "timeseries").glob("*/*/*"))
    (part / ".c0000.parquet.tmp").write_bytes(b"PAR1 half")
    chunks = chunk_grid(expand_grid(spec), spec.points_per_file)
    victim = next(c for c in chunks if c.points[0].id not in done)
    orphan = SweepDir(tmp_path).path("timeseries", victim.partition, victim.id)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"not parquet")
    assert victim.id not in SweepDir(tmp_path).done()
    res = run_sweep(spec, tmp_path, jobs=2, progress=False)
    assert (res.skipped, res.ran, res.failed) == (12, 52, 0)
    assert tree(tmp_path) == tree(ref)


def test_a_changed_grid_replaces_the_chunks_it_no_longer_has(reference, tmp_path: Path) -> None:
    spec, ref = reference
    import dataclasses

    run_sweep(dataclasses.replace(spec, axes=(("vcpus", (2,)),)), tmp_path, jobs=1, progress=False)
    res = run_sweep(spec, tmp_path, jobs=1, progress=False)
    assert res.removed_chunks == 16 and res.ran == 64
    assert tree(tmp_path) == tree(ref)


def test_a_failing_point_is_recorded_and_the_rest_complete(tiny_traces: list[Path], tmp_path: Path) -> None:
    # 1G is smaller than the traced guest (3.2 GiB): those points cannot run
    spec = _spec(tiny_traces[:1], axes=["guest_size=1G,traced"])
    res = run_sweep(spec, tmp_path, jobs=2, progress=False)
    assert (res.points, res.ran, res.failed) == (16, 16, 8)
    s = pl.read_parquet(tmp_path / "summary.parquet")
    bad = s.filter(pl.col("status") == "error")
    assert len(bad) == 8 and (bad["guest_size_bytes"].is_null()).all()
    assert set(bad["error"]) == {("GuestShapeError: guest_size 1 GiB is smaller than the traced guest's RAM "
                                 "(3.242 GiB)")}
    assert (s.filter(pl.col("status") == "ok")["boot_accept_ns"].is_not_null()).all()
    # the failed points have a row and no table rows; a rerun tries their chunks again (same bytes)
    ts = pl.scan_parquet(tmp_path / "timeseries", hive_partitioning=True).collect()
    assert set(ts["point"]) == set(s.filter(pl.col("status") == "ok")["point"])
    before = tree(tmp_path)
    res = run_sweep(spec, tmp_path, jobs=1, progress=False)
    assert (res.skipped, res.ran, res.failed) == (0, 16, 8) and tree(tmp_path) == before


def test_an_exception_in_a_worker_is_recorded(tiny_traces: list[Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = execute.run_point

    def flaky(pt, point):  # the forked workers inherit the patch
        if point.policy.name == "post-alloc" and point.costs.name == "snp-2m":
            raise ZeroDivisionError("injected")
        return real(pt, point)

    monkeypatch.setattr(execute, "run_point", flaky)
    res = run_sweep(_spec(tiny_traces[:1]), tmp_path, jobs=2, progress=False)
    assert (res.ran, res.failed) == (32, 4)
    assert {e for _, e in res.failures} == {"ZeroDivisionError: injected"}


def test_a_worker_that_dies_takes_only_its_own_point(tiny_traces: list[Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tiny_traces[:1], policies=["none,list-promo"], axes=["vcpus=1,2,3"])
    victim = [p for p in expand_grid(spec) if p.policy.name == "list-promo"][3]
    real = execute.run_point
    parent = os.getpid()

    def crash(pt, point):
        if point.id == victim.id and os.getpid() != parent:
            os._exit(3)  # a crash in the worker, not an exception
        return real(pt, point)

    monkeypatch.setattr(execute, "run_point", crash)
    res = run_sweep(spec, tmp_path, jobs=2, progress=False)
    s = pl.read_parquet(tmp_path / "summary.parquet")
    assert (res.ran, res.failed) == (12, 1)
    assert s.filter(pl.col("status") == "error")["point"].to_list() == [victim.id]
    assert res.failures[0][1] == "the worker process died while replaying this point"
    # its chunk's other points completed (and the chunk looks the same as if run in one process)
    assert (s["status"] == "ok").sum() == 11


def test_an_unreadable_trace_records_each_of_its_points(tiny_traces: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not a Parquet file PAR1")
    spec = _spec([broken, tiny_traces[0]], policies=["none,list-promo"], axes=["vcpus=1,2"])
    res = run_sweep(spec, tmp_path / "out", jobs=2, progress=False)
    s = pl.read_parquet(tmp_path / "out" / "summary.parquet")
    assert (res.ran, res.failed) == (16, 8)
    bad = s.filter(pl.col("status") == "error")
    assert set(bad["trace"]) == {"broken"} and all(e.startswith("trace broken: ") for e in bad["error"])


def test_a_trace_through_the_object_store_replays_the_same(tiny_traces: list[Path]) -> None:
    """``dumps_trace`` (what ``--ray`` puts into the object store: the pickle and its arrays out of
    band) and ``loads_trace`` (a worker's copy) give a trace whose points replay to the same rows,
    with writable arrays of their own."""
    import numpy as np

    from replay.sweep.grid import trace_fingerprint
    from replay.sweep.point import prepare_trace, run_point

    spec = _spec(tiny_traces[:1], policies=["none,list-promo"], axes=["guest_size=traced,8G"])
    src = spec.traces[0]
    pt = prepare_trace(src, trace_fingerprint(src), ["none", "list-promo"], spec.mode)
    head, buffers = execute.dumps_trace(pt)
    assert buffers and sum(b.nbytes for b in buffers) > 10 * len(head)  # the arrays travel out of band
    store = [b.copy() for b in buffers]
    for b in store:
        b.flags.writeable = False  # as the object store hands them out
    back = execute.loads_trace(head, store)
    arr = back.prep.state.pg_next
    assert arr.flags.writeable and not any(np.shares_memory(arr, s) for s in store)
    for p in expand_grid(spec):
        a, b = run_point(pt, p), run_point(back, p)
        assert a.row == b.row and a.method == b.method
        assert all(a.tables[k].equals(b.tables[k]) for k in a.tables)
