"""The replay engine: one sequential loop over flat arrays of the event table.

``replay(table, layout, mode=...)`` turns the canonical event table into flat
NumPy columns, infers the initial state (``replay.initial_state``), and runs the
compiled loop (``exact_chunk`` here, ``simulate_chunk`` in ``replay.simulate``)
in chunks, checking invariants between chunks when asked.  The loop functions
are plain Python compiled with ``numba.njit(cache=True)``; ``PAGEREPLAY_JIT=0``
runs the very same functions uncompiled (see ``replay.state.kernel``).

zone->lock sections are recognised while replaying (kernel-notes 4.3): a run of
``mm_page_alloc_zone_locked`` with ``percpu_refill=1`` on one CPU for one
(zone, order, migratetype), at most ``max(batch >> order, 2)`` blocks, is one
``rmqueue_bulk()``; a run of ``mm_page_pcpu_drain`` on one CPU for one (zone,
owning CPU) is one ``free_pcppages_bulk()`` (remote drains of 6.1's
``drain_all_pages`` run on the caller's CPU); a zone_locked without refill is
one ``rmqueue_buddy()``; a free that bypasses the pcp lists is one
``free_one_page()``; a section holding an ``mm_page_alloc_extfrag`` is a
fallback section.  Hold times are added afterwards by ``replay.sections``.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from parsers.schema import EVENT_BY_NAME, Event
from replay.anomalies import A_PFN_OUT_OF_RANGE, N_KINDS
from replay.exact import (
    exact_alloc,
    exact_drain,
    exact_extfrag,
    exact_free,
    exact_free_batched,
    exact_zone_locked,
    pcp_owner,
)
from replay.state import C_FAILED_ALLOCS, G_PFN_BASE, ModelState, kernel, zone_of

EV_ALLOC = int(Event.MM_PAGE_ALLOC)
EV_ZL = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED)
EV_FREE = int(Event.MM_PAGE_FREE)
EV_BATCHED = int(Event.MM_PAGE_FREE_BATCHED)
EV_DRAIN = int(Event.MM_PAGE_PCPU_DRAIN)
EV_EXTFRAG = int(Event.MM_PAGE_ALLOC_EXTFRAG)

SEC_REFILL = 1
SEC_DRAIN = 2
SEC_ALLOC = 3
SEC_FREE = 4
SEC_FALLBACK = 5
SECTION_KIND_NAMES = {SEC_REFILL: "refill", SEC_DRAIN: "drain", SEC_ALLOC: "alloc", SEC_FREE: "free",
                      SEC_FALLBACK: "fallback"}

CUR_NONE = 0
CUR_REFILL = 1
CUR_DRAIN = 2
CUR_PENDING_FB = 6

Sections = namedtuple(
    "Sections",
    ["kind", "cpu", "zone", "start", "end", "pages", "nev", "first", "fallbacks", "owner", "n",
     "cur", "cur_kind", "cur_order", "cur_mt", "cur_zl"],
)


def new_sections(cap: int, n_cpus: int) -> Sections:
    cap = max(cap, 1)
    return Sections(
        kind=np.zeros(cap, np.int8), cpu=np.zeros(cap, np.int32), zone=np.zeros(cap, np.int8),
        start=np.zeros(cap, np.int64), end=np.zeros(cap, np.int64), pages=np.zeros(cap, np.int64),
        nev=np.zeros(cap, np.int32), first=np.zeros(cap, np.int64), fallbacks=np.zeros(cap, np.int32),
        owner=np.zeros(cap, np.int32), n=np.zeros(1, np.int64),
        cur=np.full(n_cpus, -1, np.int64), cur_kind=np.zeros(n_cpus, np.int64),
        cur_order=np.zeros(n_cpus, np.int64), cur_mt=np.zeros(n_cpus, np.int64), cur_zl=np.zeros(n_cpus, np.int64),
    )


# ------------------------------------------------------------------ event columns
@dataclass
class EventArrays:
    """Flat columns the loop reads (nulls as -1)."""

    ev: np.ndarray
    ts: np.ndarray
    cpu: np.ndarray
    pfn: np.ndarray
    order: np.ndarray
    mt: np.ndarray
    refill: np.ndarray
    fb_order: np.ndarray
    fb_mt: np.ndarray
    chown: np.ndarray
    gfp: np.ndarray
    seq: np.ndarray
    deferred: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    def __len__(self) -> int:
        return len(self.ev)


def _col(table: pa.Table, name: str, dtype: Any, null: int) -> np.ndarray:
    c = table.column(name)
    if c.num_chunks != 1:
        c = c.combine_chunks()
    else:
        c = c.chunk(0)
    if pa.types.is_boolean(c.type):
        c = c.cast(pa.int8())
    return np.asarray(c.fill_null(null).to_numpy(zero_copy_only=False), dtype=dtype)


def event_codes(table: pa.Table) -> np.ndarray:
    """``Event`` codes of the ``event`` column, whatever its dictionary order."""
    col = table.column("event").combine_chunks()
    if pa.types.is_dictionary(col.type):
        names = col.dictionary.to_pylist()
        lut = np.array([int(EVENT_BY_NAME[n]) if n in EVENT_BY_NAME else -1 for n in names] or [-1], np.int8)
        idx = np.asarray(col.indices.fill_null(0).to_numpy(zero_copy_only=False), np.int64)
        return lut[idx]
    names = col.to_pylist()
    return np.array([int(EVENT_BY_NAME[n]) if n in EVENT_BY_NAME else -1 for n in names], np.int8)


def event_arrays(table: pa.Table) -> EventArrays:
    """The canonical table as flat columns, plus the deferred-free marks."""
    ea = EventArrays(
        ev=event_codes(table),
        ts=_col(table, "ts_ns", np.int64, 0),
        cpu=_col(table, "cpu", np.int32, 0),
        pfn=_col(table, "pfn", np.int64, -1),
        order=_col(table, "order", np.int8, 0),
        mt=_col(table, "migratetype", np.int8, -1),
        refill=_col(table, "percpu_refill", np.int8, -1),
        fb_order=_col(table, "fallback_order", np.int8, -1),
        fb_mt=_col(table, "fallback_migratetype", np.int8, -1),
        chown=_col(table, "change_ownership", np.int8, -1),
        gfp=_col(table, "gfp_mask", np.int64, -1) if "gfp_mask" in table.column_names else np.full(table.num_rows, -1, np.int64),
        seq=_col(table, "seq", np.int64, 0),
    )
    failed = _col(table, "failed", np.int8, 0)
    ea.pfn[failed != 0] = -1
    ea.pfn[ea.ev < 0] = -1
    ea.deferred = mark_deferred_frees(ea.ev, ea.pfn)
    return ea


def mark_deferred_frees(ev: np.ndarray, pfn: np.ndarray) -> np.ndarray:
    """1 for each ``mm_page_free`` whose next event on the same pfn is ``mm_page_free_batched``.

    6.1 ``free_unref_page_list()`` runs ``free_unref_page_prepare()`` (which fires
    ``mm_page_free``) over the whole list first and commits each page to the pcp list
    later, firing ``mm_page_free_batched`` (6.12's ``free_unref_folios`` is the same
    two-pass shape).  The page reaches the pcp list at the second event.
    """
    n = len(ev)
    out = np.zeros(n, np.int8)
    idx = np.nonzero(pfn >= 0)[0]
    if len(idx) < 2:
        return out
    o = np.lexsort((idx, pfn[idx]))
    sidx = idx[o]
    sp = pfn[sidx]
    se = ev[sidx]
    hit = (sp[1:] == sp[:-1]) & (se[1:] == EV_BATCHED) & (se[:-1] == EV_FREE)
    out[sidx[:-1][hit]] = 1
    return out


# ------------------------------------------------------------------ sections
@kernel
def sec_close(S: Sections, c: int) -> None:
    S.cur[c] = -1
    S.cur_kind[c] = CUR_NONE


@kernel
def sec_open(S: Sections, c: int, kind: int, z: int, t: int, k: int, owner: int, cur_kind: int) -> int:
    sid = S.n[0]
    S.n[0] += 1
    S.kind[sid] = kind
    S.cpu[sid] = c
    S.zone[sid] = z
    S.start[sid] = t
    S.end[sid] = t
    S.pages[sid] = 0
    S.nev[sid] = 0
    S.first[sid] = k
    S.fallbacks[sid] = 0
    S.owner[sid] = owner
    S.cur[c] = sid
    S.cur_kind[c] = cur_kind
    return sid


@kernel
def sec_add(S: Sections, sid: int, t: int, pages: int) -> None:
    S.end[sid] = t
    S.pages[sid] += pages
    S.nev[sid] += 1


@kernel
def refill_limit(st: ModelState, c: int, z: int, o: int) -> int:
    """Blocks one ``rmqueue_bulk()`` takes: 6.1 ``__rmqueue_pcplist`` scales batch by order."""
    batch = st.pcp_batch[c, z]
    if batch > 1:
        return max(batch >> o, 2)
    return 1


@kernel
def locate(st: ModelState, p: int, o: int) -> tuple[int, int]:
    """(page index, zone) of block (pfn ``p``, order ``o``); zone -1 when outside the model."""
    i = p - st.geo[G_PFN_BASE]
    if i < 0 or o < 0 or o >= st.geo[1] or i + (1 << o) > st.pg_state.shape[0]:
        return i, -1
    if i & ((1 << o) - 1):
        return i, -1
    z = zone_of(st, i)
    if z >= 0 and i + (1 << o) > st.z_end[z]:
        z = -1
    return i, z


@kernel
def exact_chunk(st: ModelState, S: Sections, ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, pfn: np.ndarray,
                order: np.ndarray, mt: np.ndarray, refill: np.ndarray, fb_order: np.ndarray, chown: np.ndarray,
                deferred: np.ndarray, k0: int, k1: int, out_anom: np.ndarray, out_sec: np.ndarray,
                out_zone: np.ndarray, acount: np.ndarray) -> None:
    """Apply events ``k0..k1-1`` to the model in trace order (exact mode)."""
    for k in range(k0, k1):
        e = ev[k]
        c = cpu[k]
        p = pfn[k]
        o = order[k]
        t = ts[k]
        out_sec[k] = -1
        out_zone[k] = -1
        out_anom[k] = 0
        if p < 0:
            if e == EV_ALLOC:
                st.ctr[C_FAILED_ALLOCS] += 1
            if e != EV_EXTFRAG:
                sec_close(S, c)
            continue
        i, z = locate(st, p, o)
        if z < 0:
            out_anom[k] = A_PFN_OUT_OF_RANGE
            acount[A_PFN_OUT_OF_RANGE] += 1
            sec_close(S, c)
            continue
        out_zone[k] = z
        a = 0
        if e == EV_ZL:
            m = mt[k]
            r = refill[k] == 1
            sid = S.cur[c]
            ck = S.cur_kind[c]
            if r:
                if (ck == CUR_REFILL and S.zone[sid] == z and S.cur_order[c] == o and S.cur_mt[c] == m
                        and S.cur_zl[c] < refill_limit(st, c, z, o)):
                    pass
                elif ck == CUR_PENDING_FB and S.zone[sid] == z:
                    S.cur_kind[c] = CUR_REFILL
                    S.cur_order[c] = o
                    S.cur_mt[c] = m
                    S.cur_zl[c] = 0
                else:
                    sid = sec_open(S, c, SEC_REFILL, z, t, k, c, CUR_REFILL)
                    S.cur_order[c] = o
                    S.cur_mt[c] = m
                    S.cur_zl[c] = 0
                S.cur_zl[c] += 1
                sec_add(S, sid, t, 1 << o)
            else:
                if not (ck == CUR_PENDING_FB and S.zone[sid] == z):
                    sid = sec_open(S, c, SEC_ALLOC, z, t, k, c, CUR_NONE)
                sec_add(S, sid, t, 1 << o)
                sec_close(S, c)
            out_sec[k] = sid
            a = exact_zone_locked(st, c, i, z, o, m, r)
        elif e == EV_ALLOC:
            sec_close(S, c)
            a = exact_alloc(st, c, i, z, o, mt[k])
        elif e == EV_FREE or e == EV_BATCHED:
            sec_close(S, c)
            if e == EV_FREE:
                a, direct = exact_free(st, c, i, z, o, deferred[k] != 0)
            else:
                a, direct = exact_free_batched(st, c, i, z)
            if direct:
                sid = sec_open(S, c, SEC_FREE, z, t, k, c, CUR_NONE)
                sec_add(S, sid, t, 1 << o)
                sec_close(S, c)
                out_sec[k] = sid
        elif e == EV_DRAIN:
            owner = pcp_owner(st, i, c)
            sid = S.cur[c]
            if not (S.cur_kind[c] == CUR_DRAIN and S.zone[sid] == z and S.owner[sid] == owner):
                sid = sec_open(S, c, SEC_DRAIN, z, t, k, owner, CUR_DRAIN)
            sec_add(S, sid, t, 1 << o)
            out_sec[k] = sid
            a = exact_drain(st, i, z, o, mt[k])
        elif e == EV_EXTFRAG:
            sid = S.cur[c]
            if S.cur_kind[c] == CUR_REFILL and S.zone[sid] == z:
                S.kind[sid] = SEC_FALLBACK
            else:
                sid = sec_open(S, c, SEC_FALLBACK, z, t, k, c, CUR_PENDING_FB)
            S.fallbacks[sid] += 1
            S.nev[sid] += 1
            S.end[sid] = t
            out_sec[k] = sid
            a = exact_extfrag(st, i, z, o, fb_order[k], mt[k], chown[k])
        if a != 0:
            out_anom[k] = a
            acount[a] += 1


# ------------------------------------------------------------------ driver
@dataclass
class ReplayOutput:
    """Everything a replay produced; ``replay.results`` turns it into tables."""

    mode: str
    events: EventArrays
    state: ModelState
    sections: Sections
    out_anom: np.ndarray
    out_sec: np.ndarray
    out_zone: np.ndarray
    out_pfn: np.ndarray
    acount: np.ndarray
    zone_names: list[str]
    initial: dict[str, Any]
    invariant_reports: list[dict[str, Any]]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def n_sections(self) -> int:
        return int(self.sections.n[0])


def run_loop(mode: str, st: ModelState, ea: EventArrays, *, check_every: int = 0,
             chunk: int = 1 << 20) -> tuple[Sections, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Run the compiled loop over all events; check invariants every ``check_every`` events."""
    from replay.invariants import check_invariants
    from replay.simulate import new_sim_map, simulate_chunk

    n = len(ea)
    S = new_sections(n, st.pcp_count.shape[0])
    out_anom = np.zeros(n, np.int8)
    out_sec = np.full(n, -1, np.int32)
    out_zone = np.full(n, -1, np.int8)
    out_pfn = ea.pfn.copy()
    acount = np.zeros(N_KINDS, np.int64)
    reports: list[dict[str, Any]] = []
    step = check_every if check_every > 0 else chunk
    simmap = new_sim_map(st) if mode == "simulate" else None
    zone_pref = None
    if mode == "simulate":
        from replay.simulate import zone_preferences
        zone_pref = zone_preferences(st)
    for k0 in range(0, n, step):
        k1 = min(n, k0 + step)
        if mode == "exact":
            exact_chunk(st, S, ea.ev, ea.ts, ea.cpu, ea.pfn, ea.order, ea.mt, ea.refill, ea.fb_order, ea.chown,
                        ea.deferred, k0, k1, out_anom, out_sec, out_zone, acount)
        else:
            simulate_chunk(st, S, simmap, zone_pref, ea.ev, ea.ts, ea.cpu, ea.pfn, ea.order, ea.mt, ea.gfp,
                           ea.deferred, k0, k1, out_anom, out_sec, out_zone, out_pfn, acount)
        if check_every > 0:
            rep = check_invariants(st)
            rep["after_event"] = int(k1)
            reports.append(rep)
    return S, out_anom, out_sec, out_zone, out_pfn, acount, reports
