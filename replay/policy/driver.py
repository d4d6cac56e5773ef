"""The Python side of a policy replay: the acceptance round trips at the kernel's call sites.

The compiled walk (``policy.loop.policy_chunk`` or ``policy.delta.delta_chunk``) stops at each
event where the policy acts and says how (``ACT_*``); ``AcceptanceDriver.handle`` then runs the
acceptance path the kernel would (``replay.acceptance``: ``acceptance_hook`` at
``SITE_ZONE_VISIT`` / ``SITE_WMARK_FAIL`` / ``SITE_BUDDY_DEL`` / ``SITE_POST_ALLOC``,
``accept_page`` for a forced placement, ``background_accept`` for the acceptor thread), frees the
accepted blocks to the buddy (``__free_pages_ok(MAX_PAGE_ORDER, FPI_TO_TAIL)``: a zone->lock
section) and records the receipt against the event and its CPU, and the program of lock steps it
made its CPU run (``policy.timeline`` schedules it).  ``reconcile`` first makes the acceptance
state agree with the trace's initial buddy state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from replay.acceptance.page_alloc import (SITE_BUDDY_DEL, SITE_POST_ALLOC, SITE_WMARK_FAIL, SITE_ZONE_VISIT, BlockState,
                                          accept_page, acceptance_hook, background_accept, unaccepted_list_del,
                                          unaccepted_pages_of)
from replay.acceptance.unaccepted_memory import PAGE_SIZE, AcceptGeo, AcceptScal, AcceptState, Receipt, new_receipt
from replay.acceptance.policies import PV_HELD, AcceptancePolicy
from replay.model.state import ModelState
from replay.policy.delta import count_blocks_to_tail, take_top_blocks
from replay.policy.timeline import PH_AFTER, PH_BEFORE, PH_INSIDE, Program
from replay.policy.loop import (ACT_BG, ACT_FORCED, ACT_POST, ACT_VISIT, BG_TICK_NS, INT64_MAX, PP_LEN, PP_LISTS,
                                PP_ONE_BLOCK, PP_SIM, PP_TARGET, PP_TRIGGER, PP_UNUSABLE, clear_units_in_use,
                                free_blocks_to_tail, mark_free_pages, zone_needs_accept)

#: triggers that keep MAX_PAGE_ORDER blocks on ``zone->unaccepted_pages``
LIST_TRIGGERS = ("watermark_fail", "every_zone_visit", "background")


def policy_params(policy: AcceptancePolicy, pv: np.ndarray, mode: str) -> np.ndarray:
    """The walk's view of the policy (``policy.loop.PP_*`` slots)."""
    from replay.acceptance.policies import PV_ONE_BLOCK_ZERO, PV_TARGET, PV_TRIGGER, PV_UNUSABLE

    pp = np.zeros(PP_LEN, np.int64)
    pp[PP_TRIGGER] = pv[PV_TRIGGER]
    pp[PP_ONE_BLOCK] = pv[PV_ONE_BLOCK_ZERO]
    pp[PP_UNUSABLE] = pv[PV_UNUSABLE]
    pp[PP_TARGET] = pv[PV_TARGET]
    pp[PP_LISTS] = int(policy.trigger in LIST_TRIGGERS)
    pp[PP_SIM] = int(mode == "simulate")
    return pp


