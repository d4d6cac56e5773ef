"""Exact mode, policies after the baseline: the acceptance call sites on the baseline's buddy results.

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
policy with the very same call-site checks and driver round trips as
``replay.policy.loop.policy_chunk``, but instead of applying an event to a buddy model it adds
the recorded change to the policy's per-zone free counters.  It returns ``ACT_DIVERGE`` (the
driver falls back to the full replay) when an event touches a still-listed block in a way the
full replay would not force first (a free or a drain of a page the kernel never handed out):
there the two models would part, and the full replay is the reference.  The driver checks the
rest at the end (the counters agree with the baseline's final state minus the listed blocks,
and each still-listed block is a whole free block there).

Most events need no visit at all.  On a real trace nearly all of them are per-CPU list hits and
the middle of ``rmqueue_bulk`` / ``free_pcppages_bulk`` batches (14.7M events, 49k zone->lock
sections): nothing changes ``NR_FREE_PAGES`` outside a section there, and no acceptance check can
fire.  The walk
runs its per-event body on a subset of the events, chosen so that every event it skips would
have been a no-op:

- the first event of each zone->lock section and every change of ``NR_FREE_PAGES`` outside a
  section;
- the rest of a section's events only add their change to ``NR_FREE_PAGES``: these are added in
  one sum, *lazily*, when the zone's counter is next read (a later section in the zone, an
  acceptance check in it), with an exact event-by-event catch-up when the read falls inside the
  section;
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
event.  Results are identical to visiting every event (tests/policy/test_delta.py).
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
from replay.policy.bundles import Baseline, Index, Policy, Series, Trace, Walk, Zones
from replay.policy.loop import (ACT_BG, ACT_DONE, ACT_FORCED, ACT_POST, ACT_VISIT, INT64_MAX, PP_LISTS, PP_TRIGGER,
                                STAGE_FRESH, STAGE_VISITED, accepted_block_zone, background_tick, take_free_block,
                                top_block_is_free, zone_needs_accept, zone_needs_accept_at)
from replay.model.state import ModelState
from replay.jit import kernel, kernel_entry

#: an event the baseline's results cannot stand in for: the driver replays the policy in full
ACT_DIVERGE = 6
# the open (lazily summed) section of each zone: agg[z, AG_*]
AG_SID, AG_FROM, AG_LAST, AG_DF, AG_ABS, AG_LEN = 0, 1, 2, 3, 4, 5
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

    def __init__(self, cap_sections: int, n_events: int, bucket_ev: np.ndarray, sparse: bool = True) -> None:
        cap = max(cap_sections, 1)
        self.sparse = sparse
        # zeros: a page is only touched once a section of it exists (one section per event at most)
        self.sec_last = np.zeros(cap, np.int64)
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

    def bundle(self, blk_ev: np.ndarray, unit_ev: np.ndarray) -> Index:
        """The index as ``delta_chunk`` reads it, with one policy's first touches."""
        return Index(self.sec_last, self.sec_df, self.sec_abs, self.sec_flag, self.vis, self.bucket_ev, blk_ev,
                     unit_ev)

    def extend(self, S: Sections, base_sec: np.ndarray, base_zone: np.ndarray, dfree: np.ndarray, k1: int) -> None:
        """Take in the baseline's results (sections, section and zone per event, free-page
        changes) of the events up to ``k1``."""
        if self.sparse and k1 > self.scanned:
            index_events(S, base_sec, base_zone, dfree, self.scanned, k1, self.sec_last, self.sec_df, self.sec_abs,
                         self.sec_flag, self._vis, self.nv)
            self.scanned = k1


def new_index(prep: Any, cap_sections: int) -> DeltaIndex:
    """An empty index for a baseline of ``prep`` (its bucket events from the timestamps alone)."""
    bucket_ev = np.empty(len(prep.edges), np.int64)
    bucket_events(prep.events.ts, prep.edges, bucket_ev)
    return DeltaIndex(cap_sections, len(prep.events), bucket_ev)


def dense_index() -> DeltaIndex:
    """An index with which ``delta_chunk`` visits every event (no section is summed)."""
    return DeltaIndex(1, 0, np.zeros(0, np.int64), sparse=False)


