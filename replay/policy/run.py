"""Replay one prepared trace under one acceptance policy: ``run_policy``.

A replay builds the policy's acceptance state from the layout (``acceptance.boot.state_from_layout``:
firmware-accepted low memory, EFI stub, memblock, boot-time listing or eager acceptance),
reconciles it with the trace's initial state (``driver.reconcile``), then walks the events with a
compiled loop that stops at each kernel call site where the policy acts; the ``driver`` runs the
acceptance path there and the walk resumes.  The result is a ``PolicyRun``.

Two walks give the same results:

- ``run_full``: the buddy model replayed under the policy (``policy.loop.policy_chunk``);
- ``run_delta`` (exact mode, after a baseline that recorded each event's change of free pages):
  the policy's acceptance on the baseline's buddy results
  (``policy.delta.delta_chunk``, see its module docstring); it returns None where those would not
  hold, and ``run_policy`` then replays in full.

In exact mode the trace decides placement: an allocation inside a block the policy has not
accepted yet is *forced* (the block is accepted there, charged to that CPU, and counted).  In
simulate mode listed blocks are not in the buddy, so the model only ever hands out accepted
memory, and the policy decides when more is accepted.

Where the per-event arrays come from (``Buffers``), how a recording baseline reports its
progress (``Recorder``) and how a delta replay follows a baseline still running
(``BaselineSource``) is the caller's: ``replay.pipeline.schedule`` runs policies in threads and
processes; the defaults here make new arrays and read a finished run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from replay.acceptance.page_alloc import check_conservation, unaccepted_pages_of
from replay.acceptance.unaccepted_memory import AcceptGeo, AcceptState
from replay.acceptance.policies import AcceptancePolicy, Trigger
from replay.model.sections import Sections, new_sections
from replay.model.state import ModelState
from replay.policy.bundles import Baseline, Policy, Replayed, Series, new_series, trace_of, zones_of
from replay.policy.delta import (ACT_DIVERGE, SP_DENSE_UNTIL, SP_VISITS, TOUCH_ALLOC, TOUCH_BLOCK, TOUCH_ZL, DeltaIndex,
                                 all_top_blocks_free, delta_chunk, dense_index, listed_pages, new_index, new_walk)
from replay.policy.driver import AcceptanceDriver, policy_params, reconcile
from replay.policy.loop import (ACT_BG, ACT_DONE, ACT_POST, PP_LISTS, PP_TRIGGER, STAGE_APPLIED, STAGE_FRESH,
                                STAGE_VISITED, handed_out_unaccepted, policy_chunk, sample_bucket)
from replay.policy.prepare import Prepared, copy_state
from replay.policy.result import PolicyRun
from replay.policy.timeline import apply_to_actions, charges, schedule_run, zone_lock_rows

#: events a recording baseline replays between two progress reports (``Recorder.advance``)
FEED_CHUNK = 1 << 20
#: bytes the firmware accepted before the kernel started (the low memory of a TDX/SNP guest)
FIRMWARE_ACCEPTED_BYTES = 4 << 30


class Buffers:
    """Where a full replay's private copy of the initial state and its per-event arrays come
    from: new ones here; the pipeline passes buffers made ahead or reused between runs."""

    def state_copy(self, st: ModelState) -> ModelState:
        return copy_state(st)

    def full(self, key: str, n: int, dtype: Any, value: int = 0) -> np.ndarray:
        return np.zeros(n, dtype) if value == 0 else np.full(n, value, dtype)

    def empty(self, key: str, n: int, dtype: Any) -> np.ndarray:
        return np.empty(n, dtype)

    def recording_outputs(self, n: int) -> dict[str, np.ndarray] | None:
        """A recording baseline's ``out_sec``, ``out_zone`` and ``dfree`` made ahead (None: make them)."""
        return None


class Recorder(Protocol):
    """What a recording baseline reports to the delta replays that follow it."""

    def attach(self, S: Sections, out_sec: np.ndarray, out_zone: np.ndarray, dfree: np.ndarray,
               ts_free: np.ndarray, ts_order: np.ndarray) -> None: ...

    def advance(self, k: int) -> None: ...


