"""The replay engine: one sequential loop over flat arrays of the event table.

``replay(table, layout, mode=...)`` turns the canonical event table into flat
NumPy columns, infers the initial state (``replay.model.initial_state``), and runs the
compiled loop (``exact_chunk`` here, ``simulate_chunk`` in ``replay.model.simulate``)
in chunks, checking invariants between chunks when asked.  The loop functions
are plain Python compiled with ``numba.njit(cache=True)``; ``PAGEREPLAY_JIT=0``
runs the very same functions uncompiled (see ``replay.model.state.kernel``).

zone->lock sections are recognised while replaying (kernel-notes 4.3): a run of
``mm_page_alloc_zone_locked`` with ``percpu_refill=1`` on one CPU for one
(zone, order, migratetype), at most ``max(batch >> order, 2)`` blocks, is one
``rmqueue_bulk()``; a run of ``mm_page_pcpu_drain`` on one CPU for one (zone,
owning CPU) is one ``free_pcppages_bulk()`` (remote drains of 6.1's
``drain_all_pages`` run on the caller's CPU); a zone_locked without refill is
one ``rmqueue_buddy()``; a free that bypasses the pcp lists is one
``free_one_page()``; a section holding an ``mm_page_alloc_extfrag`` is a
fallback section.  Hold times are added afterwards by ``replay.model.sections``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from replay.events.arrays import (EV_ALLOC, EV_BATCHED, EV_DRAIN, EV_EXTFRAG, EV_FREE, EV_ZL, EventArrays, Trace,
                                  boot_free_core_mask, event_arrays, trace_of)
from replay.model.anomalies import A_PFN_OUT_OF_RANGE, A_ZL_INSIDE_FREE, A_ZL_PRETRACE, N_KINDS
from replay.model.exact import (
    exact_alloc,
    exact_drain,
    exact_extfrag,
    exact_free,
    exact_free_batched,
    exact_zone_locked,
    pcp_owner,
)
from replay.model.sections import (CUR_DRAIN, CUR_NONE, CUR_PENDING_FB, CUR_REFILL, SEC_ALLOC, SEC_DRAIN,
                                   SEC_FALLBACK, SEC_FREE, SEC_REFILL, Sections, new_sections, sec_add, sec_close,
                                   sec_open)
from replay.model.state import C_AT_HALF, C_FAILED_ALLOCS, C_HALF_AT, G_PFN_BASE, ModelState, block_head, zone_of
from replay.model.profiles import DEFAULT_PROFILE, PROFILES
from replay.model.replayed import Replayed, new_replayed
from replay.model.untraced import UX_FIRST, block_untouched, exact_untraced, has_untraced, mark_untraced, without_untraced
from replay.jit import kernel, kernel_entry

if TYPE_CHECKING:
    from replay.model.layout import MemoryLayout
    from replay.model.profiles import KernelProfile
    from replay.model.simulate import Zonelist

@kernel(nrt=False)
def refill_limit(st: ModelState, c: int, z: int, o: int) -> int:
    """Blocks one ``rmqueue_bulk()`` takes: 6.1 ``__rmqueue_pcplist`` scales batch by order."""
    batch = st.pcp_batch[c, z]
    if batch > 1:
        return max(batch >> o, 2)
    return 1


@kernel(nrt=False)
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


@kernel(nrt=False)
def block_untouched_since(st: ModelState, first: np.ndarray, i: int, o: int, k: int) -> bool:
    """No event before ``k`` touched the free block holding page ``i``, which does not start at
    ``i``: its shape is the inferred one."""
    return block_head(st, i) != i and block_untouched(st, first, i, k)


@kernel(nrt=False)
def zone_locked_section(st: ModelState, S: Sections, c: int, z: int, o: int, m: int, r: bool, t: int, k: int) -> int:
    """The lock section of an ``mm_page_alloc_zone_locked`` (one ``rmqueue_bulk()`` run of
    refills, else one ``rmqueue_buddy()``, or the fallback section it continues)."""
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
    return sid


@kernel_entry(nrt=False)
def exact_chunk(st: ModelState, S: Sections, tr: Trace, out: Replayed, k0: int, k1: int) -> None:
    """Apply events ``k0..k1-1`` of ``tr`` to the model in trace order (exact mode), writing
    ``out`` (``replay.model.replayed``); the untraced kprobe rows (``UntracedEvent`` codes)
    through ``replay.model.untraced``.

    ``out.dfree`` (empty: off): each event's change of its zone's ``NR_FREE_PAGES``, for the
    policy replays of ``replay.policy.delta``."""
    ev, ts, cpu, pfn, order, mt = tr.ev, tr.ts, tr.cpu, tr.pfn, tr.order, tr.mt
    refill, fb_order, chown, deferred, first = tr.refill, tr.fb_order, tr.chown, tr.deferred, tr.first
    out_anom, out_sec, out_zone, acount, dfree = out.anom, out.sec, out.zone, out.acount, out.dfree
    rec = dfree.shape[0] > 0
    for k in range(k0, k1):
        if k == st.ctr[C_HALF_AT]:  # the counters at the midpoint: fidelity.second_half
            for j in range(C_AT_HALF):
                st.ctr[C_AT_HALF + j] = st.ctr[j]
        e = int(ev[k])
        c = int(cpu[k])
        p = int(pfn[k])
        o = int(order[k]) if e < UX_FIRST or order[k] >= 0 else 0  # (compaction_free: order not fetched)
        t = ts[k]
        out_sec[k] = -1
        out_zone[k] = -1
        out_anom[k] = 0
        if rec:
            dfree[k] = 0
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
        free_before = st.z_nr_free[z]
        a = 0
        if e == EV_ZL:
            m = int(mt[k])
            r = int(refill[k]) == 1
            sid = zone_locked_section(st, S, c, z, o, m, r, t, k)
            out_sec[k] = sid
            untouched = block_untouched_since(st, first, i, o, k)
            a = exact_zone_locked(st, c, i, z, o, m, r)
            if a == A_ZL_INSIDE_FREE and untouched:
                a = A_ZL_PRETRACE
        elif e == EV_ALLOC:
            sec_close(S, c)
            a = exact_alloc(st, c, i, z, o, int(mt[k]))
        elif e == EV_FREE or e == EV_BATCHED:
            sec_close(S, c)
            if e == EV_FREE:
                a, direct = exact_free(st, c, i, z, o, int(deferred[k]))
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
            a = exact_drain(st, i, z, o, int(mt[k]))
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
            a = exact_extfrag(st, i, z, o, int(fb_order[k]), int(mt[k]), int(chown[k]))
        elif e >= UX_FIRST:
            sec_close(S, c)
            a = exact_untraced(st, c, i, z, o, e, int(mt[k]), int(deferred[k]), block_untouched(st, first, i, k))
        if a != 0:
            out_anom[k] = a
            acount[a] += 1
        if rec:
            dfree[k] = st.z_nr_free[z] - free_before


# ------------------------------------------------------------------ driver
@dataclass
class ReplayOutput:
    """Everything a replay produced (the summary: ``replay.results.summary``; the tables: ``replay.results.tables``)."""

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


def run_loop(mode: str, st: ModelState, ea: EventArrays, *, zonelist: "Zonelist | None" = None,
             check_every: int = 0, chunk: int = 1 << 20) -> tuple[Sections, Replayed, list[dict[str, Any]]]:
    """Run the compiled loop over all events; check invariants every ``check_every`` events.
    ``zonelist`` (simulate mode; default: every zone Normal, no watermarks): what
    ``get_page_from_freelist()`` walks (``simulate.zonelist_of``)."""
    from replay.model.invariants import check_invariants
    from replay.model.simulate import ZK_NORMAL, Zonelist, new_sim_map, simulate_chunk

    n = len(ea)
    nz = len(st.z_start)
    S = new_sections(n, st.pcp_count.shape[0])
    out = new_replayed(n, ea.pfn.copy(), N_KINDS)
    tr = trace_of(ea)
    reports: list[dict[str, Any]] = []
    step = check_every if check_every > 0 else chunk
    simmap = new_sim_map(st) if mode == "simulate" else np.zeros(1, np.int32)
    zl = zonelist if zonelist is not None else Zonelist(np.full(nz, ZK_NORMAL, np.int64), np.zeros(nz, np.int64))
    for k0 in range(0, n, step):
        k1 = min(n, k0 + step)
        if mode == "exact":
            exact_chunk(st, S, tr, out, k0, k1)
        else:
            simulate_chunk(st, S, zl, simmap, tr, out, k0, k1)
        if check_every > 0:
            rep = check_invariants(st)
            rep["after_event"] = int(k1)
            reports.append(rep)
    return S, out, reports


@dataclass
class InitialModel:
    """A trace's event columns and the model state it starts from (``prepare_events``)."""

    events: EventArrays
    state: ModelState
    initial: dict[str, Any]  # the initial-state report (``initial_state.infer_initial_state``)
    zone_names: list[str]