@kernel(nrt=False)
def _take_share(agg: np.ndarray, z: int, d: int) -> None:
    """Zone ``z``'s open summed section without one event's change of free pages (applied on its own)."""
    agg[z, AG_DF] -= d
    agg[z, AG_ABS] -= d if d > 0 else -d


@kernel_entry(nrt=False)
def index_events(S: Sections, base_sec: np.ndarray, base_zone: np.ndarray, dfree: np.ndarray, k0: int, k1: int,
                 sec_last: np.ndarray, sec_df: np.ndarray, sec_abs: np.ndarray, sec_flag: np.ndarray, vis: np.ndarray,
                 nv: np.ndarray) -> None:
    """``DeltaIndex.extend`` over the baseline's results of events ``k0..k1-1``: each section's last
    event and its sums over the events after the first (changes of NR_FREE_PAGES and their
    absolute values), ``sec_flag`` for an event in another zone than its section; section
    openings and free-page changes outside sections appended to ``vis``."""
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
def _settle(st: ModelState, S: Sections, base: Baseline, agg: np.ndarray, z: int, k: int) -> None:
    """Zone ``z``'s open section with its events before ``k`` applied (all of them, in one sum,
    once ``k`` is past its last event): what the dense walk's counters hold at event ``k``."""
    sid = agg[z, AG_SID]
    if sid < 0:
        return
    if k > agg[z, AG_LAST]:
        st.z_nr_free[z] += agg[z, AG_DF]
        agg[z, AG_SID] = -1
        return
    for j in range(agg[z, AG_FROM], k):
        if base.sec[j] == sid:
            d = base.dfree[j]
            st.z_nr_free[z] += d
            _take_share(agg, z, d)
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


@kernel(nrt=False)
def _is_post_site(trig: int, e: int) -> bool:
    """``del_page_from_free_list`` (v1: zone_locked) / ``post_alloc_hook`` (v2-v7: mm_page_alloc):
    the block an event of type ``e`` takes is checked for unaccepted units."""
    return (trig == Trigger.ON_BUDDY_ALLOC and e == EV_ZL) or (trig == Trigger.POST_ALLOC and e == EV_ALLOC)


@kernel(nrt=False)
def _catch_up(st: ModelState, S: Sections, base: Baseline, agg: np.ndarray, k: int) -> None:
    """Before event ``k``'s body: the open summed sections of its zone and of its section's zone
    caught up to ``k`` (the body reads and changes their counters)."""
    z = int(base.zone[k])
    if z >= 0:
        _settle(st, S, base, agg, z, k)
    sid = base.sec[k]
    if sid >= 0 and S.zone[sid] != z:
        _settle(st, S, base, agg, int(S.zone[sid]), k)


@kernel(nrt=False)
def _request_in_progress(tr: Trace, k: int) -> bool:
    """The previous event on event ``k``'s CPU was a zone_locked / extfrag of the same request."""
    c = tr.cpu[k]
    j = k - 1
    while j >= 0 and tr.cpu[j] != c:
        j -= 1
    return j >= 0 and (tr.ev[j] == EV_ZL or tr.ev[j] == EV_EXTFRAG)


@kernel(nrt=False)
def _sample_listed_buckets(acc: AcceptState, zones: Zones, base: Baseline, series: Series, t: int) -> None:
    """The buckets trace time ``t`` has reached: the baseline's samples without the pages still
    listed (top-order blocks)."""
    nb = series.edges.shape[0]
    top = base.order.shape[1] - 1
    while series.pos[0] < nb and t >= series.edges[series.pos[0]]:
        b = series.pos[0]
        held = listed_pages(acc, zones.zmap)
        series.free[b] = base.free[b] - held
        for j in range(top + 1):
            series.order[b, j] = base.order[b, j]
        series.order[b, top] -= held
        series.pos[0] = b + 1


