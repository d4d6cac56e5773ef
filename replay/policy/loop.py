"""The compiled per-policy loop: the buddy replay plus the acceptance call sites.

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
* samples free memory per order at time-bucket boundaries for the time series.

When things happen in virtual time (locks, waits, delays) is not decided here: the walk records
the zone->lock sections (``Sections``) and the driver each round trip's program; the lock
schedule of ``replay.policy.timeline`` then serves them.  The arguments are named bundles of
arrays (``replay.policy.bundles``).
"""

from __future__ import annotations

import numpy as np

from replay.acceptance.page_alloc import WMARK_HIGH, WMARK_LOW, WMARK_PROMO, PageUnaccepted, background_may_accept
from replay.acceptance.policies import AcceptTarget, Trigger
from replay.acceptance.unaccepted_memory import AcceptState, page_contains_unaccepted
from replay.events.arrays import EV_ALLOC, EV_EXTFRAG, EV_ZL
from replay.model.sections import Sections
from replay.model.engine import exact_chunk, locate
from replay.model.buddy import __free_one_page as free_one_page
from replay.model.buddy import del_page_from_free_list
from replay.model.simulate import gfp_zone_limit, simulate_chunk, zonelist_zone
from replay.model.state import N_MT, PG_ALLOC, PG_BUDDY, PG_FREEING, ModelState, zone_of
from replay.policy.bundles import Policy, Replayed, Series, Trace, Walk, Zones
from replay.jit import kernel, kernel_entry

# actions returned to the driver
ACT_DONE = 0
ACT_VISIT = 1  # list policies: zone visit / watermark failure (the driver walks the zones)
ACT_FORCED = 2  # exact mode: the trace takes a page of a block still on unaccepted_pages
ACT_POST = 3  # v1 del_page_from_free_list / post_alloc_hook: the allocated block has unaccepted units
ACT_BG = 4  # background acceptor tick

# resume stages
STAGE_FRESH = 0
STAGE_VISITED = 1  # zone-visit hooks of event k done
STAGE_APPLIED = 2  # event k applied and its post-allocation hook done: only the request bookkeeping is left

# pp: policy parameters (int64)
PP_TRIGGER = 0
PP_ONE_BLOCK = 1
PP_UNUSABLE = 2
PP_TARGET = 3
PP_LISTS = 4  # the policy lists blocks on zone->unaccepted_pages (lazy list policies)
PP_SIM = 5  # simulate mode
PP_LEN = 6


@kernel(nrt=False)
def zone_needs_accept(st: ModelState, acc: AcceptState, pp: np.ndarray, zmap: np.ndarray, z: int, o: int) -> bool:
    """Would the policy accept memory at a visit of model zone ``z`` for an order-``o`` request?"""
    return zone_needs_accept_at(st, acc, pp, zmap, z, o, st.z_nr_free[z])


@kernel(nrt=False)
def sim_first_visit(st: ModelState, acc: AcceptState, pp: np.ndarray, zones: Zones, o: int, limit: int) -> int:
    """Simulate mode: the first zone of ``get_page_from_freelist()``'s walk where the policy acts (-1: none)."""
    nz = st.z_start.shape[0]
    for j in range(nz):
        z = zonelist_zone(zones.zonelist.zkind, limit, j)
        if z < 0:
            break
        if zone_needs_accept(st, acc, pp, zones.zmap, z, o):
            return z
        if st.z_nr_free[z] - (1 << o) >= zones.zonelist.wmark_low[z]:
            return -1
    return -1


@kernel(nrt=False)
def sample_bucket(st: ModelState, series: Series, b: int) -> None:
    """Free pages (buddy) of bucket ``b``, in total and per order, summed over zones and migratetypes."""
    n_orders = st.geo[1]
    nz = st.z_start.shape[0]
    tot = 0
    for z in range(nz):
        tot += st.z_nr_free[z]
    series.free[b] = tot
    for o in range(n_orders):
        pages = 0
        for z in range(nz):
            for m in range(N_MT):
                pages += st.l_len[(z * n_orders + o) * N_MT + m]
        series.order[b, o] = pages << o


