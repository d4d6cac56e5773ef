"""The compiled per-policy loop: the buddy replay plus the acceptance call sites and locks in virtual time.

``policy_chunk`` walks the events like ``replay.model.engine.run_loop`` and applies each one with the
very same handlers (``exact_chunk`` / ``simulate_chunk`` on ``[k, k+1)``), so a policy that never
acts leaves the buddy model exactly as the plain replay does.  Around each event it

* checks, cheaply and in compiled code, whether the policy acts at a kernel call site
  (``get_page_from_freelist()`` zone visit / ``zone_watermark_fast()`` failure for the list
  policies, a traced allocation inside a block still on ``zone->unaccepted_pages`` in exact mode,
  ``del_page_from_free_list()`` (v1) or ``post_alloc_hook()`` (v2-v7) on a block with
  unaccepted units, the background acceptor's tick) and if so *returns* ``(k, action, zone)``:
  the driver (``replay.policy.run``) runs ``replay.acceptance.page_alloc`` for it (those functions allocate
  small arrays and need numba's NRT; this module is compiled without it, like the engine) and
  resumes at ``k`` with a later ``stage``.  Acceptance is rare (a few hundred blocks per GiB),
  so the round trips cost little;
* keeps the time model (spec section 7): each CPU carries the delay the policy has added so
  far (virtual time = trace time + delay); every zone->lock section waits in virtual time until
  its zone's lock is free (FIFO), and the wait charged is what exceeds the wait the same
  section had at trace time (the trace's own timing already contains the contention of the
  unmodified kernel: with ``none`` every added wait is exactly 0);
* samples free memory per order at time-bucket boundaries for the time series.
"""

from __future__ import annotations

import numpy as np

from replay.acceptance.page_alloc import WMARK_HIGH, WMARK_LOW, WMARK_PROMO, PageUnaccepted, background_may_accept
from replay.acceptance.policies import AcceptTarget, Trigger
from replay.acceptance.unaccepted_memory import AcceptState, page_contains_unaccepted
from replay.events.arrays import EV_ALLOC, EV_EXTFRAG, EV_ZL
from replay.model.sections import SEC_DRAIN, SEC_FREE, Sections
from replay.model.engine import exact_chunk, locate
from replay.model.buddy import __free_one_page as free_one_page
from replay.model.buddy import del_page_from_free_list
from replay.model.simulate import gfp_zone_limit, simulate_chunk, zonelist_zone
from replay.model.state import N_MT, PG_ALLOC, PG_BUDDY, PG_FREEING, ModelState, zone_of
from replay.jit import kernel, kernel_entry

# actions returned to the driver
ACT_DONE = 0
ACT_VISIT = 1  # list policies: zone visit / watermark failure (the driver walks the zones)
ACT_FORCED = 2  # exact mode: the trace takes a page of a block still on unaccepted_pages
ACT_POST = 3  # v1 del_page_from_free_list / post_alloc_hook: the allocated block has unaccepted units
ACT_BG = 4  # background acceptor tick
ACT_GROW = 5  # the event log is nearly full: the driver grows it and resumes at the same event

# resume stages
STAGE_FRESH = 0
STAGE_VISITED = 1  # zone-visit hooks of event k done
STAGE_APPLIED = 2  # event k applied and its post-allocation hook done: only the time step is left

# pp: policy parameters (int64)
PP_TRIGGER = 0
PP_ONE_BLOCK = 1
PP_UNUSABLE = 2
PP_TARGET = 3
PP_LISTS = 4  # the policy lists blocks on zone->unaccepted_pages (lazy list policies)
PP_SIM = 5  # simulate mode
PP_NOACT = 6  # the policy never acts during the trace (none, eager): no delay ever, every wait is 0
PP_LEN = 7

# calib: zone->lock hold model (replay.model.sections.hold_times)
CA_REFILL_BASE, CA_REFILL_PER, CA_DRAIN_BASE, CA_DRAIN_PER, CA_STEAL = 0, 1, 2, 3, 4