@kernel(nrt=False)
def _close_event(S: Sections, base: Baseline, index: Index, walk: Walk, k: int) -> None:
    """Event ``k`` done: a section it opens is summed lazily from here (or walked event by event
    when it cannot be); a later event of the zone's summed section takes its share out."""
    sid = base.sec[k]
    if sid < 0:
        return
    agg, sp = walk.agg, walk.sp
    zs = int(S.zone[sid])
    if S.first[sid] == k:
        if index.sec_flag[sid] != 0 or agg[zs, AG_SID] >= 0:
            # events in two zones, or interleaved in trace order with the zone's open summed
            # section (per-CPU buffers merged by timestamp): walked event by event
            if index.sec_last[sid] > sp[SP_DENSE_UNTIL]:
                sp[SP_DENSE_UNTIL] = index.sec_last[sid]
        elif index.sec_last[sid] > k:
            agg[zs, AG_SID] = sid
            agg[zs, AG_FROM] = k + 1
            agg[zs, AG_LAST] = index.sec_last[sid]
            agg[zs, AG_DF] = index.sec_df[sid]
            agg[zs, AG_ABS] = index.sec_abs[sid]
    elif agg[zs, AG_SID] == sid:  # the dense body applied this event's own change
        _take_share(agg, zs, base.dfree[k])
        agg[zs, AG_FROM] = k + 1


@kernel(nrt=False)
def _left_unaccepted(acc: AcceptState, pol: Policy, tr: Trace, base: Baseline, k: int) -> bool:
    """Event ``k``, a first touch, left its block listed or its units unaccepted: later touches
    are not indexed (the walk then visits every event)."""
    p = int(tr.pfn[k])
    if p < 0:
        return False
    if pol.pp[PP_LISTS] != 0 and PageUnaccepted(acc, p):
        return True
    return (_is_post_site(pol.pp[PP_TRIGGER], int(tr.ev[k])) and base.zone[k] >= 0
            and page_contains_unaccepted(acc, p, int(tr.order[k])))


@kernel(nrt=False)
def _next_visit(st: ModelState, acc: AcceptState, pol: Policy, zones: Zones, tr: Trace, base: Baseline, index: Index,
                series: Series, walk: Walk, k: int) -> int:
    """The next event after ``k`` whose body can matter (module docstring)."""
    sp = walk.sp
    lists = pol.pp[PP_LISTS] != 0
    if sp[SP_DENSE_UNTIL] > k or (lists and _hot(st, acc, pol.pp, zones.zmap, walk.agg, base.order.shape[1] - 1)):
        return k + 1
    trig = pol.pp[PP_TRIGGER]
    n = tr.ev.shape[0]
    nk = _next_at(index.vis, sp, SP_VIS, k)
    if lists:
        nk = min(nk, _next_at(index.blk_ev, sp, SP_BLK, k))
    if trig == Trigger.ON_BUDDY_ALLOC or trig == Trigger.POST_ALLOC:
        nk = min(nk, _next_at(index.unit_ev, sp, SP_UNIT, k))
    if series.pos[0] < series.edges.shape[0]:
        nk = min(nk, index.bucket_ev[series.pos[0]])
    next_bg = walk.next_bg[0]
    if next_bg < INT64_MAX:
        j = max(sp[SP_BG], k + 1)
        while j < n and tr.ts[j] < next_bg:
            j += 1
        sp[SP_BG] = j
        nk = min(nk, j)
    return max(nk, k + 1)


@kernel(nrt=False)
def _pre_event(st: ModelState, acc: AcceptState, pol: Policy, zones: Zones, tr: Trace, base: Baseline,
               series: Series, walk: Walk, k: int, inreq: bool) -> tuple[int, int]:
    """Event ``k``'s zone-visit stage: the buckets it reaches, the background acceptor's tick, the
    zone visit of a list policy; ``(action, zone)`` when the policy acts (``ACT_DONE``: not)."""
    t = tr.ts[k]
    _sample_listed_buckets(acc, zones, base, series, t)
    if pol.pp[PP_TRIGGER] == Trigger.BACKGROUND and t >= walk.next_bg[0] and background_tick(acc, pol.pv, t,
                                                                                              walk.next_bg):
        return ACT_BG, -1
    e = int(tr.ev[k])
    z = int(base.zone[k])
    if pol.pp[PP_LISTS] != 0 and tr.pfn[k] >= 0 and z >= 0 and (e == EV_ZL or (e == EV_ALLOC and not inreq)):
        if zone_needs_accept(st, acc, pol.pp, zones.zmap, z, int(tr.order[k])):
            return ACT_VISIT, z
    return ACT_DONE, -1


