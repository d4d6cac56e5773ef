"""Replay one trace under acceptance policies: the driver of ``replay.policy.loop``.

``prepare(table, layout, ...)`` does the policy-independent work once (event columns, initial
buddy state, zone->lock calibration, time buckets); ``run_policy(prep, policy, costs)`` then

1. builds the acceptance state from the layout (``state_from_layout``: firmware-accepted low
   memory, EFI stub, memblock, boot-time listing or eager acceptance), and reconciles it with
   the trace's initial state: a block listed on ``zone->unaccepted_pages`` leaves the buddy
   (``__free_unaccepted`` never puts it there) if it is wholly free at the start; a block or unit
   the trace finds in use before it starts was accepted before it (silently, no cost charged);
2. runs the compiled loop, which stops at each kernel call site where the policy acts; the
   driver calls ``replay.acceptance.unaccepted`` (``acceptance_hook`` at ``SITE_ZONE_VISIT`` /
   ``SITE_WMARK_FAIL`` / ``SITE_BUDDY_DEL`` / ``SITE_POST_ALLOC``, ``accept_page`` for a forced
   placement, ``background_accept`` for the acceptor thread), frees the accepted blocks into the
   buddy (``__free_pages_ok(MAX_PAGE_ORDER, FPI_TO_TAIL)``: a zone->lock section), records the
   receipt against the event and the CPU, and resumes;
3. returns a ``PolicyRun`` with per-event and per-section arrays, the acceptance actions and
   the time series, which ``replay.results.tables`` turns into the results tables.

In exact mode the trace decides placement: an allocation inside a block the policy has not
accepted yet is *forced* (the block is accepted there, charged to that CPU, and counted).  In
simulate mode listed blocks are not in the buddy, so the model only ever hands out accepted
memory, and the policy decides when more is accepted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

import replay.acceptance.unaccepted as A
from replay.model.engine import EventArrays, ReplayOutput, Sections, new_sections, replay
from replay.acceptance.policies import AcceptancePolicy
from replay.policy.delta import (ACT_DIVERGE, SP_DENSE_UNTIL, SP_VISITS, TOUCH_ALLOC, TOUCH_BLOCK, TOUCH_ZL, DeltaIndex,
                                 all_top_blocks_free, count_blocks_to_tail, delta_chunk, dense_index,
                                 listed_pages, new_index, new_walk_state, take_top_blocks)
from replay.policy.loop import (AC_ADDED, AC_BG, AC_FWZL, AC_K, AC_LEN, AC_WAIT, AC_ZLHOLD, AC_ZLWAIT, AC_ZONE, ACT_BG,
                                ACT_DONE, ACT_FORCED, ACT_GROW, ACT_POST, ACT_VISIT, BG_TICK_NS, EL_ADDED, EL_HOLD,
                                EL_K, EL_LAT, EL_LEN, EL_WAIT, INT64_MAX, PP_LEN, PP_LISTS, PP_NOACT, PP_ONE_BLOCK,
                                PP_SIM, PP_TARGET, PP_TRIGGER, PP_UNUSABLE, QUIET_MAX, STAGE_APPLIED, STAGE_FRESH,
                                STAGE_VISITED, free_blocks_to_tail, policy_chunk, zone_needs_accept)
from replay.model.sections import Calibration, calibrate_events
from replay.model.state import ModelState

MAX_BUCKETS = 2000
LIST_TRIGGERS = ("watermark_fail", "every_zone_visit", "background")


@dataclass
class Prepared:
    """Policy-independent inputs of a multi-policy replay."""

    mode: str
    layout: Any
    base: ReplayOutput  # events + initial state (prepare_only)
    zone_names: list[str]
    zone_nodes: list[int]
    zmap: np.ndarray  # model zone -> index in layout.zones (acceptance zone)
    zkind: np.ndarray
    wmark_low: np.ndarray
    cal: Calibration
    calib: np.ndarray
    edges: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)
    #: ``mark_free_pages`` of the initial state (``initial_free_pages``): the same for every
    #: delta replay, which shares that state
    _free_pages: np.ndarray | None = field(default=None, repr=False)
    #: guards the three hand-overs (``_free_pages``, ``_spare``, ``_outputs``) between threads
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: ``prepare(spare_state=True)``: a copy of the initial state made on a side thread while
    #: ``prepare`` finished, for the first full replay (``state_copy``)
    _spare: Any = field(default=None, repr=False)
    #: ``prefault_outputs``' arrays (``give_outputs``): the recording baseline's per-event
    #: output arrays, made (and their pages touched) ahead on an idle thread
    _outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def give_outputs(self, outputs: dict[str, np.ndarray]) -> None:
        """``prefault_outputs``' arrays for the recording baseline (ignored unless they fit)."""
        n = len(self.events)
        if all(len(a) == n for a in outputs.values()):
            with self._lock:
                self._outputs = outputs

    def take_outputs(self) -> dict[str, np.ndarray] | None:
        """``give_outputs``' arrays, once (None if not given, or already taken)."""
        with self._lock:
            out, self._outputs = self._outputs, None
        return out

    @property
    def events(self) -> EventArrays:
        return self.base.events

    def state_copy(self) -> ModelState:
        """A private copy of the initial state: the spare one the first time (waited for), then new ones."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.join()
            if spare.state is not None:
                return spare.state
        return copy_state(self.base.state)

    def initial_free_pages(self) -> np.ndarray:
        """1 for every page inside a free buddy block of the initial state (computed once)."""
        from replay.policy.loop import mark_free_pages

        with self._lock:
            if self._free_pages is None:
                st = self.base.state
                ok = np.zeros(len(st.pg_state), np.uint8)
                mark_free_pages(st, ok)
                self._free_pages = ok
            return self._free_pages


def prefault_outputs(n: int) -> dict[str, np.ndarray]:
    """The per-event arrays a recording exact-mode baseline fills for every event (``out_sec``
    and ``out_zone`` at -1, ``dfree`` at 0), with their pages touched here, on a thread with
    nothing else to do, rather than in the baseline's first steps (``Prepared.give_outputs``)."""
    return {"out_sec": np.full(n, -1, np.int32), "out_zone": np.full(n, -1, np.int8),
            "dfree": np.full(n, 0, np.int32)}  # (np.full writes every page; np.zeros would not)


