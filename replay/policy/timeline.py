"""One policy's replay in virtual time: the lock schedule of its zone->lock sections and acceptance work.

The walk (``policy.loop`` / ``policy.delta``) decides *what* happens, in trace order: which
zone->lock sections the trace's CPUs open (``Sections``) and, at each call site where the policy
acts, which locks its acceptance takes and for how long (a *program*: the steps
``replay.acceptance`` appends to ``AcceptState.steps``).  This module decides *when*:
``replay.model.locks.schedule`` serves every lock request of every CPU in virtual-time order,
one holder per lock, and the waits, holds and delays it finds are the run's.

- A section holds its lock for its calibrated hold (``replay.model.sections.hold_times``), cut
  at the next section of the same lock in the trace: the trace shows that CPU holding it by
  then, so the unmodified kernel's sections never overlap and ``none`` waits 0 ns.
- A program runs on its CPU at its event: before the event's section (a zone visit, a forced
  ``accept_page``), inside it (v1's ``del_page_from_free_list`` under zone->lock: the section's
  lock stays held across the firmware call), or after it (``post_alloc_hook``); the background
  acceptor is one more CPU.
- Each event's charges (``EL_*``) are what its items added to its CPU (waits and
  work), waited and held; an allocation's latency adds its zone_locked events' charges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.acceptance.policies import HELD_IRQS_OFF
from replay.acceptance.unaccepted_memory import LOCK_UNACCEPTED_MEMORY, Receipt
from replay.events.arrays import EV_ALLOC, EV_BATCHED, EV_DRAIN, EV_EXTFRAG, EV_FREE, EV_ZL
from replay.jit import kernel_entry
from replay.model.locks import (BK_PROGRAM, BK_RANGE, BK_SECTION, IT_PROGRAM, IT_SECTION, OP_ACQ, OP_REL, Items,
                                Schedule, Steps, check_exclusion, run_schedule)
from replay.model.sections import Sections, hold_times

#: ``elog`` columns (``event_log``): one row per event charged anything (events in order): its
#: virtual time, the time added to its CPU, its waits and holds, an allocation's latency, and
#: ``EL_WAIT_ACCEPT``, the part of ``EL_WAIT`` spent behind a holder doing acceptance work
EL_K, EL_VTS, EL_ADDED, EL_WAIT, EL_HOLD, EL_LAT, EL_WAIT_ACCEPT, EL_LEN = 0, 1, 2, 3, 4, 5, 6, 7

#: what a wait was spent behind (``lock_sections.waited_behind``): nothing, a holder doing
#: acceptance work (a program's lock hold, a section with firmware or waits inside it, an
#: accepting_list range), or a plain allocator section (a knock-on of delays elsewhere)
WAITED_BEHIND = ["", "accept", "allocator"]
WB_NONE, WB_ACCEPT, WB_ALLOCATOR = 0, 1, 2

#: where a program runs relative to its event's zone->lock section (item order at one event)
PH_BEFORE, PH_SECTION, PH_INSIDE, PH_AFTER = 0, 1, 2, 3


class Program:
    """What the policy made one CPU do at one event: the steps of ``replay.model.locks``, with
    locks as ``AcceptState.steps`` names them (acceptance zone, ``LOCK_UNACCEPTED_MEMORY``)."""

    __slots__ = ("k", "cpu", "phase", "steps", "zone")

    def __init__(self, k: int, cpu: int, phase: int, steps: np.ndarray) -> None:
        self.k, self.cpu, self.phase, self.steps = k, cpu, phase, steps
        self.zone = -1  # the first zone->lock it takes (model zone), set by build_items


def bounded_holds(S: Sections, m: int, cal: Any) -> np.ndarray:
    """Each section's calibrated hold, at most until the next section of its lock starts."""
    h = hold_times(S.kind[:m].astype(np.int64), S.nev[:m], S.fallbacks[:m], cal)
    if m < 2:
        return h
    start = S.start[:m].astype(np.int64)
    zone = S.zone[:m].astype(np.int64)
    o = np.lexsort((np.arange(m), start, zone))
    same = zone[o[1:]] == zone[o[:-1]]
    gap = start[o[1:]] - start[o[:-1]]
    cur = h[o[:-1]]
    h[o[:-1]] = np.where(same & (gap < cur), np.maximum(gap, 0), cur)
    return h