@kernel(nrt=False)
def sample_buckets(st: ModelState, series: Series, t: int) -> None:
    """Sample every bucket whose edge trace time ``t`` has reached (the state before the event at ``t``)."""
    nb = series.edges.shape[0]
    while series.pos[0] < nb and t >= series.edges[series.pos[0]]:
        sample_bucket(st, series, series.pos[0])
        series.pos[0] += 1


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
def quiet_run_end(st: ModelState, acc: AcceptState, pol: Policy, zones: Zones, tr: Trace, series: Series,
                  walk: Walk, k: int, k1: int) -> int:
    """Exact mode: the end of the run of events from ``k`` at which the policy cannot act.

    Conservative: accepted free pages are assumed to only go down (each zone_locked takes its
    block), a request is assumed to visit its zone at each zone_locked and mm_page_alloc; the run
    also stops at the next time bucket and background tick.  An event that stops the run is then
    handled alone with the exact checks.
    """
    pp = pol.pp
    ev, ts, pfn, order = tr.ev, tr.ts, tr.pfn, tr.order
    drop = walk.drop
    trig = pp[PP_TRIGGER]
    lists = pp[PP_LISTS] != 0
    nb = series.edges.shape[0]
    t_stop = series.edges[series.pos[0]] if series.pos[0] < nb else ts[k1 - 1] + 1
    if trig == Trigger.BACKGROUND and walk.next_bg[0] < t_stop:
        t_stop = walk.next_bg[0]
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
                        if zone_needs_accept_at(st, acc, pp, zones.zmap, z, o, st.z_nr_free[z] - drop[z]):
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
def note_request(tr: Trace, walk: Walk, k: int) -> None:
    """After event ``k``: is a request in progress on its CPU (its zone_locked / extfrag events
    come before its mm_page_alloc, which visited the zone at the first of them)?"""
    e = int(tr.ev[k])
    walk.inreq[int(tr.cpu[k])] = 1 if e == EV_ZL or e == EV_EXTFRAG else 0


@kernel(nrt=False)
def apply_events(st: ModelState, S: Sections, zones: Zones, tr: Trace, out: Replayed, walk: Walk, k0: int, k1: int,
                 sim: bool) -> None:
    """Events ``k0..k1-1`` applied to the model by the engine's handlers (``simulate_chunk`` /
    ``exact_chunk``)."""
    if sim:
        simulate_chunk(st, S, zones.zonelist, walk.simmap, tr, out, k0, k1)
    else:
        exact_chunk(st, S, tr, out, k0, k1)


@kernel(nrt=False)
def quiet_run(st: ModelState, S: Sections, acc: AcceptState, pol: Policy, zones: Zones, tr: Trace, out: Replayed,
              series: Series, walk: Walk, k: int, k1: int) -> int:
    """Exact mode: the run of events from ``k`` where the policy cannot act (``quiet_run_end``)
    applied with one ``exact_chunk`` call; returns where it ends (``k``: no such run)."""
    kend = quiet_run_end(st, acc, pol, zones, tr, series, walk, k, k1)
    if kend > k:
        apply_events(st, S, zones, tr, out, walk, k, kend, False)
        if pol.pp[PP_LISTS] != 0:
            for j in range(k, kend):
                note_request(tr, walk, j)
    return kend


@kernel(nrt=False)
def zone_visit(st: ModelState, acc: AcceptState, pol: Policy, zones: Zones, tr: Trace, walk: Walk, k: int,
               sim: bool) -> int:
    """List policies: the zone where the policy accepts at event ``k``'s ``get_page_from_freelist()``
    visit (-1: none)."""
    p = int(tr.pfn[k])
    if pol.pp[PP_LISTS] == 0 or p < 0:
        return -1
    e = int(tr.ev[k])
    o = int(tr.order[k])
    if sim:
        if e == EV_ALLOC:
            return sim_first_visit(st, acc, pol.pp, zones, o, gfp_zone_limit(int(tr.gfp[k])))
        return -1
    if e == EV_ZL or (e == EV_ALLOC and walk.inreq[int(tr.cpu[k])] == 0):
        # one zone visit per request: an mm_page_alloc right after its own
        # zone_locked events on this CPU visited the zone already
        i, z = locate(st, p, o)
        if z >= 0 and zone_needs_accept(st, acc, pol.pp, zones.zmap, z, o):
            return z
    return -1


