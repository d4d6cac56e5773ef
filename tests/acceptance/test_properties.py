"""Hypothesis properties of the acceptance model, over every preset policy.

* acceptance conserves memory: bitmap-unaccepted bytes + bytes accepted so far = the bytes that
  were unaccepted after boot, at every step; per zone listed + released = pages handled at boot;
* no block is handed to the buddy before it is accepted (list and eager policies), nor before
  the page after it is (guard unit), and v1 / post-alloc never hand out a block whose units are
  unaccepted;
* ``none`` costs nothing, whatever happens.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st_

import replay.acceptance.boot as B
import replay.acceptance.page_alloc as A
import replay.acceptance.unaccepted_memory as U
import tests.helpers.acceptance as H
from replay.acceptance.costs import COST_PRESETS, cost_vector
from replay.acceptance.page_alloc import BlockState
from replay.acceptance.policies import PRESETS, policy_vector
from replay.acceptance.unaccepted_memory import AcceptGeo, Receipt

ZONES = [(0, 4096), (4096, 16384)]  # two zones: 16 MiB + 48 MiB
WMARKS = [(64, 128, 256, 512), (256, 512, 1024, 2048)]
UNIT = 512

ops = st_.lists(
    st_.tuples(
        st_.integers(0, len(A.SITE_NAMES) - 1),  # site
        st_.integers(0, 1),  # zone
        st_.integers(0, 16383),  # pfn
        st_.integers(0, 10),  # order
        st_.integers(0, 6000),  # free accepted pages
        st_.integers(0, 3),  # 0..2 plain, 3 = toggle watermarks ready
        st_.integers(0, 10**7),  # time step
    ),
    max_size=40,
)


def build(name, unit_pages=UNIT, costs="tdx-4k"):
    pol = PRESETS[name].replace(unit_bytes=unit_pages * 4096)
    st = U.new_accept_state(ZONES, WMARKS, unaccepted=[(2048, 16384)], unit_pages=unit_pages,
                            block_order=10, has_table=pol.has_unaccepted_table)
    cv, pv = cost_vector(COST_PRESETS[costs]), policy_vector(pol)
    boot = U.new_receipt()
    B.boot_free_memory(st, cv, pv, [(0, 16384)], boot, mode=B.boot_mode(pol))
    return pol, st, cv, pv


def released_blocks_accepted(st, guard: bool) -> bool:
    """Every block in the buddy is accepted; with the guard, so is the page right after it (a
    load_unaligned_zeropad() from the block's last page never reaches unaccepted memory)."""
    bpages = 1 << int(st.geo[AcceptGeo.BLOCK_ORDER])
    for b in np.flatnonzero(st.blk_state == BlockState.RELEASED):
        pfn = int(st.geo[AcceptGeo.PFN_BASE]) + int(b) * bpages
        if not H.check_accepted(st, pfn, 10):
            return False
        if guard and not H.check_accepted(st, pfn + bpages, 0):
            return False
    return True


def run(name, seq, unit_pages=UNIT, costs="tdx-4k"):
    pol, st, cv, pv = build(name, unit_pages, costs)
    start_unaccepted = U.unaccepted_bytes(st)
    accepted = 0.0
    out = np.zeros(64, dtype=np.int64)
    total = U.new_receipt()
    for site, z, pfn, order, free, flag, _dt in seq:
        if flag == 3:
            A.set_watermarks_ready(st, not bool(st.z_wmark_ready[0]))
            continue
        pfn = pfn - pfn % (1 << order)
        r = U.new_receipt()
        st.scal[U.AcceptScal.STEPS_N] = 0
        n = A.acceptance_hook(st, cv, pv, site, z, pfn, order, free, 0, out, r)
        accepted += r[Receipt.BYTES]
        total += r
        # conservation at every step
        assert U.unaccepted_bytes(st) + accepted == start_unaccepted
        assert A.check_conservation(st)
        # blocks handed to the buddy are accepted (their units, guard excluded)
        for p in out[:n]:
            assert H.check_accepted(st, int(p), 10)
            assert not H.block_listed(st, int(p))
        if site in (A.SITE_BUDDY_DEL, A.SITE_POST_ALLOC) and pol.trigger in ("on_buddy_alloc", "post_alloc") \
                and ((site == A.SITE_BUDDY_DEL) == (pol.trigger == "on_buddy_alloc")):
            assert H.check_accepted(st, pfn, order)  # never handed out unaccepted
        if pol.lists_blocks or pol.trigger == "kernel_boot":
            assert released_blocks_accepted(st, pol.guard_unit)
        assert r[Receipt.FW_NS] >= 0 and r[Receipt.ADDED_NS] >= 0
    return pol, st, total


@settings(max_examples=40, deadline=None)
@given(seq=ops, name=st_.sampled_from(list(PRESETS)))
def test_conservation_and_never_unaccepted(seq, name):
    run(name, seq)


@settings(max_examples=25, deadline=None)
@given(seq=ops, name=st_.sampled_from(["list-6.6", "list-promo", "kernel-eager", "post-alloc"]),
       unit_pages=st_.sampled_from([1, 256, 2048]))
def test_conservation_other_unit_sizes(seq, name, unit_pages):
    """unit_size 4K, 1 MiB and 8 MiB (the 6.6 fix was tested with 128 MiB units to force collisions)."""
    run(name, seq, unit_pages=unit_pages, costs="snp-4k")


@settings(max_examples=40, deadline=None)
@given(seq=ops)
def test_none_costs_nothing(seq):
    pol, st, total = run("none", seq)
    assert total.sum() == 0
    assert st.z_released_pages.sum() == 16384 and st.ul_len.sum() == 0


@settings(max_examples=20, deadline=None)
@given(seq=ops)
def test_firmware_eager_runtime_costs_nothing(seq):
    pol, st, total = run("firmware-eager", seq)
    assert total.sum() == 0


@settings(max_examples=30, deadline=None)
@given(seq=ops, name=st_.sampled_from(["list-6.5", "list-6.6", "list-promo", "background"]))
def test_list_policies_accept_whole_blocks_fifo(seq, name):
    """Blocks leave the list in ascending pfn order per zone (list_add_tail at boot, head taken)."""
    pol, st, cv, pv = build(name)
    firsts = {z: list(A.unaccepted_pages_of(st, z)) for z in range(2)}
    out = np.zeros(64, dtype=np.int64)
    taken = {0: [], 1: []}
    for site, z, pfn, order, free, flag, dt in seq:
        r = U.new_receipt()
        n = A.acceptance_hook(st, cv, pv, site, z, pfn, 0, free, 0, out, r)
        taken[z].extend(int(p) for p in out[:n])
        assert r[Receipt.BLOCKS] == n
    for z in range(2):
        assert taken[z] == firsts[z][:len(taken[z])]