@kernel(nrt=False)
def zone_needs_accept(st: ModelState, acc: AcceptState, pp: np.ndarray, zmap: np.ndarray, z: int, o: int) -> bool:
    """Would the policy accept memory at a visit of model zone ``z`` for an order-``o`` request?"""
    return zone_needs_accept_at(st, acc, pp, zmap, z, o, st.z_nr_free[z])


@kernel(nrt=False)
def sim_first_visit(st: ModelState, acc: AcceptState, pp: np.ndarray, zmap: np.ndarray, zkind: np.ndarray,
                    wmark_low: np.ndarray, o: int, limit: int) -> int:
    """Simulate mode: the first zone of ``get_page_from_freelist()``'s walk where the policy acts (-1: none)."""
    nz = st.z_start.shape[0]
    for j in range(nz):
        z = zonelist_zone(zkind, limit, j)
        if z < 0:
            break
        if zone_needs_accept(st, acc, pp, zmap, z, o):
            return z
        if st.z_nr_free[z] - (1 << o) >= wmark_low[z]:
            return -1
    return -1


@kernel(nrt=False)
def sample_bucket(st: ModelState, b: int, ts_free: np.ndarray, ts_order: np.ndarray) -> None:
    """Free pages (buddy) in total and per order, summed over zones and migratetypes."""
    n_orders = st.geo[1]
    nz = st.z_start.shape[0]
    tot = 0
    for z in range(nz):
        tot += st.z_nr_free[z]
    ts_free[b] = tot
    for o in range(n_orders):
        pages = 0
        for z in range(nz):
            for m in range(N_MT):
                pages += st.l_len[(z * n_orders + o) * N_MT + m]
        ts_order[b, o] = pages << o


#: ``acur`` slots: the event the driver's acceptance work was charged to, and what it charged
AC_K, AC_ADDED, AC_FWZL, AC_ZLHOLD, AC_ZONE, AC_BG, AC_ZLWAIT, AC_WAIT, AC_LEN = 0, 1, 2, 3, 4, 5, 6, 7, 8

#: ``elog`` columns: one row per event the policy charged time to (events in order); ``EL_WAIT_ACCEPT``:
#: the part of ``EL_WAIT`` spent behind a holder doing acceptance work (``policy.timeline``)
EL_K, EL_VTS, EL_ADDED, EL_WAIT, EL_HOLD, EL_LAT, EL_WAIT_ACCEPT, EL_LEN = 0, 1, 2, 3, 4, 5, 6, 7


#: the background acceptor is looked at every 10 ms of trace time (it accepts at its rate in between)
BG_TICK_NS = 10_000_000
INT64_MAX = 9223372036854775807


@kernel(nrt=False)
def background_tick(acc: AcceptState, pv: np.ndarray, t: int, next_bg: np.ndarray) -> bool:
    """The background acceptor's tick at trace time ``t``: True when it may accept something (the
    driver runs ``background_accept``); otherwise the next tick is set here, as the driver
    would after accepting nothing, and no round trip is made."""
    if background_may_accept(acc, pv, t):
        return True
    listed = False
    for z in range(acc.ul_len.shape[0]):
        if acc.ul_len[z] > 0:
            listed = True
    next_bg[0] = t + BG_TICK_NS if listed else INT64_MAX
    return False


#: longest run of events applied with one exact_chunk call
QUIET_MAX = 1 << 16


