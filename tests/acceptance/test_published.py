"""The published figures of kernel-notes §3 as tests.

Each cost-preset figure is fitted to one published number (the fit is a function in
replay/acceptance/costs.py, so its arithmetic is visible) and checked against another number it was not
fitted to.  Every test says which number was FITTED and which is CHECKED.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest

import replay.acceptance.boot as B
import replay.acceptance.page_alloc as A
import replay.acceptance.unaccepted_memory as U
from replay.acceptance.boot import boot_accept_cost
from replay.acceptance.costs import (COST_PRESETS, PUBLISHED, GiB, MiB, accept_range_cost, cost_vector,
                                     fit_snp_host_4k_ns, fit_tdx_exit_4k_ns, unit_accept_cost)
from replay.acceptance.policies import PRESETS, policy_vector
from replay.acceptance.unaccepted_memory import Receipt
from replay.model.layout_x86 import layout_for_guest

TDX4K, TDX2M = COST_PRESETS["tdx-4k"], COST_PRESETS["tdx-2m"]
SNP4K, SNP2M = COST_PRESETS["snp-4k"], COST_PRESETS["snp-2m"]
EAGER, PROMO = PRESETS["kernel-eager"], PRESETS["list-promo"]


@pytest.fixture(scope="module")
def guest90():
    return layout_for_guest(90 * GiB, 1)


@functools.lru_cache(maxsize=None)
def _eager_90g(vcpus: int) -> float:
    lay = layout_for_guest(90 * GiB, 1)
    return boot_accept_cost(EAGER, TDX4K, 90 * GiB, vcpus, layout=lay, firmware_accepted_bytes=0).seconds


def eager_90g(layout, vcpus: int) -> float:
    """Seconds for kernel-eager to accept the whole 90 GiB guest (no firmware pre-accept)."""
    return _eager_90g(vcpus)


# ------------------------------------------------------------------ TDX, 4K-backed host
def test_tdx_fit_single_vcpu_60s(guest90):
    """FITTED: tdx-4k ``tdx_exit_4k_ns`` to "about a minute to accept 90GiB" on 1 vCPU (Kirill 2024).

    This test only confirms the fit goes through the whole model (bitmap, guard units, memblock,
    stub pieces) and still gives 60 s; it is not a check."""
    assert TDX4K.tdx_exit_4k_ns == pytest.approx(
        fit_tdx_exit_4k_ns(TDX4K.cpu_ghz, TDX4K.tdcall_cycles, TDX4K.tdx_fail_cycles, TDX4K.zero_gib_s), abs=0.1)
    b = boot_accept_cost(EAGER, TDX4K, 90 * GiB, 1, layout=guest90, firmware_accepted_bytes=0)
    assert b.accepted_bytes == pytest.approx(90 * GiB, rel=0.001)
    assert b.seconds == pytest.approx(60.0, rel=0.01)


def test_tdx_four_vcpus_40s_and_no_gain_past_that(guest90):
    """FITTED: ``accept_ceiling_gib_s`` = 90 GiB / 40 s ("40 seconds with 4 vCPU").
    CHECKED: "it doesn't scale past that" (8, 16, 64 vCPUs stay at ~40 s: the roofline binds),
    and "it improves a bit with number of vCPUs" (never worse with more vCPUs)."""
    t1, t4 = eager_90g(guest90, 1), eager_90g(guest90, 4)
    assert t4 == pytest.approx(40.0, rel=0.05)
    prev = t1
    for n in (2, 4, 8, 16, 64):
        t = eager_90g(guest90, n)
        assert t <= prev + 1e-6
        prev = t
    for n in (8, 16, 64):
        assert eager_90g(guest90, n) == pytest.approx(t4, rel=0.01)
    b = boot_accept_cost(EAGER, TDX4K, 90 * GiB, 64, layout=guest90, firmware_accepted_bytes=0)
    assert b.bound == "ceiling"


def test_tdx_per_page_cost_matches_the_derived_rows():
    """CHECKED (against kernel-notes §3 "derived" row, itself arithmetic on the 60 s figure):
    ~2.5 us per 4K accept, ~1.3 ms per 2 MiB, ~2.6 ms per 4 MiB block, ~0.67 s per GiB."""
    assert TDX4K.tdx_accept_4k_ns == pytest.approx(2500, rel=0.05)
    assert unit_accept_cost(TDX4K).ns == pytest.approx(1.3e6, rel=0.05)
    assert accept_range_cost(TDX4K, 4 * GiB, 4 * MiB).ns == pytest.approx(2.6e6, rel=0.05)
    assert accept_range_cost(TDX4K, 4 * GiB, 1 * GiB).ns / 1e9 == pytest.approx(0.67, rel=0.05)


def test_tdx_calls_per_block_match_dstack():
    """CHECKED (not fitted): dstack PR #1220 "1024 TD exits plus TDH.MEM.PAGE.AUG per allocation"
    for one MAX_ORDER accept on a 4K-only host: a FIFO block whose first unit was the previous
    block's guard is one accept_memory() run of 2 units -> 1024 successful 4K TDCALLs (each a TD
    exit); the 2 failed 2M attempts return without an exit."""

    st = U.new_accept_state([(0, 8192)], [(0, 0, 0, 0)], unaccepted=[(0, 8192)], unit_pages=512)
    cv, pv = cost_vector(TDX4K), policy_vector(PROMO)
    B.boot_free_memory(st, cv, pv, [(0, 8192)], U.new_receipt(), mode=B.BOOT_LIST)
    out = __import__("numpy").zeros(8, dtype="int64")
    first = U.new_receipt()
    A.acceptance_hook(st, cv, pv, A.SITE_ZONE_VISIT, 0, 0, 0, 0, 0, out, first)  # wmarks 0: one block
    second = U.new_receipt()
    A.acceptance_hook(st, cv, pv, A.SITE_ZONE_VISIT, 0, 0, 0, 0, 0, out, second)
    k4, kf = Receipt.CALLS + 0, Receipt.CALLS + 2
    assert first[k4] == 1536  # the very first block also pays its guard unit
    assert second[k4] == PUBLISHED["dstack_2026"]["td_exits_per_block"]
    assert second[kf] == 2


def test_tdx_2m_backing_cuts_tdcalls_by_512():
    """CHECKED: Kirill Oct 2024 "Bringing 2M support would cut number of TDCALLs by 512"."""
    c4, c2 = unit_accept_cost(TDX4K).firmware_calls, unit_accept_cost(TDX2M).firmware_calls
    assert c2 == 1
    assert c4 / c2 == pytest.approx(512, rel=0.005)  # 513: 512 4K accepts + the failed 2M try


# ------------------------------------------------------------------ SNP, 4K-backed host
def test_snp_128g_kernel_eager_vs_list_promo_205s():
    """FITTED: snp-4k ``psc_host_4k_ns`` to AMD's 128 GB guest, eager 227 s vs lazy 22 s, read as
    ~124 GB accepted in 205 s by one stream (fit_snp_host_4k_ns; eviction off: the measurement
    predates 7b306dfa326f).
    CHECKED (within 25%): the model's boot-time difference kernel-eager - list-promo on a 128 GiB
    guest, computed through the bitmap and lists: the firmware accepts below 4 GiB in both, the
    memmap / memblock is accepted in both, guard units, PSC batches, failed 2M PVALIDATEs and
    list-promo's fill to the promo watermark.  kernel-notes §3 has no second SNP number, so
    this checks the model's bookkeeping against the figure the per-page cost came from, not an
    independent measurement (the TDX tests above are the independent checks)."""
    snp = dataclasses.replace(SNP4K, evict_cache=False)
    assert SNP4K.psc_host_4k_ns == pytest.approx(fit_snp_host_4k_ns(
        SNP4K.cpu_ghz, SNP4K.psc_vmgexit_ns, SNP4K.pvalidate_4k_cycles, SNP4K.pvalidate_fail_cycles,
        SNP4K.zero_gib_s), abs=0.1)
    lay = layout_for_guest(128 * GiB, 1)
    eager = boot_accept_cost(EAGER, snp, 128 * GiB, 1, layout=lay)
    promo = boot_accept_cost(PROMO, snp, 128 * GiB, 1, layout=lay)
    delta = eager.seconds - promo.seconds
    assert delta == pytest.approx(PUBLISHED["snp_eager_128g"]["delta_s"], rel=0.25)
    # list-promo's own boot acceptance is seconds, not minutes
    assert promo.seconds < 0.1 * eager.seconds
    # and with the 6.16 cache-line eviction on, eager gets slower, not faster
    assert boot_accept_cost(EAGER, SNP4K, 128 * GiB, 1, layout=lay).seconds > eager.seconds


def test_snp_2m_is_much_cheaper_than_4k():
    """CHECKED (qualitative, Tom Lendacky edk2 PR #12774): on a 4K RMP "that PVALIDATE will turn
    into 512 PVALIDATE calls"; on a 2M RMP one PVALIDATE per 2 MiB."""
    u4, u2 = unit_accept_cost(SNP4K), unit_accept_cost(SNP2M)
    assert u4.calls["snp_pvalidate_4k"] == 512 and u4.calls["snp_pvalidate_fail"] == 1
    assert u2.calls == {"snp_psc_vmgexit": 1, "snp_pvalidate_2m": 1, "snp_evict_4k": 512}
    assert u2.ns < u4.ns / 4


# ------------------------------------------------------------------ the 2021 review
def test_hansen_2021_512_calls_of_1000_cycles():
    """REPRODUCED: Dave Hansen's estimate "at least 512 calls into the SEAM module [...] ~1,000
    cycles each, that's ~500,000 cycles, even if we ignore the actual time it takes to zero".
    ``tdcall_cycles`` IS that estimate (source: estimate), so the call count is the check: the
    "per-4k" calls model gives 512 calls per 2 MiB on any backing, the merged code on a 4K host
    gives 512 + 1 (the failed 2M try); the full per-unit cost (exits, zeroing) is far above the
    500,000-cycle lower bound, which is the review's point."""
    pub = PUBLISHED["hansen_2021"]
    for c in (TDX4K, TDX2M):
        u = unit_accept_cost(c, calls_model="per-4k")
        assert u.firmware_calls == pub["calls_per_2m"]
        call_cycles = u.firmware_calls * c.tdcall_cycles
        assert call_cycles == pytest.approx(pub["cycles_per_2m"], rel=0.05)
    merged = unit_accept_cost(TDX4K)
    assert merged.firmware_calls >= pub["calls_per_2m"]
    assert merged.cycles(TDX4K.cpu_ghz) > pub["cycles_per_2m"]


def test_kirill_2021_two_calls_per_2m_three_per_4m():
    """REPRODUCED: "2 calls per 2M: one MapGPA and one TDACCEPTPAGE (or 3 for MAXORDER -- 4M --
    pages)": calls model "mapgpa+accept" on a 2M-backed host, v1 policy (no guard unit then)."""

    pub = PUBLISHED["kirill_2021"]
    assert accept_range_cost(TDX2M, 4 * GiB, 2 * MiB, "mapgpa+accept").firmware_calls == pub["calls_per_2m"]
    assert accept_range_cost(TDX2M, 4 * GiB, 4 * MiB, "mapgpa+accept").firmware_calls == pub["calls_per_4m"]
    pol = PRESETS["v1-buddy-global-lock"].replace(calls_model="mapgpa+accept")
    st = U.new_accept_state([(0, 8192)], None, unaccepted=[(0, 8192)], unit_pages=512)
    cv, pv = cost_vector(TDX2M), policy_vector(pol)
    out = __import__("numpy").zeros(4, dtype="int64")
    r = U.new_receipt()
    A.acceptance_hook(st, cv, pv, A.SITE_BUDDY_DEL, 0, 0, 10, 0, 0, out, r)  # a MAX_ORDER block
    assert U.firmware_calls(r) == pub["calls_per_4m"]
    r = U.new_receipt()
    A.acceptance_hook(st, cv, pv, A.SITE_BUDDY_DEL, 0, 2048, 9, 0, 0, out, r)  # one 2M pageblock
    assert U.firmware_calls(r) == pub["calls_per_2m"]
    # what the merged code does instead on a 2M host: TDG.MEM.PAGE.ACCEPT only, 1 per 2M
    assert unit_accept_cost(TDX2M).firmware_calls == 1
