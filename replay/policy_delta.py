"""Exact mode, policies after the baseline: the acceptance and time model on the baseline's buddy results.

In exact mode the trace places every page, so an acceptance policy changes the buddy model in
two ways only: the MAX_PAGE_ORDER blocks still on ``zone->unaccepted_pages`` are not in it
(``__free_unaccepted`` never put them there), and a block accepted during the trace enters it
at the tail of its free list (``__free_pages_ok(page, MAX_PAGE_ORDER, FPI_TO_TAIL)``).  A listed
block is a whole free top-order block no event has touched yet (an event that allocates from
it forces its acceptance first), it cannot merge with anything (it is already at the top
order), and exact mode never reads the order of a free list: so every event's model result
(anomaly, zone->lock section, zone) is the baseline's, and each zone's ``NR_FREE_PAGES`` is the
baseline's minus the pages still listed there.

The baseline's loop (``engine.exact_chunk`` with a ``dfree`` array) also records, per event, how
``NR_FREE_PAGES`` of the event's zone changed.  ``delta_chunk`` then walks the events under one
policy with the very same call-site checks, driver round trips and time step as
``replay.policy_loop.policy_chunk``, but instead of applying an event to a buddy model it adds
the recorded change to the policy's per-zone free counters.  It returns ``ACT_DIVERGE`` (the
driver falls back to the full replay) when an event touches a still-listed block in a way the
full replay would not force first (a free or a drain of a page the kernel never handed out):
there the two models would part, and the full replay is the reference.  The driver checks the
rest at the end (the counters agree with the baseline's final state minus the listed blocks,
and each still-listed block is a whole free block there).
"""

from __future__ import annotations

import numpy as np

import replay.acceptance as A
from replay.engine import EV_ALLOC, EV_EXTFRAG, EV_ZL, Sections
from replay.policy_loop import (ACT_BG, ACT_DONE, ACT_FORCED, ACT_GROW, ACT_POST, ACT_VISIT, PP_LISTS, PP_NOACT,
                                PP_TRIGGER, STAGE_FRESH, STAGE_VISITED, accepted_block_zone, background_tick, block_is_listed, has_unaccepted,
                                quiet_time_step, take_free_block, time_step, top_block_is_free,
                                zone_needs_accept)
from replay.state import ModelState, kernel, kernel_entry

#: an event the baseline's results cannot stand in for: the driver replays the policy in full
ACT_DIVERGE = 6


@kernel
def listed_pages(acc: A.AcceptState, zmap: np.ndarray) -> int:
    """Pages of the model zones' blocks still on ``zone->unaccepted_pages`` (outside the buddy)."""
    tot = 0
    for z in range(zmap.shape[0]):
        az = zmap[z]
        if az >= 0:
            tot += acc.z_nr_unaccepted[az]
    return tot