@kernel(nrt=False)
def zone_needs_accept_at(st: ModelState, acc: AcceptState, pp: np.ndarray, zmap: np.ndarray, z: int, o: int,
                         free: int) -> bool:
    """:func:`zone_needs_accept` with ``free`` accepted free pages in the zone (the quiet-run
    look-ahead passes a lower bound instead of the zone's current count)."""
    az = zmap[z]
    if az < 0 or acc.ul_len[az] == 0:
        return False
    trig = pp[PP_TRIGGER]
    unusable = (1 << o) - 1
    if trig == Trigger.WATERMARK_FAIL:
        # zone_watermark_fast(): NR_FREE_PAGES counts listed blocks; 6.5-6.10 count them unusable
        extra = acc.z_nr_unaccepted[az] if pp[PP_UNUSABLE] != 0 else 0
        return free + acc.z_nr_unaccepted[az] - extra - unusable <= acc.z_wmark[az, WMARK_LOW]
    if trig == Trigger.EVERY_ZONE_VISIT or trig == Trigger.BACKGROUND:
        # cond_accept_memory(): to_accept = wmark - (free - unusable) > 0; one block while wmarks are 0
        if acc.z_wmark_ready[az] == 0:
            return pp[PP_ONE_BLOCK] != 0
        if pp[PP_TARGET] == AcceptTarget.PROMO:
            wm = acc.z_wmark[az, WMARK_PROMO]
        elif pp[PP_TARGET] == AcceptTarget.HIGH:
            wm = acc.z_wmark[az, WMARK_HIGH]
        else:
            return False
        if wm == 0:
            return pp[PP_ONE_BLOCK] != 0
        return wm - (free - unusable) > 0
    return False


@kernel(nrt=False)
def quiet_run_end(st: ModelState, acc: AcceptState, pp: np.ndarray, zmap: np.ndarray, ev: np.ndarray,
                  ts: np.ndarray, pfn: np.ndarray, order: np.ndarray, k: int, k1: int, edges: np.ndarray,
                  bstate: np.ndarray, next_bg: np.ndarray, drop: np.ndarray) -> int:
    """Exact mode: the end of the run of events from ``k`` at which the policy cannot act.

    Conservative: accepted free pages are assumed to only go down (each zone_locked takes its
    block), a request is assumed to visit its zone at each zone_locked and mm_page_alloc; the run
    also stops at the next time bucket and background tick.  An event that stops the run is then
    handled alone with the exact checks.
    """
    trig = pp[PP_TRIGGER]
    lists = pp[PP_LISTS] != 0
    nb = edges.shape[0]
    t_stop = edges[bstate[0]] if bstate[0] < nb else ts[k1 - 1] + 1
    if trig == Trigger.BACKGROUND and next_bg[0] < t_stop:
        t_stop = next_bg[0]
    for z in range(drop.shape[0]):
        drop[z] = 0
    j = k
    lim = k + QUIET_MAX if k + QUIET_MAX < k1 else k1
    while j < lim:
        if ts[j] >= t_stop:
            break
        e = int(ev[j])
        p = int(pfn[j])
        if p >= 0 and (e == EV_ZL or e == EV_ALLOC or e == EV_EXTFRAG):
            o = int(order[j])
            if lists:
                if PageUnaccepted(acc, p):
                    break
                if e != EV_EXTFRAG:
                    i, z = locate(st, p, o)
                    if z >= 0:
                        if zone_needs_accept_at(st, acc, pp, zmap, z, o, st.z_nr_free[z] - drop[z]):
                            break
                        if e == EV_ZL:
                            drop[z] += 1 << o
            elif trig == Trigger.ON_BUDDY_ALLOC and e == EV_ZL:
                if page_contains_unaccepted(acc, p, o):
                    break
            elif trig == Trigger.POST_ALLOC and e == EV_ALLOC:
                if page_contains_unaccepted(acc, p, o):
                    break
        j += 1
    return j


@kernel(nrt=False)
def log_event(elog: np.ndarray, elog_n: np.ndarray, k: int, vts: int, added: int, wait: int, hold: int,
              lat: int) -> None:
    """Append event ``k``'s virtual time and charges to the event log (the driver keeps room)."""
    i = elog_n[0]
    elog[i, EL_K] = k
    elog[i, EL_VTS] = vts
    elog[i, EL_ADDED] = added
    elog[i, EL_WAIT] = wait
    elog[i, EL_HOLD] = hold
    elog[i, EL_LAT] = lat
    elog_n[0] = i + 1


