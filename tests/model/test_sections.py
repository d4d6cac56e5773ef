"""``replay.model.sections.scan_bursts`` (one compiled pass) gives exactly what the NumPy reference below
gives: ``_bursts`` over ``_per_cpu_order`` for refills and drains, and the extfrag gaps."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from parsers.schema import Event
from replay.model.sections import _scan_runs
from tests.conftest import require_trace_file


# ---- the NumPy reference (what replay.model.sections.calibrate computed before the compiled scan)
def _bursts(t: np.ndarray, c: np.ndarray, s: np.ndarray, e: np.ndarray, max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(events, span_ns) of maximal runs of selected events, consecutive on their CPU.

    The arrays are already in per-CPU order (``_per_cpu_order``): a run is a stretch of
    consecutive positions.
    """
    # a run continues while the next event on the same CPU is selected, of the same type, and close in time
    cont = (c[1:] == c[:-1]) & s[1:] & s[:-1] & (e[1:] == e[:-1]) & ((t[1:] - t[:-1]) <= max_gap_ns)
    starts = np.nonzero(s & np.r_[True, ~cont])[0]
    if len(starts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ends = np.nonzero(s & np.r_[~cont, True])[0]
    # the canonical table is sorted by time, and the per-CPU order keeps it: first and last event
    # of a run are its earliest and latest
    return (ends - starts + 1).astype(np.int64), (t[ends] - t[starts]).astype(np.int64)


def _per_cpu_order(cpu: np.ndarray) -> np.ndarray:
    """Event indices grouped by CPU, trace order kept within a CPU (a stable radix sort)."""
    key = cpu.astype(np.int16) if len(cpu) and int(cpu.max()) < (1 << 15) and int(cpu.min()) >= 0 else cpu
    return np.argsort(key, kind="stable")


ZL, DR, XF = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED), int(Event.MM_PAGE_PCPU_DRAIN), int(Event.MM_PAGE_ALLOC_EXTFRAG)


def _reference(ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, refill: np.ndarray, gap: int) -> tuple:
    order = _per_cpu_order(cpu.astype(np.int64))
    e_o, t_o, c_o = ev[order], ts[order], cpu.astype(np.int64)[order]
    r = _bursts(t_o, c_o, ((ev == ZL) & (refill == 1))[order], e_o, gap)
    d = _bursts(t_o, c_o, (ev == DR)[order], e_o, gap)
    ex = np.nonzero((e_o[:-1] == XF) & (c_o[1:] == c_o[:-1]))[0]
    g = (t_o[ex + 1] - t_o[ex]) if len(ex) else np.zeros(0, np.int64)
    return r, d, g[g <= gap]


def _check(ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, refill: np.ndarray, gap: int) -> None:
    ncpu = int(cpu.max()) + 1 if len(cpu) else 1
    got = _scan_runs(ev, ts, cpu, refill, gap, ncpu)
    ref = _reference(ev, ts, cpu, refill, gap)
    for (gn, gs), (rn, rs) in zip(got[:2], ref[:2]):
        assert np.array_equal(gn, rn) and np.array_equal(gs, rs)
    assert np.array_equal(got[2], ref[2])


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.tuples(hs.sampled_from([ZL, ZL, DR, DR, XF, int(Event.MM_PAGE_ALLOC), int(Event.MM_PAGE_FREE)]),
                          hs.integers(0, 3), hs.integers(0, 3), hs.integers(-1, 1)), max_size=200),
       hs.integers(0, 3))
def test_scan_equals_the_numpy_reference(rows: list[tuple[int, int, int, int]], gap: int) -> None:
    ev = np.array([r[0] for r in rows], np.int8)
    cpu = np.array([r[1] for r in rows], np.int32)
    ts = np.cumsum(np.array([r[2] for r in rows], np.int64))
    refill = np.array([r[3] for r in rows], np.int8)
    _check(ev, ts, cpu, refill, gap)


@pytest.mark.parametrize("trace", ["debian12-6.1-medium/trace.txt.zst", "debian12-6.1-boot/trace.txt.zst"])
def test_scan_equals_the_numpy_reference_on_real_traces(trace: str) -> None:
    from parsers.api import load_events
    from replay.events.columns import column_values
    from replay.events.arrays import event_codes

    path = require_trace_file(trace)
    table, _ = load_events(path)
    _check(event_codes(table), column_values(table, "ts_ns", np.int64, 0), column_values(table, "cpu", np.int32, 0),
           column_values(table, "percpu_refill", np.int8, -1), 100_000)
