"""The stand-in emitter: per-page consistency, burst shapes, per-CPU time, failures."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from parsers.schema import arrow_schema
from parsers.stats import lock_bursts
from parsers.synthetic.emit import EmitParams, check_pages, emit
from parsers.synthetic.workloads import WORKLOADS, BootParams, FaultInParams, Machine, generate
from tests.helpers.events import assert_synthetic_order, make_events


def _events(name: str, params=None, m: Machine | None = None, ep: EmitParams | None = None) -> pa.Table:
    m = m or Machine(events=20_000, seed=4, chunk=3000)
    return pa.Table.from_batches(list(emit(generate(name, params, m), m, ep)), schema=arrow_schema())


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_every_page_consistent_and_sorted(name: str) -> None:
    t = _events(name)
    assert check_pages(t) == dict.fromkeys(check_pages(t), 0)
    assert_synthetic_order(t)


def test_bursts_follow_pcp_batch_and_high() -> None:
    ep = EmitParams(batch=31, high=200)
    t = _events("churn", m=Machine(events=30_000, seed=1), ep=ep)
    b = lock_bursts(t)
    refill = b.filter(pl.col("kind") == "pcp_refill")
    assert refill.height > 0
    # rmqueue_bulk(): batch pages for order 0, max(batch >> order, 2) blocks above
    assert refill["events"].max() <= 31 and refill["events"].min() >= 1
    drains = b.filter(pl.col("kind") == "pcp_drain")
    assert drains.height > 0
    # nr_pcp_free(): at most high - batch pages per drain (+ the block that crosses the count)
    assert drains["pages"].max() <= 200 - 31 + 511
    # high-order blocks outside the pcp lists: single rmqueue_buddy() sections
    t = _events("fault-in", FaultInParams(gib=0.05, thp=0.5), Machine(events=None, duration_s=1e6), EmitParams(pcp_thp=False))
    b = lock_bursts(t)
    assert b.filter(pl.col("kind") == "buddy_alloc")["events"].max() == 1


def test_fault_in_events_allocate_n_gib() -> None:
    t = _events("fault-in", FaultInParams(gib=0.125, thp=0.3), Machine(events=None, duration_s=1e6, seed=9))
    df = pl.from_arrow(t).filter(pl.col("event") == "mm_page_alloc")
    assert int((2 ** df["order"].cast(pl.Int64)).sum()) * 4096 == 1 << 27
    assert not df["failed"].any()


def test_boot_pageset_refills_one_page() -> None:
    t = _events("boot", BootParams(early=400, init=500), Machine(events=1000, seed=2, memory=1 << 30))
    df = pl.from_arrow(t)
    head = df.head(200)
    assert set(head["comm"].cast(pl.String)) == {"swapper/0"}
    b = lock_bursts(t.slice(0, 200))
    assert b.filter(pl.col("kind") == "pcp_refill")["events"].max() <= 2  # batch 1 (order 0), 2 blocks above
    assert check_pages(t) == dict.fromkeys(check_pages(t), 0)


def test_exhausted_memory_fails_and_drops_the_free() -> None:
    m = Machine(events=3000, seed=1, memory=64 << 20)
    t = _events("fault-in", FaultInParams(gib=0.1, thp=0.0, exit=True), Machine(events=None, duration_s=1e6, memory=64 << 20))
    df = pl.from_arrow(t)
    fails = df.filter(pl.col("failed"))
    assert fails.height > 0 and fails["pfn"].null_count() == fails.height
    assert df.filter(pl.col("event") == "mm_page_free").height < df.filter(pl.col("event") == "mm_page_alloc").height
    assert check_pages(t) == dict.fromkeys(check_pages(t), 0)
    assert m.memory == 64 << 20


def test_deterministic_bytes() -> None:
    a = _events("page-cache")
    b = _events("page-cache")
    assert a.equals(b)


def test_check_pages_catches_violations() -> None:
    rows = [
        dict(ts_ns=1000, cpu=0, event="mm_page_alloc_zone_locked", pfn=100, order=0, percpu_refill=True),
        dict(ts_ns=2000, cpu=0, event="mm_page_alloc", pfn=100, order=0, gfp_flags="GFP_KERNEL", migratetype=0),
        dict(ts_ns=3000, cpu=0, event="mm_page_free", pfn=100, order=1),  # wrong order
        dict(ts_ns=4000, cpu=0, event="mm_page_alloc", pfn=200, order=0, gfp_flags="GFP_KERNEL", migratetype=0),
        dict(ts_ns=5000, cpu=1, event="mm_page_free", pfn=300, order=0),  # pre-trace page: fine
        dict(ts_ns=6000, cpu=1, event="mm_page_pcpu_drain", pfn=300, order=0, migratetype=0),
        dict(ts_ns=7000, cpu=1, event="mm_page_free", pfn=300, order=0),  # freed twice
    ]
    bad = check_pages(make_events(rows))
    assert bad["free_order"] == 1 and bad["alloc_not_taken"] == 1 and bad["free_not_allocated"] == 1
