"""Each policy's mechanics on a tiny hand-made guest; firmware calls and costs computed by hand.

The guest: one zone of pfns [0, 8192) (32 MiB), 2 MiB units (512 pages), 4 MiB blocks (order 10).
The firmware accepted [0, 2048) (8 MiB); [2048, 8192) is unaccepted: bitmap base pfn 2048,
12 units (unit u covers pfns [2048 + 512u, 2048 + 512(u+1))).  Blocks 0..7; block b = pfns
[1024b, 1024(b+1)).  Watermarks (min, low, high, promo) = (256, 512, 1024, 2048) pages.
"""

from __future__ import annotations

import numpy as np
import pytest

import replay.acceptance.boot as B
import replay.acceptance.page_alloc as A
import replay.acceptance.unaccepted_memory as UM
import tests.helpers.acceptance as H
from replay.acceptance.costs import COST_PRESETS, GiB, cost_vector
from replay.acceptance.policies import PRESETS, policy_vector
from replay.acceptance.unaccepted_memory import AcceptGeo, Receipt

TDX = COST_PRESETS["tdx-4k"]
SNP = COST_PRESETS["snp-4k"]
LOP = TDX.list_op_ns  # 100 ns: zone->lock list section
BOP = TDX.bitmap_op_ns  # 50 ns: unaccepted_memory_lock section


def unit_ns_tdx4k() -> float:
    """One 2 MiB unit on a 4K-backed TDX host, by hand: a failed 2M TDCALL + 512 x 4K accepts."""
    c = TDX
    per_4k = c.tdcall_cycles / c.cpu_ghz + c.tdx_exit_4k_ns + 4096 * 1e9 / (c.zero_gib_s * GiB)
    return 512 * per_4k + c.tdx_fail_cycles / c.cpu_ghz


U = unit_ns_tdx4k()


def tiny(policy_name: str, costs=TDX, wmarks_ready=True, **policy_changes):
    pol = PRESETS[policy_name].replace(**policy_changes) if policy_changes else PRESETS[policy_name]
    st = UM.new_accept_state([(0, 8192)], [(256, 512, 1024, 2048)], unaccepted=[(2048, 8192)],
                            unit_pages=512, block_order=10, has_table=pol.has_unaccepted_table,
                            wmarks_ready=wmarks_ready)
    cv, pv = cost_vector(costs), policy_vector(pol)
    boot = UM.new_receipt()
    B.boot_free_memory(st, cv, pv, [(0, 8192)], boot, mode=B.boot_mode(pol))
    return st, cv, pv, boot


def hook(st, cv, pv, site, *, pfn=0, order=0, free=0, unusable=0):
    r = UM.new_receipt()
    out = np.zeros(16, dtype=np.int64)
    st.scal[UM.AcceptScal.STEPS_N] = 0
    n = A.acceptance_hook(st, cv, pv, site, 0, pfn, order, free, unusable, out, r)
    return list(out[:n]), r


def calls(r, kind):
    from replay.acceptance.costs import CALL_KIND_NAMES
    return int(r[Receipt.CALLS + CALL_KIND_NAMES.index(kind)])


# ------------------------------------------------------------------ boot
def test_boot_lists_blocks_including_the_guard_block():
    st, cv, pv, boot = tiny("list-promo")
    # block 1 [1024, 2048) is accepted memory, but its guard unit (unit 0) is unaccepted:
    # range_contains_unaccepted_memory() looks one unit past a unit-aligned end -> listed.
    assert list(A.unaccepted_pages_of(st, 0)) == [1024 * b for b in range(1, 8)]
    assert st.z_nr_unaccepted[0] == 7 * 1024
    assert st.z_released_pages[0] == 1024  # block 0 only
    assert boot[Receipt.FW_NS] == 0  # lazy: nothing accepted at boot
    assert boot[Receipt.ZONE_LOCK_SECTIONS] == 7  # one __free_unaccepted() section per block
    assert A.check_conservation(st)


