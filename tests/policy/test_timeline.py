"""Locks in virtual time inside a replay (``replay.policy.timeline``): one holder per lock, waits
behind a firmware call under zone->lock, and the unmodified kernel's sections never overlapping.

The tiny guest of ``tests/policy/test_mechanics.py``: one zone of pfns [0, 8192), 2 vCPUs, 2 MiB
units from pfn 2048 (unit 4 = pfns [4096, 4608)), the default calibration.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from replay.model.locks import check_exclusion
from replay.policy.timeline import EL_K
from tests.policy.test_mechanics import BOP, SEC, T0, U, alloc, run, zl

#: the presets whose acceptance can run during a trace
ACTING = ("v1-buddy-global-lock", "v1-buddy-atomic-bitmap", "post-alloc", "list-6.5", "list-6.6", "list-promo",
          "background")


def section_holds(r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lock, grant, hold) of every zone->lock section of a run."""
    m = int(r.S.n[0])
    return (r.S.zone[:m].astype(np.int64), r.sec_vstart + r.sec_wait, r.sec_hold)


def test_v1_firmware_call_under_zone_lock_blocks_the_other_cpu():
    """v1 accepts in ``del_page_from_free_list()`` with zone->lock held: CPU0 takes pfn 4096
    (unit 4, unaccepted) at T0 and calls the firmware inside its section; CPU1's section 1 us
    later waits until CPU0 has released the lock, and so does its allocation."""
    rows = [zl(T0, 0, 4096), alloc(T0 + 1, 0, 4096), zl(T0 + 1000, 1, 0), alloc(T0 + 1001, 1, 0)]
    base = run(rows, "none")
    assert (base.wait == 0).all() and (base.added == 0).all()
    r = run(rows, "v1-buddy-global-lock")
    fw = int(BOP + U + 0.5)  # one unit under unaccepted_memory_lock, inside CPU0's section
    # CPU0's section: cut at CPU1's request (1000 ns later in the trace), plus the firmware call
    assert r.sec_hold[0] == 1000 + fw
    assert r.sec_wait[1] == fw and r.sec_blocker_cpu[1] == 0
    assert r.wait[2] == fw and r.added[2] == fw
    assert r.alloc_lat[3] == fw  # CPU1's request paid for CPU0's firmware call
    assert r.invariant_report["lock_overlaps"] == 0 and r.invariants_ok
    lock, grant, hold = section_holds(r)
    assert check_exclusion(lock, grant, hold) == 0


def three_cpus(policy):
    """CPU0 takes pfn 4096 (unaccepted unit 4, inside a free MAX_ORDER block it splits) at T0;
    CPUs 1 and 2 refill from the same zone 1 and 2 us later (accepted pfns 0 and 1)."""
    import dataclasses

    from replay.acceptance.costs import COST_PRESETS
    from replay.acceptance.policies import PRESETS
    from replay.model.sections import DEFAULT_CALIBRATION
    from replay.policy.prepare import prepare
    from replay.policy.run import run_policy
    from tests.helpers.events import make_events
    from tests.helpers.oracles import DenseRun
    from tests.helpers.replay import tiny_layout
    from tests.policy.test_mechanics import FW_ACCEPTED

    rows = [zl(T0, 0, 4096), alloc(T0 + 1, 0, 4096), zl(T0 + 1000, 1, 0), alloc(T0 + 1001, 1, 0),
            zl(T0 + 2000, 2, 1), alloc(T0 + 2001, 2, 1)]
    lay = tiny_layout(8192, cpus=3)
    z = dataclasses.replace(lay.zones[0], wmark_min=256, wmark_low=512, wmark_high=1024, wmark_promo=2048)
    lay = dataclasses.replace(lay, zones=(z,))
    prep = prepare(make_events(rows), lay, mode="exact", boot=True, cal=DEFAULT_CALIBRATION)
    return DenseRun(run_policy(prep, PRESETS[policy], COST_PRESETS["tdx-4k"], firmware_accepted_bytes=FW_ACCEPTED))


@pytest.mark.parametrize("policy,fw", [("v1-buddy-global-lock", int(BOP + U + 0.5)),
                                       ("v1-buddy-atomic-bitmap", int(U + 0.5))])