@kernel(nrt=False)
def section_cost(S: Sections, calib: np.ndarray, sid: int, e: int) -> tuple[float, float]:
    """(base, increment) of zone->lock hold for section ``sid`` at an event of type ``e``: the
    calibrated cost of a drain/free or refill/allocation section, and per block (per stolen
    pageblock for an extfrag event); ``replay.model.sections.hold_times`` is the same model, vectorised."""
    kind = S.kind[sid]
    if kind == SEC_DRAIN or kind == SEC_FREE:
        base = calib[CA_DRAIN_BASE]
        per = calib[CA_DRAIN_PER]
    else:
        base = calib[CA_REFILL_BASE]
        per = calib[CA_REFILL_PER]
    return base, (calib[CA_STEAL] if e == EV_EXTFRAG else per)


@kernel(nrt=False)
def quiet_time_step(S: Sections, calib: np.ndarray, ev: np.ndarray, ts: np.ndarray, k: int, out_sec: np.ndarray,
                    sec_vstart: np.ndarray, elog: np.ndarray, elog_n: np.ndarray) -> None:
    """:func:`time_step` when no CPU is ever delayed: virtual time is trace time, nothing waits
    longer than at trace time, only the holds of the sections opened here are recorded."""
    t = ts[k]
    sid = out_sec[k]
    if sid >= 0 and S.first[sid] == k:
        base, inc = section_cost(S, calib, sid, int(ev[k]))
        sec_vstart[sid] = t
        log_event(elog, elog_n, k, t, 0, 0, int(base + inc + 0.5), 0)


@kernel(nrt=False)
def time_step(S: Sections, calib: np.ndarray, ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, k: int,
              out_sec: np.ndarray, delay: np.ndarray, pend: np.ndarray, zfree_v: np.ndarray, zfree_b: np.ndarray,
              sec_vstart: np.ndarray, sec_wait: np.ndarray, sec_ext: np.ndarray, acur: np.ndarray,
              elog: np.ndarray, elog_n: np.ndarray) -> None:
    """Event ``k`` in virtual time: the CPU's delay, zone->lock FIFO waits, hold, latency.

    ``acur``: what the driver's acceptance work charged to one event (``AC_*`` slots), read when
    ``acur[AC_K] == k``; the zone->lock wait of that work is written back to ``acur[AC_ZLWAIT]``.
    One small array instead of six per-event ones: only a few thousand events ever get acceptance
    work, and n-long arrays cost a page fault per 4 KiB on first touch."""
    ncpu = pend.shape[0] // 2  # pend: [added latency pending per CPU | request in progress per CPU]
    e = int(ev[k])
    c = int(cpu[k])
    t = ts[k]
    sid = out_sec[k]
    if sid < 0 and acur[AC_K] != k:
        # no zone->lock section and no acceptance work (most pcp allocations and frees): nothing
        # waits or is held, the CPU's delay stays; only the request's latency bookkeeping
        if e == EV_ALLOC:
            lat = pend[c]
            pend[c] = 0
            pend[ncpu + c] = 0
            if lat != 0:
                log_event(elog, elog_n, k, t + delay[c], 0, 0, 0, lat)
        elif e == EV_ZL or e == EV_EXTFRAG:
            pend[ncpu + c] = 1
        else:
            pend[c] = 0
            pend[ncpu + c] = 0
        return
    nz = zfree_v.shape[0] // 2
    zlast_v = zfree_v[nz:]
    zlast_b = zfree_b[nz:]
    # ---- time: locks in virtual time
    d = delay[c]
    vts = t + d
    mine = acur[AC_K] == k
    fz = acur[AC_FWZL] if mine else 0
    added = (acur[AC_ADDED] if mine else 0) - fz
    wait = 0
    hold = 0
    d += added
    zh = acur[AC_ZLHOLD] if mine else 0
    if zh > 0:
        az = acur[AC_ZONE]
        if acur[AC_BG] != 0:
            # the background acceptor's __free_pages_ok sections: lock busy, no traced CPU delayed
            zfree_v[az] = (zfree_v[az] if zfree_v[az] > t else t) + zh
        else:
            vs = t + d
            w = zfree_v[az] - vs if zfree_v[az] > vs and vs >= zlast_v[az] else 0
            zfree_v[az] = vs + w + zh
            zlast_v[az] = vs
            acur[AC_ZLWAIT] = w
            d += w + zh
            added += w + zh
            wait += w
            hold += zh
    if sid >= 0:
        z = S.zone[sid]
        base, inc = section_cost(S, calib, sid, e)
        if S.first[sid] == k:
            h = int(base + inc + 0.5)
            vs = t + d
            # FIFO by arrival in virtual time: a request that arrives before the last holder
            # did (it was delayed less) would have had the lock first; it does not wait for it
            wv = zfree_v[z] - vs if zfree_v[z] > vs and vs >= zlast_v[z] else 0
            wb = zfree_b[z] - t if zfree_b[z] > t and t >= zlast_b[z] else 0
            zlast_v[z] = vs
            zlast_b[z] = t
            w = wv - wb if wv > wb else 0
            sec_vstart[sid] = vs
            sec_wait[sid] = w
            zfree_v[z] = vs + wv + h + fz
            zfree_b[z] = t + wb + h
            d += w
            added += w
            wait += w
            hold += h
        else:
            ii = int(inc + 0.5)
            zfree_v[z] += ii + fz
            zfree_b[z] += ii
        if fz > 0:
            sec_ext[sid] += fz
    d += fz
    added += fz
    hold += fz
    delay[c] = d
    if mine:
        wait += acur[AC_WAIT]  # the driver's lock waits (global accept lock, accepting_list spin)
    lat = 0
    # allocation latency: the zone_locked / extfrag events of a request belong to its mm_page_alloc
    if e == EV_ALLOC:
        lat = pend[c] + added
        pend[c] = 0
        pend[ncpu + c] = 0
    elif e == EV_ZL or e == EV_EXTFRAG:
        pend[c] += added
        pend[ncpu + c] = 1
    else:
        pend[c] = 0
        pend[ncpu + c] = 0
    if added != 0 or wait != 0 or hold != 0 or lat != 0:
        log_event(elog, elog_n, k, vts, added, wait, hold, lat)