def test_kernel_eager_boot_accepts_every_unit_once():
    st, cv, pv, boot = tiny("kernel-eager")
    # blocks 1..7 each call accept_memory(block) once: block 1 -> unit 0 (its guard);
    # blocks 2..7 -> two units each (their first unit was the previous guard) = 12 units, 7 runs
    assert boot[Receipt.RUNS] == 7
    assert boot[Receipt.UNITS] == 12
    assert calls(boot, "tdx_accept_4k") == 12 * 512
    assert calls(boot, "tdx_accept_fail") == 12
    assert boot[Receipt.FW_NS] == pytest.approx(12 * U, rel=1e-9)
    assert st.bitmap.sum() == 0
    assert st.ul_len[0] == 0


def test_kernel_eager_snp_calls():
    st, cv, pv, boot = tiny("kernel-eager", costs=SNP)
    # one PSC VMGEXIT per run (<= 64 entries), one failed PVALIDATE 2M + 512 PVALIDATE 4K per unit,
    # and sev_evict_cache() reads per 4K page
    assert calls(boot, "snp_psc_vmgexit") == 7
    assert calls(boot, "snp_pvalidate_fail") == 12
    assert calls(boot, "snp_pvalidate_4k") == 12 * 512
    assert calls(boot, "snp_evict_4k") == 12 * 512
    c = SNP
    per_4k = (c.psc_host_4k_ns + c.pvalidate_4k_cycles / c.cpu_ghz + c.evict_4k_ns
              + 4096 * 1e9 / (c.zero_gib_s * GiB))
    by_hand = 7 * c.psc_vmgexit_ns + 12 * (c.pvalidate_fail_cycles / c.cpu_ghz) + 12 * 512 * per_4k
    assert boot[Receipt.FW_NS] == pytest.approx(by_hand, rel=1e-9)


@pytest.mark.parametrize("name", ["none", "firmware-eager"])
def test_no_table_policies_release_everything_for_free(name):
    st, cv, pv, boot = tiny(name)
    assert st.ul_len[0] == 0 and boot.sum() == 0
    assert st.z_released_pages[0] == 8192
    for site in range(len(A.SITE_NAMES)):
        n, r = hook(st, cv, pv, site, pfn=4096, order=10, free=0)
        assert n == [] and r.sum() == 0


def test_v1_and_post_alloc_boot_tags_blocks_into_the_buddy():
    st, cv, pv, boot = tiny("v1-buddy-global-lock")
    assert st.ul_len[0] == 0 and boot[Receipt.FW_NS] == 0
    assert st.z_released_pages[0] == 8192  # in the buddy, still unaccepted (PageOffline)
    assert not H.check_accepted(st, 4096, 0)


