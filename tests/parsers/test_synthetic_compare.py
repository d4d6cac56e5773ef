"""``parsers.synthetic.compare``: the calibration statistics of a table worked out by hand."""

from __future__ import annotations

import polars as pl
import pytest

from parsers.synthetic.compare import compare, distance, trace_stats
from tests.helpers.events import make_events


def test_trace_stats_by_hand() -> None:
    g = "GFP_KERNEL"
    rows = [
        dict(ts_ns=1_000_000, cpu=0, event="mm_page_alloc_zone_locked", pfn=10, order=0, percpu_refill=True, migratetype=1),
        dict(ts_ns=1_001_000, cpu=0, event="mm_page_alloc_zone_locked", pfn=11, order=0, percpu_refill=True, migratetype=1),
        dict(ts_ns=1_002_000, cpu=0, event="mm_page_alloc", pfn=10, order=0, migratetype=1, gfp_flags=g),
        dict(ts_ns=1_012_000, cpu=0, event="mm_page_alloc", pfn=11, order=0, migratetype=1, gfp_flags=g),
        dict(ts_ns=3_002_000, cpu=1, event="mm_page_free", pfn=10, order=0),  # lived 2 ms
        dict(ts_ns=3_003_000, cpu=1, event="mm_page_free_batched", pfn=10, order=0),
        dict(ts_ns=4_000_000, cpu=1, event="mm_page_free", pfn=99, order=0),  # free-only
        dict(ts_ns=5_000_000, cpu=1, event="mm_page_alloc", pfn=64, order=2, migratetype=0, gfp_flags=g),
    ]
    s = trace_stats(make_events(rows))
    v = {(a, b): c for a, b, c in s.iter_rows()}
    assert v[("order", "order 0")] == pytest.approx(2 / 3) and v[("order", "order 2")] == pytest.approx(1 / 3)
    assert v[("migratetype", "movable")] == pytest.approx(2 / 3)
    assert v[("lifetime", "ms p50")] == pytest.approx(2.0)
    assert v[("lifetime", "allocs freed in trace")] == pytest.approx(1 / 3)
    assert v[("free", "free-only share")] == pytest.approx(0.5)
    assert v[("free", "batched share")] == pytest.approx(0.5)
    assert v[("refill", "events per section mean")] == 2.0
    assert v[("interarrival", "us p50")] == pytest.approx(10.0)
    cmp = compare(make_events(rows), make_events(rows))
    assert distance(cmp) == 0.0
    assert cmp.filter(pl.col("ratio").is_not_null())["ratio"].to_list() == pytest.approx([1.0] * cmp["ratio"].drop_nulls().len())