def reconcile(st: ModelState, acc: AcceptState, *, counters_only: bool = False,
              free_pages: Callable[[], np.ndarray] | None = None) -> None:
    """Make the acceptance state agree with the trace's initial buddy state.

    A block listed on ``zone->unaccepted_pages`` leaves the buddy (``__free_unaccepted`` never
    puts it there) if it is wholly free at the start; a block or unit the trace finds in use
    before it starts was accepted before it (silently, no cost charged).  ``counters_only``:
    ``st`` shares the initial buddy state with other runs and only its ``z_nr_free`` is private:
    a listed block that is a whole free block there leaves the free counter, not the lists
    (``replay.policy.delta``); ``free_pages()`` then marks the initial state's free pages."""
    bo = int(acc.geo[AcceptGeo.BLOCK_ORDER])
    bpages = 1 << bo
    unit = int(acc.geo[AcceptGeo.UNIT_PAGES])
    phys = int(acc.geo[AcceptGeo.PHYS_BASE])
    nu = int(acc.geo[AcceptGeo.NR_UNITS])
    for az in range(int(acc.geo[AcceptGeo.NR_ZONES])):
        pfns = unaccepted_pages_of(acc, az)
        ok = np.zeros(len(pfns), np.bool_)
        take_top_blocks(st, pfns, bo, counters_only, ok)
        for pfn in pfns[~ok].tolist():
            b = (int(pfn) - int(acc.geo[AcceptGeo.PFN_BASE])) >> bo
            unaccepted_list_del(acc, az, b)
            acc.blk_state[b] = BlockState.RELEASED
            acc.z_nr_unaccepted[az] -= bpages
            acc.z_released_pages[az] += bpages
            u0 = max(0, (int(pfn) - phys) // unit)
            u1 = min(nu, -(-(int(pfn) + bpages - phys) // unit))
            if u1 > u0:
                acc.bitmap[u0:u1] = 0
    if nu == 0 or not acc.bitmap.any():
        return
    # units still unaccepted must be wholly free (buddy) or inside a listed block
    if counters_only and free_pages is not None:  # the page arrays are the initial state's, unchanged
        ok = free_pages()
    else:
        ok = np.zeros(len(st.pg_state), np.uint8)
        mark_free_pages(st, ok)
    listed = (acc.blk_state == BlockState.LISTED).view(np.uint8)
    clear_units_in_use(acc.bitmap, ok, listed, int(acc.geo[AcceptGeo.PFN_BASE]), bo, phys, unit, int(st.geo[0]))


def add_receipt(tot: np.ndarray, r: np.ndarray) -> None:
    """``tot`` += ``r``, the IRQs-off maximum as a maximum."""
    m = tot[Receipt.IRQS_OFF_MAX_NS]
    tot += r
    tot[Receipt.IRQS_OFF_MAX_NS] = max(m, r[Receipt.IRQS_OFF_MAX_NS])


class AcceptanceDriver:
    """One policy's acceptance state and the record of what it did, for one walk over the events.

    ``delta``: the walk shares the initial buddy state (``policy.delta``): accepted blocks only
    count into the free counters.  ``next_bg``: the background acceptor's next tick (written here).
    An action is recorded at its event's trace time; the schedule (``timeline.apply_to_actions``)
    puts each one with a program at its virtual time.
    """

    def __init__(self, prep: Any, policy: AcceptancePolicy, model: Any, st: ModelState, pp: np.ndarray,
                 next_bg: np.ndarray, *, delta: bool) -> None:
        self.prep, self.policy, self.st, self.pp = prep, policy, st, pp
        self.acc, self.cv, self.pv = model.st, model.cv, model.pv
        self.out_pfns = model.out_pfns
        self.next_bg, self.delta = next_bg, delta
        self.bo = int(self.acc.geo[AcceptGeo.BLOCK_ORDER])
        unit_bytes = int(self.acc.geo[AcceptGeo.UNIT_PAGES]) * PAGE_SIZE
        self.unaccepted = int(self.acc.bitmap.sum()) * unit_bytes if self.acc.geo[AcceptGeo.HAS_TABLE] else 0
        self.handled: set[int] = set()
        # per handled event (a few among millions: n-long arrays written here and there would cost
        # a page fault, and a TLB-flushing copy-on-write one after a read, per 4 KiB touched)
        self.firmware: dict[int, int] = {}
        self.accepted: dict[int, int] = {}
        self.forced: dict[int, int] = {}
        self.unacc_log_t: list[int] = []
        self.unacc_log_v: list[int] = []
        self.actions: list[dict[str, Any]] = []
        self.totals = new_receipt()
        self.ncpu = int(st.pcp_count.shape[0])
        self.free_hold = int(round(prep.cal.drain_base_ns + prep.cal.drain_per_block_ns))
        self.acc.scal[AcceptScal.FREE_HOLD_NS] = self.free_hold
        #: what each round trip made its CPU do (``policy.timeline`` schedules it)
        self.programs: list[Program] = []
        trig = policy.trigger
        self.site_visit = SITE_WMARK_FAIL if trig == "watermark_fail" else SITE_ZONE_VISIT
        self.site_post = SITE_BUDDY_DEL if trig == "on_buddy_alloc" else SITE_POST_ALLOC
        if trig == "background" and self.acc.ul_len.sum() > 0:
            ts = prep.events.ts
            next_bg[0] = max(int(ts[0]) if len(ts) else 0, int(policy.background_start_ns))

    # ---- the blocks accepted: into the buddy
    def free_blocks(self, cnt: int) -> int:
        """``__free_pages_ok`` of the ``cnt`` blocks in ``out_pfns``; the zone of the first (-1: none)."""
        if cnt <= 0:
            return -1
        st = self.st
        (count_blocks_to_tail if self.delta else free_blocks_to_tail)(st, self.out_pfns, cnt, self.bo)
        i = int(self.out_pfns[0]) - int(st.geo[0])
        for z in range(len(self.prep.zone_names)):
            if st.z_start[z] <= i < st.z_end[z]:
                return z
        return -1

    # ---- one round trip
    def handle(self, k: int, act: int, z: int, out_pfn: np.ndarray) -> None:
        """Run the acceptance the walk stopped for at event ``k`` (``act`` in zone ``z``)."""
        self.handled.add(k)
        ea = self.prep.events
        c = int(ea.cpu[k])
        now = int(ea.ts[k])
        r = new_receipt()
        acc = self.acc
        acc.scal[AcceptScal.STEPS_N] = 0
        if act == ACT_BG:
            kind, nblocks, zone = self._background(k, r)
        elif act == ACT_VISIT:
            kind, nblocks, zone = self._visit(k, z, r)
        elif act == ACT_FORCED:
            kind, nblocks, zone = self._forced(k, z, r)
        else:
            assert act == ACT_POST
            kind, nblocks, zone = self._post(k, z, r, out_pfn)
        if acc.scal[AcceptScal.STEPS_LOST]:
            raise RuntimeError(f"event {k}: one acceptance round trip took more than {len(acc.steps)} lock steps")
        n = int(acc.scal[AcceptScal.STEPS_N])
        prog = -1
        if n:
            prog = len(self.programs)
            phase = PH_BEFORE if act != ACT_POST else (PH_INSIDE if kind == "buddy_del" else PH_AFTER)
            self.programs.append(Program(k, self.ncpu if act == ACT_BG else c, phase, acc.steps[:n].copy()))
        self._charge(k, c, act == ACT_BG, kind, nblocks, zone, now, r, prog)

    def _background(self, k: int, r: np.ndarray) -> tuple[str, int, int]:
        t = int(self.prep.events.ts[k])
        cnt = background_accept(self.acc, self.cv, self.pv, t, self.out_pfns, r)
        zone = self.free_blocks(cnt)
        self.next_bg[0] = t + BG_TICK_NS if self.acc.ul_len.sum() > 0 else INT64_MAX
        return "background", cnt, zone

    def _visit(self, k: int, z: int, r: np.ndarray) -> tuple[str, int, int]:
        """``cond_accept_memory`` / ``try_to_accept_memory`` at the zones ``get_page_from_freelist``
        visits (exact mode: the trace's zone; simulate: the zonelist walk from ``z`` on)."""
        prep, st, ea = self.prep, self.st, self.prep.events
        kind = "zone_visit" if self.site_visit == SITE_ZONE_VISIT else "watermark_fail"
        p, o = int(ea.pfn[k]), int(ea.order[k])
        zones = [z]
        if prep.mode == "simulate":  # the rest of get_page_from_freelist()'s walk after zone z
            from replay.model.simulate import gfp_zone_limit, zonelist_zone

            limit = gfp_zone_limit(int(ea.gfp[k]))
            walk = [zz for zz in (zonelist_zone(prep.zonelist.zkind, limit, j) for j in range(len(prep.zone_names)))
                    if zz >= 0]
            zones = walk[walk.index(z):] if z in walk else [z]
        nblocks, zone = 0, z
        for zz in zones:
            if zone_needs_accept(st, self.acc, self.pp, prep.zmap, zz, o):
                cnt = acceptance_hook(self.acc, self.cv, self.pv, self.site_visit, int(prep.zmap[zz]), p, o,
                                        int(st.z_nr_free[zz]), (1 << o) - 1, self.out_pfns, r)
                if cnt > 0:
                    self.free_blocks(cnt)
                    nblocks += cnt
                    zone = zz
            if prep.mode != "simulate" or st.z_nr_free[zz] - (1 << o) >= prep.zonelist.wmark_low[zz]:
                break
        return kind, nblocks, zone

    def _forced(self, k: int, z: int, r: np.ndarray) -> tuple[str, int, int]:
        """Exact mode: the trace allocates from a block still listed: ``accept_page`` it there."""
        pfn_b, add = accept_page(self.acc, self.cv, self.pv, int(self.prep.events.pfn[k]), r)
        r[Receipt.ADDED_NS] += add
        if pfn_b < 0:
            return "forced", 0, z
        self.out_pfns[0] = pfn_b
        self.forced[k] = 1
        return "forced", 1, self.free_blocks(1)

    def _post(self, k: int, z: int, r: np.ndarray, out_pfn: np.ndarray) -> tuple[str, int, int]:
        """v1's ``del_page_from_free_list`` / v2-v7's ``post_alloc_hook`` acceptance of the block handed out."""
        ea = self.prep.events
        q = int(out_pfn[k]) if self.prep.mode == "simulate" else int(ea.pfn[k])
        site = self.site_post
        kind = "buddy_del" if site == SITE_BUDDY_DEL else "post_alloc"
        acceptance_hook(self.acc, self.cv, self.pv, site, int(self.prep.zmap[z]) if z >= 0 else 0, q,
                          int(ea.order[k]), 0, 0, self.out_pfns, r)
        return kind, 0, z

    def _charge(self, k: int, c: int, bg: bool, kind: str, nblocks: int, zone: int, now: int, r: np.ndarray,
                prog: int) -> None:
        """Record receipt ``r`` against event ``k`` (its firmware time and bytes accepted, for the
        events table) and in the totals."""
        add_receipt(self.totals, r)
        if not bg:
            self.firmware[k] = self.firmware.get(k, 0) + int(round(r[Receipt.FW_NS]))
            self.accepted[k] = self.accepted.get(k, 0) + int(r[Receipt.BYTES])
        self.unaccepted -= int(r[Receipt.BYTES])
        self.unacc_log_t.append(int(self.prep.events.ts[k]))
        self.unacc_log_v.append(self.unaccepted)
        if r[Receipt.BYTES] > 0 or r[Receipt.GLOBAL_LOCK_SECTIONS] > 0 or nblocks > 0:
            self.actions.append({"k": k, "cpu": -1 if bg else c, "vts": now, "kind": kind, "receipt": r,
                                 "blocks": nblocks, "zone": zone, "held": int(self.pv[PV_HELD]), "program": prog})

    # ---- at the end
    def unaccepted_series(self, edges: np.ndarray) -> np.ndarray:
        """Bytes still unaccepted at each bucket start (the value after the last action before it)."""
        if not self.unacc_log_t:
            return np.full(len(edges), self.unaccepted, np.int64)
        idx = np.searchsorted(np.asarray(self.unacc_log_t, np.int64), edges, side="left") - 1
        vals = np.asarray(self.unacc_log_v, np.int64)
        init = self.unaccepted + int(sum(a["receipt"][Receipt.BYTES] for a in self.actions))  # before the first
        return np.where(idx >= 0, vals[np.maximum(idx, 0)], init).astype(np.int64)

    def handled_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(handled events sorted, firmware ns, bytes accepted, forced) aligned."""
        hs = sorted(self.handled)
        return (np.array(hs, np.int64), np.array([self.firmware.get(k, 0) for k in hs], np.int64),
                np.array([self.accepted.get(k, 0) for k in hs], np.int64),
                np.array([self.forced.get(k, 0) for k in hs], np.int8))