# ------------------------------------------------------------------ list-promo (6.12)
def test_list_promo_fills_to_promo_with_guard_units():
    st, cv, pv, _ = tiny("list-promo")
    # free accepted = 1024 (block 0), promo 2048 -> to_accept 1024 -> one block: block 1,
    # whose accept_memory() covers only its guard unit 0 -> one unit
    blocks, r = hook(st, cv, pv, A.SITE_ZONE_VISIT, free=1024)
    assert blocks == [1024]
    assert r[Receipt.UNITS] == 1 and r[Receipt.RUNS] == 1 and r[Receipt.BLOCKS] == 1
    assert r[Receipt.FW_NS] == pytest.approx(U)
    # 6.6+ locking: zone->lock list section, then register + one clear section on the global lock
    assert r[Receipt.ZONE_LOCK_SECTIONS] == 1 and r[Receipt.ZONE_LOCK_HOLD_NS] == LOP
    assert r[Receipt.GLOBAL_LOCK_SECTIONS] == 2 and r[Receipt.GLOBAL_LOCK_HOLD_NS] == 2 * BOP
    assert r[Receipt.ADDED_NS] == pytest.approx(LOP + 2 * BOP + U)
    assert r[Receipt.IRQS_OFF_MAX_NS] == pytest.approx(2 * BOP + U)
    assert r[Receipt.FW_UNDER_ZONE_LOCK_NS] == 0
    # at the mark: nothing
    blocks, r = hook(st, cv, pv, A.SITE_ZONE_VISIT, free=2048)
    assert blocks == [] and r.sum() == 0
    # free 0 -> to_accept 2048 -> two blocks (2, 3), two units each (units 1,2 then 3,4)
    blocks, r = hook(st, cv, pv, A.SITE_ZONE_VISIT, free=0)
    assert blocks == [2048, 3072]
    assert r[Receipt.UNITS] == 4 and r[Receipt.RUNS] == 2
    assert calls(r, "tdx_accept_4k") == 4 * 512 and calls(r, "tdx_accept_fail") == 4
    assert r[Receipt.FW_NS] == pytest.approx(4 * U)
    assert st.z_nr_unaccepted[0] == 4 * 1024
    assert list(st.bitmap[:5]) == [0, 0, 0, 0, 0] and st.bitmap[5] == 1
    assert A.check_conservation(st)
    summ = H.receipt_summary(st.totals)  # every hook also summed into st.totals
    assert summ["firmware_calls"] == 5 * 513 and summ["accepted_bytes"] == 5 * 2 * 2**20
    assert summ["firmware_ns"] == pytest.approx(5 * U)


def test_list_promo_unusable_raises_the_target():
    st, cv, pv, _ = tiny("list-promo")
    # __zone_watermark_unusable_free(order 3) = 7 pages: free 2048 - 7 < promo -> one block
    blocks, _ = hook(st, cv, pv, A.SITE_ZONE_VISIT, free=2048, unusable=7, order=3)
    assert blocks == [1024]


def test_list_promo_one_block_while_watermarks_are_zero():
    st, cv, pv, _ = tiny("list-promo", wmarks_ready=False)
    for expect in (1024, 2048, 3072):
        blocks, _ = hook(st, cv, pv, A.SITE_ZONE_VISIT, free=10**6)
        assert blocks == [expect]  # however much accepted memory is free (dstack PR #1220)
    A.set_watermarks_ready(st)
    assert hook(st, cv, pv, A.SITE_ZONE_VISIT, free=10**6)[0] == []


def test_list_promo_also_accepts_at_failure_sites_not_buddy_sites():
    st, cv, pv, _ = tiny("list-promo")
    assert hook(st, cv, pv, A.SITE_WMARK_FAIL, free=0)[0] == [1024, 2048]
    assert hook(st, cv, pv, A.SITE_BUDDY_DEL, pfn=6144, order=0)[1].sum() == 0
    assert hook(st, cv, pv, A.SITE_POST_ALLOC, pfn=6144, order=0)[1].sum() == 0


def test_accepting_list_collision_on_the_guard_unit():
    """6.6+: CPU A accepts block 1 (units [0,1)); CPU B 10 ns later takes block 2, whose range
    [0,3) overlaps A's in-flight entry on unit 0: B waits for zone->lock (A's list_del), then
    busy-waits until A's accept_memory returns."""
    st, cv, pv, _ = tiny("list-6.6")
    _, ra = hook(st, cv, pv, A.SITE_WMARK_FAIL, free=10**6)  # do/while: exactly one block
    pa = H.take_steps(st)
    _, rb = hook(st, cv, pv, A.SITE_WMARK_FAIL, free=10**6)
    pb = H.take_steps(st)
    res = H.race([(0, 0, pa), (1, 10, pb)])
    # A: zone->lock [0, 100) (list_del), then its accepting_list entry until A's last bitmap_clear
    a_done = LOP + int(BOP + 0.5) + int(U + 0.5) + int(BOP + 0.5)
    assert res["zone_wait"][1] == LOP - 10  # B asked for zone->lock at 10
    assert res["collisions"][1] == 1 and res["collisions"][0] == 0
    assert res["spin"][1] == a_done - 2 * LOP  # B's range check at 200, A's range in flight until a_done
    assert rb[Receipt.UNITS] == 2 and rb[Receipt.FW_NS] == pytest.approx(2 * U)