def _lock_ids(steps: np.ndarray, az_to_zone: np.ndarray, nz: int) -> np.ndarray:
    """The program's steps with their locks as schedule lock ids (zone index, ``nz``: global)."""
    s = steps.copy()
    lk = (s[:, 0] == OP_ACQ) | (s[:, 0] == OP_REL)
    a = s[lk, 1]
    s[lk, 1] = np.where(a == LOCK_UNACCEPTED_MEMORY, nz, az_to_zone[np.maximum(a, 0)])
    return s


def build_items(S: Sections, m: int, holds: np.ndarray, programs: list[Program], out_sec: np.ndarray,
                ts: np.ndarray, ncpu: int, az_to_zone: np.ndarray, nz: int) -> tuple[Items, Steps, np.ndarray]:
    """The schedule's items (sections and programs, grouped by CPU, in event order) and steps;
    also each program's item index."""
    npg = len(programs)
    pk = np.fromiter((p.k for p in programs), np.int64, npg)
    pc = np.fromiter((p.cpu for p in programs), np.int64, npg)
    pph = np.fromiter((p.phase for p in programs), np.int64, npg)
    pks = pk.copy()
    psec = np.full(npg, -1, np.int64)
    if npg:
        sid = out_sec[pk].astype(np.int64)
        own = (sid >= 0) & (S.cpu[np.maximum(sid, 0)].astype(np.int64) == pc)
        # a zone visit at a later event of a section already open (another zone_locked of the
        # same rmqueue_bulk) happened before that section, where get_page_from_freelist() is
        mid = (pph == PH_BEFORE) & own & (S.first[np.maximum(sid, 0)] < pk)
        pks[mid] = S.first[sid[mid]]
        inside = (pph == PH_INSIDE) & own
        pph = np.where((pph == PH_INSIDE) & ~own, PH_AFTER, pph)
        psec[inside] = sid[inside]
    blocks = [_lock_ids(p.steps, az_to_zone, nz) for p in programs]
    for p, b in zip(programs, blocks):
        zl = b[(b[:, 0] == OP_ACQ) & (b[:, 1] < nz), 1]
        p.zone = int(zl[0]) if len(zl) else -1
    lens = np.fromiter((len(b) for b in blocks), np.int64, npg)
    s1 = np.cumsum(lens)
    s0 = s1 - lens
    allsteps = np.concatenate(blocks) if npg else np.zeros((0, 4), np.int64)
    cpu = np.concatenate([S.cpu[:m].astype(np.int64), pc])
    k = np.concatenate([S.first[:m].astype(np.int64), pks])
    phase = np.concatenate([np.full(m, PH_SECTION, np.int64), pph])
    order = np.lexsort((np.arange(m + npg), phase, k, cpu))
    kind = np.concatenate([np.full(m, IT_SECTION, np.int8), np.full(npg, IT_PROGRAM, np.int8)])[order]
    sec = np.concatenate([np.arange(m, dtype=np.int64), psec])[order]
    lock = np.concatenate([S.zone[:m].astype(np.int64), np.full(npg, -1, np.int64)])[order]
    hold = np.concatenate([holds.astype(np.int64), np.zeros(npg, np.int64)])[order]
    kk = k[order]
    it = Items(cpu=cpu[order], k=kk, ts=ts[kk].astype(np.int64) if len(kk) else np.zeros(0, np.int64),
               kind=kind, sec=sec, lock=lock, hold=hold,
               s0=np.concatenate([np.zeros(m, np.int64), s0])[order],
               s1=np.concatenate([np.zeros(m, np.int64), s1])[order],
               cpu_start=np.searchsorted(cpu[order], np.arange(ncpu + 2)).astype(np.int64))
    sp = Steps(op=allsteps[:, 0].copy(), a=allsteps[:, 1].copy(), b=allsteps[:, 2].copy(), d=allsteps[:, 3].copy())
    where = np.empty(m + npg, np.int64)
    where[order] = np.arange(m + npg)
    return it, sp, where[m:]


