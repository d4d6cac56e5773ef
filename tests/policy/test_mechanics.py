"""Each policy's mechanics inside the replay, on tiny hand-made traces, with every figure by hand.

The guest: one Normal zone of pfns [0, 8192) (32 MiB), 2 vCPUs, 2 MiB units, 4 MiB blocks
(order 10).  The firmware accepted [0, 2048) (8 MiB); [2048, 8192) is unaccepted: bitmap unit u
covers pfns [2048 + 512u, 2048 + 512(u+1)), block b covers [1024b, 1024(b+1)).  Watermarks
(min, low, high, promo) = (256, 512, 1024, 2048) pages.  No snapshot: the initial buddy is the
boot layout (eight free order-10 blocks).  zone->lock sections cost the default calibration
(refill/alloc: 2000 + 1000 ns per block; drain/free: 2000 + 1000 ns per block).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from replay.acceptance.unaccepted_memory import Receipt
from replay.acceptance.costs import COST_PRESETS, CALL_KIND_NAMES, GiB
from replay.acceptance.policies import PRESETS
from replay.policy.prepare import prepare
from replay.policy.run import run_policy
from replay.model.sections import DEFAULT_CALIBRATION
from tests.helpers.events import make_events
from tests.helpers.oracles import DenseRun
from tests.helpers.replay import tiny_layout

TDX = COST_PRESETS["tdx-4k"]
LOP = TDX.list_op_ns
BOP = TDX.bitmap_op_ns
FW_ACCEPTED = 2048 * 4096  # 8 MiB
T0 = 1_000_000_000
SEC = 2000 + 1000  # one-block zone->lock section (default calibration)
FREE_BLOCK = 2000 + 1000  # __free_pages_ok of one accepted block


def unit_ns() -> float:
    """One 2 MiB unit on a 4K-backed TDX host: a failed 2M TDCALL + 512 x (4K TDCALL + exit + init)."""
    c = TDX
    per_4k = c.tdcall_cycles / c.cpu_ghz + c.tdx_exit_4k_ns + 4096 * 1e9 / (c.zero_gib_s * GiB)
    return 512 * per_4k + c.tdx_fail_cycles / c.cpu_ghz


U = unit_ns()


def layout():
    lay = tiny_layout(8192, cpus=2)
    z = dataclasses.replace(lay.zones[0], wmark_min=256, wmark_low=512, wmark_high=1024, wmark_promo=2048)
    return dataclasses.replace(lay, zones=(z,))


def run(rows, policy, mode="exact"):
    lay = layout()
    prep = prepare(make_events(rows), lay, mode=mode, boot=True, cal=DEFAULT_CALIBRATION)
    return DenseRun(run_policy(prep, PRESETS[policy], TDX, firmware_accepted_bytes=FW_ACCEPTED))


def zl(t, cpu, pfn, order=0, refill=False):
    return {"ts_ns": t, "cpu": cpu, "event": "mm_page_alloc_zone_locked", "pfn": pfn, "order": order,
            "migratetype": 1, "percpu_refill": refill}


def alloc(t, cpu, pfn, order=0):
    return {"ts_ns": t, "cpu": cpu, "event": "mm_page_alloc", "pfn": pfn, "order": order, "migratetype": 1}


def calls(r, kind):
    return int(r.totals[Receipt.CALLS + CALL_KIND_NAMES.index(kind)])


def test_none_adds_nothing_and_equals_the_plain_replay():
    from replay.model.engine import replay

    rows = [zl(T0, 0, 2048), alloc(T0 + 10, 0, 2048), zl(T0 + 1000, 1, 0), alloc(T0 + 1010, 1, 0),
            {"ts_ns": T0 + 5000, "cpu": 0, "event": "mm_page_free", "pfn": 2048, "order": 0}]
    r = run(rows, "none")
    plain = replay(make_events(rows), layout(), boot=True)
    assert (r.added == 0).all() and (r.wait == 0).all() and (r.firmware == 0).all()
    assert (r.vts == make_events(rows).column("ts_ns").to_numpy()).all()
    assert np.array_equal(r.out_anom, plain.out_anom) and np.array_equal(r.out_sec, plain.out_sec)
    for a, b in zip(r.st, plain.state):
        assert np.array_equal(a, b)
    assert r.invariants_ok and r.forced.sum() == 0


def test_v1_holds_zone_lock_across_the_accept_and_the_other_cpu_waits_for_the_rest():
    """CPU0's rmqueue takes pfn 2048 (unit 0, unaccepted): v1 accepts it under zone->lock and the
    global lock.  CPU1 asks for zone->lock 5 us later, after the traced section would have ended:
    it waits exactly for the rest of CPU0's lengthened hold."""
    t1 = T0 + 5000
    rows = [zl(T0, 0, 2048), alloc(T0 + 1, 0, 2048), zl(t1, 1, 0), alloc(t1 + 1, 1, 0)]
    r = run(rows, "v1-buddy-global-lock")
    fw_under_lock = BOP + U  # one unaccepted_memory_lock section spanning the firmware, inside zone->lock
    assert calls(r, "tdx_accept_4k") == 512 and calls(r, "tdx_accept_fail") == 1
    assert r.firmware[0] == round(U)
    assert r.accepted[0] == 2 << 20
    hold0 = SEC + round(fw_under_lock)
    assert r.hold[0] == hold0
    assert r.added[0] == round(fw_under_lock)
    # CPU1: requests at t1, CPU0 holds until T0 + hold0
    assert r.wait[2] == T0 + hold0 - t1 == r.added[2]
    assert r.vts[3] == t1 + 1 + r.added[2]
    # the allocation latency added to each request
    lat = r.alloc_lat[[1, 3]]
    assert lat[0] == round(fw_under_lock) and lat[1] == T0 + hold0 - t1
    assert r.invariants_ok and r.accepted_ok and r.conservation_ok