def test_accepting_list_disjoint_ranges_do_not_collide():
    """6.6+ with no guard unit: blocks 1 and 2 cover disjoint units, so two CPUs accept them at
    once without spinning (only the short bitmap sections of the global lock serialise)."""
    st, cv, pv, _ = tiny("list-6.6", guard_unit=False)
    hook(st, cv, pv, A.SITE_WMARK_FAIL, free=10**6)
    pa = H.take_steps(st)
    hook(st, cv, pv, A.SITE_WMARK_FAIL, free=10**6)
    pb = H.take_steps(st)
    res = H.race([(0, 0, pa), (1, 10, pb)])
    assert res["collisions"].tolist() == [0, 0] and res["spin"].tolist() == [0, 0]


def test_list_65_global_lock_serialises_all_acceptance():
    """6.5: the firmware call runs under unaccepted_memory_lock: a CPU accepting a different
    block at the same time waits for the whole call (soft lockups, Michael Roth)."""
    st, cv, pv, _ = tiny("list-6.5")
    _, ra = hook(st, cv, pv, A.SITE_WMARK_FAIL, free=10**6)
    assert ra[Receipt.GLOBAL_LOCK_SECTIONS] == 1
    assert ra[Receipt.GLOBAL_LOCK_HOLD_NS] == pytest.approx(BOP + U)
    assert ra[Receipt.IRQS_OFF_MAX_NS] == pytest.approx(BOP + U)
    pa = H.take_steps(st)
    _, rb = hook(st, cv, pv, A.SITE_WMARK_FAIL, free=10**6)
    pb = H.take_steps(st)
    assert rb[Receipt.ACCEPTING_COLLISIONS] == 0  # no accepting_list in 6.5
    assert rb[Receipt.ADDED_NS] == pytest.approx(LOP + BOP + 2 * U)  # the work; the waits are the schedule's
    # both at 0: B waits for zone->lock until A's list_del is done (100), runs its own (until
    # 200), then waits for unaccepted_memory_lock, which A holds over [100, 100 + BOP + U)
    res = H.race([(0, 0, pa), (1, 0, pb)])
    assert res["zone_wait"][1] == LOP and res["global_wait"][0] == 0
    assert res["global_wait"][1] == LOP + int(BOP + 0.5) + int(U + 0.5) - 2 * LOP
    assert res["added"][1] == LOP + LOP + res["global_wait"][1] + int(BOP + 0.5) + int(2 * U + 0.5)


def test_list_65_accepts_at_least_one_and_only_on_failure():
    st, cv, pv, _ = tiny("list-6.5")
    assert hook(st, cv, pv, A.SITE_ZONE_VISIT, free=0)[0] == []  # 6.5 has no zone-visit call
    # above high, a failure still accepts one block (do/while)
    assert hook(st, cv, pv, A.SITE_RMQUEUE_FAIL, free=5000)[0] == [1024]
    # high 1024, free 0 -> to_accept 1024 -> one block
    assert hook(st, cv, pv, A.SITE_WMARK_FAIL, free=0)[0] == [2048]
    assert H.watermark_unusable_extra(st, pv, 0) == 5 * 1024  # NR_UNACCEPTED counts as unusable


