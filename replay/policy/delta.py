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
``replay.policy.loop.policy_chunk``, but instead of applying an event to a buddy model it adds
the recorded change to the policy's per-zone free counters.  It returns ``ACT_DIVERGE`` (the
driver falls back to the full replay) when an event touches a still-listed block in a way the
full replay would not force first (a free or a drain of a page the kernel never handed out):
there the two models would part, and the full replay is the reference.  The driver checks the
rest at the end (the counters agree with the baseline's final state minus the listed blocks,
and each still-listed block is a whole free block there).

Most events need no visit at all.  On a real trace nearly all of them are per-CPU list hits and
the middle of ``rmqueue_bulk`` / ``free_pcppages_bulk`` batches (14.7M events, 49k zone->lock
sections): no lock is taken there, nothing waits, and no acceptance check can fire.  The walk
runs its per-event body on a subset of the events, chosen so that every event it skips would
have been a no-op:

- the first event of each zone->lock section (its FIFO wait and hold) and every change of
  ``NR_FREE_PAGES`` outside a section;
- the rest of a section's events only add their per-block hold increment to the zone's lock-free
  time and their change to ``NR_FREE_PAGES``: these are added in one sum, *lazily*, when the
  zone's counters are next read (a later section in the zone, acceptance work under its lock,
  an acceptance check in it), with an exact event-by-event catch-up when the read falls inside
  the section;
