"""Build small canonical event tables by hand, for tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from parsers.schema import COLUMNS, EVENT_BY_NAME, EVENT_NAMES, arrow_schema

_DEFAULTS: dict[str, Any] = {
    "tgid": None,
    "comm": "test",
    "pid": 1,
    "pfn": None,
    "order": 0,
    "migratetype": None,
    "gfp_flags": None,
    "gfp_mask": None,
    "percpu_refill": None,
    "failed": False,
    "fallback_order": None,
    "pageblock_order": None,
    "fallback_migratetype": None,
    "fragmenting": None,
    "change_ownership": None,
    "cold": None,
    "source_file": "<test>",
}


def make_events(rows: list[dict[str, Any]], *, sort: bool = True) -> pa.Table:
    """Rows are dicts with at least ``ts_ns``, ``cpu``, ``event`` (tracepoint name) and usually ``pfn``/``order``.

    ``seq`` and ``line`` default to the row position.  Result is a canonical table sorted by (ts_ns, cpu, seq).
    """
    cols: dict[str, list[Any]] = {c.name: [] for c in COLUMNS}
    for i, r in enumerate(rows):
        if r["event"] not in EVENT_BY_NAME:
            raise ValueError(f"unknown event {r['event']!r}")
        for c in COLUMNS:
            if c.name in r:
                v = r[c.name]
            elif c.name in ("seq", "line"):
                v = i if c.name == "seq" else i + 1
            else:
                v = _DEFAULTS[c.name]
            cols[c.name].append(v)
    arrays = []
    for c in COLUMNS:
        vals = cols[c.name]
        if c.name == "event":
            idx = pa.array([EVENT_BY_NAME[v].value for v in vals], pa.int8())
            arrays.append(pa.DictionaryArray.from_arrays(idx, pa.array(list(EVENT_NAMES))))
        elif pa.types.is_dictionary(c.type):
            arrays.append(pa.array(vals, pa.string()).dictionary_encode().cast(c.type))
        else:
            arrays.append(pa.array(vals, c.type))
    t = pa.Table.from_arrays(arrays, schema=arrow_schema())
    if sort:
        t = t.sort_by([("ts_ns", "ascending"), ("cpu", "ascending"), ("seq", "ascending")])
    return t


def assert_synthetic_order(t: pa.Table) -> None:
    """A generated table is in canonical order: ``seq`` 0..n-1, sorted by (ts_ns, cpu, seq), each
    CPU's time non-decreasing, timestamps on whole microseconds (the text formats' resolution)."""
    import numpy as np
    import polars as pl

    df = pl.from_arrow(t)
    assert df["seq"].to_list() == list(range(t.num_rows))
    keys = df.select("ts_ns", "cpu", "seq").to_numpy()
    assert (np.lexsort(keys.T[::-1]) == np.arange(len(keys))).all(), "sorted by (ts_ns, cpu, seq)"
    for _cpu, g in df.group_by("cpu"):
        assert g["ts_ns"].is_sorted()
    assert (df["ts_ns"] % 1000 == 0).all()