@kernel(nrt=False)
def _apply_change(st: ModelState, acc: AcceptState, pol: Policy, tr: Trace, base: Baseline, k: int) -> int:
    """Event ``k``'s placement stage on the baseline's results: the forced acceptance of a block
    still listed (or ``ACT_DIVERGE``), the recorded change of free pages, the post-allocation
    check; the action (``ACT_DONE``: none)."""
    p = int(tr.pfn[k])
    e = int(tr.ev[k])
    z = int(base.zone[k])
    if pol.pp[PP_LISTS] != 0 and p >= 0 and PageUnaccepted(acc, p):
        if e == EV_ZL or e == EV_ALLOC or e == EV_EXTFRAG:
            return ACT_FORCED
        return ACT_DIVERGE
    if z >= 0:
        st.z_nr_free[z] += base.dfree[k]
        if _is_post_site(pol.pp[PP_TRIGGER], e) and page_contains_unaccepted(acc, p, int(tr.order[k])):
            return ACT_POST
    return ACT_DONE


@kernel_entry(nrt=False)
def delta_chunk(st: ModelState, S: Sections, acc: AcceptState, pol: Policy, zones: Zones, tr: Trace, base: Baseline,
                index: Index, series: Series, walk: Walk, k0: int, k_limit: int, stage0: int) -> tuple[int, int, int]:
    """``policy_chunk`` (exact mode) on the baseline's per-event results, from event ``k0`` (at
    ``stage0``) up to ``k_limit`` (the baseline's safe point: every event before it replayed and
    every section opened before it closed; the trace's end once it is done): the same call
    sites, stages and returns (plus ``ACT_DIVERGE``); ``(k_limit, ACT_DONE)`` when the limit is
    reached before the end.  ``st`` is only read for ``z_nr_free``, which this keeps.

    ``base``: the baseline's section, zone and change of the zone's free pages per event
    (``exact_chunk``'s ``dfree``) and its time series, from which the pages still listed are
    subtracted (they are top-order blocks).  ``index``: the ``DeltaIndex`` and the policy's first
    ``Touches`` (the walk visits only the events that can matter: module docstring); with
    ``walk.sp[SP_DENSE_UNTIL]`` set to the trace's length it visits every event.  ``walk.agg``,
    ``walk.sp``: this policy's walk state (open sections per zone, positions in the index), kept
    across the driver's round trips."""
    n = tr.ev.shape[0]
    lists = pol.pp[PP_LISTS] != 0
    k = k0
    stage = stage0
    while k < k_limit:
        z = int(base.zone[k])
        if stage == STAGE_FRESH:
            _catch_up(st, S, base, walk.agg, k)
            # request in progress on the CPU: its mm_page_alloc visited the zone at its zone_locked
            inreq = lists and tr.ev[k] == EV_ALLOC and _request_in_progress(tr, k)
            act, zv = _pre_event(st, acc, pol, zones, tr, base, series, walk, k, inreq)
            if act != ACT_DONE:
                return k, act, zv
            stage = STAGE_VISITED
        if stage == STAGE_VISITED:
            act = _apply_change(st, acc, pol, tr, base, k)
            if act != ACT_DONE:
                return k, act, z
        _close_event(S, base, index, walk, k)
        walk.sp[SP_VISITS] += 1
        if walk.sp[SP_DENSE_UNTIL] <= k and _left_unaccepted(acc, pol, tr, base, k):
            walk.sp[SP_DENSE_UNTIL] = n
        stage = STAGE_FRESH
        k = _next_visit(st, acc, pol, zones, tr, base, index, series, walk, k)
    if k_limit < n:  # the baseline's results end here for now: resume at k_limit (visiting it is harmless)
        return k_limit, ACT_DONE, -1
    for z in range(zones.zmap.shape[0]):
        _settle(st, S, base, walk.agg, z, n + 1)
    return n, ACT_DONE, -1


def new_walk(nz: int, ncpu: int, simmap: np.ndarray | None = None) -> Walk:
    """A walk's state (``bundles.Walk``): no background tick yet, no request in progress, no
    summed section open (``agg``), at the start of the index (``sp``)."""
    agg = np.zeros((max(nz, 1), AG_LEN), np.int64)
    agg[:, AG_SID] = -1
    return Walk(next_bg=np.array([INT64_MAX], np.int64), inreq=np.zeros(max(ncpu, 1), np.int8),
                drop=np.zeros(max(nz, 1), np.int64),
                simmap=simmap if simmap is not None else np.zeros(1, np.int32), agg=agg,
                sp=np.zeros(SP_LEN, np.int64))


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