@kernel_entry
def delta_chunk(st: ModelState, S: Sections, acc: A.AcceptState, pp: np.ndarray, pv: np.ndarray, zmap: np.ndarray,
                calib: np.ndarray, ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, pfn: np.ndarray,
                order: np.ndarray, base_sec: np.ndarray, base_zone: np.ndarray, dfree: np.ndarray,
                k0: int, k1: int, stage0: int, delay: np.ndarray, pend: np.ndarray, zfree_v: np.ndarray,
                zfree_b: np.ndarray, sec_vstart: np.ndarray, sec_wait: np.ndarray, sec_ext: np.ndarray,
                acur: np.ndarray, elog: np.ndarray, elog_n: np.ndarray, edges: np.ndarray, bstate: np.ndarray,
                base_free: np.ndarray, base_order: np.ndarray, ts_free: np.ndarray, ts_order: np.ndarray,
                next_bg: np.ndarray) -> tuple[int, int, int]:
    """``policy_chunk`` (exact mode) on the baseline's per-event results: the same call sites, stages
    and returns (plus ``ACT_DIVERGE``); ``st`` is only read for ``z_nr_free``, which this keeps.

    ``base_sec`` / ``base_zone``: the baseline's section and zone of each event; ``dfree``: its
    change of the zone's free pages (``exact_chunk``); ``base_free`` / ``base_order``: its
    time series, from which the pages still listed are subtracted (they are top-order blocks).
    """
    trig = pp[PP_TRIGGER]
    lists = pp[PP_LISTS] != 0
    noact = pp[PP_NOACT] != 0
    stage = stage0
    nb = edges.shape[0]
    top = base_order.shape[1] - 1
    ncpu = pend.shape[0] // 2
    k = k0
    while k < k1:
        e = int(ev[k])
        c = int(cpu[k])
        p = int(pfn[k])
        o = int(order[k])
        t = ts[k]
        z = int(base_zone[k])
        if stage == STAGE_FRESH:
            if elog_n[0] + 8 > elog.shape[0]:
                return k, ACT_GROW, -1
            while bstate[0] < nb and t >= edges[bstate[0]]:
                b = bstate[0]
                held = listed_pages(acc, zmap)
                ts_free[b] = base_free[b] - held
                for j in range(top + 1):
                    ts_order[b, j] = base_order[b, j]
                ts_order[b, top] -= held
                bstate[0] = b + 1
            if trig == A.T_BACKGROUND and t >= next_bg[0] and background_tick(acc, pv, t, next_bg):
                return k, ACT_BG, -1
            if lists and p >= 0 and z >= 0 and (e == EV_ZL or (e == EV_ALLOC and pend[ncpu + c] == 0)):
                if zone_needs_accept(st, acc, pp, zmap, z, o):
                    return k, ACT_VISIT, z
            stage = STAGE_VISITED
        if stage == STAGE_VISITED:
            if lists and p >= 0 and block_is_listed(acc, p):
                if e == EV_ZL or e == EV_ALLOC or e == EV_EXTFRAG:
                    return k, ACT_FORCED, z
                return k, ACT_DIVERGE, z
            if z >= 0:
                st.z_nr_free[z] += dfree[k]
                if trig == A.T_BUDDY and e == EV_ZL:
                    if has_unaccepted(acc, p, o):
                        return k, ACT_POST, z
                elif trig == A.T_POST_ALLOC and e == EV_ALLOC:
                    if has_unaccepted(acc, p, o):
                        return k, ACT_POST, z
        if noact:
            quiet_time_step(S, calib, ev, ts, k, base_sec, sec_vstart, elog, elog_n)
        else:
            time_step(S, calib, ev, ts, cpu, k, base_sec, delay, pend, zfree_v, zfree_b, sec_vstart, sec_wait,
                      sec_ext, acur, elog, elog_n)
        k += 1
        stage = STAGE_FRESH
    return k1, ACT_DONE, -1


@kernel_entry
def count_blocks_to_tail(st: ModelState, pfns: np.ndarray, n: int, order: int) -> int:
    """``policy_loop.free_blocks_to_tail`` on the free counters alone (the same blocks skipped)."""
    freed = 0
    for j in range(n):
        z = accepted_block_zone(st, int(pfns[j]), order)
        if z < 0:
            continue
        st.z_nr_free[z] += 1 << order
        freed += 1 << order
    return freed


@kernel_entry
def take_top_blocks(st: ModelState, pfns: np.ndarray, order: int, counters_only: bool, ok: np.ndarray) -> None:
    """``take_free_block`` for each listed block (``ok[j]``: it was a whole free block); with
    ``counters_only`` the buddy lists stay as they are (they are shared) and only the zone's
    free counter drops."""
    for j in range(pfns.shape[0]):
        if counters_only:
            z = top_block_is_free(st, pfns[j], order)
            if z >= 0:
                st.z_nr_free[z] -= 1 << order
            ok[j] = z >= 0
        else:
            ok[j] = take_free_block(st, pfns[j], order)


@kernel_entry
def all_top_blocks_free(st: ModelState, pfns: np.ndarray, order: int) -> bool:
    """Every block at ``pfns`` is a whole free block of exactly ``order``."""
    for j in range(pfns.shape[0]):
        if top_block_is_free(st, pfns[j], order) < 0:
            return False
    return True
