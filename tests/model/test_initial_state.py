"""Initial state seeded from a snapshot, the explained end check, and the fast input preparation."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from replay.model.anomalies import KIND_BY_NAME, counts_by_name
from replay.events.columns import column_values, dictionary_map
from replay.events.arrays import event_arrays
from replay.model.engine import replay
from replay.model.initial_state import _maximal_blocks, infer_initial_state
from replay.model.layout import MemoryLayout
from replay.results.summary import end_snapshot_report
from tests.helpers.events import make_events
from tests.helpers.replay import RefBuddy, tiny_layout


def _ev(t: int, cpu: int, name: str, pfn: int, order: int = 0, **kw: Any) -> dict[str, Any]:
    return {"ts_ns": t, "cpu": cpu, "event": name, "pfn": pfn, "order": order, **kw}


def _with_buddyinfo(layout: MemoryLayout, counts: list[int], pcp: tuple[int, ...] | None = None) -> MemoryLayout:
    z = layout.zones[0]
    z = dataclasses.replace(z, free_per_order=tuple(counts), pcp_count=pcp if pcp is not None else z.pcp_count)
    return dataclasses.replace(layout, zones=(z,) + layout.zones[1:])


def _vmstat(d: Path, **kv: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "vmstat").write_text("".join(f"{k} {v}\n" for k, v in kv.items()))
    return d


# a trace touching a few pages of a 4096-page zone: pfn 100 is first taken from the buddy (so it
# must start free), 2000/1 is first freed (allocated before the trace), the rest is untouched
SEED_TRACE = [
    _ev(1000, 0, "mm_page_alloc_zone_locked", 100, 0, migratetype=1, percpu_refill=False),
    _ev(1100, 0, "mm_page_alloc", 100, 0, migratetype=1),
    _ev(1200, 1, "mm_page_free", 2000, 1),
    _ev(1300, 0, "mm_page_free", 100, 0),
]


@pytest.mark.parametrize("counts", [
    [3, 2, 1, 0, 1, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1],
    [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2],
])
def test_seeded_free_counts_per_order_equal_the_snapshot(counts: list[int]) -> None:
    lay = tiny_layout(4096)
    snap = _with_buddyinfo(lay, counts)
    table = make_events(SEED_TRACE)
    ea = event_arrays(table)
    st, rep = infer_initial_state(ea.ev, ea.pfn, ea.order, ea.mt, ea.cpu, ea.fb_mt, lay, snapshot=snap)
    assert rep["seeded_from_snapshot"]
    assert rep["free_blocks_per_order"][0] == counts
    assert rep["free_pages"][0] == sum(c << o for o, c in enumerate(counts))
    # the page the trace takes from the buddy first is inside a free block; 2000/1 is allocated
    from replay.model.state import PG_ALLOC, PG_BUDDY

    heads = np.nonzero(st.pg_state == PG_BUDDY)[0]
    assert any(h <= 100 < h + (1 << int(st.pg_order[h])) for h in heads)
    assert st.pg_state[2000] == PG_ALLOC and st.pg_order[2000] == 1
    # and the replay has no unexplained anomaly (taking 100 out of a bigger seeded free block is
    # the explained zone_locked_pretrace_split)
    out = replay(table, lay, snapshot=snap)
    assert all(KIND_BY_NAME[k].explained for k in counts_by_name(out.acount)), counts_by_name(out.acount)
    assert all(r["ok"] for r in out.invariant_reports)


def test_seed_is_deterministic_and_the_order_choice_is_honoured() -> None:
    lay = tiny_layout(4096)
    snap = _with_buddyinfo(lay, [3, 2, 1, 0, 1, 0, 0, 0, 0, 0, 1])
    ea = event_arrays(make_events(SEED_TRACE))
    args = (ea.ev, ea.pfn, ea.order, ea.mt, ea.cpu, ea.fb_mt, lay)
    a, ra = infer_initial_state(*args, snapshot=snap)
    b, rb = infer_initial_state(*args, snapshot=snap)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    h, rh = infer_initial_state(*args, snapshot=snap, seed_order="high")
    assert rh["free_blocks_per_order"] == ra["free_blocks_per_order"]
    assert rh["seed_order"] == "high" and ra["seed_order"] == "low"
    assert not np.array_equal(a.pg_state, h.pg_state)
    with pytest.raises(ValueError):
        infer_initial_state(*args, snapshot=snap, seed_order="middle")


def test_end_check_of_a_fully_traced_window_is_zero(tmp_path: Path) -> None:
    """No untraced path: model == end snapshot per zone and order, every term 0, residual 0."""
    lay = tiny_layout(4096)
    rows = [
        _ev(1000, 0, "mm_page_alloc_zone_locked", 256, 4, migratetype=1, percpu_refill=False),
        _ev(1010, 0, "mm_page_alloc", 256, 4, migratetype=1),
        _ev(1020, 1, "mm_page_alloc_zone_locked", 512, 5, migratetype=1, percpu_refill=False),
        _ev(1030, 1, "mm_page_alloc", 512, 5, migratetype=1),
        _ev(1040, 0, "mm_page_free", 256, 4),
    ]
    ref = RefBuddy.full(0, 4096, 10)
    ref.take(256, 4)
    ref.take(512, 5)
    ref.give(256, 4)
    end_counts = [sum(1 for _, o in ref.free if o == k) for k in range(11)]
    snap = _with_buddyinfo(lay, [0] * 10 + [4])
    end = _with_buddyinfo(lay, end_counts)
    before = _vmstat(tmp_path / "before", pgalloc_normal=1000, pgfree=5000, pgmigrate_success=7)
    after = _vmstat(tmp_path / "after", pgalloc_normal=1000 + 48, pgfree=5000 + 16, pgmigrate_success=7)
    out = replay(make_events(rows), lay, snapshot=snap)
    r = end_snapshot_report(out, lay, end, before=before, after=after)
    z = r["per_zone"]["Normal"]
    assert z["diff_pages"] == 0 and z["model_pages"] == 4096 - 32
    assert all(v == 0 for v in z["explained"].values()), z
    assert z["residual_pages"] == 0 and r["residual_within_1pct"] and r["within_1pct"]
    assert all(row["diff_pages"] == 0 for row in r["per_order"])


def test_end_check_attributes_untraced_allocations_and_compaction(tmp_path: Path) -> None:
    """vmstat says 40 pages were allocated outside the trace and 8 migrated: both are explained."""
    lay = tiny_layout(4096)
    rows = [
        _ev(1000, 0, "mm_page_alloc_zone_locked", 256, 4, migratetype=1, percpu_refill=False),
        _ev(1010, 0, "mm_page_alloc", 256, 4, migratetype=1),
        _ev(1020, 1, "mm_page_alloc_zone_locked", 1024, 4, migratetype=1, percpu_refill=False),
        _ev(1030, 1, "mm_page_alloc", 1024, 4, migratetype=1),
        _ev(1040, 1, "mm_page_free", 1024, 4),
        # compaction's free scanner isolated 1024/4 (untraced) and released it: a free of a free block
        _ev(1050, 0, "mm_page_free", 1024, 4),
    ]
    snap = _with_buddyinfo(lay, [0] * 10 + [4])
    out = replay(make_events(rows), lay, snapshot=snap)
    model_free = 4096 - 16
    # the real kernel: 16 traced + 40 untraced allocated, 8 used as migration targets
    ref = RefBuddy.full(0, 4096, 10)
    ref.take(256, 4)
    ref.take(2048, 5)
    ref.take(2080, 3)
    ref.take(3072, 3)
    end = _with_buddyinfo(lay, [sum(1 for _, o in ref.free if o == k) for k in range(11)])
    before = _vmstat(tmp_path / "b", pgalloc_normal=0, pgfree=0, pgmigrate_success=0)
    after = _vmstat(tmp_path / "a", pgalloc_normal=32 + 40, pgfree=32, pgmigrate_success=8)
    r = end_snapshot_report(out, lay, end, before=before, after=after)
    z = r["per_zone"]["Normal"]
    assert counts_by_name(out.acount).get("free_of_free") == 1
    assert z["model_pages"] == model_free and z["diff_pages"] == 48
    assert z["explained"]["compaction"] == 8 and z["explained_by_compaction_pages"] == 8
    assert z["explained"]["untraced_allocations"] == 40
    assert z["explained"]["untraced_frees"] == 0
    assert z["residual_pages"] == 0
    assert r["all_zones"]["residual_pages"] == 0


def test_end_check_without_a_before_snapshot_reports_no_terms() -> None:
    lay = tiny_layout(4096)
    out = replay(make_events(SEED_TRACE), lay)
    r = end_snapshot_report(out, lay, _with_buddyinfo(lay, [0] * 10 + [4]))
    z = r["per_zone"]["Normal"]
    assert z["residual_pages"] is None and z["explained_pages"] is None
    assert r["max_abs_rel_residual"] is None


# ---------------------------------------------------------------- fast input preparation
def _reference_col(arr: pa.ChunkedArray, dtype: Any, null: int) -> np.ndarray:
    c = arr.combine_chunks()
    if pa.types.is_boolean(c.type):
        c = c.cast(pa.int8())
    elif pa.types.is_unsigned_integer(c.type):
        c = c.cast(pa.int64())
    return np.array(c.fill_null(null).to_numpy(zero_copy_only=False), dtype=dtype)


@settings(max_examples=60, deadline=None)
@given(vals=hst.lists(hst.one_of(hst.none(), hst.integers(-100, 100)), min_size=1, max_size=80),
       bools=hst.lists(hst.one_of(hst.none(), hst.booleans()), min_size=1, max_size=80),
       cut=hst.integers(0, 80), off=hst.integers(0, 20))
def test_column_values_match_the_arrow_reference(vals: list[int | None], bools: list[bool | None], cut: int,
                                                 off: int) -> None:
    for data, typ, dtype, null in ((vals, pa.int64(), np.int64, -1), (vals, pa.int8(), np.int8, -1),
                                   (vals, pa.int32(), np.int64, 0), (bools, pa.bool_(), np.int8, -1)):
        arr = pa.array(data, typ)
        k = min(cut, len(arr))
        chunked = pa.chunked_array([arr[:k], arr[k:]] if 0 < k < len(arr) else [arr])
        sliced = pa.chunked_array([arr.slice(min(off, len(arr)))])
        for col in (chunked, sliced):
            t = pa.table({"c": col})
            for w in (True, False):
                got = column_values(t, "c", dtype, null, writable=w)
                assert got.dtype == np.dtype(dtype)
                assert np.array_equal(got, _reference_col(col, dtype, null)), (data, typ, k, off)
                if w:
                    assert got.flags.writeable


def test_dictionary_map_per_chunk_dictionaries() -> None:
    a = pa.array(["x", "pgdatinit0", None, "x"]).dictionary_encode()
    b = pa.array(["pgdatinit1", "y"]).dictionary_encode()
    t = pa.table({"comm": pa.chunked_array([a, b])})
    got = dictionary_map(t, "comm", lambda n: str(n).startswith("pgdatinit"), bool, False)
    assert got.tolist() == [False, True, False, False, True, False]


@settings(max_examples=80, deadline=None)
@given(bits=hst.lists(hst.booleans(), min_size=64, max_size=64).map(lambda b: np.repeat(np.array(b), 8)),
       a=hst.integers(0, 200), b=hst.integers(300, 512))
def test_maximal_blocks_equal_the_top_down_decomposition(bits: np.ndarray, a: int, b: int) -> None:
    """The greedy linear pass gives the blocks of the top-down reshape method it replaced."""
    avail = bits.copy()
    avail[:a] = False
    avail[b:] = False
    got = {(int(h), o) for o, hs in _maximal_blocks(avail, a, b, 7) for h in hs}
    ref = set()
    left = avail.copy()
    for o in range(6, -1, -1):
        size = 1 << o
        m = left.reshape(-1, size).all(axis=1)
        for blk in np.nonzero(m)[0]:
            ref.add((int(blk * size), o))
        left.reshape(-1, size)[m] = False
    assert got == ref


def test_untouched_pageblocks_are_typed_from_pagetypeinfo() -> None:
    """Free pages per migratetype of the seed follow pagetypeinfo; the trace's types are kept."""
    lay = tiny_layout(4096)
    snap = _with_buddyinfo(lay, [0] * 10 + [4])
    z = dataclasses.replace(snap.zones[0], free_per_type={"Unmovable": (0,) * 10 + (1,), "Movable": (0,) * 10 + (2,),
                                                          "Reclaimable": (0,) * 10 + (1,)})
    snap = dataclasses.replace(snap, zones=(z,))
    e8, e64 = np.zeros(0, np.int8), np.zeros(0, np.int64)
    args = (e8, e64, e8, e8, np.zeros(0, np.int32), e8, lay)
    st, rep = infer_initial_state(*args, snapshot=snap)
    assert rep["seed_vs_pagetypeinfo"]["Normal"] == {"Unmovable": 0, "Movable": 0, "Reclaimable": 0,
                                                      "HighAtomic": 0, "Isolate": 0}
    assert rep["pageblocks_typed_from_pagetypeinfo"] == 8
    st2, _ = infer_initial_state(*args, snapshot=snap)
    assert np.array_equal(st.pb_mt, st2.pb_mt) and np.array_equal(st.pg_mt, st2.pg_mt)
    # off: every untouched pageblock stays MOVABLE
    st3, rep3 = infer_initial_state(*args, snapshot=snap, seed_migratetypes=False)
    assert rep3["seed_vs_pagetypeinfo"]["Normal"]["Movable"] == 2048
    assert (st3.pb_mt == 1).all()