@kernel(nrt=False)
def forced_placement(acc: AcceptState, pol: Policy, tr: Trace, k: int, sim: bool) -> bool:
    """Exact mode, list policies: event ``k`` takes a page of a block still on ``zone->unaccepted_pages``."""
    p = int(tr.pfn[k])
    e = int(tr.ev[k])
    if pol.pp[PP_LISTS] == 0 or sim or p < 0 or not (e == EV_ZL or e == EV_ALLOC or e == EV_EXTFRAG):
        return False
    return PageUnaccepted(acc, p)


@kernel(nrt=False)
def post_alloc_unaccepted(acc: AcceptState, pol: Policy, tr: Trace, out: Replayed, k: int, sim: bool) -> bool:
    """After event ``k`` is applied: v1's ``del_page_from_free_list`` / v2-v7's ``post_alloc_hook``
    finds unaccepted units in the block it handed out."""
    e = int(tr.ev[k])
    q = int(out.pfn[k]) if sim else int(tr.pfn[k])
    if q < 0 or out.zone[k] < 0:
        return False
    trig = pol.pp[PP_TRIGGER]
    if trig == Trigger.ON_BUDDY_ALLOC and (e == EV_ZL or (sim and e == EV_ALLOC)):
        return page_contains_unaccepted(acc, q, int(tr.order[k]))
    if trig == Trigger.POST_ALLOC and e == EV_ALLOC:
        return page_contains_unaccepted(acc, q, int(tr.order[k]))
    return False


@kernel_entry(nrt=False)
def policy_chunk(st: ModelState, S: Sections, acc: AcceptState, pol: Policy, zones: Zones, tr: Trace, out: Replayed,
                 series: Series, walk: Walk, k0: int, k1: int, stage0: int) -> tuple[int, int, int]:
    """Replay events ``k0..k1-1`` under one policy; stop at the first event where the policy acts.

    Returns ``(k, action, zone)``; ``action == ACT_DONE`` when the chunk is finished.  The driver
    resumes at ``k`` with ``stage0`` (``STAGE_VISITED`` after a pre-event action,
    ``STAGE_APPLIED`` after ``ACT_POST``).  Exact mode with a non-empty ``out.dfree``: also record
    each event's change of its zone's free pages (``exact_chunk``'s ``dfree``, for ``replay.policy.delta``).
    """
    sim = pol.pp[PP_SIM] != 0
    trig = pol.pp[PP_TRIGGER]
    lists = pol.pp[PP_LISTS] != 0
    stage = stage0
    k = k0
    while k < k1:
        if stage == STAGE_FRESH:
            t = tr.ts[k]
            sample_buckets(st, series, t)
            if trig == Trigger.BACKGROUND and t >= walk.next_bg[0] and background_tick(acc, pol.pv, t, walk.next_bg):
                return k, ACT_BG, -1
            if not sim:
                kend = quiet_run(st, S, acc, pol, zones, tr, out, series, walk, k, k1)
                if kend > k:
                    k = kend
                    continue
            z = zone_visit(st, acc, pol, zones, tr, walk, k, sim)
            if z >= 0:
                return k, ACT_VISIT, z
            stage = STAGE_VISITED
        if stage == STAGE_VISITED:
            if forced_placement(acc, pol, tr, k, sim):
                i, z = locate(st, int(tr.pfn[k]), int(tr.order[k]))
                return k, ACT_FORCED, z
            apply_events(st, S, zones, tr, out, walk, k, k + 1, sim)
            if post_alloc_unaccepted(acc, pol, tr, out, k, sim):
                return k, ACT_POST, int(out.zone[k])
        if lists:
            note_request(tr, walk, k)
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