class BaselineSource(Protocol):
    """A recording baseline as a delta replay reads it (finished, or still running)."""

    S: Sections
    out_sec: np.ndarray
    out_zone: np.ndarray
    dfree: np.ndarray
    ts_free: np.ndarray
    ts_order: np.ndarray
    #: the baseline recorded (or is recording) its changes of free pages
    records: bool

    def limit(self, k: int) -> int:
        """How far a walk at event ``k`` may go (waits until that is past ``k``)."""
        ...

    def walking(self) -> contextlib.AbstractContextManager[Any]: ...

    def index(self, sparse: bool) -> DeltaIndex: ...

    def result(self) -> PolicyRun: ...


class FinishedBaseline:
    """A finished recording baseline run as a ``BaselineSource`` (its index made here, once)."""

    def __init__(self, prep: Prepared, run: PolicyRun) -> None:
        self.run = run
        self.S, self.out_sec, self.out_zone, self.dfree = run.S, run.out_sec, run.out_zone, run.dfree
        self.ts_free, self.ts_order = run.ts_free, run.ts_order
        self.records = run.dfree is not None
        self._n = len(prep.events)
        if self.records and run.delta_index is None:
            index = new_index(prep, len(run.S.kind))
            index.extend(run.S, run.out_sec, run.out_zone, run.dfree, self._n)
            run.delta_index = index

    def limit(self, k: int) -> int:
        return self._n

    def walking(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def index(self, sparse: bool) -> DeltaIndex:
        return self.run.delta_index if sparse else dense_index()

    def result(self) -> PolicyRun:
        return self.run


def as_source(prep: Prepared, base: PolicyRun | BaselineSource) -> BaselineSource:
    """``base`` as a ``BaselineSource`` (a finished run is wrapped)."""
    return FinishedBaseline(prep, base) if isinstance(base, PolicyRun) else base


def _next_stage(act: int) -> int:
    return STAGE_APPLIED if act == ACT_POST else (STAGE_FRESH if act == ACT_BG else STAGE_VISITED)


def _acceptance_model(prep: Prepared, policy: AcceptancePolicy, costs: Any, firmware_accepted_bytes: int) -> Any:
    from replay.acceptance.boot import state_from_layout

    return state_from_layout(prep.layout, policy, costs, firmware_accepted_bytes=firmware_accepted_bytes)


def _boot_cost(prep: Prepared, policy: AcceptancePolicy, costs: Any, firmware_accepted_bytes: int
               ) -> tuple[dict[str, Any], int]:
    """The policy's boot-time acceptance cost (it depends on the layout and the policy only) and
    the guest's present bytes."""
    from replay.acceptance.boot import boot_accept_cost

    layout = prep.layout
    ncpu = int(prep.state.pcp_count.shape[0])
    present_bytes = int(sum(z.present for z in layout.zones)) * int(layout.page_size)
    boot = boot_accept_cost(policy, costs, present_bytes, int(getattr(layout, "nr_cpus", ncpu) or ncpu),
                            layout=layout, firmware_accepted_bytes=firmware_accepted_bytes).as_dict()
    return boot, present_bytes


# ------------------------------------------------------------------ the two walks
def run_full(prep: Prepared, policy: AcceptancePolicy, costs: Any, *, buffers: Buffers | None = None,
             record: bool = False, recorder: Recorder | None = None, check_every: int = 0,
             firmware_accepted_bytes: int = FIRMWARE_ACCEPTED_BYTES,
             finishing: Callable[[], None] | None = None) -> PolicyRun:
    """The buddy model replayed under ``policy`` priced with ``costs`` (a ``CostPreset``).

    ``record`` (exact mode, a policy that never acts: the baseline): also record each event's
    change of its zone's free pages (``PolicyRun.dfree``, what ``run_delta`` replays on), and
    report the progress to ``recorder`` every ``FEED_CHUNK`` events.  ``buffers``: where the
    state copy and per-event arrays come from (the returned run's arrays live in them).
    ``check_every`` > 0: also check the model's invariants after every that many events
    (``PolicyRun.invariant_checks``), not only at the end.  ``finishing()``: called once the walk
    is done, before the lock schedule and charges are built (the part whose memory grows with the
    sections: the pipeline bounds how many runs are there at once)."""
    t_start = time.perf_counter()
    mem = buffers if buffers is not None else Buffers()
    ea = prep.events
    n = len(ea)
    mode = prep.mode
    record = (record or recorder is not None) and mode == "exact"
    model = _acceptance_model(prep, policy, costs, firmware_accepted_bytes)
    st = mem.state_copy(prep.state)
    reconcile(st, model.st)
    pp = policy_params(policy, model.pv, mode)
    boot, present_bytes = _boot_cost(prep, policy, costs, firmware_accepted_bytes)
    ncpu = int(st.pcp_count.shape[0])
    S = new_sections(n, ncpu)
    out_anom = mem.full("out_anom", n, np.int8)
    made = mem.recording_outputs(n) if record else None
    if made is not None:
        out_sec, out_zone, dfree = made["out_sec"], made["out_zone"], made["dfree"]
    else:
        out_sec = mem.full("out_sec", n, np.int32, -1)
        out_zone = mem.full("out_zone", n, np.int8, -1)
        dfree = np.zeros(n if record else 0, np.int32)
    if mode == "exact":  # the trace's pfns (exact mode places nothing itself): shared, not copied
        out_pfn = ea.pfn
    else:
        out_pfn = mem.empty("out_pfn", n, np.int64)
        np.copyto(out_pfn, ea.pfn)
    acount = np.zeros(prep.n_anomaly_kinds, np.int64)
    out = Replayed(out_anom, out_sec, out_zone, out_pfn, acount, dfree)
    series = new_series(prep.edges, int(st.geo[1]))
    if recorder is not None:  # what followers read, before the first progress report
        recorder.attach(S, out_sec, out_zone, dfree, series.free, series.order)
    from replay.model.simulate import new_sim_map

    walk = new_walk(len(prep.zone_names), ncpu, new_sim_map(st) if mode == "simulate" else None)
    drv = AcceptanceDriver(prep, policy, model, st, pp, walk.next_bg, delta=False)
    acc = model.st
    pol, zones, tr = Policy(pp, model.pv), zones_of(prep), trace_of(ea)
    from replay.model.invariants import check_invariants

    checks: list[dict[str, Any]] = []
    k, stage, yields = 0, STAGE_FRESH, 0
    while True:
        kmax = n if recorder is None else min(n, k + FEED_CHUNK)
        if check_every > 0:
            kmax = min(kmax, (k // check_every + 1) * check_every)
        k, act, z = policy_chunk(st, S, acc, pol, zones, tr, out, series, walk, k, kmax, stage)
        if act == ACT_DONE:
            if k < n:  # a chunk ended: a report to the followers, an invariant check
                if recorder is not None:
                    recorder.advance(k)
                if check_every > 0 and k % check_every == 0:
                    checks.append(_invariants(st, acc, prep, {**check_invariants(st), "after_event": k}))
                stage = STAGE_FRESH
                continue
            break
        yields += 1
        drv.handle(k, act, z, out_pfn)
        stage = _next_stage(act)
    for b in range(int(series.pos[0]), len(prep.edges)):  # buckets never reached: the final state
        sample_bucket(st, series, b)
    m = int(S.n[0])
    per_section = ("kind", "cpu", "zone", "start", "end", "pages", "nev", "first", "fallbacks", "owner")
    S = S._replace(**{f: getattr(S, f)[:max(m, 1)].copy() for f in per_section})
    rep = _invariants(st, acc, prep, check_invariants(st))
    held = int(listed_pages(acc, prep.zmap))
    if finishing is not None:
        finishing()
    run = _make_run(prep, policy, costs, drv, series, st=st, S=S, out_anom=out_anom, out_sec=out_sec,
                    out_zone=out_zone, out_pfn=out_pfn, acount=acount, rep=rep, boot=boot,
                    present_bytes=present_bytes, t_start=t_start, yields=yields, visited=0,
                    dfree=dfree if record and yields == 0 and held == 0 else None, method="full")
    run.invariant_checks = checks
    return run


def run_delta(prep: Prepared, policy: AcceptancePolicy, costs: Any, baseline: BaselineSource, *,
              sparse: bool = True, firmware_accepted_bytes: int = FIRMWARE_ACCEPTED_BYTES,
              finishing: Callable[[], None] | None = None) -> PolicyRun | None:
    """``policy`` replayed on a recording baseline's buddy results (``replay.policy.delta``);
    None where those would not hold for it (then replay it in full).  ``sparse``: the walk
    visits only the events that can matter (False: every event, as a reference).
    ``finishing``: as ``run_full``'s (not called when this returns None)."""
    t_start = time.perf_counter()
    ea = prep.events
    n = len(ea)
    model = _acceptance_model(prep, policy, costs, firmware_accepted_bytes)
    acc, pv = model.st, model.pv
    st0 = prep.state
    st = st0._replace(z_nr_free=st0.z_nr_free.copy())  # only the free counters are this run's
    reconcile(st, acc, counters_only=True, free_pages=prep.initial_free_pages)
    pp = policy_params(policy, pv, prep.mode)
    boot, present_bytes = _boot_cost(prep, policy, costs, firmware_accepted_bytes)
    ncpu = int(st.pcp_count.shape[0])
    baseline.limit(0)  # its arrays exist
    S, out_sec, out_zone = baseline.S, baseline.out_sec, baseline.out_zone
    series = new_series(prep.edges, int(st.geo[1]))
    walk = new_walk(len(prep.zone_names), ncpu)
    drv = AcceptanceDriver(prep, policy, model, st, pp, walk.next_bg, delta=True)
    pol, zones, tr = Policy(pp, pv), zones_of(prep), trace_of(ea)
    index = baseline.index(sparse)
    empty = np.zeros(0, np.int64)
    blk = index.touches(TOUCH_BLOCK, acc, n) if index.sparse and pp[PP_LISTS] else None
    unit = (index.touches(TOUCH_ZL if pp[PP_TRIGGER] == Trigger.ON_BUDDY_ALLOC else TOUCH_ALLOC, acc, n)
            if index.sparse and pp[PP_TRIGGER] in (Trigger.ON_BUDDY_ALLOC, Trigger.POST_ALLOC) else None)
    if not index.sparse:
        walk.sp[SP_DENSE_UNTIL] = n
    k, stage, yields = 0, STAGE_FRESH, 0
    while True:
        limit = baseline.limit(k)
        with baseline.walking():
            recorded = Baseline(out_sec, out_zone, baseline.dfree, baseline.ts_free, baseline.ts_order)
            ix = index.bundle(blk.extend(ea, out_zone, limit) if blk is not None else empty,
                              unit.extend(ea, out_zone, limit) if unit is not None else empty)
            k, act, z = delta_chunk(st, S, acc, pol, zones, tr, recorded, ix, series, walk, k, limit, stage)
        if act == ACT_DONE:
            if k < n:  # the baseline's safe point reached
                stage = STAGE_FRESH
                continue
            break
        if act == ACT_DIVERGE:  # the baseline's results do not hold for this policy
            return None
        yields += 1
        drv.handle(k, act, z, ea.pfn)
        stage = _next_stage(act)
    base = baseline.result()
    if base.dfree is None:  # it could not record after all
        return None
    held = int(listed_pages(acc, prep.zmap))
    for b in range(int(series.pos[0]), len(prep.edges)):  # the baseline's final state without the listed blocks
        series.free[b] = base.ts_free[b] - held
        series.order[b] = base.ts_order[b]
        series.order[b, -1] -= held
    listed = _listed(acc, prep)
    if not _delta_agrees(base, st, acc, listed):
        return None
    # the full replay's final state is the baseline's without the listed blocks
    rep = dict(base.invariant_report)
    rep["free_pages"] = (np.asarray(rep["free_pages"], np.int64) - listed).tolist()
    rep = _invariants(base.st, acc, prep, rep)
    if finishing is not None:
        finishing()
    return _make_run(prep, policy, costs, drv, series, st=base.st, S=base.S, out_anom=base.out_anom, out_sec=out_sec,
                     out_zone=out_zone, out_pfn=base.out_pfn, acount=base.acount, rep=rep, boot=boot,
                     present_bytes=present_bytes, t_start=t_start, yields=yields, visited=int(walk.sp[SP_VISITS]),
                     dfree=None, method="delta")


def run_policy(prep: Prepared, policy: AcceptancePolicy, costs: Any, *,
               baseline: PolicyRun | BaselineSource | None = None, buffers: Buffers | None = None,
               sparse: bool = True, firmware_accepted_bytes: int = FIRMWARE_ACCEPTED_BYTES,
               finishing: Callable[[], None] | None = None) -> PolicyRun:
    """``policy``'s replay: on ``baseline``'s results where it can be (``run_delta``), else in
    full (``run_full``, with ``buffers``); ``finishing``: as ``run_full``'s (called once)."""
    if baseline is not None and can_replay_on(prep, policy, baseline):
        run = run_delta(prep, policy, costs, as_source(prep, baseline), sparse=sparse,
                        firmware_accepted_bytes=firmware_accepted_bytes, finishing=finishing)
        if run is not None:
            return run
    return run_full(prep, policy, costs, buffers=buffers, firmware_accepted_bytes=firmware_accepted_bytes,
                    finishing=finishing)


def can_replay_on(prep: Prepared, policy: AcceptancePolicy, baseline: PolicyRun | BaselineSource) -> bool:
    """A delta replay is possible: exact mode, a baseline that records, and listed blocks of the
    top order (they then never merge)."""
    records = baseline.dfree is not None if isinstance(baseline, PolicyRun) else baseline.records
    bo = policy.block_order or prep.layout.max_page_order  # (acceptance.boot.state_from_layout)
    return prep.mode == "exact" and records and bo == int(prep.state.geo[1]) - 1


# ------------------------------------------------------------------ the end of a walk
def _listed(acc: AcceptState, prep: Prepared) -> np.ndarray:
    """Pages still on each model zone's ``zone->unaccepted_pages``."""
    if acc.z_nr_unaccepted.shape[0]:
        return acc.z_nr_unaccepted[prep.zmap]
    return np.zeros(len(prep.zone_names), np.int64)


def _invariants(st: ModelState, acc: AcceptState, prep: Prepared, rep: dict[str, Any]) -> dict[str, Any]:
    """The invariant report with the pages on ``zone->unaccepted_pages``: present but outside the
    buddy, so free + pcp + allocated + unaccepted = present."""
    listed = _listed(acc, prep)
    cons = bool(np.array_equal(np.asarray(rep["free_pages"]) + np.asarray(rep["pcp_pages"])
                               + np.asarray(rep["allocated_pages"]) + listed, st.z_present))
    rep["unaccepted_pages"] = listed.tolist()
    rep["pages_conserved"] = cons
    rep["ok"] = bool(cons and rep["counters_match_pages"] and rep["pcp_counts_match"] and rep["unmerged_buddies"] == 0
                     and rep["list_errors"] == 0 and rep["overlapping_blocks"] == 0)
    return rep


def _make_run(prep: Prepared, policy: AcceptancePolicy, costs: Any, drv: AcceptanceDriver, series: Series, *,
              st: ModelState, S: Sections, out_anom: np.ndarray, out_sec: np.ndarray, out_zone: np.ndarray,
              out_pfn: np.ndarray, acount: np.ndarray, rep: dict[str, Any], boot: dict[str, Any],
              present_bytes: int, t_start: float, yields: int, visited: int, dfree: np.ndarray | None,
              method: str) -> PolicyRun:
    acc = drv.acc
    ea = prep.events
    m = int(S.n[0])
    tl = schedule_run(S, out_sec, drv.programs, ea.ts, prep.cal, drv.ncpu, len(prep.zone_names),
                      _acceptance_zone_to_zone(prep, acc))
    elog, pp = charges(tl, drv.programs, ea.ev, ea.cpu, ea.ts, drv.ncpu)
    apply_to_actions(drv.actions, pp, drv.totals)
    sec_hold = tl.sc.sec_hold[:m].copy()
    rep["lock_overlaps"] = tl.lock_overlaps()
    rep["cpus_left_waiting"] = tl.waiting
    rep["ok"] = bool(rep["ok"] and rep["lock_overlaps"] == 0 and tl.waiting == 0)
    handled, firmware, accepted, forced = drv.handled_arrays()
    return PolicyRun(
        policy=policy, costs_name=costs.name, mode=prep.mode, st=st, acc=acc, S=S, out_anom=out_anom,
        out_sec=out_sec, out_zone=out_zone, out_pfn=out_pfn, acount=acount,
        elog=elog, ts=ea.ts, cpu=ea.cpu, handled_firmware=firmware,
        handled_accepted=accepted, handled_forced=forced, sec_vstart=tl.sc.sec_req[:m].copy(),
        sec_wait=tl.sc.sec_wait[:m].copy(), sec_ext=tl.ext, sec_hold=sec_hold,
        sec_blocker_cpu=tl.sc.sec_bcpu[:m].astype(np.int32), sec_behind=tl.sec_behind,
        acc_zl=zone_lock_rows(drv.programs, pp, drv.ncpu),
        handled=handled,
        actions=drv.actions, ts_free=series.free, ts_order=series.order,
        ts_unaccepted=drv.unaccepted_series(prep.edges),
        totals=drv.totals, boot=boot, present_bytes=present_bytes, invariants_ok=bool(rep.get("ok", False)),
        invariant_report=rep, accepted_ok=_all_handed_out_accepted(st, acc),
        conservation_ok=bool(check_conservation(acc)), seconds=time.perf_counter() - t_start, yields=yields,
        visited=visited, dfree=dfree, method=method)


def _acceptance_zone_to_zone(prep: Prepared, acc: AcceptState) -> np.ndarray:
    """Model zone of each acceptance zone (``prep.zmap`` inverted)."""
    out = np.full(max(int(acc.geo[AcceptGeo.NR_ZONES]), 1), -1, np.int64)
    for z, az in enumerate(np.asarray(prep.zmap).tolist()):
        if az >= 0:
            out[az] = z
    return out


def _delta_agrees(base: PolicyRun, st: ModelState, acc: AcceptState, listed: np.ndarray) -> bool:
    """A delta replay's end agrees with the full replay's: its free counters are the baseline's
    minus the pages still listed, and each block still listed is a whole free block of the
    baseline's final state (no event touched it)."""
    if not np.array_equal(st.z_nr_free, base.st.z_nr_free - listed):
        return False
    bo = int(acc.geo[AcceptGeo.BLOCK_ORDER])
    return all(bool(all_top_blocks_free(base.st, unaccepted_pages_of(acc, az), bo))
               for az in range(int(acc.geo[AcceptGeo.NR_ZONES])))


def _all_handed_out_accepted(st: ModelState, acc: AcceptState) -> bool:
    """No page the model holds allocated lies in an unaccepted unit (pcp pages and blocks taken
    for a pending mm_page_alloc are not handed out yet: v2-v7 accept in post_alloc_hook)."""
    if not acc.geo[AcceptGeo.HAS_TABLE] or not acc.bitmap.any():
        return True
    return int(handed_out_unaccepted(st, acc)) == 0


# ------------------------------------------------------------------ policies that accept nothing
def accepts_nothing(prep: Prepared, policy: AcceptancePolicy, costs: Any, *,
                    firmware_accepted_bytes: int = FIRMWARE_ACCEPTED_BYTES) -> bool:
    """True when ``policy`` leaves no memory unaccepted by the time the trace starts.

    ``none`` and ``firmware-eager`` have no unaccepted table; ``kernel-eager`` accepted every
    block while memblock handed it to the buddy.  No acceptance hook can then do anything during
    the trace (no unaccepted unit, no zone->unaccepted_pages entry, no background work): the
    replay is the baseline's, event for event (tests/cli/test_replay.py checks it).
    """
    acc = _acceptance_model(prep, policy, costs, firmware_accepted_bytes).st
    return not acc.geo[AcceptGeo.HAS_TABLE] or (not acc.bitmap.any() and int(acc.ul_len.sum()) == 0)


def baseline_run_as(prep: Prepared, base: PolicyRun, policy: AcceptancePolicy, costs: Any, *,
                    firmware_accepted_bytes: int = FIRMWARE_ACCEPTED_BYTES) -> PolicyRun:
    """The baseline run ``base`` as the run of ``policy`` (which must ``accepts_nothing``): the
    same events, sections and state, the policy's own acceptance state and boot-time cost."""
    t0 = time.perf_counter()
    acc = _acceptance_model(prep, policy, costs, firmware_accepted_bytes).st
    boot, _ = _boot_cost(prep, policy, costs, firmware_accepted_bytes)
    return replace(base, policy=policy, costs_name=costs.name, acc=acc, boot=boot,
                   accepted_ok=_all_handed_out_accepted(base.st, acc),
                   conservation_ok=bool(check_conservation(acc)), seconds=time.perf_counter() - t0, yields=0)