def test_v1_atomic_bitmap_takes_no_global_lock():
    rows = [zl(T0, 0, 2048), alloc(T0 + 1, 0, 2048)]
    r = run(rows, "v1-buddy-atomic-bitmap")
    assert r.totals[Receipt.GLOBAL_LOCK_SECTIONS] == 0
    assert r.hold[0] == SEC + round(U)  # firmware only, still under zone->lock


def test_post_alloc_accepts_after_the_lock_is_dropped():
    rows = [zl(T0, 0, 2048), alloc(T0 + 1, 0, 2048), zl(T0 + 5000, 1, 0)]
    r = run(rows, "post-alloc")
    # post_alloc_hook(): lockless test, then one global-lock section over the firmware
    assert r.firmware[1] == round(U) and r.firmware[0] == 0
    assert r.hold[0] == SEC  # zone->lock not lengthened
    assert r.added[1] == round(BOP + U)
    assert r.wait[2] == 0  # nobody waits on zone->lock
    assert calls(r, "tdx_accept_4k") == 512


def test_list_promo_accepts_the_fifo_head_at_zone_visit_and_forces_the_traced_block():
    """Free accepted: block 0 (1024 pages); blocks 1..7 are listed (block 1 for its guard unit).
    CPU0's request visits the zone: promo 2048 - 1024 free > 0 -> accept block 1 (guard unit 0:
    one unit).  CPU1 then takes pfn 4096 in block 4: the visit accepts block 2 (units 1 and 2,
    guard included) and block 4 is still listed, so the trace's placement is forced: units 4, 5, 6."""
    rows = [zl(T0, 0, 0), alloc(T0 + 1, 0, 0), zl(T0 + 10_000_000, 1, 4096), alloc(T0 + 10_000_001, 1, 4096)]
    r = run(rows, "list-promo")
    assert r.firmware[0] == round(U)
    assert r.firmware[2] == round(2 * U) + round(3 * U) or abs(r.firmware[2] - 5 * U) <= 2
    assert r.forced.tolist() == [0, 0, 1, 0]
    assert calls(r, "tdx_accept_4k") == 6 * 512 and calls(r, "tdx_accept_fail") == 6
    # 6.6+ locking: register on accepting_list, clear each run's bits: 2 short sections per run
    assert r.totals[Receipt.GLOBAL_LOCK_SECTIONS] == 2 * 3
    # event 0: list_del (zone->lock), firmware, bitmap bookkeeping, then __free_pages_ok of the block
    # (zone->lock again); the list_del is charged once
    added0 = round(LOP + U + 2 * BOP) + FREE_BLOCK
    assert abs(r.added[0] - added0) <= 2
    assert r.accepted[0] == 2 << 20 and r.accepted[2] == 5 * (2 << 20)
    assert r.invariants_ok and r.accepted_ok and r.conservation_ok


def test_list_65_accepts_only_after_a_watermark_failure():
    """6.5: NR_UNACCEPTED is unusable, so the watermark check sees 1024 accepted free pages > low
    (512): no acceptance until the trace has taken more than 512 pages."""
    rows = [zl(T0, 0, 0), alloc(T0 + 1, 0, 0)]
    r = run(rows, "list-6.5")
    assert r.firmware.sum() == 0 and r.forced.sum() == 0
    rows = [zl(T0, 0, 0, order=9), alloc(T0 + 1, 0, 0, order=9), zl(T0 + 1000, 0, 512), alloc(T0 + 1001, 0, 512)]
    r = run(rows, "list-6.5")
    # second request: 512 free - 0 unusable <= 512 low -> try_to_accept_memory() up to high:
    # block 1 (1 unit through its guard), then 1024 + 512 free >= high: stop
    assert r.firmware[2] == round(U)
    # the global lock is held across the firmware (6.5): one section of BOP + U
    assert r.totals[Receipt.GLOBAL_LOCK_HOLD_NS] == pytest.approx(BOP + U)


def test_eager_policies_accept_nothing_during_the_trace():
    rows = [zl(T0, 0, 4096), alloc(T0 + 1, 0, 4096)]
    for name in ("firmware-eager", "kernel-eager"):
        r = run(rows, name)
        assert r.firmware.sum() == 0 and r.added.sum() == 0 and r.forced.sum() == 0
        assert r.boot["boot_accept_ns"] > 0


def test_background_acceptor_runs_off_the_traced_cpus():
    rows = [zl(T0 + i * 20_000_000, 0, 4096 + i) for i in range(4)]
    r = run(rows, "background")
    assert r.totals[Receipt.BG_FW_NS] > 0
    assert r.added.sum() == 0 or r.forced.sum() > 0
    assert r.invariants_ok and r.accepted_ok


@pytest.mark.parametrize("mode", ["exact", "simulate"])
def test_simulate_and_exact_hand_out_only_accepted_memory(mode):
    rows = [alloc(T0 + i * 1000, i % 2, 1024 * (i % 8), 0) for i in range(16)]
    if mode == "exact":
        rows = [x for i in range(8) for x in (zl(T0 + i * 1000, 0, 1024 * i), alloc(T0 + i * 1000 + 1, 0, 1024 * i))]
    for name in PRESETS:
        r = run(rows, name, mode=mode)
        assert r.accepted_ok, name
        assert r.conservation_ok and r.invariants_ok, (name, r.invariant_report)
        if mode == "simulate":
            assert r.forced.sum() == 0