@kernel_entry(nrt=False)
def event_log(ev: np.ndarray, cpu: np.ndarray, ts: np.ndarray, ks: np.ndarray, vts: np.ndarray,
              added: np.ndarray, wait: np.ndarray, hold: np.ndarray, wacc: np.ndarray, pend: np.ndarray,
              delay: np.ndarray, out: np.ndarray, write: bool) -> int:
    """The event log (``EL_*`` rows, event order) from each charged event's added,
    waited and held ns (``ks`` ascending): an allocation's latency is what its own zone_locked /
    extfrag events on its CPU and itself added; returns the rows (written when ``write``)."""
    pend[:] = 0
    delay[:] = 0
    j = 0
    r = 0
    nks = ks.shape[0]
    for k in range(ev.shape[0]):
        e = ev[k]
        c = cpu[k]
        a = 0
        w = 0
        h = 0
        wa = 0
        v = ts[k] + delay[c]
        mine = j < nks and ks[j] == k
        if mine:
            a = added[j]
            w = wait[j]
            h = hold[j]
            wa = wacc[j]
            v = vts[j]
            j += 1
        lat = 0
        if e == EV_ALLOC:
            lat = pend[c] + a
            pend[c] = 0
        elif e == EV_ZL or e == EV_EXTFRAG:
            pend[c] += a
        elif e == EV_FREE or e == EV_BATCHED or e == EV_DRAIN:
            pend[c] = 0  # (other events, lock contention, kprobes, do not end a request)
        delay[c] += a
        if a != 0 or w != 0 or h != 0 or lat != 0:
            if not write:
                r += 1
                continue
            out[r, EL_K] = k
            out[r, EL_VTS] = v
            out[r, EL_ADDED] = a
            out[r, EL_WAIT] = w
            out[r, EL_HOLD] = h
            out[r, EL_LAT] = lat
            out[r, EL_WAIT_ACCEPT] = wa
            r += 1
    return r