def prepare_events(table: pa.Table, layout: "MemoryLayout", *, mode: str = "exact",
                   snapshot: "MemoryLayout | None" = None, boot: bool | None = None,
                   events: EventArrays | None = None, profile: "KernelProfile | None" = None) -> InitialModel:
    """The event columns of ``table`` (or ``events``, already made) and the initial model state
    of kernel ``profile`` (``replay.model.profiles``; default 6.1).

    ``snapshot`` (a layout read from ``proc_before``) seeds the initial free blocks; ``boot``
    (default: no snapshot and the first event within 5 s of boot) starts from the boot layout.
    """
    from replay.model.deferred_init import deferred_init_order0_mask, pid_column
    from replay.model.initial_state import infer_initial_state, model_zones

    if mode not in ("exact", "simulate"):
        raise ValueError(f"unknown mode {mode!r} (exact, simulate)")
    ea = events if events is not None else event_arrays(table, with_gfp=mode != "exact")
    if boot is None:
        boot = snapshot is None and len(ea) > 0 and int(ea.ts.min()) < 5_000_000_000
    if boot:
        core = boot_free_core_mask(ea, layout.pageblock_order)
        ea.deferred |= core
        pid = pid_column(table, len(ea))
        if pid is not None:
            ea.deferred |= deferred_init_order0_mask(ea.ev, ea.pfn, ea.order, pid, core, layout.pageblock_order)
    kp = (profile if profile is not None else PROFILES[DEFAULT_PROFILE]).params()
    deferred0 = _untraced_marks(ea, mode, kp)
    st, initial = infer_initial_state(ea.ev, ea.pfn, ea.order, ea.mt, ea.cpu, ea.fb_mt, layout,
                                      snapshot=snapshot, boot=bool(boot),
                                      profile_params=None if profile is None else profile.params())
    ea.first = initial.pop("_first")
    st.ctr[C_HALF_AT] = len(ea) // 2
    if deferred0 is not None:
        # the same replay with the kprobe rows not applied: the anomalies they replace (summary)
        st0 = ModelState._make(a.copy() for a in st)
        initial["_untraced_without"] = run_loop("exact", st0, without_untraced(ea, deferred0))[1].acount
    return InitialModel(events=ea, state=st, initial=initial, zone_names=[z.name for z in model_zones(layout)])