# ------------------------------------------------------------------ v1 in the buddy
def test_v1_global_lock_accepts_under_zone_lock():
    st, cv, pv, _ = tiny("v1-buddy-global-lock")
    # __rmqueue_smallest takes block 4 (pfns [4096, 5120) = units 4, 5) off the free list
    _, r = hook(st, cv, pv, A.SITE_BUDDY_DEL, pfn=4096, order=10)
    assert r[Receipt.UNITS] == 2 and r[Receipt.RUNS] == 1  # no guard unit before v6.5
    assert r[Receipt.FW_NS] == pytest.approx(2 * U)
    assert r[Receipt.FW_UNDER_ZONE_LOCK_NS] == pytest.approx(BOP + 2 * U)
    assert r[Receipt.GLOBAL_LOCK_HOLD_NS] == pytest.approx(BOP + 2 * U)
    assert H.check_accepted(st, 4096, 10) and not H.check_accepted(st, 5120, 0)
    # an order-0 page in an accepted unit costs nothing (PageOffline already clear)
    assert hook(st, cv, pv, A.SITE_BUDDY_DEL, pfn=4100, order=0)[1][Receipt.FW_NS] == 0
    # an order-0 page in unit 0 accepts the whole 2 MiB unit
    _, r = hook(st, cv, pv, A.SITE_BUDDY_DEL, pfn=2048, order=0)
    assert r[Receipt.UNITS] == 1 and calls(r, "tdx_accept_4k") == 512


def test_v1_atomic_bitmap_has_no_global_lock():
    st, cv, pv, _ = tiny("v1-buddy-atomic-bitmap")
    _, r = hook(st, cv, pv, A.SITE_BUDDY_DEL, pfn=4096, order=10)
    assert r[Receipt.GLOBAL_LOCK_SECTIONS] == 0
    assert r[Receipt.FW_UNDER_ZONE_LOCK_NS] == pytest.approx(2 * U)
    assert r[Receipt.ADDED_NS] == pytest.approx(2 * U)


def test_post_alloc_outside_zone_lock_lockless_test_first():
    st, cv, pv, _ = tiny("post-alloc")
    _, ra = hook(st, cv, pv, A.SITE_POST_ALLOC, pfn=2048, order=0)
    assert ra[Receipt.UNITS] == 1 and ra[Receipt.FW_UNDER_ZONE_LOCK_NS] == 0
    assert ra[Receipt.GLOBAL_LOCK_HOLD_NS] == pytest.approx(BOP + U)
    pa = H.take_steps(st)
    # a second CPU allocating in another unit at the same time waits for the global lock
    _, rb = hook(st, cv, pv, A.SITE_POST_ALLOC, pfn=2560, order=0)
    res = H.race([(0, 0, pa), (1, 0, H.take_steps(st))])
    assert res["global_wait"][1] == int(BOP + U + 0.5) and res["global_wait"][0] == 0
    # the fast path: an accepted unit takes no lock at all (maybe_accept_page())
    _, rc = hook(st, cv, pv, A.SITE_POST_ALLOC, pfn=2049, order=0)
    assert rc.sum() == 0


# ------------------------------------------------------------------ background (P6)
def test_background_rate_limit():
    # 4 MiB/s = one block per second, starting at t = 1 s
    st, cv, pv, _ = tiny("background", background_rate_bytes_s=4.0 * 2**20, background_cpu_budget=0.0,
                         background_start_ns=10**9)
    out = np.zeros(16, dtype=np.int64)
    r = UM.new_receipt()
    assert A.background_accept(st, cv, pv, 10**9, out, r) == 0
    n = A.background_accept(st, cv, pv, int(3.5e9), out, r)
    assert list(out[:n]) == [1024, 2048]  # 2.5 s elapsed -> 2 blocks
    assert r[Receipt.BG_FW_NS] == pytest.approx(3 * U) and r[Receipt.ADDED_NS] == 0
    assert A.background_accept(st, cv, pv, int(3.6e9), out, r) == 0
    assert A.background_accept(st, cv, pv, int(4.0e9), out, r) == 1


def test_background_cpu_budget():
    # 10 % of a CPU: after block 1 (U ns of firmware) it must wait ~10 U before the next one
    st, cv, pv, _ = tiny("background", background_rate_bytes_s=0.0, background_cpu_budget=0.1,
                         background_start_ns=0)
    out = np.zeros(16, dtype=np.int64)
    r = UM.new_receipt()
    assert A.background_accept(st, cv, pv, 1000, out, r) == 1
    assert A.background_accept(st, cv, pv, int(5 * U), out, r) == 0
    assert A.background_accept(st, cv, pv, int(11 * U), out, r) == 1