class Timeline:
    """The schedule of one run and what it charges: per section, per program, per event."""

    def __init__(self, sc: Schedule, it: Items, prog_item: np.ndarray, holds: np.ndarray, nz: int,
                 waiting: int) -> None:
        self.sc, self.it, self.prog_item, self.holds, self.nz, self.waiting = sc, it, prog_item, holds, nz, waiting
        n_rec = int(sc.lr_n[0])
        self.lr = {f: getattr(sc, f)[:n_rec] for f in ("lr_item", "lr_lock", "lr_cpu", "lr_req", "lr_wait",
                                                         "lr_hold", "lr_bkind", "lr_bid", "lr_bcpu")}
        m = len(holds)
        #: per section: what it held the lock for beyond its calibrated hold (work and waits inside)
        self.ext = np.maximum(sc.sec_hold[:m] - holds, 0)
        self.sec_behind = self._behind(sc.sec_wait[:m], sc.sec_bkind[:m], sc.sec_bid[:m])
        self.rec_behind = self._behind(self.lr["lr_wait"], self.lr["lr_bkind"], self.lr["lr_bid"])

    def _behind(self, wait: np.ndarray, bkind: np.ndarray, bid: np.ndarray) -> np.ndarray:
        """``WB_*`` of each wait from what it waited behind."""
        ext = self.ext
        sec_busy = (bkind == BK_SECTION) & (ext[np.clip(bid, 0, max(len(ext) - 1, 0))] > 0 if len(ext) else False)
        acc = (bkind == BK_PROGRAM) | (bkind == BK_RANGE) | sec_busy
        return np.where(wait > 0, np.where(acc, WB_ACCEPT, WB_ALLOCATOR), WB_NONE).astype(np.int8)

    def lock_overlaps(self) -> int:
        """Holds of one lock that overlap (must be 0): sections and the programs' lock holds."""
        m = len(self.holds)
        lr = self.lr
        held = lr["lr_lock"] >= 0
        lock = np.concatenate([self._sec_lock(), lr["lr_lock"][held]])
        grant = np.concatenate([self.sc.sec_grant[:m], (lr["lr_req"] + lr["lr_wait"])[held]])
        hold = np.concatenate([self.sc.sec_hold[:m], lr["lr_hold"][held]])
        return check_exclusion(lock.astype(np.int64), grant, hold)

    def _sec_lock(self) -> np.ndarray:
        m = len(self.holds)
        out = np.zeros(m, np.int64)
        sel = self.it.kind == IT_SECTION
        out[self.it.sec[sel]] = self.it.lock[sel]
        return out

    def per_program(self) -> dict[str, np.ndarray]:
        """Per program: ns added to its CPU, its global-lock wait, accepting_list spin and
        collisions, zone->lock wait and hold, its start in virtual time."""
        npg = len(self.prog_item)
        lr = self.lr
        # lock records -> programs (records of section items cannot exist: only programs take locks)
        pos = np.full(len(self.it.k), -1, np.int64)
        pos[self.prog_item] = np.arange(npg)
        p = pos[lr["lr_item"]] if len(lr["lr_item"]) else np.zeros(0, np.int64)
        glob = lr["lr_lock"] == self.nz
        rng = lr["lr_bkind"] == BK_RANGE
        zl = (lr["lr_lock"] >= 0) & (lr["lr_lock"] < self.nz)

        def by(sel: np.ndarray, v: np.ndarray) -> np.ndarray:
            return np.bincount(p[sel], weights=v[sel], minlength=npg).astype(np.int64)

        def blocker(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # the holder of the longest of those waits, and what it was doing
            cpu = np.full(npg, -1, np.int64)
            behind = np.zeros(npg, np.int8)
            idx = np.nonzero(sel & (lr["lr_wait"] > 0))[0]
            idx = idx[np.lexsort((lr["lr_wait"][idx], p[idx]))]  # by program, longest last
            cpu[p[idx]] = lr["lr_bcpu"][idx]
            behind[p[idx]] = self.rec_behind[idx]
            return cpu, behind
        ones = np.ones(len(p), np.int64)
        accept = (self.rec_behind == WB_ACCEPT).astype(np.int64)
        g_cpu, g_behind = blocker(glob)
        z_cpu, z_behind = blocker(zl)
        r_cpu, _ = blocker(rng)
        return {"added": self.sc.it_added[self.prog_item], "start": self.sc.it_start[self.prog_item],
                "global_wait": by(glob, lr["lr_wait"]), "spin": by(rng, lr["lr_wait"]),
                "collisions": by(rng, ones), "zl_wait": by(zl, lr["lr_wait"]), "zl_hold": by(zl, lr["lr_hold"]),
                "wait_accept": by(np.ones(len(p), bool), lr["lr_wait"] * accept),
                "global_blocker": g_cpu, "global_behind": g_behind, "zl_blocker": z_cpu, "zl_behind": z_behind,
                "range_blocker": r_cpu}


def schedule_run(S: Sections, out_sec: np.ndarray, programs: list[Program], ts: np.ndarray, cal: Any,
                 ncpu: int, nz: int, az_to_zone: np.ndarray) -> Timeline:
    """The lock schedule of one run's sections and programs (CPU ``ncpu``: the background acceptor)."""
    m = int(S.n[0])
    holds = bounded_holds(S, m, cal)
    it, sp, prog_item = build_items(S, m, holds, programs, out_sec, ts, ncpu, az_to_zone, nz)
    sc, waiting = run_schedule(it, sp, m, nz + 1)
    return Timeline(sc, it, prog_item, holds, nz, waiting)


def charges(tl: Timeline, programs: list[Program], ev: np.ndarray, cpu: np.ndarray, ts: np.ndarray,
            ncpu: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The event log of the run, and the per-program figures (``Timeline.per_program``)."""
    sc, it = tl.sc, tl.it
    m = len(tl.holds)
    pp = tl.per_program()
    traced = it.cpu < ncpu
    n_items = len(it.k)
    item_hold = np.zeros(n_items, np.int64)
    sel = it.kind == IT_SECTION
    item_hold[sel] = sc.sec_hold[:m][it.sec[sel]]
    item_hold[tl.prog_item] = pp["zl_hold"]
    item_wacc = np.zeros(n_items, np.int64)
    item_wacc[sel] = np.where(tl.sec_behind[it.sec[sel]] == WB_ACCEPT, sc.sec_wait[:m][it.sec[sel]], 0)
    item_wacc[tl.prog_item] = pp["wait_accept"]
    event = it.k.copy()
    event[tl.prog_item] = np.fromiter((p.k for p in programs), np.int64, len(programs))
    ks_all = event[traced]
    if len(ks_all):
        ks, first = np.unique(ks_all, return_index=True)
        inv = np.searchsorted(ks, ks_all)
        added = np.bincount(inv, weights=sc.it_added[:n_items][traced], minlength=len(ks)).astype(np.int64)
        wait = np.bincount(inv, weights=sc.it_wait[:n_items][traced], minlength=len(ks)).astype(np.int64)
        hold = np.bincount(inv, weights=item_hold[traced], minlength=len(ks)).astype(np.int64)
        wacc = np.bincount(inv, weights=item_wacc[traced], minlength=len(ks)).astype(np.int64)
        vts = sc.it_start[:n_items][traced][first]
    else:
        ks = added = wait = hold = wacc = vts = np.zeros(0, np.int64)
    pend, delay = np.zeros(ncpu, np.int64), np.zeros(ncpu, np.int64)
    rows = event_log(ev, cpu, ts, ks, vts, added, wait, hold, wacc, pend, delay, np.zeros((1, EL_LEN), np.int64),
                     False)
    out = np.zeros((rows, EL_LEN), np.int64)
    event_log(ev, cpu, ts, ks, vts, added, wait, hold, wacc, pend, delay, out, True)
    return out, pp


def apply_to_actions(actions: list[dict[str, Any]], pp: dict[str, np.ndarray], totals: np.ndarray) -> None:
    """The waits the schedule found, into each action's receipt (and the totals): global-lock
    wait, accepting_list spin and collisions, the time added to the CPU, IRQs-off stretches."""
    for a in actions:
        i = a["program"]
        if i < 0:
            continue
        r = a["receipt"]
        old = r.copy()
        r[Receipt.GLOBAL_LOCK_WAIT_NS] = pp["global_wait"][i]
        r[Receipt.ACCEPTING_SPIN_NS] = pp["spin"][i]
        r[Receipt.ACCEPTING_COLLISIONS] = pp["collisions"][i]
        if a["cpu"] >= 0:
            r[Receipt.ADDED_NS] = pp["added"][i]
        if a["held"] & HELD_IRQS_OFF:  # the global lock is waited for with IRQs off (spin_lock_irqsave)
            r[Receipt.IRQS_OFF_NS] += pp["global_wait"][i]
            r[Receipt.IRQS_OFF_MAX_NS] += pp["global_wait"][i]
        a["vts"] = int(pp["start"][i])
        a["global_blocker"], a["global_behind"] = int(pp["global_blocker"][i]), int(pp["global_behind"][i])
        a["range_blocker"] = int(pp["range_blocker"][i])
        for f in (Receipt.GLOBAL_LOCK_WAIT_NS, Receipt.ACCEPTING_SPIN_NS, Receipt.ACCEPTING_COLLISIONS,
                  Receipt.ADDED_NS, Receipt.IRQS_OFF_NS):
            totals[f] += r[f] - old[f]
        totals[Receipt.IRQS_OFF_MAX_NS] = max(totals[Receipt.IRQS_OFF_MAX_NS], r[Receipt.IRQS_OFF_MAX_NS])


#: ``PolicyRun.acc_zl`` columns
AZ_K, AZ_HOLD, AZ_ZONE, AZ_BG, AZ_WAIT, AZ_BLOCKER, AZ_BEHIND, AZ_LEN = 0, 1, 2, 3, 4, 5, 6, 7


def zone_lock_rows(programs: list[Program], pp: dict[str, np.ndarray], ncpu: int) -> np.ndarray:
    """Per event whose acceptance held zone->lock (``AZ_*``): its hold, zone, whether the
    background acceptor did it, its wait, and the holder of its longest wait (CPU, ``WB_*``)."""
    rows: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(programs):
        if pp["zl_hold"][i] <= 0 and pp["zl_wait"][i] <= 0:
            continue
        bg = int(p.cpu >= ncpu)
        row = rows.setdefault((p.k, bg), [p.k, 0, p.zone, bg, 0, -1, WB_NONE])
        row[AZ_HOLD] += int(pp["zl_hold"][i])
        row[AZ_WAIT] += int(pp["zl_wait"][i])
        if pp["zl_blocker"][i] >= 0:
            row[AZ_BLOCKER], row[AZ_BEHIND] = int(pp["zl_blocker"][i]), int(pp["zl_behind"][i])
    return np.array([rows[key] for key in sorted(rows)], np.int64).reshape(-1, AZ_LEN)