def test_v1_three_cpus_queue_behind_the_firmware_call(policy, fw):
    """By hand: CPU0's section is cut to 1000 ns by CPU1's request and lengthened by the firmware
    call made inside it; CPU1 waits ``fw``, holds until CPU2's request 1000 ns on; CPU2 waits the
    same ``fw`` behind CPU1 (the delay passed down the queue) and holds the whole SEC.  IRQs are
    off for each spin + hold (spin_lock_irqsave)."""
    r = three_cpus(policy)
    assert r.sec_hold.tolist() == [1000 + fw, 1000, SEC]
    assert r.sec_wait.tolist() == [0, fw, fw]
    assert r.sec_blocker_cpu.tolist() == [-1, 0, 1]
    assert (r.sec_wait + r.sec_hold).tolist() == [1000 + fw, fw + 1000, fw + SEC]  # IRQs-off stretches
    assert r.wait.tolist() == [0, 0, fw, 0, fw, 0]
    assert r.alloc_lat.tolist() == [0, fw, 0, fw, 0, fw]  # CPU0's own call at its zone_locked event
    assert r.vts.tolist()[5] == T0 + 2001 + fw  # CPU2's allocation happens fw later than traced
    assert r.invariant_report["lock_overlaps"] == 0


def test_firmware_eager_adds_nothing_at_run_time():
    r = three_cpus("firmware-eager")
    assert (r.wait == 0).all() and (r.added == 0).all() and (r.sec_wait == 0).all()
    assert r.sec_hold.tolist() == [1000, 1000, SEC]


def test_post_alloc_accepts_outside_zone_lock_no_wait():
    """post_alloc_hook() runs after zone->lock is dropped: CPU1 does not wait for CPU0's firmware."""
    rows = [zl(T0, 0, 4096), alloc(T0 + 1, 0, 4096), zl(T0 + 1000, 1, 0), alloc(T0 + 1001, 1, 0)]
    r = run(rows, "post-alloc")
    assert r.sec_wait[1] == 0 and r.wait[2] == 0
    assert r.added[1] == int(BOP + U + 0.5)  # CPU0 pays at its mm_page_alloc


def test_a_delayed_cpu_stays_delayed():
    """CPU1 waits behind CPU0's firmware call; its next section, 2 us later in the trace, starts
    that much later in virtual time (the delay carries over)."""
    rows = [zl(T0, 0, 4096), alloc(T0 + 1, 0, 4096), zl(T0 + 1000, 1, 0), alloc(T0 + 1001, 1, 0),
            zl(T0 + 3000, 1, 1), alloc(T0 + 3001, 1, 1)]
    r = run(rows, "v1-buddy-global-lock")
    fw = int(BOP + U + 0.5)
    assert r.sec_vstart[2] == T0 + 3000 + fw
    assert r.vts[4] == T0 + 3000 + fw


event_rows = hs.lists(hs.tuples(hs.integers(0, 1), hs.integers(0, 20), hs.integers(0, 5_000), hs.booleans()),
                      min_size=1, max_size=30)


@settings(max_examples=25, deadline=None)
@given(event_rows, hs.sampled_from(ACTING))
def test_one_holder_per_lock_and_none_never_waits(spec, policy):
    """Any interleaving of two CPUs' allocations: no two holds of one lock overlap under any
    policy, every CPU finishes, and the unmodified kernel (``none``) waits 0 ns."""
    rows, t = [], T0
    for cpu, page, dt, _refill in spec:
        t += dt
        pfn = 2048 + 512 * page  # one page per unit: each may be unaccepted
        rows += [zl(t, cpu, pfn), alloc(t + 1, cpu, pfn)]
        t += 2
    base = run(rows, "none")
    assert (base.wait == 0).all() and (base.sec_wait == 0).all()
    r = run(rows, policy)
    rep = r.invariant_report
    assert rep["lock_overlaps"] == 0 and rep["cpus_left_waiting"] == 0
    lock, grant, hold = section_holds(r)
    assert check_exclusion(lock, grant, hold) == 0
    assert (np.diff(r.elog[:, EL_K]) > 0).all()  # one log row per event, in event order
    assert (r.sec_wait >= 0).all() and (r.added >= 0).all()