def _untraced_marks(ea: EventArrays, mode: str, kp: np.ndarray) -> np.ndarray | None:
    """Exact mode: the kprobe rows' marks (``untraced.mark_untraced``); returns the marks before
    (None when the trace has no kprobe rows).  Simulate mode places pages itself: the rows are
    made inert (no pfn)."""
    if not has_untraced(ea.ev):
        return None
    if mode != "exact":
        ea.pfn[(ea.ev >= UX_FIRST)] = -1
        return None
    deferred0 = ea.deferred.copy()
    mark_untraced(ea, kp)
    return deferred0


def replay(table: pa.Table, layout: "MemoryLayout", *, mode: str = "exact", snapshot: "MemoryLayout | None" = None,
           boot: bool | None = None, check_every: int = 0, metadata: dict[str, str] | None = None,
           events: EventArrays | None = None, profile: "KernelProfile | None" = None) -> ReplayOutput:
    """Replay ``table`` through the model of ``layout`` (``mode``: ``exact`` or ``simulate``), the
    buddy model alone (no acceptance policy: ``replay.policy`` runs those, and ``pagereplay
    replay``); ``check_every`` > 0 checks the invariants every that many events as well as at
    the end.  ``profile``: the kernel profile (default: ``profiles.pick_profile`` from
    ``metadata`` and the trace).  See ``prepare_events`` for the other arguments."""
    from replay.model.profiles import pick_profile

    if profile is None:
        profile = pick_profile(None, metadata or {}, table)[0]
    from replay.model.initial_state import model_zones
    from replay.model.invariants import check_invariants
    from replay.model.simulate import zonelist_of

    init = prepare_events(table, layout, mode=mode, snapshot=snapshot, boot=boot, events=events, profile=profile)
    ea, st, names = init.events, init.state, init.zone_names
    S, out, reports = run_loop(mode, st, ea, zonelist=zonelist_of(model_zones(layout)), check_every=check_every)
    final = check_invariants(st)
    final["after_event"] = len(ea)
    reports.append(final)
    return ReplayOutput(mode=mode, events=ea, state=st, sections=S, out_anom=out.anom, out_sec=out.sec,
                        out_zone=out.zone, out_pfn=out.pfn, acount=out.acount, zone_names=names, initial=init.initial,
                        invariant_reports=reports,
                        metadata={**(metadata or {}), "pagereplay.kernel_profile": profile.name})