@kernel_entry(nrt=False)
def policy_chunk(st: ModelState, S: Sections, acc: AcceptState, pp: np.ndarray, pv: np.ndarray, zmap: np.ndarray,
                 simmap: np.ndarray, zkind: np.ndarray, wmark_low: np.ndarray, calib: np.ndarray,
                 ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, pfn: np.ndarray, order: np.ndarray, mt: np.ndarray,
                 refill: np.ndarray, fb_order: np.ndarray, chown: np.ndarray, deferred: np.ndarray,
                 first: np.ndarray, gfp: np.ndarray, k0: int, k1: int, stage0: int,
                 out_anom: np.ndarray, out_sec: np.ndarray, out_zone: np.ndarray, out_pfn: np.ndarray,
                 acount: np.ndarray, delay: np.ndarray, pend: np.ndarray, zfree_v: np.ndarray, zfree_b: np.ndarray,
                 sec_vstart: np.ndarray, sec_wait: np.ndarray, sec_ext: np.ndarray,
                 acur: np.ndarray, elog: np.ndarray, elog_n: np.ndarray, edges: np.ndarray, bstate: np.ndarray,
                 ts_free: np.ndarray, ts_order: np.ndarray, next_bg: np.ndarray,
                 scratch: np.ndarray, dfree: np.ndarray) -> tuple[int, int, int]:
    """Replay events ``k0..k1-1`` under one policy; stop at the first event where the policy acts.

    Returns ``(k, action, zone)``; ``action == ACT_DONE`` when the chunk is finished.  The driver
    resumes at ``k`` with ``stage0`` (``STAGE_VISITED`` after a pre-event action,
    ``STAGE_APPLIED`` after ``ACT_POST``).  Exact mode with a non-empty ``dfree``: also record each
    event's change of its zone's free pages (``exact_chunk``'s ``dfree``, for ``replay.policy.delta``).
    """
    sim = pp[PP_SIM] != 0
    trig = pp[PP_TRIGGER]
    lists = pp[PP_LISTS] != 0
    stage = stage0
    nb = edges.shape[0]
    ncpu = pend.shape[0] // 2  # pend: [added latency pending per CPU | request in progress per CPU]
    noact = pp[PP_NOACT] != 0
    k = k0
    while k < k1:
        e = int(ev[k])
        c = int(cpu[k])
        p = int(pfn[k])
        o = int(order[k])
        t = ts[k]
        if stage == STAGE_FRESH:
            if elog_n[0] + QUIET_MAX + 8 > elog.shape[0]:  # room for the longest quiet run
                return k, ACT_GROW, -1
            while bstate[0] < nb and t >= edges[bstate[0]]:
                sample_bucket(st, bstate[0], ts_free, ts_order)
                bstate[0] += 1
            if trig == Trigger.BACKGROUND and t >= next_bg[0] and background_tick(acc, pv, t, next_bg):
                return k, ACT_BG, -1
            if not sim:
                # a run of events where the policy cannot act: one exact_chunk call, then their times
                kend = quiet_run_end(st, acc, pp, zmap, ev, ts, pfn, order, k, k1, edges, bstate, next_bg, scratch)
                if kend > k:
                    exact_chunk(st, S, ev, ts, cpu, pfn, order, mt, refill, fb_order, chown, deferred, first, k, kend,
                                out_anom, out_sec, out_zone, acount, dfree)
                    for j in range(k, kend):
                        if noact:
                            quiet_time_step(S, calib, ev, ts, j, out_sec, sec_vstart, elog, elog_n)
                            continue
                        time_step(S, calib, ev, ts, cpu, j, out_sec, delay, pend, zfree_v, zfree_b, sec_vstart,
                                  sec_wait, sec_ext, acur, elog, elog_n)
                    k = kend
                    continue
            if lists and p >= 0:
                if sim:
                    if e == EV_ALLOC:
                        zv = sim_first_visit(st, acc, pp, zmap, zkind, wmark_low, o, gfp_zone_limit(int(gfp[k])))
                        if zv >= 0:
                            return k, ACT_VISIT, zv
                elif e == EV_ZL or (e == EV_ALLOC and pend[ncpu + c] == 0):
                    # one zone visit per request: an mm_page_alloc right after its own
                    # zone_locked events on this CPU visited the zone already
                    i, z = locate(st, p, o)
                    if z >= 0 and zone_needs_accept(st, acc, pp, zmap, z, o):
                        return k, ACT_VISIT, z
            stage = STAGE_VISITED
        if stage == STAGE_VISITED:
            if lists and not sim and p >= 0 and (e == EV_ZL or e == EV_ALLOC or e == EV_EXTFRAG):
                if PageUnaccepted(acc, p):
                    i, z = locate(st, p, o)
                    return k, ACT_FORCED, z
            if sim:
                simulate_chunk(st, S, simmap, zkind, wmark_low, ev, ts, cpu, pfn, order, mt, gfp, deferred, k, k + 1,
                               out_anom, out_sec, out_zone, out_pfn, acount)
            else:
                exact_chunk(st, S, ev, ts, cpu, pfn, order, mt, refill, fb_order, chown, deferred, first, k, k + 1,
                            out_anom, out_sec, out_zone, acount, dfree)
            q = int(out_pfn[k]) if sim else p
            if q >= 0 and out_zone[k] >= 0:
                if trig == Trigger.ON_BUDDY_ALLOC and (e == EV_ZL or (sim and e == EV_ALLOC)):
                    if page_contains_unaccepted(acc, q, o):
                        return k, ACT_POST, int(out_zone[k])
                elif trig == Trigger.POST_ALLOC and e == EV_ALLOC:
                    if page_contains_unaccepted(acc, q, o):
                        return k, ACT_POST, int(out_zone[k])
        time_step(S, calib, ev, ts, cpu, k, out_sec, delay, pend, zfree_v, zfree_b, sec_vstart, sec_wait, sec_ext,
                  acur, elog, elog_n)
        k += 1
        stage = STAGE_FRESH
    return k1, ACT_DONE, -1