- after an event leaves latency pending on its CPU (``pend``), the next event on that CPU that
  settles it (the request's ``mm_page_alloc``, or a free);
- the first touch of each block (the forced-acceptance check) and of each bitmap unit (the
  ``del_page_from_free_list`` / ``post_alloc_hook`` checks): a block or unit is only ever
  accepted during the trace, never listed again, so a later touch finds it accepted (and if a
  first touch leaves one unaccepted, the walk visits every event from there on);
- time-bucket boundaries and background-acceptor ticks;
- every event while a zone that still lists blocks is within reach of its acceptance watermark
  (``zone_needs_accept_at`` with the largest order and the lowest free count the open section
  could reach).

The index of sections (``DeltaIndex``) is built as the baseline goes and shared by every
policy, with the first touches (``Touches``) of each acceptance geometry the policies have.
A section that opens while its zone's summed section is still open (trace order interleaves
the CPUs' events: a few in a real capture), or has events in two zones, is walked event by
event.  Results are identical to visiting every event (tests/test_policy_delta.py).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from replay.acceptance.page_alloc import PageUnaccepted
from replay.acceptance.policies import Trigger
from replay.acceptance.unaccepted_memory import AcceptGeo, AcceptState, bitmap_units, page_contains_unaccepted
from replay.events.arrays import EV_ALLOC, EV_EXTFRAG, EV_ZL
from replay.model.sections import Sections
from replay.policy.loop import (AC_K, AC_ZLHOLD, AC_ZONE, ACT_BG, ACT_DONE, ACT_FORCED, ACT_GROW, ACT_POST, ACT_VISIT,
                                INT64_MAX, PP_LISTS, PP_NOACT, PP_TRIGGER, STAGE_FRESH, STAGE_VISITED,
                                accepted_block_zone, background_tick, quiet_time_step, section_cost, take_free_block,
                                time_step, top_block_is_free, zone_needs_accept, zone_needs_accept_at)
from replay.model.state import ModelState
from replay.jit import kernel, kernel_entry

#: an event the baseline's results cannot stand in for: the driver replays the policy in full
ACT_DIVERGE = 6
# the open (lazily summed) section of each zone: agg[z, AG_*]
AG_SID, AG_FROM, AG_LAST, AG_II, AG_DF, AG_ABS, AG_LEN = 0, 1, 2, 3, 4, 5, 6
# a policy's walk state: sp[SP_*]
SP_VIS, SP_BLK, SP_UNIT, SP_BG, SP_DENSE_UNTIL, SP_VISITS, SP_LEN = 0, 1, 2, 3, 4, 5, 6
# first_touches kinds
TOUCH_BLOCK, TOUCH_ZL, TOUCH_ALLOC = 0, 1, 2


@kernel(nrt=False)
def listed_pages(acc: AcceptState, zmap: np.ndarray) -> int:
    """Pages of the model zones' blocks still on ``zone->unaccepted_pages`` (outside the buddy)."""
    tot = 0
    for z in range(zmap.shape[0]):
        az = zmap[z]
        if az >= 0:
            tot += acc.z_nr_unaccepted[az]
    return tot


class DeltaIndex:
    """What ``delta_chunk`` needs from the recorded baseline to skip events, shared by every
    policy and built as the baseline goes (``extend`` over the events it has replayed): per
    section its last event so far and the sums over its events after the first (final once the
    section is closed), a flag for a section with events in another zone, and the always-visited
    events in order.  ``sparse`` False (``dense_index``): no section is summed, every event is
    visited."""

    def __init__(self, calib: np.ndarray, ev: np.ndarray, cap_sections: int, bucket_ev: np.ndarray,
                 sparse: bool = True) -> None:
        cap = max(cap_sections, 1)
        n_events = len(ev)
        self.sparse = sparse
        self._calib, self._ev = calib, ev
        # zeros: a page is only touched once a section of it exists (one section per event at most)
        self.sec_last = np.zeros(cap, np.int64)
        self.sec_ii = np.zeros(cap, np.int64)
        self.sec_df = np.zeros(cap, np.int64)
        self.sec_abs = np.zeros(cap, np.int64)
        self.sec_flag = np.zeros(cap, np.int8)
        self._vis = np.empty(max(n_events, 1) if sparse else 1, np.int64)
        self.nv = np.zeros(1, np.int64)
        self.scanned = 0
        self.bucket_ev = bucket_ev
        self._touches: dict[tuple[int, int, int, int], Touches] = {}
        self._lock = threading.Lock()

    def touches(self, kind: int, acc: AcceptState, n_events: int) -> Touches:
        """The first touches of ``kind`` under ``acc``'s geometry, shared by the policies that have it."""
        key = (kind, *touch_geometry(kind, acc))
        with self._lock:
            if key not in self._touches:
                self._touches[key] = Touches(kind, acc, n_events)
            return self._touches[key]

    @property
    def vis(self) -> np.ndarray:
        return self._vis[: int(self.nv[0])]

    def extend(self, S: Sections, base_sec: np.ndarray, base_zone: np.ndarray, dfree: np.ndarray, k1: int) -> None:
        """Take in the baseline's results (sections, section and zone per event, free-page
        changes) of the events up to ``k1``."""
        if self.sparse and k1 > self.scanned:
            index_events(S, self._calib, self._ev, base_sec, base_zone, dfree, self.scanned, k1, self.sec_last,
                         self.sec_ii, self.sec_df, self.sec_abs, self.sec_flag, self._vis, self.nv)
            self.scanned = k1


def new_index(prep: Any, cap_sections: int) -> DeltaIndex:
    """An empty index for a baseline of ``prep`` (its bucket events from the timestamps alone)."""
    bucket_ev = np.empty(len(prep.edges), np.int64)
    bucket_events(prep.events.ts, prep.edges, bucket_ev)
    return DeltaIndex(prep.calib, prep.events.ev, cap_sections, bucket_ev)


def dense_index() -> DeltaIndex:
    """An index with which ``delta_chunk`` visits every event (no section is summed)."""
    return DeltaIndex(np.zeros(0), np.zeros(0, np.int8), 1, np.zeros(0, np.int64), sparse=False)


@kernel(nrt=False)
def member_share(S: Sections, calib: np.ndarray, sid: int, e: int) -> int:
    """The hold increment an event of section ``sid`` after its first adds (``time_step``'s ``ii``)."""
    return int(section_cost(S, calib, sid, e)[1] + 0.5)


@kernel(nrt=False)
def _take_share(agg: np.ndarray, z: int, ii: int, d: int) -> None:
    """Zone ``z``'s open summed section without one event's share (applied on its own)."""
    agg[z, AG_II] -= ii
    agg[z, AG_DF] -= d
    agg[z, AG_ABS] -= d if d > 0 else -d


@kernel_entry(nrt=False)
def index_events(S: Sections, calib: np.ndarray, ev: np.ndarray, base_sec: np.ndarray, base_zone: np.ndarray,
                 dfree: np.ndarray, k0: int, k1: int, sec_last: np.ndarray, sec_ii: np.ndarray, sec_df: np.ndarray,
                 sec_abs: np.ndarray, sec_flag: np.ndarray, vis: np.ndarray, nv: np.ndarray) -> None:
    """``DeltaIndex.extend`` over the baseline's results of events ``k0..k1-1``: each section's last
    event and its sums over the events after the first (hold increments, changes of
    NR_FREE_PAGES and their absolute values), ``sec_flag`` for an event in another zone than its
    section; section openings and free-page changes outside sections appended to ``vis``."""
    n = nv[0]
    for k in range(k0, k1):
        sid = base_sec[k]
        if sid >= 0:
            sec_last[sid] = k
            if S.first[sid] == k:
                vis[n] = k
                n += 1
            else:
                if base_zone[k] != S.zone[sid]:
                    sec_flag[sid] = 1
                sec_ii[sid] += member_share(S, calib, sid, int(ev[k]))
                d = dfree[k]
                sec_df[sid] += d
                sec_abs[sid] += d if d > 0 else -d
        elif dfree[k] != 0 and base_zone[k] >= 0:
            vis[n] = k
            n += 1
    nv[0] = n


@kernel_entry(nrt=False)
def bucket_events(ts: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:
    """Per time bucket, the event at which ``delta_chunk`` samples it (the first at or past its
    edge, in event order, after the previous bucket's); ``len(ts)`` for buckets never reached."""
    b = 0
    nb = edges.shape[0]
    for k in range(ts.shape[0]):
        while b < nb and ts[k] >= edges[b]:
            out[b] = k
            b += 1
    while b < nb:
        out[b] = ts.shape[0]
        b += 1


@kernel_entry(nrt=False)
def first_touches(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, base_zone: np.ndarray, kind: int, base: int,
                  unit: int, count: int, k0: int, k1: int, seen: np.ndarray, out: np.ndarray, nf: int) -> int:
    """The events ``k0..k1-1`` that first touch a block (``TOUCH_BLOCK``: the block of the event's
    pfn, as ``PageUnaccepted`` finds it; ``unit`` is then the block order) or a bitmap unit
    (``TOUCH_ZL`` / ``TOUCH_ALLOC``: the units under the event's range, as ``page_contains_unaccepted`` finds
    them, for the zone_locked / mm_page_alloc events of a known zone), appended to ``out`` after
    its first ``nf`` entries; returns the new count."""
    for k in range(k0, k1):
        p = pfn[k]
        if p < 0:
            continue
        if kind == TOUCH_BLOCK:
            b = (p - base) >> unit
            if 0 <= b < count and seen[b] == 0:
                seen[b] = 1
                out[nf] = k
                nf += 1
            continue
        e = ev[k]
        if base_zone[k] < 0 or (kind == TOUCH_ZL and e != EV_ZL) or (kind == TOUCH_ALLOC and e != EV_ALLOC):
            continue
        u0, u1 = bitmap_units(p, 1 << int(order[k]), base, unit, count, 0)
        hit = False
        for u in range(u0, u1):
            if seen[u] == 0:
                seen[u] = 1
                hit = True
        if hit:
            out[nf] = k
            nf += 1
    return nf


def touch_geometry(kind: int, acc: AcceptState) -> tuple[int, int, int]:
    """(base pfn, block order or unit pages, count) of the blocks or units ``kind`` looks at."""
    if kind == TOUCH_BLOCK:
        return (int(acc.geo[AcceptGeo.PFN_BASE]), int(acc.geo[AcceptGeo.BLOCK_ORDER]),
                max(int(acc.geo[AcceptGeo.NR_BLOCKS]), 0))
    return (int(acc.geo[AcceptGeo.PHYS_BASE]), max(int(acc.geo[AcceptGeo.UNIT_PAGES]), 1),
            max(int(acc.geo[AcceptGeo.NR_UNITS]), 0))


class Touches:
    """The first touches of ``kind`` under an acceptance geometry, extended as the baseline's
    results come in (unit touches need the event's zone); shared by the policies with that
    geometry (``DeltaIndex.touches``), any thread."""

    def __init__(self, kind: int, acc: AcceptState, n_events: int) -> None:
        self.kind = kind
        self.base, self.unit, self.count = touch_geometry(kind, acc)
        self.seen = np.zeros(max(self.count, 1), np.int8)
        self.out = np.empty(max(min(n_events, self.count), 1), np.int64)
        self.nf = 0
        self.upto = 0
        self._lock = threading.Lock()

    def extend(self, ea: Any, base_zone: np.ndarray, k1: int) -> np.ndarray:
        """The first touches among the events before ``k1`` (and perhaps some after)."""
        with self._lock:
            if k1 > self.upto:
                self.nf = int(first_touches(ea.ev, ea.pfn, ea.order, base_zone, self.kind, self.base, self.unit,
                                            self.count, self.upto, k1, self.seen, self.out, self.nf))
                self.upto = k1
            return self.out[: self.nf]


@kernel(nrt=False)
def _settle(st: ModelState, S: Sections, calib: np.ndarray, ev: np.ndarray, base_sec: np.ndarray, dfree: np.ndarray,
            zfree_v: np.ndarray, zfree_b: np.ndarray, agg: np.ndarray, z: int, k: int) -> None:
    """Zone ``z``'s open section with its events before ``k`` applied (all of them, in one sum,
    once ``k`` is past its last event): what the dense walk's counters hold at event ``k``."""
    sid = agg[z, AG_SID]
    if sid < 0:
        return
    if k > agg[z, AG_LAST]:
        zfree_v[z] += agg[z, AG_II]
        zfree_b[z] += agg[z, AG_II]
        st.z_nr_free[z] += agg[z, AG_DF]
        agg[z, AG_SID] = -1
        return
    for j in range(agg[z, AG_FROM], k):
        if base_sec[j] == sid:
            ii = member_share(S, calib, sid, int(ev[j]))
            d = dfree[j]
            zfree_v[z] += ii
            zfree_b[z] += ii
            st.z_nr_free[z] += d
            _take_share(agg, z, ii, d)
    if agg[z, AG_FROM] < k:
        agg[z, AG_FROM] = k


@kernel(nrt=False)
def _hot(st: ModelState, acc: AcceptState, pp: np.ndarray, zmap: np.ndarray, agg: np.ndarray, top: int) -> bool:
    """A zone still listing blocks where some event before the next visit could trigger acceptance."""
    for z in range(zmap.shape[0]):
        az = zmap[z]
        if az >= 0 and acc.ul_len[az] > 0:
            low = st.z_nr_free[z]
            if agg[z, AG_SID] >= 0:
                low -= agg[z, AG_ABS]
            if zone_needs_accept_at(st, acc, pp, zmap, z, top, low):
                return True
    return False


@kernel(nrt=False)
def _next_at(arr: np.ndarray, sp: np.ndarray, slot: int, k: int) -> int:
    """The first entry of the sorted ``arr`` after ``k`` (its position kept in ``sp[slot]``)."""
    i = sp[slot]
    while i < arr.shape[0] and arr[i] <= k:
        i += 1
    sp[slot] = i
    return arr[i] if i < arr.shape[0] else INT64_MAX


@kernel_entry(nrt=False)
def delta_chunk(st: ModelState, S: Sections, acc: AcceptState, pp: np.ndarray, pv: np.ndarray, zmap: np.ndarray,
                 calib: np.ndarray, ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, pfn: np.ndarray,
                 order: np.ndarray, base_sec: np.ndarray, base_zone: np.ndarray, dfree: np.ndarray,
                 k0: int, k_limit: int, stage0: int, delay: np.ndarray, pend: np.ndarray, zfree_v: np.ndarray,
                 zfree_b: np.ndarray, sec_vstart: np.ndarray, sec_wait: np.ndarray, sec_ext: np.ndarray,
                 acur: np.ndarray, elog: np.ndarray, elog_n: np.ndarray, edges: np.ndarray, bstate: np.ndarray,
                 base_free: np.ndarray, base_order: np.ndarray, ts_free: np.ndarray, ts_order: np.ndarray,
                 next_bg: np.ndarray, sec_last: np.ndarray, sec_ii: np.ndarray, sec_df: np.ndarray,
                 sec_abs: np.ndarray, sec_flag: np.ndarray, vis: np.ndarray, bucket_ev: np.ndarray,
                 blk_ev: np.ndarray, unit_ev: np.ndarray, agg: np.ndarray, sp: np.ndarray,
                 must: np.ndarray) -> tuple[int, int, int]:
    """``policy_chunk`` (exact mode) on the baseline's per-event results, from event ``k0`` (at
    ``stage0``) up to ``k_limit`` (the baseline's safe point: every event before it replayed and
    every section opened before it closed; the trace's end once it is done): the same call
    sites, stages and returns (plus ``ACT_DIVERGE``); ``(k_limit, ACT_DONE)`` when the limit is
    reached before the end.  ``st`` is only read for ``z_nr_free``, which this keeps.

    ``base_sec`` / ``base_zone``: the baseline's section and zone of each event; ``dfree``: its
    change of the zone's free pages (``exact_chunk``); ``base_free`` / ``base_order``: its
    time series, from which the pages still listed are subtracted (they are top-order blocks).
    ``sec_*``, ``vis``, ``bucket_ev``: the ``DeltaIndex``; ``blk_ev``, ``unit_ev``: its first
    ``Touches`` under the policy's geometry (the walk visits only the events that can matter:
    module docstring); with ``sp[SP_DENSE_UNTIL]`` set to the trace's length it visits every
    event.  ``agg``, ``sp``, ``must``: this policy's walk state (open sections per zone,
    positions in the index, the next event per CPU that settles pending latency), kept across
    the driver's round trips."""
    n = ev.shape[0]
    ncpu = pend.shape[0] // 2
    nz = zmap.shape[0]
    trig = pp[PP_TRIGGER]
    lists = pp[PP_LISTS] != 0
    noact = pp[PP_NOACT] != 0
    units = trig == Trigger.ON_BUDDY_ALLOC or trig == Trigger.POST_ALLOC
    top = base_order.shape[1] - 1
    nb = edges.shape[0]
    k = k0
    stage = stage0
    while k < k_limit:
        c = int(cpu[k])
        e = int(ev[k])
        p = int(pfn[k])
        o = int(order[k])
        t = ts[k]
        z = int(base_zone[k])
        # del_page_from_free_list (v1) / post_alloc_hook (v2-v7): the block taken here is checked
        post_site = (trig == Trigger.ON_BUDDY_ALLOC and e == EV_ZL) or (trig == Trigger.POST_ALLOC and e == EV_ALLOC)
        if stage == STAGE_FRESH:
            if z >= 0:
                _settle(st, S, calib, ev, base_sec, dfree, zfree_v, zfree_b, agg, z, k)
            sid = base_sec[k]
            if sid >= 0 and S.zone[sid] != z:
                _settle(st, S, calib, ev, base_sec, dfree, zfree_v, zfree_b, agg, int(S.zone[sid]), k)
            if lists and e == EV_ALLOC:
                # request in progress on the CPU: its previous event was a zone_locked / extfrag
                j = k - 1
                while j >= 0 and cpu[j] != c:
                    j -= 1
                pend[ncpu + c] = 1 if j >= 0 and (ev[j] == EV_ZL or ev[j] == EV_EXTFRAG) else 0
        if acur[AC_K] == k and acur[AC_ZLHOLD] > 0:  # acceptance work under a zone's lock reads it
            _settle(st, S, calib, ev, base_sec, dfree, zfree_v, zfree_b, agg, int(acur[AC_ZONE]), k)
        # ---- delta_chunk's per-event body: policy_chunk's call sites, stages and returns
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
            if trig == Trigger.BACKGROUND and t >= next_bg[0] and background_tick(acc, pv, t, next_bg):
                return k, ACT_BG, -1
            if lists and p >= 0 and z >= 0 and (e == EV_ZL or (e == EV_ALLOC and pend[ncpu + c] == 0)):
                if zone_needs_accept(st, acc, pp, zmap, z, o):
                    return k, ACT_VISIT, z
            stage = STAGE_VISITED
        if stage == STAGE_VISITED:
            if lists and p >= 0 and PageUnaccepted(acc, p):
                if e == EV_ZL or e == EV_ALLOC or e == EV_EXTFRAG:
                    return k, ACT_FORCED, z
                return k, ACT_DIVERGE, z
            if z >= 0:
                st.z_nr_free[z] += dfree[k]
                if post_site and page_contains_unaccepted(acc, p, o):
                    return k, ACT_POST, z
        if noact:
            quiet_time_step(S, calib, ev, ts, k, base_sec, sec_vstart, elog, elog_n)
        else:
            time_step(S, calib, ev, ts, cpu, k, base_sec, delay, pend, zfree_v, zfree_b, sec_vstart, sec_wait,
                      sec_ext, acur, elog, elog_n)
        # ---- event k is done: its section, pending latency, the checks that must not miss
        sid = base_sec[k]
        if sid >= 0:
            zs = int(S.zone[sid])
            if S.first[sid] == k:
                if sec_flag[sid] != 0 or agg[zs, AG_SID] >= 0:
                    # events in two zones, or interleaved in trace order with the zone's open summed
                    # section (per-CPU buffers merged by timestamp): walked event by event
                    if sec_last[sid] > sp[SP_DENSE_UNTIL]:
                        sp[SP_DENSE_UNTIL] = sec_last[sid]
                elif sec_last[sid] > k:
                    agg[zs, AG_SID] = sid
                    agg[zs, AG_FROM] = k + 1
                    agg[zs, AG_LAST] = sec_last[sid]
                    agg[zs, AG_II] = sec_ii[sid]
                    agg[zs, AG_DF] = sec_df[sid]
                    agg[zs, AG_ABS] = sec_abs[sid]
            elif agg[zs, AG_SID] == sid:  # the dense body applied this event's own share
                _take_share(agg, zs, member_share(S, calib, sid, e), dfree[k])
                agg[zs, AG_FROM] = k + 1
        sp[SP_VISITS] += 1
        if noact or pend[c] == 0:
            must[c] = INT64_MAX
        elif must[c] <= k or must[c] == INT64_MAX:  # settled by its next event not zone_locked / extfrag
            j = k + 1
            while j < n and (cpu[j] != c or ev[j] == EV_ZL or ev[j] == EV_EXTFRAG):
                j += 1
            must[c] = j
        if sp[SP_DENSE_UNTIL] <= k and p >= 0 and (
                (lists and PageUnaccepted(acc, p))
                or (post_site and z >= 0 and page_contains_unaccepted(acc, p, o))):
            sp[SP_DENSE_UNTIL] = n  # a first touch left it unaccepted: later touches are not indexed
        # ---- the next event to visit
        stage = STAGE_FRESH
        if sp[SP_DENSE_UNTIL] > k or (lists and _hot(st, acc, pp, zmap, agg, top)):
            k += 1
            continue
        nk = _next_at(vis, sp, SP_VIS, k)
        for cc in range(ncpu):
            if must[cc] < nk:
                nk = must[cc]
        if lists:
            nk = min(nk, _next_at(blk_ev, sp, SP_BLK, k))
        if units:
            nk = min(nk, _next_at(unit_ev, sp, SP_UNIT, k))
        if bstate[0] < nb:
            nk = min(nk, bucket_ev[bstate[0]])
        if next_bg[0] < INT64_MAX:
            j = max(sp[SP_BG], k + 1)
            while j < n and ts[j] < next_bg[0]:
                j += 1
            sp[SP_BG] = j
            nk = min(nk, j)
        k = max(nk, k + 1)
    if k_limit < n:  # the baseline's results end here for now: resume at k_limit (visiting it is harmless)
        return k_limit, ACT_DONE, -1
    for z in range(nz):
        _settle(st, S, calib, ev, base_sec, dfree, zfree_v, zfree_b, agg, z, n + 1)
    return n, ACT_DONE, -1


def new_walk_state(nz: int, ncpu: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A policy's ``agg``, ``sp`` and ``must`` for ``delta_chunk``."""
    agg = np.zeros((max(nz, 1), AG_LEN), np.int64)
    agg[:, AG_SID] = -1
    return agg, np.zeros(SP_LEN, np.int64), np.full(max(ncpu, 1), INT64_MAX, np.int64)


@kernel_entry(nrt=False)
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


@kernel_entry(nrt=False)
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


@kernel_entry(nrt=False)
def all_top_blocks_free(st: ModelState, pfns: np.ndarray, order: int) -> bool:
    """Every block at ``pfns`` is a whole free block of exactly ``order``."""
    for j in range(pfns.shape[0]):
        if top_block_is_free(st, pfns[j], order) < 0:
            return False
    return True