def test_accept_page_for_isolation():
    st, cv, pv, _ = tiny("list-promo")
    r = UM.new_receipt()
    pfn, added = A.accept_page(st, cv, pv, 5000, r)  # block 4 taken out of the middle of the FIFO
    assert pfn == 4096 and r[Receipt.UNITS] == 3  # units 4, 5 and guard 6
    assert list(A.unaccepted_pages_of(st, 0)) == [1024, 2048, 3072, 5120, 6144, 7168]
    assert A.accept_page(st, cv, pv, 4096, r) == (-1, 0.0)
    assert A.check_conservation(st)


def test_range_contains_unaccepted_memory_guard():
    st, cv, pv, _ = tiny("list-promo")
    assert UM.range_contains_unaccepted_memory(st, pv, 1024, 1024)  # guard unit 0
    assert not UM.range_contains_unaccepted_memory(st, pv, 0, 1024)  # ends at 1024: not unit-aligned rel. base
    assert not UM.range_contains_unaccepted_memory(st, pv, 0, 1000)


# ------------------------------------------------------------------ a whole guest from a layout
def test_state_from_layout_8g_guest():
    from replay.model.layout_x86 import layout_for_guest

    lay = layout_for_guest(8 * GiB, 2)
    m = B.state_from_layout(lay, PRESETS["list-6.5"], TDX)
    st = m.st
    normal = next(i for i, z in enumerate(lay.zones) if z.name == "Normal")
    # the firmware accepted everything below 4 GiB: the bitmap starts at 4 GiB
    assert st.geo[AcceptGeo.PHYS_BASE] == (4 * GiB) // 4096
    assert all(st.ul_len[i] == 0 for i in range(len(lay.zones)) if i != normal)
    assert st.ul_len[normal] > 1000
    # memblock reservations at the top of Normal were accepted at boot, with their guard unit
    z = lay.zones[normal]
    top = z.zone_end_pfn - (z.present - z.managed)
    assert H.check_accepted(st, top, 0)
    assert m.boot[Receipt.FW_NS] > 0 and A.check_conservation(st)
    # boot leaves no virtual-time residue: the first runtime accept does not wait
    r = UM.new_receipt()
    blocks = H.hook(m, A.SITE_WMARK_FAIL, normal, nr_free_accepted=0, receipt=r)
    assert len(blocks) >= 1 and r[Receipt.GLOBAL_LOCK_WAIT_NS] == 0 and r[Receipt.ACCEPTING_SPIN_NS] == 0
    assert all(H.check_accepted(st, int(p), 10) for p in blocks)
    # NR_FREE_PAGES - NR_UNACCEPTED: what the engine's buddy holds is accepted memory only
    assert H.watermark_unusable_extra(st, m.pv, normal) == st.z_nr_unaccepted[normal]


def test_boot_cost_ordering_16g():
    lay_b = B.boot_accept_cost
    from replay.model.layout_x86 import layout_for_guest

    lay = layout_for_guest(16 * GiB, 4)
    cost = {n: lay_b(p, TDX, 16 * GiB, 4, layout=lay).wall_ns for n, p in PRESETS.items()}
    assert cost["none"] == 0
    assert cost["list-promo"] < cost["kernel-eager"] < cost["firmware-eager"]
    assert cost["v1-buddy-global-lock"] == cost["post-alloc"] <= cost["list-promo"]
    # kernel-eager parallelises (4 threads); the firmware accepts on one
    ke = lay_b(PRESETS["kernel-eager"], TDX, 16 * GiB, 4, layout=lay)
    assert ke.threads == 4 and ke.cpu_ns > ke.wall_ns
    # the early-boot storm: watermarks zero, one 4 MiB block per allocation (dstack PR #1220)
    early = lay_b(PRESETS["list-promo"], TDX, 16 * GiB, 4, layout=lay, early_boot_blocks=100)
    assert early.parts_ns["early"] == pytest.approx(100 * 2 * U, rel=0.02)
