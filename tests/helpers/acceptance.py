"""Oracles and shorthands for the acceptance tests.

The oracles read the acceptance state directly (``bitmap``, ``blk_state``) and are written apart
from the model's own range arithmetic, so a slip in one does not hide in the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.acceptance.costs import CALL_KIND_NAMES
from replay.acceptance.page_alloc import BlockState, acceptance_hook
from replay.acceptance.policies import PV_UNUSABLE
from replay.acceptance.unaccepted_memory import AcceptGeo, AcceptScal, AcceptState, Receipt, firmware_calls, new_receipt


def check_accepted(st: AcceptState, pfn: int, order: int) -> bool:
    """No unaccepted page is handed out: every unit under ``[pfn, pfn + 2**order)`` is accepted
    (the block itself, no guard unit)."""
    geo = st.geo
    if geo[AcceptGeo.HAS_TABLE] == 0:
        return True
    base, unit = int(geo[AcceptGeo.PHYS_BASE]), int(geo[AcceptGeo.UNIT_PAGES])
    lo = max(pfn, base) - base
    hi = min(pfn + (1 << order), base + int(geo[AcceptGeo.NR_UNITS]) * unit) - base
    if hi <= lo:
        return True
    return not st.bitmap[lo // unit: -(-hi // unit)].any()


def block_listed(st: AcceptState, pfn: int) -> bool:
    """The MAX_PAGE_ORDER block containing ``pfn`` is on ``zone->unaccepted_pages`` (not in the buddy)."""
    b = (pfn - int(st.geo[AcceptGeo.PFN_BASE])) >> int(st.geo[AcceptGeo.BLOCK_ORDER])
    return 0 <= b < int(st.geo[AcceptGeo.NR_BLOCKS]) and st.blk_state[b] == BlockState.LISTED


def watermark_unusable_extra(st: AcceptState, pv: np.ndarray, z: int) -> int:
    """Pages a policy adds to ``__zone_watermark_unusable_free()``: NR_UNACCEPTED in 6.5-6.10."""
    return int(st.z_nr_unaccepted[z]) if pv[PV_UNUSABLE] != 0 else 0


def receipt_summary(r: np.ndarray) -> dict[str, float]:
    """A receipt (or ``st.totals``) under the per-policy summary keys."""
    return {
        "firmware_calls": firmware_calls(r),
        "firmware_ns": float(r[Receipt.FW_NS]),
        "accept_zone_lock_hold_ns": float(r[Receipt.ZONE_LOCK_HOLD_NS]),
        "accept_lock_hold_ns": float(r[Receipt.GLOBAL_LOCK_HOLD_NS]),
        "accept_lock_wait_ns": float(r[Receipt.GLOBAL_LOCK_WAIT_NS]),
        "accepting_spin_ns": float(r[Receipt.ACCEPTING_SPIN_NS]),
        "irqs_off_max_ns": float(r[Receipt.IRQS_OFF_MAX_NS]),
        "accepted_bytes": float(r[Receipt.BYTES]),
        "accepted_blocks": float(r[Receipt.BLOCKS]),
        "added_ns": float(r[Receipt.ADDED_NS]),
        **{k: float(r[Receipt.CALLS + i]) for i, k in enumerate(CALL_KIND_NAMES)},
    }


def hook(model: Any, site: int, z: int, pfn: int = 0, order: int = 0, nr_free_accepted: int = 0,
         unusable: int = 0, receipt: np.ndarray | None = None) -> np.ndarray:
    """:func:`acceptance_hook` on an ``AcceptanceModel``; returns the pfns of blocks to free into the buddy."""
    r = receipt if receipt is not None else new_receipt()
    model.st.scal[AcceptScal.STEPS_N] = 0
    n = acceptance_hook(model.st, model.cv, model.pv, site, z, pfn, order, nr_free_accepted, unusable,
                        model.out_pfns, r)
    return model.out_pfns[:n].copy()


def take_steps(st: AcceptState) -> np.ndarray:
    """The program steps the calls since the last ``take_steps`` appended (and forget them)."""
    n = int(st.scal[AcceptScal.STEPS_N])
    st.scal[AcceptScal.STEPS_N] = 0
    return st.steps[:n].copy()


def race(programs: list[tuple[int, int, np.ndarray]], n_zones: int = 1) -> dict[str, np.ndarray]:
    """Programs ``(cpu, start ns, steps)``, one per CPU, run against each other by the lock
    schedule (``replay.model.locks``); per program: its start, the ns it added to its CPU,
    its global-lock wait, accepting_list spin and collisions, zone->lock wait."""
    from replay.model.locks import BK_RANGE, IT_PROGRAM, Items, Steps, run_schedule
    from replay.acceptance.unaccepted_memory import LOCK_UNACCEPTED_MEMORY
    from replay.model.locks import OP_ACQ, OP_REL

    programs = sorted(programs)
    steps = []
    for _, _, s in programs:
        s = s.copy()
        lk = (s[:, 0] == OP_ACQ) | (s[:, 0] == OP_REL)
        s[lk, 1] = np.where(s[lk, 1] == LOCK_UNACCEPTED_MEMORY, n_zones, s[lk, 1])
        steps.append(s)
    lens = np.array([len(s) for s in steps], np.int64)
    s1 = np.cumsum(lens)
    allsteps = np.concatenate(steps)
    cpus = np.array([c for c, _, _ in programs], np.int64)
    n = len(programs)
    it = Items(cpu=cpus, k=np.arange(n, dtype=np.int64), ts=np.array([t for _, t, _ in programs], np.int64),
               kind=np.full(n, IT_PROGRAM, np.int8), sec=np.full(n, -1, np.int64), lock=np.full(n, -1, np.int64),
               hold=np.zeros(n, np.int64), s0=s1 - lens, s1=s1,
               cpu_start=np.searchsorted(cpus, np.arange(int(cpus.max()) + 2)).astype(np.int64))
    sp = Steps(*(allsteps[:, i].copy() for i in range(4)))
    sc, waiting = run_schedule(it, sp, 0, n_zones + 1)
    assert waiting == 0
    nr = int(sc.lr_n[0])
    item, lock, wait, bkind = sc.lr_item[:nr], sc.lr_lock[:nr], sc.lr_wait[:nr], sc.lr_bkind[:nr]

    def per(sel: np.ndarray) -> np.ndarray:
        return np.bincount(item[sel], weights=wait[sel], minlength=n)
    return {"start": sc.it_start[:n], "added": sc.it_added[:n], "global_wait": per(lock == n_zones),
            "spin": per(bkind == BK_RANGE), "collisions": np.bincount(item[bkind == BK_RANGE], minlength=n),
            "zone_wait": per((lock >= 0) & (lock < n_zones))}
