"""Exact mode: a policy replayed on the baseline's results (replay.policy.delta) gives the full replay's results.

Every results table and summary row must be identical, whether the delta replay holds to the end
(``method == "delta"``) or falls back to the full replay (its end check fails, or an event touches
a block still on ``zone->unaccepted_pages`` in a way the full replay would not force first), and
whether the delta walk visits only the events that can matter (the default) or every event.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from replay.acceptance.costs import COST_PRESETS
from replay.acceptance.policies import PRESET_ORDER, PRESETS
from replay.results.tables import policy_tables, result_context
from replay.policy.prepare import prepare
from replay.policy.run import FinishedBaseline, run_full, run_policy
from tests.conftest import require_trace_file
from tests.model.test_properties import _gen_trace
from tests.helpers.events import make_events
from tests.helpers.replay import tiny_layout

FW_ACCEPTED = 1024 * 4096  # 4 MiB of the 16 MiB guest accepted by the firmware; the rest is unaccepted
OPS = hs.lists(hs.tuples(hs.integers(0, 4), hs.integers(0, 100), hs.integers(0, 100), hs.integers(0, 3)),
               min_size=1, max_size=120)
#: events the trace's kernel would not have produced: frees, drains and allocations of arbitrary pages
JUNK = hs.lists(hs.tuples(hs.integers(0, 200), hs.sampled_from(["mm_page_free", "mm_page_pcpu_drain",
                                                                  "mm_page_alloc_zone_locked", "mm_page_alloc"]),
                          hs.integers(0, 4095), hs.integers(0, 3)), max_size=6)


def _same_results(prep: Any, table: Any, names: list[str], costs: str, **kw: Any) -> list[Any]:
    """Replay every policy in full, on the recorded baseline visiting every event, and on it
    visiting only the events that can matter; return the sparse delta runs."""
    cost = COST_PRESETS[costs]
    ctx = result_context(table, names, prep.events)
    base = run_full(prep, PRESETS["none"], cost, record=True, **kw)
    assert base.dfree is not None and base.method == "full"
    runs = []
    for name in names:
        full = run_policy(prep, PRESETS[name], cost, **kw)
        tf, rf = policy_tables(prep, full, ctx, all_events=True)
        for sparse in (False, True):
            delta = run_policy(prep, PRESETS[name], cost, baseline=base, sparse=sparse, **kw)
            td, rd = policy_tables(prep, delta, ctx, all_events=True)
            assert rf == rd, (name, sparse)
            assert set(tf) == set(td), (name, sparse)
            for key in tf:
                assert tf[key].equals(td[key]), (name, sparse, key)
            assert delta.invariants_ok == full.invariants_ok and delta.accepted_ok == full.accepted_ok, name
            assert delta.invariant_report == full.invariant_report, (name, sparse)
        runs.append(delta)
    return runs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS, JUNK, hs.sampled_from(["tdx-4k", "snp-2m"]))
def test_delta_replay_equals_full_replay(ops: list[tuple[int, int, int, int]],
                                         junk: list[tuple[int, str, int, int]], costs: str) -> None:
    rows, _, _ = _gen_trace(ops)
    for pos, event, pfn, order in junk:  # inserted between the generated events (same timestamp: after)
        if rows:
            at = min(pos, len(rows) - 1)
            rows.insert(at + 1, {"ts_ns": rows[at]["ts_ns"], "cpu": 0, "event": event, "pfn": pfn & ~((1 << order) - 1),
                                 "order": order, "migratetype": 1})
    if not rows:
        return
    table = make_events(rows)
    prep = prepare(table, tiny_layout(4096), mode="exact", boot=True)
    _same_results(prep, table, list(PRESET_ORDER[1:]), costs, firmware_accepted_bytes=FW_ACCEPTED)


def test_a_delta_that_does_not_add_up_falls_back_to_the_full_replay() -> None:
    """The end check: when the recorded changes do not bring the free counters to the baseline's
    final state minus the listed blocks, the delta replay gives way to the full one."""
    rows, _, _ = _gen_trace([(0, 3, 1, 0), (1, 1, 2, 1), (2, 0, 0, 1), (3, 0, 0, 0), (0, 4, 1, 1)] * 4)
    table = make_events(rows)
    prep = prepare(table, tiny_layout(4096), mode="exact", boot=True)
    cost = COST_PRESETS["tdx-4k"]
    base = run_full(prep, PRESETS["none"], cost, record=True, firmware_accepted_bytes=FW_ACCEPTED)
    good = run_policy(prep, PRESETS["list-6.6"], cost, baseline=base, firmware_accepted_bytes=FW_ACCEPTED)
    assert good.method == "delta"
    k = int(np.nonzero(base.dfree)[0][0])
    base.dfree[k] += 1
    run = run_policy(prep, PRESETS["list-6.6"], cost, baseline=base, firmware_accepted_bytes=FW_ACCEPTED)
    assert run.method == "full"
    ctx = result_context(table, ["list-6.6"])
    assert policy_tables(prep, run, ctx, all_events=True)[1] == policy_tables(prep, good, ctx, all_events=True)[1]


def test_simulate_mode_never_uses_the_delta() -> None:
    rows, _, _ = _gen_trace([(0, 3, 1, 0), (1, 1, 2, 1), (2, 0, 0, 1), (3, 0, 0, 0)] * 5)
    table = make_events(rows)
    prep = prepare(table, tiny_layout(4096), mode="simulate", boot=True)
    cost = COST_PRESETS["tdx-4k"]
    base = run_full(prep, PRESETS["none"], cost, record=True, firmware_accepted_bytes=FW_ACCEPTED)
    assert base.dfree is None
    run = run_policy(prep, PRESETS["list-6.6"], cost, baseline=base, firmware_accepted_bytes=FW_ACCEPTED)
    assert run.method == "full"


@pytest.mark.parametrize("trace, snapshot, costs", [
    ("debian12-6.1-boot/trace.txt.zst", None, "tdx-4k"),
    ("debian12-6.1-perf/perf-script.txt.zst", "debian12-6.1-perf/proc_before", "snp-4k"),
    ("debian12-6.1-tracecmd/trace-cmd-report.txt.zst", "debian12-6.1-tracecmd/proc_before", "tdx-2m"),
])
def test_delta_replay_equals_full_replay_on_real_traces(trace: str, snapshot: str | None, costs: str) -> None:
    from replay.pipeline.inputs import load_inputs

    path = require_trace_file(trace)
    inp = load_inputs(path, require_trace_file(snapshot) if snapshot else None, None, None, None)
    table = inp.table
    prep = prepare(table, inp.layout, mode="exact", snapshot=inp.snapshot, events=inp.events)
    runs = _same_results(prep, table, list(PRESET_ORDER[1:]), costs)
    assert {r.method for r in runs} == {"delta"}
    # the walk skips per-CPU list hits and the middle of zone->lock batches (a zone near its
    # acceptance watermark, as in early boot, is walked event by event)
    visited = {r.name: r.visited for r in runs}
    assert all(0 < v < len(prep.events) for v in visited.values()), visited
    assert visited["post-alloc"] < len(prep.events) // 4, visited


def test_threads_equal_one_after_the_other() -> None:
    """``run_policies``: the exact-mode policies in threads on the recorded baseline (workers 2)
    give the tables of the same policies replayed one after the other (workers 1)."""
    from replay.pipeline.schedule import run_policies
    from tests.helpers.replay import every_preset_on_a_generated_trace

    table, prep, pols, ctx, cost = every_preset_on_a_generated_trace()

    def tables(run: Any) -> Any:
        return policy_tables(prep, run, ctx)

    _, threaded, _ = run_policies(prep, pols, cost, tables, workers=2)
    _, serial, _ = run_policies(prep, pols, cost, tables, workers=1)
    assert [row for _, row in threaded] == [row for _, row in serial]
    for (ta, _), (tb, _) in zip(threaded, serial):
        assert set(ta) == set(tb) and all(ta[k].equals(tb[k]) for k in ta)
    assert sum(row["accepted_bytes"] for _, row in threaded) > 0  # acceptance happened


def test_interleaved_sections_are_visited_event_by_event() -> None:
    """Two CPUs' ``rmqueue_bulk`` batches interleaved in trace order (per-CPU buffers merged by
    timestamp): the later section of the zone is walked event by event, not summed, and every
    policy's results still equal the full replay's."""
    rows = []
    for i in range(8):  # cpu 0 takes pfns 1024.., cpu 1 pfns 2048.., one event each in turn
        for c, base_pfn in ((0, 1024), (1, 2048)):
            rows.append({"ts_ns": 1000 + 10 * i + c, "cpu": c, "event": "mm_page_alloc_zone_locked",
                         "pfn": base_pfn + i, "order": 0, "migratetype": 1, "percpu_refill": True})
    for c, base_pfn in ((0, 1024), (1, 2048)):
        for i in range(8):
            rows.append({"ts_ns": 2000 + 10 * i + c, "cpu": c, "event": "mm_page_alloc", "pfn": base_pfn + i,
                         "order": 0, "migratetype": 1})
    for i in range(8):
        rows.append({"ts_ns": 3000 + i, "cpu": 0, "event": "mm_page_free", "pfn": 2048 + i, "order": 0})
    table = make_events(rows)
    prep = prepare(table, tiny_layout(4096), mode="exact", boot=True)
    cost = COST_PRESETS["tdx-4k"]
    base = run_full(prep, PRESETS["none"], cost, record=True, firmware_accepted_bytes=FW_ACCEPTED)
    idx = FinishedBaseline(prep, base).index(sparse=True)
    S, m = base.S, int(base.S.n[0])
    first, zone = S.first[:m], S.zone[:m]
    members = np.bincount(base.out_sec[base.out_sec >= 0], minlength=m)
    # a section of the zone opens before an earlier section's last event: the walk cannot sum both
    overlapping = [(a, b) for a in range(m) for b in range(a + 1, m)
                   if zone[a] == zone[b] and first[b] < idx.sec_last[a] and members[a] > 1 and members[b] > 1]
    assert idx.sparse and overlapping
    # visiting every event of the later one: more visits than the two section openings
    run = run_policy(prep, PRESETS["list-6.6"], cost, baseline=base, firmware_accepted_bytes=FW_ACCEPTED)
    a, b = overlapping[0]
    assert run.visited >= members[b]
    _same_results(prep, table, list(PRESET_ORDER[1:]), "tdx-4k", firmware_accepted_bytes=FW_ACCEPTED)


def test_event_rows_equal_the_array_operations() -> None:
    """The events table's columns from ``event_rows`` (one compiled merge of the rows with the
    charge log and the handled events) equal the per-column array operations (``vts_at``,
    ``charges_at``, ``handled_values``, plain gathers) they replace, for every policy, at the
    charged rows and at every event; so do the CPUs and (comm, pid) groups it hands back."""
    from replay.policy.timeline import EL_ADDED, EL_HOLD, EL_WAIT, EL_WAIT_ACCEPT
    from replay.results.tables import _events, charged_events
    from tests.helpers.oracles import charges_at, handled_values

    rows, _, _ = _gen_trace([(0, 3, 1, 0), (1, 1, 2, 1), (2, 0, 0, 1), (3, 0, 0, 0), (0, 4, 1, 1), (4, 2, 2, 0)] * 40)
    table = make_events(rows)
    prep = prepare(table, tiny_layout(1 << 21), mode="exact", boot=True)
    names = list(PRESET_ORDER)
    ctx = result_context(table, names)
    cost = COST_PRESETS["tdx-4k"]
    charged_somewhere = 0
    for name in names:
        run = run_policy(prep, PRESETS[name], cost)
        pi = names.index(name)
        ea = prep.events
        for idx in (charged_events(run), np.arange(len(ea), dtype=np.int64)):
            sink: dict[str, np.ndarray] = {}
            t = _events(prep, run, pi, names, ctx.comm, ctx.pid, idx, ctx.ncpu, ctx.proc_key, sink)
            col = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names
                   if c not in ("policy", "comm", "event", "zone", "anomaly", "pfn", "model_pfn")}
            want = {"seq": np.asarray(ea.seq)[idx], "ts_ns": ea.ts[idx], "vts_ns": run.vts_at(idx),
                    "cpu": ea.cpu[idx], "pid": ctx.pid[idx], "order": ea.order[idx], "section": run.out_sec[idx],
                    "added_ns": charges_at(run, EL_ADDED, idx), "lock_wait_ns": charges_at(run, EL_WAIT, idx),
                    "lock_hold_ns": charges_at(run, EL_HOLD, idx),
                    "lock_wait_behind_accept_ns": charges_at(run, EL_WAIT_ACCEPT, idx),
                    "firmware_ns": handled_values(run, run.handled_firmware, idx),
                    "accepted_bytes": handled_values(run, run.handled_accepted, idx),
                    "forced": handled_values(run, run.handled_forced, idx).astype(bool)}
            assert set(col) == set(want), name
            for c, w in want.items():
                assert np.array_equal(col[c], w), (name, c)
            ev = ea.ev[idx]
            assert np.array_equal(t.column("event").chunk(0).indices.to_numpy(), np.where(ev < 0, 0, ev)), name
            assert np.array_equal(t.column("pfn").fill_null(-1).to_numpy(), ea.pfn[idx]), name
            z, a = run.out_zone[idx], run.out_anom[idx]
            assert np.array_equal(t.column("zone").chunk(0).indices.fill_null(-1).to_numpy(), np.where(z < 0, -1, z)), name
            assert np.array_equal(t.column("anomaly").chunk(0).indices.fill_null(0).to_numpy(), a), name
            assert np.array_equal(sink["cpu"], ea.cpu[idx]) and np.array_equal(sink["proc"], ctx.proc_key[idx])
            charged_somewhere += int(np.count_nonzero(col["added_ns"]))
    assert charged_somewhere > 0  # some policy added latency: the charges were compared
