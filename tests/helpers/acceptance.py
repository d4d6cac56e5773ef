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
from replay.acceptance.unaccepted_memory import AcceptGeo, AcceptState, Receipt, firmware_calls, new_receipt


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
         unusable: int = 0, now: int = 0, receipt: np.ndarray | None = None) -> np.ndarray:
    """:func:`acceptance_hook` on an ``AcceptanceModel``; returns the pfns of blocks to free into the buddy."""
    r = receipt if receipt is not None else new_receipt()
    n = acceptance_hook(model.st, model.cv, model.pv, site, z, pfn, order, nr_free_accepted, unusable, now,
                        model.out_pfns, r)
    return model.out_pfns[:n].copy()