_EA_FIELDS = ("ev", "ts", "cpu", "pfn", "order", "mt", "refill", "fb_order", "fb_mt", "chown", "gfp", "deferred")


def _assert_same_event_arrays(got: Any, want: Any) -> None:
    for f in _EA_FIELDS:
        g, w = getattr(got, f), getattr(want, f)
        assert g.dtype == w.dtype, f
        assert np.array_equal(g, w), f
        assert g.flags.writeable and g.flags.c_contiguous, f  # the same array types for the kernels
    assert np.array_equal(np.asarray(got.seq), np.asarray(want.seq))


@pytest.mark.parametrize("slice_rows", [1, 3, 1 << 19])
@pytest.mark.parametrize("with_gfp", [False, True])
@pytest.mark.parametrize("plain_strings", [False, True])
def test_parquet_event_arrays_equal_the_table_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   slice_rows: int, with_gfp: bool, plain_strings: bool) -> None:
    """Row groups read a few at a time straight into the flat columns give ``event_arrays`` of the
    whole table: nulls, booleans, a dictionary that differs per row group (or plain strings, as
    another writer may leave ``comm`` and ``event``), failed allocations, unknown pfns, a
    ``pgdatinit`` free, deferred frees; the pfn range is the Arrow one; the ``comm`` column is
    the one a whole-table read and ``combine_chunks`` give."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import replay.events.columns as C
    from replay.events.columns import TABLE_COLUMNS
    from replay.events.arrays import event_arrays_from_parquet

    rows = [
        _ev(10, 0, "mm_page_alloc_zone_locked", 4096, migratetype=1, percpu_refill=True, comm="a", pid=3),
        _ev(20, 1, "mm_page_alloc", 4097, gfp_mask=0xCC0, migratetype=0, comm="b", pid=4),
        _ev(30, 0, "mm_page_alloc", None, failed=True, gfp_mask=0x2800),
        _ev(40, 2, "mm_page_free", 4200, order=3, comm="pgdatinit0", pid=1),
        _ev(50, 1, "mm_page_free", 4097, comm="b", pid=4),
        _ev(60, 1, "mm_page_free_batched", 4097),
        _ev(70, 3, "mm_page_pcpu_drain", 4096, migratetype=1),
        _ev(80, 0, "mm_page_alloc_extfrag", 4300, fallback_order=2, fallback_migratetype=1, change_ownership=True),
        _ev(90, 1, "mm_page_alloc", 0, migratetype=2, gfp_mask=0xCC0),
    ]
    table = make_events(rows)
    if plain_strings:
        for name in ("comm", "event"):
            table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(pa.string()))
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2)  # each row group with its own dictionaries
    monkeypatch.setattr(C, "SLICE_ROWS", slice_rows)
    got, rest, (lo, hi) = event_arrays_from_parquet(path, with_gfp=with_gfp)
    whole = pq.read_table(path)
    _assert_same_event_arrays(got, event_arrays(whole, with_gfp=with_gfp))
    assert tuple(rest.column_names) == TABLE_COLUMNS and rest.num_rows == len(rows)
    comm = whole.column("comm").combine_chunks()
    comm = comm if pa.types.is_dictionary(comm.type) else comm.dictionary_encode()
    assert rest.column("comm").chunk(0).dictionary.to_pylist() == comm.dictionary.to_pylist()
    assert rest.column("comm").to_pylist() == whole.column("comm").to_pylist()
    assert rest.column("pid").to_pylist() == whole.column("pid").to_pylist()
    assert np.asarray(got.seq).tolist() == whole.column("seq").to_pylist()
    col = table.column("pfn")
    assert (lo, hi) == (pc.min(pc.filter(col, pc.greater(col, 0))).as_py(), pc.max(col).as_py()) == (4096, 4300)


def test_parquet_event_arrays_of_a_real_trace(tmp_path: Path) -> None:
    """A real capture parsed to Parquet (the parser's row groups): the same columns as the
    whole-table path, and the same replay."""
    import pyarrow.parquet as pq

    from parsers.api import parse_to_parquet
    from replay.events.arrays import event_arrays_from_parquet
    from tests.conftest import require_trace_file
    from tests.helpers.replay import tiny_layout_for

    src = require_trace_file("debian12-6.1-boot/trace.txt.zst")
    path = tmp_path / "boot.parquet"
    parse_to_parquet([src], path)
    assert pq.ParquetFile(path).metadata.num_row_groups >= 1
    got, rest, _ = event_arrays_from_parquet(path, with_gfp=False)
    whole = pq.read_table(path)
    _assert_same_event_arrays(got, event_arrays(whole, with_gfp=False))
    layout = tiny_layout_for(whole)
    a = replay(rest, layout, mode="exact", boot=True, events=got)
    b = replay(whole, layout, mode="exact", boot=True)
    assert counts_by_name(a.acount) == counts_by_name(b.acount)
    assert np.array_equal(a.out_sec, b.out_sec) and np.array_equal(a.state.pg_state, b.state.pg_state)


@pytest.mark.parametrize("values", [
    [5, 6, 7, 8, 9, 10, 11, 12],  # one run across row groups
    [0, 1, 2, 3, 10, 11, 12, 13],  # a run per tile
    [3, 1, 2, 7, 7, 0, 9, 4],  # a run per row
])
def test_affine_runs_read_as_written(tmp_path: Path, values: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``seq`` column read as ``AffineRuns`` gives the written values at any rows and whole,
    whatever the runs and the row groups."""
    import pyarrow.parquet as pq

    import replay.events.columns as C

    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"seq": pa.array(values, pa.int64())}), path, row_group_size=3)
    monkeypatch.setattr(C, "SLICE_ROWS", 1)
    got = C.read_parquet_columns(path, {}, {}, {"seq": (np.int64, 0)})["seq"]
    assert isinstance(got, C.AffineRuns)  # (a few runs: still runs at this size)
    assert np.asarray(got).tolist() == values and len(got) == len(values)
    rows = np.array([7, 0, 3, 4, 4], np.int64)
    assert np.asarray(got)[rows].tolist() == [values[r] for r in rows]
    assert got[rows].tolist() == [values[r] for r in rows]
    with pytest.raises(IndexError):
        got[np.array([len(values)])]


def test_affine_runs_turn_dense_when_fragmented() -> None:
    """More runs than a few per row group: the builder keeps plain values instead."""
    import replay.events.columns as C

    n = 1000
    vals = np.arange(n, dtype=np.int64)[::-1].copy()  # every row its own run
    b = C._RunsBuilder(n, np.int64, 0)
    b.add(pa.chunked_array([pa.array(vals[:400]), pa.array(vals[400:])]), 0)
    out = b.result()
    assert isinstance(out, np.ndarray) and out.tolist() == vals.tolist()