@kernel(nrt=False)
def accepted_block_zone(st: ModelState, pfn: int, order: int) -> int:
    """Zone of an accepted block of ``order`` at ``pfn`` that goes to the buddy; -1 when it lies
    outside the model or across a zone's end (then it is skipped)."""
    i = pfn - st.geo[0]
    if i < 0 or i + (1 << order) > st.pg_state.shape[0]:
        return -1
    z = zone_of(st, i)
    if z < 0 or i + (1 << order) > st.z_end[z]:
        return -1
    return z


@kernel_entry(nrt=False)
def free_blocks_to_tail(st: ModelState, pfns: np.ndarray, n: int, order: int) -> int:
    """``__free_pages_ok(page, MAX_PAGE_ORDER, FPI_TO_TAIL)`` for each accepted block; returns pages freed."""
    freed = 0
    pbo = st.geo[5]
    for j in range(n):
        i = int(pfns[j]) - st.geo[0]
        z = accepted_block_zone(st, int(pfns[j]), order)
        if z < 0:
            continue
        m = int(st.pb_mt[i >> pbo])
        if m >= 3:
            m = 1
        free_one_page(st, i, z, order, m, True)
        freed += 1 << order
    return freed


@kernel(nrt=False)
def top_block_is_free(st: ModelState, pfn: int, order: int) -> int:
    """Zone of the free block of exactly ``order`` at ``pfn``, -1 if there is none."""
    i = pfn - st.geo[0]
    if i < 0 or i + (1 << order) > st.pg_state.shape[0]:
        return -1
    if int(st.pg_state[i]) != PG_BUDDY or int(st.pg_order[i]) != order:
        return -1
    return zone_of(st, i)


