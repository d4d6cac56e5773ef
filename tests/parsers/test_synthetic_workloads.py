"""Workload models: determinism, documented properties, chunked streaming, frees following allocations."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.synthetic.requests import KIND_ALLOC, REQUEST_SCHEMA, RequestGenerator
from parsers.synthetic.workloads import (
    WORKLOADS,
    BootParams,
    FaultInParams,
    ForkStormParams,
    Lifetime,
    Machine,
    Phase,
    Stream,
    Workload,
    generate,
    mix,
)


def _table(gen) -> pa.Table:
    return pa.Table.from_batches(list(gen), schema=REQUEST_SCHEMA)


def _frees_follow_allocs(t: pa.Table) -> None:
    kind = t.column("kind").to_numpy()
    rid = t.column("req_id").to_numpy()
    ts = t.column("ts_ns").to_numpy()
    order = t.column("order").to_numpy()
    mt = t.column("migratetype").to_numpy()
    alloc = kind == KIND_ALLOC
    assert (np.diff(ts) >= 0).all(), "requests come in time order"
    assert (ts % 1000 == 0).all(), "microsecond-aligned, as ftrace prints"
    a_ids = rid[alloc]
    assert len(np.unique(a_ids)) == len(a_ids)
    pos = {int(r): i for i, r in zip(np.flatnonzero(alloc), a_ids, strict=True)}
    seen: set[int] = set()
    for i in np.flatnonzero(~alloc):
        r = int(rid[i])
        if r < 0:
            continue  # a page allocated before the trace
        j = pos[r]
        assert j < i and ts[j] < ts[i], "free after its allocation"
        assert order[j] == order[i] and mt[j] == mt[i], "free at the allocation's order"
        assert r not in seen, "one free per allocation"
        seen.add(r)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_deterministic_and_consistent(name: str) -> None:
    m = Machine(events=20_000, seed=11, chunk=4096)
    a = _table(generate(name, None, m))
    b = _table(generate(name, None, m))
    assert a.equals(b)
    c = _table(generate(name, None, Machine(events=20_000, seed=12, chunk=4096)))
    assert not a.equals(c)
    _frees_follow_allocs(a)
    assert a.column("cpu").to_numpy().max() < m.cpus


def test_fault_in_allocates_exactly_n_gib() -> None:
    for gib, thp in ((1.0, 0.5), (0.25, 0.0), (0.5, 1.0), (0.3, 0.178)):
        m = Machine(events=None, duration_s=1e6, seed=1, chunk=1 << 14)
        t = _table(generate("fault-in", FaultInParams(gib=gib, thp=thp), m))
        kind = t.column("kind").to_numpy()
        order = t.column("order").to_numpy().astype(np.int64)
        assert (kind == KIND_ALLOC).all()  # no exit: resident at the end
        assert int((1 << order).sum()) * 4096 == int(round(gib * (1 << 30))) // 4096 * 4096
        assert set(np.unique(order)) <= {0, 9}
        if thp == 0.0:
            assert (order == 0).all()
        if thp == 1.0:
            assert (order == 9).all()
    t = _table(generate("fault-in", FaultInParams(gib=0.05, exit=True), Machine(events=None, duration_s=1e6)))
    k = t.column("kind").to_numpy()
    assert (k != KIND_ALLOC).sum() == (k == KIND_ALLOC).sum()  # exit frees every page


def test_boot_starts_with_zero_watermark_phase() -> None:
    m = Machine(events=5000, seed=3, memory=1 << 30)
    gen = generate("boot", BootParams(memblock=True, early=500, init=1000), m)
    info = gen.phase_info()
    assert [p["name"] for p in info][:2] == ["memblock", "early"]
    assert info[0]["watermarks_zero"] and info[1]["watermarks_zero"] and info[1]["pcp_batch"] == 1
    assert not any(p["watermarks_zero"] for p in info[2:])
    t = _table(gen)
    phase = t.column("phase").to_numpy()
    assert (np.diff(phase) >= 0).all() or True  # phases overlap only through late frees
    first = t.slice(0, 100)
    assert set(first.column("comm").to_pylist()) == {"swapper/0"}
    assert set(first.column("cpu").to_pylist()) == {0}
    # memblock release: frees of pre-trace MAX_ORDER blocks covering the guest (minus the deferred part)
    mb = phase == 0
    assert (t.column("kind").to_numpy()[mb] != KIND_ALLOC).all()
    assert (t.column("order").to_numpy()[mb] == 10).all()
    assert mb.sum() == int((1 << 30) // (4096 << 10) * (1 - BootParams().deferred))
    early = phase == 1
    assert (t.column("kind").to_numpy()[early] == KIND_ALLOC).all()
    assert early.sum() == 500
    # the early phase is strictly before init and services start
    ts = t.column("ts_ns").to_numpy()
    assert ts[early].max() <= ts[phase >= 3].min()
    _frees_follow_allocs(t)


def test_fork_storm_frees_whole_processes() -> None:
    t = _table(generate("fork-storm", ForkStormParams(forks=200, pages_per_fork=20), Machine(events=None, duration_s=1e6)))
    k = t.column("kind").to_numpy()
    assert (k == KIND_ALLOC).sum() == 200 * 20
    assert (k != KIND_ALLOC).sum() == (k == KIND_ALLOC).sum()  # every process exits by the end
    _frees_follow_allocs(t)


def test_mix_and_custom_stream() -> None:
    m = Machine(events=5000, seed=2)
    wl = mix([("churn", 3.0, None), ("page-cache", 1.0, None)], m)
    t = _table(RequestGenerator(wl, m))
    assert {"awk", "cat"} <= set(t.column("comm").to_pylist())  # churn anon + page-cache readers
    _frees_follow_allocs(t)
    s = Stream("x", orders={0: 0.5, 3: 0.5}, comm="x", lifetime=Lifetime(median_us=100, sigma=0.1))
    t = _table(RequestGenerator(Workload("custom", (Phase("p", (s,), 1000.0),)), m))
    assert set(np.unique(t.column("order").to_numpy())) == {0, 3}
    with pytest.raises(ValueError, match="boot"):
        mix([("boot", 1.0, None)], m)


def test_streaming_is_bounded_and_chunked() -> None:
    m = Machine(events=60_000, seed=5, chunk=5000)
    sizes = [b.num_rows for b in generate("churn", None, m)]
    assert len(sizes) > 10 and max(sizes) <= 5000


def test_duration_stops_generation() -> None:
    m = Machine(events=None, duration_s=0.5, seed=1)
    t = _table(generate("churn", None, m))
    ts = t.column("ts_ns").to_numpy()
    assert ts.max() - m.start_s * 1e9 <= 0.5e9


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cpus=st.integers(1, 9), name=st.sampled_from(["churn", "page-cache", "fork-storm"]))
def test_property_frees_follow_allocations(seed: int, cpus: int, name: str) -> None:
    m = Machine(events=3000, seed=seed, cpus=cpus, chunk=1000)
    _frees_follow_allocs(_table(generate(name, None, m)))
