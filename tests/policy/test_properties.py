"""Properties of the policy replay on random consistent traces (hypothesis).

* no policy ever hands out an unaccepted page (exact and simulate mode);
* acceptance conserves memory: free + pcp + allocated + unaccepted (listed) = present, per zone;
* ``none`` adds nothing and leaves the model exactly as the plain replay does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from replay.acceptance.costs import COST_PRESETS
from replay.model.engine import replay
from replay.acceptance.policies import PRESETS
from replay.policy.prepare import prepare
from replay.policy.run import run_policy
from tests.model.test_properties import _gen_trace
from tests.helpers.events import make_events
from tests.helpers.oracles import DenseRun, conserved_pages
from tests.helpers.replay import tiny_layout

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPS = hs.lists(hs.tuples(hs.integers(0, 4), hs.integers(0, 100), hs.integers(0, 100), hs.integers(0, 3)),
               min_size=1, max_size=120)
FW_ACCEPTED = 1024 * 4096  # 4 MiB of the 16 MiB guest; the rest is unaccepted
POLICIES = tuple(PRESETS)


def _check(table: Any, layout: Any, mode: str, costs: str = "tdx-4k") -> None:
    prep = prepare(table, layout, mode=mode, boot=True)
    total = None
    for name in POLICIES:
        r = DenseRun(run_policy(prep, PRESETS[name], COST_PRESETS[costs], firmware_accepted_bytes=FW_ACCEPTED))
        assert r.accepted_ok, name
        assert r.conservation_ok and r.invariant_report["pages_conserved"], (name, r.invariant_report)
        assert r.invariants_ok, (name, r.invariant_report)
        pages = conserved_pages(r)
        total = pages if total is None else total
        assert pages == total == int(r.st.z_present.sum()), name
        assert (r.added >= 0).all() and (r.wait >= 0).all() and (r.firmware >= 0).all()
        assert (r.vts >= prep.events.ts).all()
        if name == "none":
            assert not r.added.any() and not r.wait.any() and not r.firmware.any() and not r.forced.any()
            assert (r.vts == prep.events.ts).all()


@SETTINGS
@given(OPS, hs.sampled_from(["tdx-4k", "snp-2m"]))
def test_exact_policies_hand_out_only_accepted_memory_and_conserve_it(ops: list[tuple[int, int, int, int]],
                                                                     costs: str) -> None:
    rows, _, _ = _gen_trace(ops)
    if not rows:
        return
    _check(make_events(rows), tiny_layout(4096), "exact", costs)


@SETTINGS
@given(hs.lists(hs.tuples(hs.booleans(), hs.integers(0, 9), hs.integers(0, 3), hs.integers(0, 1 << 20)),
                min_size=1, max_size=120))
def test_simulate_policies_hand_out_only_accepted_memory(ops: list[tuple[bool, int, int, int]]) -> None:
    rows: list[dict[str, Any]] = []
    live: list[tuple[int, int]] = []
    next_pfn = 0
    t = 0
    for is_alloc, order, cpu, pick in ops:
        t += 1000
        if is_alloc or not live:
            size = 1 << order
            next_pfn = -(-next_pfn // size) * size
            if next_pfn + size > 4096:
                continue
            rows.append({"ts_ns": t, "cpu": cpu % 2, "event": "mm_page_alloc", "pfn": next_pfn, "order": order,
                         "migratetype": pick % 3})
            live.append((next_pfn, order))
            next_pfn += size
        else:
            p, o = live.pop(pick % len(live))
            rows.append({"ts_ns": t, "cpu": cpu % 2, "event": "mm_page_free", "pfn": p, "order": o})
    if not rows:
        return
    _check(make_events(rows), tiny_layout(4096, high=16, batch=4), "simulate")


@SETTINGS
@given(OPS)
def test_none_equals_the_plain_replay(ops: list[tuple[int, int, int, int]]) -> None:
    rows, _, _ = _gen_trace(ops)
    if not rows:
        return
    table = make_events(rows)
    plain = replay(table, tiny_layout(4096), mode="exact", boot=True)
    r = DenseRun(run_policy(prepare(table, tiny_layout(4096), mode="exact", boot=True), PRESETS["none"],
                            COST_PRESETS["tdx-4k"]))
    assert np.array_equal(r.out_anom, plain.out_anom)
    assert np.array_equal(r.out_sec, plain.out_sec) and np.array_equal(r.out_zone, plain.out_zone)
    for a, b in zip(r.st, plain.state):
        assert np.array_equal(a, b)
    assert not r.added.any() and not r.hold[plain.out_sec < 0].any()