@kernel_entry(nrt=False)
def take_free_block(st: ModelState, pfn: int, order: int) -> bool:
    """Remove the free block of exactly ``order`` at ``pfn`` from the buddy (it is on unaccepted_pages)."""
    z = top_block_is_free(st, pfn, order)
    if z < 0:
        return False
    del_page_from_free_list(st, pfn - st.geo[0], z)
    return True


@kernel_entry(nrt=False)
def mark_free_pages(st: ModelState, out: np.ndarray) -> None:
    """``out[i] = 1`` for every page inside a free buddy block."""
    n = st.pg_state.shape[0]
    for i in range(n):
        if int(st.pg_state[i]) == PG_BUDDY:
            e = i + (1 << int(st.pg_order[i]))
            for j in range(i, e if e < n else n):
                out[j] = 1


@kernel_entry(nrt=False)
def clear_units_in_use(bitmap: np.ndarray, ok: np.ndarray, listed: np.ndarray, pfn_base: int, block_order: int,
                       phys: int, unit: int, pbase: int) -> None:
    """Accept (clear) every unaccepted unit with a page the trace's initial state has in use:
    ``ok`` marks the free pages (``mark_free_pages``; read only: several replays share it);
    pages of listed blocks (``listed[b]`` != 0 for block ``b``) count as free."""
    npages = ok.shape[0]
    nb = listed.shape[0]
    for u in range(bitmap.shape[0]):
        if bitmap[u] == 0:
            continue
        s = phys + u * unit - pbase
        e = s + unit
        for j in range(s if s > 0 else 0, e if e < npages else npages):
            if ok[j] == 0:
                b = (j + pbase - pfn_base) >> block_order
                if not (0 <= j + pbase - pfn_base and b < nb and listed[b] != 0):
                    bitmap[u] = 0
                    break


@kernel_entry(nrt=False)
def handed_out_unaccepted(st: ModelState, acc: AcceptState) -> int:
    """Allocated blocks (PG_ALLOC / PG_FREEING heads) with an unaccepted unit: must stay 0."""
    bad = 0
    base = st.geo[0]
    for i in range(st.pg_state.shape[0]):
        s = int(st.pg_state[i])
        if s == PG_ALLOC or s == PG_FREEING:
            if page_contains_unaccepted(acc, base + i, int(st.pg_order[i])):
                bad += 1
    return bad