class _SpareCopy(threading.Thread):
    """``copy_state`` on a side thread (its page faults off the replay's critical path)."""

    def __init__(self, st: ModelState) -> None:
        super().__init__(daemon=True)
        self._st = st
        self.state: ModelState | None = None

    def run(self) -> None:
        self.state = copy_state(self._st)


def prepare(table: pa.Table, layout: Any, *, mode: str = "exact", snapshot: Any = None, boot: bool | None = None,
            metadata: dict[str, str] | None = None, cal: Calibration | None = None,
            events: Any = None, spare_state: bool = False) -> Prepared:
    """The policy-independent inputs: event columns, initial state (``engine.replay`` with
    ``prepare_only``), calibration, the time series' bucket edges.  ``spare_state``: also start
    copying the initial state for the first full replay (``Prepared.state_copy``: the recording
    baseline's copy is then made while the calibration runs, not after)."""
    from replay.model.initial_state import model_zones
    from replay.model.simulate import zone_kinds

    base = replay(table, layout, mode=mode, snapshot=snapshot, boot=boot, metadata=metadata, prepare_only=True,
                  events=events)
    spare = _SpareCopy(base.state) if spare_state else None
    if spare is not None:
        spare.start()
    if cal is None:  # on the columns just built (one compiled pass)
        ea = base.events
        cal = calibrate_events(ea.ev, ea.ts, ea.cpu, ea.refill)
    zones = model_zones(layout)
    zmap = np.array([next(i for i, lz in enumerate(layout.zones) if lz is z) for z in zones], np.int64)
    calib = np.array([cal.refill_base_ns, cal.refill_per_block_ns, cal.drain_base_ns, cal.drain_per_block_ns,
                      cal.steal_ns], np.float64)
    ts = base.events.ts
    if len(ts):
        t0, t1 = int(ts.min()), int(ts.max()) + 1
        nb = int(min(MAX_BUCKETS, max(1, len(ts))))
        edges = np.unique(t0 + (np.arange(nb, dtype=np.int64) * (t1 - t0)) // nb)
    else:
        edges = np.zeros(1, np.int64)
    return Prepared(mode=mode, layout=layout, base=base, zone_names=[z.name for z in zones],
                    zone_nodes=[int(getattr(z, "node", 0)) for z in zones], zmap=zmap,
                    zkind=zone_kinds([z.name for z in zones]),
                    wmark_low=np.array([z.wmark_low for z in zones], np.int64), cal=cal, calib=calib, edges=edges,
                    metadata=dict(metadata or {}), _spare=spare)


def copy_state(st: ModelState, arena: "Arena | None" = None) -> ModelState:
    if arena is None:
        return ModelState._make(a.copy() for a in st)
    out = []
    for i, a in enumerate(st):
        b = arena.empty(f"state{i}", a.shape, a.dtype)
        np.copyto(b, a)
        out.append(b)
    return ModelState._make(out)


class Arena:
    """Per-event buffers kept from one policy's replay to the next in a worker process.

    A policy replay of n events fills four n-long arrays of model results (anomaly, section, zone,
    pfn: 14 bytes per event); fresh ones cost a page fault per 4 KiB on first touch (several
    hundred ms of system time per policy at 15M events on a VM), reused ones a memset.  Whatever
    a run returns lives in these buffers until the next run with the same arena: the worker
    pickles its tables (which may view them, with ``--all-events``) before that.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def empty(self, key: str, shape: Any, dtype: Any) -> np.ndarray:
        shape = tuple(shape) if isinstance(shape, tuple) else (int(shape),)
        b = self._bufs.get(key)
        if b is None or b.shape != shape or b.dtype != np.dtype(dtype):
            b = self._bufs[key] = np.empty(shape, dtype)
        return b

    def full(self, key: str, shape: Any, dtype: Any, value: int = 0) -> np.ndarray:
        b = self.empty(key, shape, dtype)
        b.fill(value)
        return b


class _Fresh:
    """The no-arena allocator: new arrays every time (same interface as ``Arena``)."""

    @staticmethod
    def empty(key: str, shape: Any, dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype)

    @staticmethod
    def full(key: str, shape: Any, dtype: Any, value: int = 0) -> np.ndarray:
        return np.zeros(shape, dtype) if value == 0 else np.full(shape, value, dtype)


@dataclass
class PolicyRun:
    """What one policy's replay produced (arrays indexed by event / section / bucket)."""

    policy: AcceptancePolicy
    costs_name: str
    mode: str
    st: ModelState
    acc: A.AcceptState
    S: Sections
    out_anom: np.ndarray
    out_sec: np.ndarray
    out_zone: np.ndarray
    out_pfn: np.ndarray
    acount: np.ndarray
    #: one row per event the policy charged time to, in event order (policy_loop.EL_* columns)
    elog: np.ndarray
    ts: np.ndarray  # the events' trace times and CPUs (shared, read-only): virtual time of any event
    cpu: np.ndarray
    #: firmware ns, bytes accepted and forced placement (0/1) at each ``handled`` event (the
    #: only events they can be non-zero at; ``firmware``, ``accepted``, ``forced``: per event)
    handled_firmware: np.ndarray
    handled_accepted: np.ndarray
    handled_forced: np.ndarray
    sec_vstart: np.ndarray
    sec_wait: np.ndarray
    sec_ext: np.ndarray
    #: one row per event whose acceptance work held zone->lock: (event, hold ns, zone, background, wait ns)
    acc_zl: np.ndarray
    #: events the driver handled (sorted)
    handled: np.ndarray
    actions: list[dict[str, Any]]
    ts_free: np.ndarray
    ts_order: np.ndarray
    ts_unaccepted: np.ndarray
    totals: np.ndarray
    boot: dict[str, Any]
    present_bytes: int
    invariants_ok: bool
    invariant_report: dict[str, Any]
    accepted_ok: bool
    conservation_ok: bool
    seconds: float
    yields: int
    #: exact-mode baseline recorded with ``record=True``: each event's change of its zone's free
    #: pages (``engine.exact_chunk``'s ``dfree``), what ``replay.policy.delta`` replays policies on
    dfree: np.ndarray | None = None
    #: a recording baseline's ``policy_delta.DeltaIndex`` (built on first use)
    delta_index: Any = None
    #: events a delta replay ran its per-event body for (0: a full replay, which runs it for all)
    visited: int = 0
    #: how the run was made: "full" (the buddy model replayed) or "delta" (``replay.policy.delta``)
    method: str = "full"

    @property
    def name(self) -> str:
        return self.policy.name

    # ---- per-event charges: the log holds the non-zero ones; dense arrays on request only
    def charges_at(self, col: int, idx: np.ndarray) -> np.ndarray:
        """Column ``col`` (``EL_ADDED``, ``EL_WAIT``, ``EL_HOLD``, ``EL_LAT``) at events ``idx``
        (0 where not logged)."""
        idx = np.asarray(idx, np.int64)
        ks = self.elog[:, EL_K]
        pos = np.searchsorted(ks, idx)
        hit = pos < len(ks)
        hit[hit] = ks[pos[hit]] == idx[hit]
        out = np.zeros(len(idx), np.int64)
        out[hit] = self.elog[pos[hit], col]
        return out

    def vts_at(self, idx: np.ndarray) -> np.ndarray:
        """Virtual time of events ``idx``: trace time plus the delay added to the event's CPU by the
        events before it (a CPU's delay grows by exactly each event's ``added``)."""
        idx = np.asarray(idx, np.int64)
        ks = self.elog[:, EL_K]
        cpu_l = self.cpu[ks].astype(np.int64)
        added = self.elog[:, EL_ADDED]
        out = self.ts[idx].astype(np.int64)
        cpus = self.cpu[idx]
        for c in np.unique(cpus):
            sel = cpus == c
            mine = cpu_l == c
            cum = np.concatenate([[0], np.cumsum(added[mine])])
            before = np.searchsorted(ks[mine], idx[sel], side="left")  # logged events strictly before
            out[sel] += cum[before]
        return out

    def handled_values(self, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """One of the ``handled_*`` arrays at events ``idx`` (0 where the driver did not handle the event)."""
        idx = np.asarray(idx, np.int64)
        out = np.zeros(len(idx), values.dtype)
        h = self.handled
        if len(h) and len(idx):
            pos = np.minimum(np.searchsorted(h, idx), len(h) - 1)
            hit = h[pos] == idx
            out[hit] = values[pos[hit]]
        return out

    def _per_event(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.ts), values.dtype)
        out[self.handled] = values
        return out

    @property
    def firmware(self) -> np.ndarray:
        """Firmware ns per event (n-long: small runs and tests)."""
        return self._per_event(self.handled_firmware)

    @property
    def accepted(self) -> np.ndarray:
        """Bytes accepted per event (n-long)."""
        return self._per_event(self.handled_accepted)

    @property
    def forced(self) -> np.ndarray:
        """1 at each forced placement (n-long)."""
        return self._per_event(self.handled_forced)

    def _dense(self, col: int) -> np.ndarray:
        out = np.zeros(len(self.ts), np.int64)
        out[self.elog[:, EL_K]] = self.elog[:, col]
        return out

    @property
    def added(self) -> np.ndarray:
        return self._dense(EL_ADDED)

    @property
    def wait(self) -> np.ndarray:
        return self._dense(EL_WAIT)

    @property
    def hold(self) -> np.ndarray:
        return self._dense(EL_HOLD)

    @property
    def alloc_lat(self) -> np.ndarray:
        return self._dense(EL_LAT)

    @property
    def vts(self) -> np.ndarray:
        return self.vts_at(np.arange(len(self.ts), dtype=np.int64))


#: events the recording baseline replays between two progress reports to its followers
FEED_CHUNK = 1 << 20


class BaselineFeed:
    """The recording baseline run (``run_policy(record=True, feed=...)``) as it is being made:
    its live per-event arrays, the delta index built so far and the safe point, for the delta
    replays of other policies that follow it in other threads (``run_policy(base=feed)``).

    After every ``FEED_CHUNK`` events the baseline reports how far it got and the safe point:
    every event before it is replayed and every zone->lock section opened before it is closed
    (its sums are final).  The first follower to need them extends the index over the reported
    events (off the baseline's critical path); a follower walks up to the safe point, then waits
    for the next report; the
    compiled walks release the GIL, so the followers' Python (acceptance round trips) runs
    beside the baseline.  While the baseline runs, the followers' compiled walks share
    ``slots`` CPUs (one fewer than the machine has); when it is done they get one more."""

    def __init__(self, prep: Prepared, slots: int | None = None) -> None:
        import os

        self.slots = max(1, (os.cpu_count() or 2) - 1) if slots is None else max(1, slots)
        self.slot = threading.BoundedSemaphore(self.slots + 1)
        self.slot.acquire()  # the baseline's CPU, given back by finish()
        self._cv = threading.Condition()
        self.n = len(prep.events)
        self.index = new_index(prep, self.n)
        self._index_lock = threading.Lock()
        self.reported = 0  # events the baseline has replayed (the index may lag: _extend_index)
        self.safe = 0
        self.run: PolicyRun | None = None
        self.error: BaseException | None = None
        # the baseline's live arrays (set before its first report)
        self.S: Sections | None = None
        self.out_sec = self.out_zone = self.dfree = self.ts_free = self.ts_order = np.zeros(0)

    def attach(self, S: Sections, out_sec: np.ndarray, out_zone: np.ndarray, dfree: np.ndarray,
               ts_free: np.ndarray, ts_order: np.ndarray) -> None:
        self.S, self.out_sec, self.out_zone, self.dfree = S, out_sec, out_zone, dfree
        self.ts_free, self.ts_order = ts_free, ts_order

    def advance(self, k: int) -> None:
        """The baseline has replayed the events before ``k``: report them and the safe point."""
        S = self.S
        assert S is not None
        safe = k
        for sid in S.cur.tolist():  # a CPU's open section may still take events
            if sid >= 0:
                safe = min(safe, int(S.first[sid]))
        with self._cv:
            self.reported = max(self.reported, k)
            self.safe = max(self.safe, safe)
            self._cv.notify_all()

    def _extend_index(self, k: int) -> None:
        """The index over the baseline's events before ``k`` (all reported: their rows are final)."""
        with self._index_lock:
            self.index.extend(self.S, self.out_sec, self.out_zone, self.dfree, k)

    def finish(self, run: PolicyRun | None, error: BaseException | None = None) -> None:
        if run is not None and run.dfree is not None and self.S is not None:
            self._extend_index(self.n)
            run.delta_index = self.index
        with self._cv:
            self.run, self.error = run, error
            self._cv.notify_all()
        self.slot.release()

    def available(self, k: int) -> int:
        """Where a follower at event ``k`` may walk to, once the safe point is past ``k`` (the trace's
        end once the baseline is done)."""
        with self._cv:
            while self.safe <= k and self.run is None and self.error is None:
                self._cv.wait()
            if self.error is not None:
                raise RuntimeError("the baseline replay failed") from self.error
            limit, reported = (self.safe, self.reported) if self.run is None else (self.n, self.n)
        if reported and self.S is not None:
            self._extend_index(reported)
        return limit

    def result(self) -> PolicyRun:
        with self._cv:
            while self.run is None and self.error is None:
                self._cv.wait()
            if self.error is not None:
                raise RuntimeError("the baseline replay failed") from self.error
            assert self.run is not None
            return self.run


def _policy_params(policy: AcceptancePolicy, pv: np.ndarray, mode: str) -> np.ndarray:
    from replay.acceptance.policies import PV_ONE_BLOCK_ZERO, PV_TARGET, PV_TRIGGER, PV_UNUSABLE

    pp = np.zeros(PP_LEN, np.int64)
    pp[PP_TRIGGER] = pv[PV_TRIGGER]
    pp[PP_ONE_BLOCK] = pv[PV_ONE_BLOCK_ZERO]
    pp[PP_UNUSABLE] = pv[PV_UNUSABLE]
    pp[PP_TARGET] = pv[PV_TARGET]
    pp[PP_LISTS] = int(policy.trigger in LIST_TRIGGERS)
    pp[PP_SIM] = int(mode == "simulate")
    pp[PP_NOACT] = int(policy.trigger in ("none", "firmware_boot", "kernel_boot"))
    return pp


def _reconcile(st: ModelState, acc: A.AcceptState, *, counters_only: bool = False,
               prep: Prepared | None = None) -> None:
    """Make the acceptance state agree with the trace's initial buddy state (see module doc).

    ``counters_only``: ``st`` shares the initial buddy state with other runs and only its
    ``z_nr_free`` is private: a listed block that is a whole free block there leaves the free
    counter, not the lists (``replay.policy.delta``); its free pages are then ``prep``'s
    ``initial_free_pages``."""
    bo = int(acc.geo[A.G_BLOCK_ORDER])
    bpages = 1 << bo
    unit = int(acc.geo[A.G_UNIT_PAGES])
    phys = int(acc.geo[A.G_PHYS_BASE])
    nu = int(acc.geo[A.G_NR_UNITS])
    for az in range(int(acc.geo[A.G_NR_ZONES])):
        pfns = A.unaccepted_pages_of(acc, az)
        ok = np.zeros(len(pfns), np.bool_)
        take_top_blocks(st, pfns, bo, counters_only, ok)
        for pfn in pfns[~ok].tolist():
            b = (int(pfn) - int(acc.geo[A.G_PFN_BASE])) >> bo
            A._list_del(acc, az, b)
            acc.blk_state[b] = A.B_RELEASED
            acc.z_nr_unaccepted[az] -= bpages
            acc.z_released_pages[az] += bpages
            u0 = max(0, (int(pfn) - phys) // unit)
            u1 = min(nu, -(-(int(pfn) + bpages - phys) // unit))
            if u1 > u0:
                acc.bitmap[u0:u1] = 0
    if nu == 0 or not acc.bitmap.any():
        return
    # units still unaccepted must be wholly free (buddy) or inside a listed block
    from replay.policy.loop import clear_units_in_use, mark_free_pages

    if counters_only and prep is not None:  # the page arrays are the initial state's, unchanged
        ok = prep.initial_free_pages()
    else:
        ok = np.zeros(len(st.pg_state), np.uint8)
        mark_free_pages(st, ok)
    listed = (acc.blk_state == A.B_LISTED).view(np.uint8)
    clear_units_in_use(acc.bitmap, ok, listed, int(acc.geo[A.G_PFN_BASE]), bo, phys, unit, int(st.geo[0]))


def _add_receipt(tot: np.ndarray, r: np.ndarray) -> None:
    m = tot[A.R_IRQS_OFF_MAX_NS]
    tot += r
    tot[A.R_IRQS_OFF_MAX_NS] = max(m, r[A.R_IRQS_OFF_MAX_NS])


def run_policy(prep: Prepared, policy: AcceptancePolicy, costs: Any, *,
               firmware_accepted_bytes: int = 4 << 30, arena: Arena | None = None,
               base: PolicyRun | BaselineFeed | None = None, record: bool = False,
               feed: BaselineFeed | None = None, sparse: bool = True) -> PolicyRun:
    """Replay the prepared trace under ``policy`` priced with ``costs`` (a ``CostPreset``).

    ``arena``: reuse its buffers for the per-event arrays (see ``Arena``: the returned run's
    arrays are only valid until the next run with the same arena).

    ``record`` (exact mode, a policy that never acts: the baseline): also record each event's
    change of its zone's free pages.  ``base``: such a recorded baseline run; in exact mode the
    policy is then replayed on the baseline's per-event results (``replay.policy.delta``: no
    buddy model of its own, its results share the baseline's arrays), and in full where the
    two would differ.  ``base`` may be a ``BaselineFeed`` whose run is still going (the
    recording run was given ``feed=``): this run then follows it, up to the safe point the
    baseline reports after each ``FEED_CHUNK`` events.  ``sparse``: the delta replay visits only
    the events that can matter (False: every event, as a reference)."""
    from replay.acceptance.boot import boot_accept_cost, state_from_layout
    from replay.model.invariants import check_invariants
    from replay.model.simulate import new_sim_map

    t_start = time.perf_counter()
    layout = prep.layout
    ea = prep.events
    n = len(ea)
    mode = prep.mode
    mem = arena if arena is not None else _Fresh()
    model = state_from_layout(layout, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes)
    acc, cv, pv = model.st, model.cv, model.pv
    bo = int(acc.geo[A.G_BLOCK_ORDER])
    st0 = prep.base.state
    # a delta replay needs the listed blocks at the top order (they then never merge)
    live = base if isinstance(base, BaselineFeed) else None
    delta = (base is not None and (live is not None or base.dfree is not None) and mode == "exact"
             and bo == int(st0.geo[1]) - 1)
    if delta:
        st = st0._replace(z_nr_free=st0.z_nr_free.copy())
    else:
        st = copy_state(st0, arena) if arena is not None else prep.state_copy()
    _reconcile(st, acc, counters_only=delta, prep=prep)
    pp = _policy_params(policy, pv, mode)
    out_pfns = model.out_pfns
    unit_bytes = int(acc.geo[A.G_UNIT_PAGES]) * A.PAGE_SIZE
    unacc = int(acc.bitmap.sum()) * unit_bytes if acc.geo[A.G_HAS_TABLE] else 0
    present_bytes = int(sum(z.present for z in layout.zones)) * int(layout.page_size)
    ncpu = int(st.pcp_count.shape[0])
    nz = len(prep.zone_names)
    # the boot-time cost depends on the layout and the policy only: computed before the walk (a
    # follower would otherwise do it after the baseline, when every thread wants the GIL)
    boot = boot_accept_cost(policy, costs, present_bytes, int(getattr(layout, "nr_cpus", ncpu) or ncpu),
                            layout=layout, firmware_accepted_bytes=firmware_accepted_bytes).as_dict()

    made: dict[str, np.ndarray] | None = None
    if delta:  # the baseline's results, shared (never written here); the rest of them at the end
        src: Any = base
        if live is not None:
            live.available(0)  # its arrays exist
        S, out_sec, out_zone = src.S, src.out_sec, src.out_zone
        out_anom = out_pfn = acount = None
    else:
        S = new_sections(n, ncpu)
        out_anom = mem.full("out_anom", n, np.int8)
        made = prep.take_outputs() if record and mode == "exact" and arena is None else None
        if made is not None:
            out_sec, out_zone = made["out_sec"], made["out_zone"]
        else:
            out_sec = mem.full("out_sec", n, np.int32, -1)
            out_zone = mem.full("out_zone", n, np.int8, -1)
        if mode == "exact":  # the trace's pfns (exact mode places nothing itself): shared, not copied
            out_pfn = ea.pfn
        else:
            out_pfn = mem.empty("out_pfn", n, np.int64)
            np.copyto(out_pfn, ea.pfn)
        acount = np.zeros(prep.base.acount.shape[0], np.int64)
    if made is not None:
        dfree = made["dfree"]
    else:
        dfree = np.zeros(n if record and mode == "exact" else 0, np.int32)
    simmap = new_sim_map(st) if mode == "simulate" else np.zeros(1, np.int32)
    delay = np.zeros(ncpu, np.int64)
    pend = np.zeros(2 * ncpu, np.int64)
    zfree_v = np.zeros(2 * nz, np.int64)  # [lock free at (virtual) | last section start] per zone
    zfree_b = np.zeros(2 * nz, np.int64)  # the same at trace time
    cap = max(len(base.sec_vstart) if delta and live is None else n, 1)  # one section per event at most
    sec_vstart, sec_wait, sec_ext = np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64)
    # what acceptance charged to the event being handled (see policy_loop.time_step), and the
    # events whose acceptance held zone->lock: (k, hold, zone, background, wait)
    acur = np.zeros(AC_LEN, np.int64)
    acur[AC_K] = -1
    zl_rows: list[tuple[int, int, int, int, int]] = []
    handled: set[int] = set()  # events handle() ran for: the only ones with firmware/accepted/forced
    # one row per event the policy charged time to (policy_loop.EL_*), grown on ACT_GROW
    elog = np.zeros((max(QUIET_MAX * 4, 1 << 18), EL_LEN), np.int64)
    elog_n = np.zeros(1, np.int64)
    # per handled event (a few among millions: n-long arrays written here and there would cost a
    # page fault, and a TLB-flushing copy-on-write one after a read, per 4 KiB touched)
    firmware: dict[int, int] = {}
    accepted: dict[int, int] = {}
    forced: dict[int, int] = {}
    edges = prep.edges
    nb = len(edges)
    bstate = np.zeros(1, np.int64)
    ts_free = np.zeros(nb, np.int64)
    n_orders = int(st.geo[1])
    ts_order = np.zeros((nb, n_orders), np.int64)
    if feed is not None:  # what followers read, before the first progress report
        feed.attach(S, out_sec, out_zone, dfree, ts_free, ts_order)
    next_bg = np.array([INT64_MAX], np.int64)
    if policy.trigger == "background" and acc.ul_len.sum() > 0:
        next_bg[0] = max(int(ea.ts[0]) if n else 0, int(policy.background_start_ns))
    unacc_log_t: list[int] = []
    unacc_log_v: list[int] = []
    actions: list[dict[str, Any]] = []
    tot = A.new_receipt()
    free_hold = int(round(prep.cal.drain_base_ns + prep.cal.drain_per_block_ns))
    trig = policy.trigger
    site_visit = A.SITE_WMARK_FAIL if trig == "watermark_fail" else A.SITE_ZONE_VISIT

    def free_blocks(cnt: int) -> int:
        if cnt <= 0:
            return -1
        (count_blocks_to_tail if delta else free_blocks_to_tail)(st, out_pfns, cnt, bo)
        i = int(out_pfns[0]) - int(st.geo[0])
        for z in range(nz):
            if st.z_start[z] <= i < st.z_end[z]:
                return z
        return -1

    def harvest() -> None:
        if acur[AC_K] >= 0 and acur[AC_ZLHOLD] > 0:
            zl_rows.append((int(acur[AC_K]), int(acur[AC_ZLHOLD]), int(acur[AC_ZONE]), int(acur[AC_BG]),
                            int(acur[AC_ZLWAIT])))

    def handle(k: int, act: int, z: int) -> None:
        nonlocal unacc
        handled.add(k)
        if acur[AC_K] != k:  # the previous event's time step has run: keep what it recorded
            harvest()
            acur[:] = 0
            acur[AC_K] = k
        c = int(ea.cpu[k])
        now = int(ea.ts[k]) + int(delay[c])
        o = int(ea.order[k])
        r = A.new_receipt()
        nblocks = 0
        zone_of_blocks = z
        kind = ""
        if act == ACT_BG:
            kind = "background"
            cnt = A.background_accept(acc, cv, pv, int(ea.ts[k]), out_pfns, r)
            zb = free_blocks(cnt)
            nblocks = cnt
            zone_of_blocks = zb
            next_bg[0] = int(ea.ts[k]) + BG_TICK_NS if acc.ul_len.sum() > 0 else INT64_MAX
        elif act == ACT_VISIT:
            kind = "zone_visit" if site_visit == A.SITE_ZONE_VISIT else "watermark_fail"
            p = int(ea.pfn[k])
            zones = [z]
            if mode == "simulate":  # the rest of get_page_from_freelist()'s walk after zone z
                from replay.model.simulate import gfp_zone_limit, zonelist_zone
                limit = gfp_zone_limit(int(ea.gfp[k]))
                walk = [zz for zz in (zonelist_zone(prep.zkind, limit, j) for j in range(nz)) if zz >= 0]
                zones = walk[walk.index(z):] if z in walk else [z]
            t = now
            for zz in zones:
                if zone_needs_accept(st, acc, pp, prep.zmap, zz, o):
                    r0 = float(r[A.R_ADDED_NS])
                    cnt = A.acceptance_hook(acc, cv, pv, site_visit, int(prep.zmap[zz]), p, o, int(st.z_nr_free[zz]),
                                            (1 << o) - 1, t, out_pfns, r)
                    t += int(r[A.R_ADDED_NS] - r0)
                    if cnt > 0:
                        free_blocks(cnt)
                        nblocks += cnt
                        zone_of_blocks = zz
                if mode != "simulate" or st.z_nr_free[zz] - (1 << o) >= prep.wmark_low[zz]:
                    break
        elif act == ACT_FORCED:
            kind = "forced"
            pfn_b, add = A.accept_page(acc, cv, pv, int(ea.pfn[k]), now, r)
            r[A.R_ADDED_NS] += add
            if pfn_b >= 0:
                out_pfns[0] = pfn_b
                zone_of_blocks = free_blocks(1)
                nblocks = 1
                forced[k] = 1
        elif act == ACT_POST:
            q = int(out_pfn[k]) if mode == "simulate" else int(ea.pfn[k])
            site = A.SITE_BUDDY_DEL if trig == "on_buddy_alloc" else A.SITE_POST_ALLOC
            kind = "buddy_del" if site == A.SITE_BUDDY_DEL else "post_alloc"
            A.acceptance_hook(acc, cv, pv, site, int(prep.zmap[z]) if z >= 0 else 0, q, o, 0, 0, now, out_pfns, r)
        _add_receipt(tot, r)
        bg = act == ACT_BG
        fwzl = int(round(r[A.R_FW_UNDER_ZONE_LOCK_NS]))
        zl = int(round(r[A.R_ZONE_LOCK_HOLD_NS])) - fwzl + nblocks * free_hold
        if not bg:
            acur[AC_ADDED] += int(round(r[A.R_ADDED_NS]))
            acur[AC_FWZL] += fwzl
            acur[AC_WAIT] += int(round(r[A.R_GLOBAL_LOCK_WAIT_NS] + r[A.R_ACCEPTING_SPIN_NS]))
            firmware[k] = firmware.get(k, 0) + int(round(r[A.R_FW_NS]))
            accepted[k] = accepted.get(k, 0) + int(r[A.R_BYTES])
        if zl > 0 and zone_of_blocks >= 0:
            acur[AC_ZLHOLD] += zl
            acur[AC_ZONE] = zone_of_blocks
            acur[AC_BG] = int(bg)
        unacc -= int(r[A.R_BYTES])
        unacc_log_t.append(int(ea.ts[k]))
        unacc_log_v.append(unacc)
        if r[A.R_BYTES] > 0 or r[A.R_GLOBAL_LOCK_SECTIONS] > 0 or nblocks > 0:
            actions.append({"k": k, "cpu": -1 if bg else c, "vts": now, "kind": kind, "receipt": r,
                            "blocks": nblocks, "zone": zone_of_blocks, "held": int(pv[_pv_held()])})

    k = 0
    stage = STAGE_FRESH
    yields = 0
    scratch = np.zeros(nz, np.int64)
    if delta:  # the walk visits only the events that can matter (replay.policy.delta), or every one
        index = delta_index(prep, base, sparse)
        empty = np.zeros(0, np.int64)
        blk = index.touches(TOUCH_BLOCK, acc, n) if index.sparse and pp[PP_LISTS] else None
        unit = (index.touches(TOUCH_ZL if pp[PP_TRIGGER] == A.T_BUDDY else TOUCH_ALLOC, acc, n)
                if index.sparse and pp[PP_TRIGGER] in (A.T_BUDDY, A.T_POST_ALLOC) else None)
        agg, sp, must = new_walk_state(nz, ncpu)
        if not index.sparse:
            sp[SP_DENSE_UNTIL] = n
    while True:
        if delta:
            limit = n if live is None else live.available(k)
            if live is not None:
                live.slot.acquire()
            try:
                k, act, z = delta_chunk(st, S, acc, pp, pv, prep.zmap, prep.calib, ea.ev, ea.ts, ea.cpu, ea.pfn,
                                        ea.order, out_sec, out_zone, src.dfree, k, limit, stage, delay, pend,
                                        zfree_v, zfree_b, sec_vstart, sec_wait, sec_ext, acur, elog, elog_n, edges,
                                        bstate, src.ts_free, src.ts_order, ts_free, ts_order, next_bg,
                                        index.sec_last, index.sec_ii, index.sec_df, index.sec_abs, index.sec_flag,
                                        index.vis, index.bucket_ev,
                                        blk.extend(ea, out_zone, limit) if blk is not None else empty,
                                        unit.extend(ea, out_zone, limit) if unit is not None else empty,
                                        agg, sp, must)
            finally:
                if live is not None:
                    live.slot.release()
        else:
            kmax = n if feed is None else min(n, k + FEED_CHUNK)
            k, act, z = policy_chunk(st, S, acc, pp, pv, prep.zmap, simmap, prep.zkind, prep.wmark_low, prep.calib,
                                     ea.ev, ea.ts, ea.cpu, ea.pfn, ea.order, ea.mt, ea.refill, ea.fb_order, ea.chown,
                                     ea.deferred, ea.first, ea.gfp, k, kmax, stage, out_anom, out_sec, out_zone,
                                     out_pfn, acount, delay, pend, zfree_v, zfree_b, sec_vstart, sec_wait, sec_ext,
                                     acur, elog, elog_n, edges, bstate, ts_free, ts_order, next_bg,
                                     scratch, dfree)
        if act == ACT_DONE:
            if k < n:  # a chunk ended (a report to the followers, or the baseline's safe point reached)
                if feed is not None:
                    feed.advance(k)
                stage = STAGE_FRESH
                continue
            break
        if act == ACT_DIVERGE:  # the baseline's results do not hold for this policy: replay it in full
            return run_policy(prep, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes, arena=arena)
        if act == ACT_GROW:
            grown = np.zeros((2 * elog.shape[0], EL_LEN), np.int64)
            grown[: int(elog_n[0])] = elog[: int(elog_n[0])]
            elog = grown
            stage = STAGE_FRESH
            continue
        yields += 1
        handle(k, act, z)
        stage = STAGE_APPLIED if act == ACT_POST else (STAGE_FRESH if act == ACT_BG else STAGE_VISITED)
    harvest()
    acc_zl = np.array(zl_rows, np.int64).reshape(-1, 5)
    # buckets never reached (no event at or after their start): the final state
    from replay.policy.loop import sample_bucket
    if live is not None:  # the rest comes from the finished baseline
        base = live.result()
        if base.dfree is None:  # it could not record after all
            return run_policy(prep, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes, arena=arena)
    held = int(listed_pages(acc, prep.zmap))
    for b in range(int(bstate[0]), nb):
        if delta:  # the baseline's final state without the blocks still listed (top order)
            ts_free[b] = base.ts_free[b] - held
            ts_order[b] = base.ts_order[b]
            ts_order[b, -1] -= held
        else:
            sample_bucket(st, b, ts_free, ts_order)
    if unacc_log_t:
        idx = np.searchsorted(np.asarray(unacc_log_t, np.int64), edges, side="left") - 1
        vals = np.asarray(unacc_log_v, np.int64)
        init = unacc + int(sum(a["receipt"][A.R_BYTES] for a in actions))  # before the first action
        ts_unacc = np.where(idx >= 0, vals[np.maximum(idx, 0)], init)
    else:
        ts_unacc = np.full(nb, unacc, np.int64)
    # sections were allocated for one per event: keep only the used part (memory of parallel runs)
    m = int(S.n[0])
    if not delta:
        per_section = ("kind", "cpu", "zone", "start", "end", "pages", "nev", "first", "fallbacks", "owner")
        S = S._replace(**{f: getattr(S, f)[:max(m, 1)].copy() for f in per_section})
    sec_vstart, sec_wait, sec_ext = sec_vstart[:m].copy(), sec_wait[:m].copy(), sec_ext[:m].copy()
    listed = acc.z_nr_unaccepted[prep.zmap] if acc.z_nr_unaccepted.shape[0] else np.zeros(nz, np.int64)
    if delta:
        assert isinstance(base, PolicyRun)
        S, out_anom, out_pfn, acount = base.S, base.out_anom, base.out_pfn, base.acount
        if not _delta_agrees(base, st, acc, listed):
            return run_policy(prep, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes, arena=arena)
        # the full replay's final state is the baseline's without the listed blocks
        st = base.st
        rep = dict(base.invariant_report)
        rep["free_pages"] = (np.asarray(rep["free_pages"], np.int64) - listed).tolist()
    else:
        rep = check_invariants(st)
    # pages on zone->unaccepted_pages are present but outside the buddy: free + pcp + allocated +
    # unaccepted = present
    cons = bool(np.array_equal(np.asarray(rep["free_pages"]) + np.asarray(rep["pcp_pages"])
                               + np.asarray(rep["allocated_pages"]) + listed, st.z_present))
    rep["unaccepted_pages"] = listed.tolist()
    rep["pages_conserved"] = cons
    rep["ok"] = bool(cons and rep["counters_match_pages"] and rep["pcp_counts_match"] and rep["unmerged_buddies"] == 0
                     and rep["list_errors"] == 0 and rep["overlapping_blocks"] == 0)
    accepted_ok = _all_handed_out_accepted(st, acc)
    hs = sorted(handled)
    return PolicyRun(
        policy=policy, costs_name=costs.name, mode=mode, st=st, acc=acc, S=S, out_anom=out_anom, out_sec=out_sec,
        out_zone=out_zone, out_pfn=out_pfn, acount=acount, elog=elog[: int(elog_n[0])].copy(), ts=ea.ts,
        cpu=ea.cpu, handled_firmware=np.array([firmware.get(k, 0) for k in hs], np.int64),
        handled_accepted=np.array([accepted.get(k, 0) for k in hs], np.int64),
        handled_forced=np.array([forced.get(k, 0) for k in hs], np.int8), sec_vstart=sec_vstart, sec_wait=sec_wait,
        sec_ext=sec_ext, acc_zl=acc_zl, handled=np.array(hs, np.int64),
        actions=actions, ts_free=ts_free, ts_order=ts_order, ts_unaccepted=ts_unacc.astype(np.int64),
        totals=tot, boot=boot, present_bytes=present_bytes, invariants_ok=bool(rep.get("ok", False)),
        invariant_report=rep, accepted_ok=accepted_ok, conservation_ok=bool(A.check_conservation(acc)),
        seconds=time.perf_counter() - t_start, yields=yields, visited=int(sp[SP_VISITS]) if delta else 0,
        dfree=dfree if record and mode == "exact" and yields == 0 and held == 0 else None,
        method="delta" if delta else "full")


_INDEX_LOCK = threading.Lock()


def delta_index(prep: Prepared, base: PolicyRun | BaselineFeed, sparse: bool = True) -> DeltaIndex:
    """The recording baseline's ``policy_delta.DeltaIndex``: the one its ``BaselineFeed`` builds
    as it goes, or, for a finished run without one, built here once (``sparse`` False: one
    that visits every event)."""
    if not sparse:
        return dense_index()
    if isinstance(base, BaselineFeed):
        return base.index
    with _INDEX_LOCK:
        if base.delta_index is None:
            index = new_index(prep, len(base.S.kind))
            index.extend(base.S, base.out_sec, base.out_zone, base.dfree, len(base.ts))
            base.delta_index = index
    return base.delta_index


def _delta_agrees(base: PolicyRun, st: ModelState, acc: A.AcceptState, listed: np.ndarray) -> bool:
    """A delta replay's end agrees with the full replay's: its free counters are the baseline's
    minus the pages still listed, and each block still listed is a whole free block of the
    baseline's final state (no event touched it)."""
    if not np.array_equal(st.z_nr_free, base.st.z_nr_free - listed):
        return False
    bo = int(acc.geo[A.G_BLOCK_ORDER])
    return all(bool(all_top_blocks_free(base.st, A.unaccepted_pages_of(acc, az), bo))
               for az in range(int(acc.geo[A.G_NR_ZONES])))


def accepts_nothing(prep: Prepared, policy: AcceptancePolicy, costs: Any, *,
                    firmware_accepted_bytes: int = 4 << 30) -> bool:
    """True when ``policy`` leaves no memory unaccepted by the time the trace starts.

    ``none`` and ``firmware-eager`` have no unaccepted table; ``kernel-eager`` accepted every
    block while memblock handed it to the buddy.  No acceptance hook can then do anything during
    the trace (no unaccepted unit, no zone->unaccepted_pages entry, no background work): the
    replay is the baseline's, event for event (tests/test_policy_cli.py checks it).
    """
    from replay.acceptance.boot import state_from_layout

    acc = state_from_layout(prep.layout, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes).st
    return not acc.geo[A.G_HAS_TABLE] or (not acc.bitmap.any() and int(acc.ul_len.sum()) == 0)


def baseline_run_as(prep: Prepared, base: PolicyRun, policy: AcceptancePolicy, costs: Any, *,
                    firmware_accepted_bytes: int = 4 << 30) -> PolicyRun:
    """The baseline run ``base`` as the run of ``policy`` (which must ``accepts_nothing``): the
    same events, sections and state, the policy's own acceptance state and boot-time cost."""
    from replay.acceptance.boot import boot_accept_cost, state_from_layout

    t0 = time.perf_counter()
    layout = prep.layout
    acc = state_from_layout(layout, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes).st
    ncpu = int(base.st.pcp_count.shape[0])
    boot = boot_accept_cost(policy, costs, base.present_bytes, int(getattr(layout, "nr_cpus", ncpu) or ncpu),
                            layout=layout, firmware_accepted_bytes=firmware_accepted_bytes).as_dict()
    return replace(base, policy=policy, costs_name=costs.name, acc=acc, boot=boot,
                   accepted_ok=_all_handed_out_accepted(base.st, acc),
                   conservation_ok=bool(A.check_conservation(acc)), seconds=time.perf_counter() - t0, yields=0)


def _pv_held() -> int:
    from replay.acceptance.policies import PV_HELD

    return PV_HELD


def _all_handed_out_accepted(st: ModelState, acc: A.AcceptState) -> bool:
    """No page the model holds allocated lies in an unaccepted unit (``check_accepted`` on every
    allocated block; pcp pages and blocks taken for a pending mm_page_alloc are not handed out
    yet: v2-v7 accept in post_alloc_hook)."""
    from replay.policy.loop import handed_out_unaccepted

    if not acc.geo[A.G_HAS_TABLE] or not acc.bitmap.any():
        return True
    return int(handed_out_unaccepted(st, acc)) == 0


def conserved_pages(run_or_st: Any, acc: A.AcceptState | None = None) -> int:
    """free + pcp + allocated + unaccepted (listed) pages: constant through a replay."""
    st = run_or_st.st if isinstance(run_or_st, PolicyRun) else run_or_st
    a = run_or_st.acc if isinstance(run_or_st, PolicyRun) else acc
    listed = int(a.z_nr_unaccepted.sum()) if a is not None else 0
    return int(st.z_nr_free.sum() + st.z_nr_pcp.sum() + st.z_nr_alloc.sum()) + listed
