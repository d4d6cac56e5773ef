"""The results folder of a multi-policy replay (docs/results.md): tables, summary, metadata.

``build_policy_tables(prep, runs, table, ...)`` turns the ``PolicyRun`` of each policy (``none``
first) into the nine documented tables; ``write_policy_results`` writes them with the
``pagereplay.*`` metadata.  Same inputs give byte-identical files (no wall-clock values, fixed
row order, fixed writer options).

Definitions (what a reader of the tables can recompute):

* ``events.added_ns``: delay the policy added to the event's CPU at that event (acceptance work
  on the CPU, added zone->lock waits, zone->lock sections the policy added or lengthened);
  ``lock_wait_ns``: the waits among it (zone->lock waits beyond those at trace time, global
  accept lock, accepting_list spin); ``lock_hold_ns``: zone->lock hold of the sections the event
  opened or lengthened (the trace's own sections included); ``vts_ns`` = ``ts_ns`` + the CPU's
  delay before the event.
* ``summary.alloc_added_*``: percentiles (nearest rank) of the delay added to each
  ``mm_page_alloc`` request, its ``mm_page_alloc_zone_locked`` / extfrag events included.
* ``summary.firmware_calls`` / ``firmware_ns`` / ``accepted_bytes``: acceptance during the trace
  (the background acceptor's included); acceptance before the trace (firmware, EFI stub,
  memblock, kernel-eager boot) is in ``boot_accept_ns`` and in ``firmware_calls`` rows with
  ``seq = -1``.
"""

from __future__ import annotations

import json
import os
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.acceptance.unaccepted_memory import PAGE_SIZE, RECEIPT_LEN, AcceptGeo, Receipt, firmware_calls
from parsers.schema import ALL_EVENT_NAMES, EVENT_NAMES
from replay.model.anomalies import KIND_BY_CODE
from replay.acceptance.costs import CALL_KIND_NAMES, NR_FIRMWARE_CALL_KINDS
from replay.events.arrays import EV_ALLOC
from replay.model.sections import SECTION_KIND_NAMES
from replay.acceptance.policies import HELD_GLOBAL_LOCK, HELD_IRQS_OFF, HELD_ZONE_LOCK
from replay.policy.timeline import (AZ_BEHIND, AZ_BLOCKER, EL_ADDED, EL_HOLD, EL_K, EL_LAT, EL_WAIT, EL_WAIT_ACCEPT,
                                    WAITED_BEHIND, WB_ACCEPT, WB_NONE)
from replay.policy.prepare import Prepared
from replay.policy.result import PolicyRun
from replay.jit import kernel, kernel_entry
from replay.results.folder import POLICY_RESULT_FILES

SCHEMA_VERSION = "1"
#: replay.model.engine section kinds -> docs/results.md lock_sections.kind
SECTION_KINDS = {"refill": "pcp_refill", "drain": "pcp_drain", "alloc": "buddy_alloc", "free": "buddy_free",
                 "fallback": "fallback"}
#: replay.acceptance.costs call kinds -> docs/results.md firmware_calls.kind
CALL_KINDS = {"tdx_accept_4k": "tdx_accept_4k", "tdx_accept_2m": "tdx_accept_2m",
              "tdx_accept_fail": "tdx_accept_2m_failed", "tdx_mapgpa": "tdx_mapgpa", "snp_psc_vmgexit": "snp_psc",
              "snp_pvalidate_4k": "snp_pvalidate_4k", "snp_pvalidate_2m": "snp_pvalidate_2m",
              "snp_pvalidate_fail": "snp_pvalidate_2m_failed"}
N_ORDER_COLS = 11
NS_1MS = 1_000_000
NS_20S = 20_000_000_000


def _dict(values: list[str] | np.ndarray, categories: list[str]) -> pa.DictionaryArray:
    categories = list(dict.fromkeys(categories))  # each value once (see _dict_codes)
    pos = {c: i for i, c in enumerate(categories)}
    idx = pa.array([None if v is None else pos[v] for v in values], pa.int32())
    return pa.DictionaryArray.from_arrays(idx, pa.array(categories, pa.string()))


def _dict_codes(codes: np.ndarray, categories: list[str], mask: np.ndarray | None = None) -> pa.DictionaryArray:
    codes = np.asarray(codes, np.int32)
    uniq = list(dict.fromkeys(categories))
    if len(uniq) != len(categories):
        # one value once: Parquet's dictionary page for a dictionary that repeats a value (two
        # nodes' "Normal" zones) was written with uninitialised bytes, a different file each run
        codes = np.array([uniq.index(c) for c in categories], np.int32)[codes]
    idx = pa.array(codes, pa.int32(), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, pa.array(uniq, pa.string()))


def _event_names(ev: np.ndarray) -> list[str]:
    """The ``event`` dictionary: the six kmem events, or every kind when the untraced kprobe rows
    (exact mode replays them: ``parsers.schema.UntracedEvent`` codes) are there."""
    return list(EVENT_NAMES) if not len(ev) or int(ev.max()) < len(EVENT_NAMES) else list(ALL_EVENT_NAMES)


def _const_dict(n: int, i: int, categories: list[str]) -> pa.DictionaryArray:
    return _dict_codes(np.full(n, i, np.int32), categories)


def _held_name(held: int) -> str:
    if held & HELD_ZONE_LOCK:
        return "zone_lock"
    if held & HELD_GLOBAL_LOCK:
        return "accept_global"
    if held & HELD_IRQS_OFF:
        return "irqs_off"
    return "none"


def _comm_pid(table: pa.Table) -> tuple[pa.Array, np.ndarray]:
    col = table.column("comm")
    comm = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if not pa.types.is_dictionary(comm.type):
        comm = comm.dictionary_encode()
    comm = comm.cast(pa.dictionary(pa.int32(), pa.string()))
    pcol = table.column("pid")
    if pcol.null_count == 0 and pcol.num_chunks == 1 and pcol.type == pa.int32():
        pid = pcol.chunk(0).to_numpy(zero_copy_only=True)  # (no fill_null copy: a page fault per 4 KiB)
    else:
        pid = np.asarray(pcol.fill_null(-1).to_numpy(zero_copy_only=False), np.int32)
    return comm, pid


def _events(prep: Prepared, run: PolicyRun, pi: int, pols: list[str], comm: pa.Array, pid: np.ndarray,
            rows: np.ndarray | None = None, ncpu: int | None = None, proc_key: np.ndarray | None = None,
            sink: dict[str, np.ndarray] | None = None) -> pa.Table:
    """The per-event rows of one run: every event, or the events at indices ``rows`` (ascending;
    ``ncpu``: above the highest CPU number).  ``sink``: receives the rows' CPUs and, with
    ``proc_key``, their (comm, pid) groups (``cpu``, ``proc``), gathered in the same pass."""
    def sel(a: np.ndarray) -> np.ndarray:
        return a if rows is None else a[rows]

    ea = prep.events
    if rows is not None:
        comm = comm.take(pa.array(rows))
    n = len(ea) if rows is None else len(rows)
    rix = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    if not bool(np.all(rix[1:] >= rix[:-1])):
        raise ValueError("event rows must be in ascending order")
    kind_names = [""] + [KIND_BY_CODE[c].name if c in KIND_BY_CODE else f"kind_{c}"
                         for c in range(1, max(KIND_BY_CODE) + 1)]
    znames = list(prep.zone_names) or ["?"]
    seq_flat = isinstance(ea.seq, np.ndarray)  # (else a ChunkedColumn or AffineRuns, read at the rows below)
    # one compiled pass over the rows, the charge log and the handled events (no GIL)
    o = EventRows(*(np.empty(n, dt) for _, dt in _EVENT_ROW_COLUMNS))
    event_rows(rix, EventCols(ea.ts, ea.cpu, ea.ev, ea.pfn, ea.order, ea.seq if seq_flat else np.zeros(0, np.int64),
                              pid, proc_key if proc_key is not None else pid),
               RunCols(run.out_zone, run.out_anom, run.out_sec, run.elog, run.handled, run.handled_firmware,
                       run.handled_accepted, run.handled_forced),
               ncpu if ncpu is not None else int(ea.cpu.max()) + 1, o)
    c = o._asdict()
    pfn, zone, anom = c["pfn"], c["zone"], c["anom"]
    c["wait_accept"] = _log_column(run.elog, rix, EL_WAIT_ACCEPT)
    seq = c["seq"] if seq_flat else np.asarray(sel(ea.seq))
    if sink is not None:
        sink["cpu"] = c["cpu"]
        if proc_key is not None:
            sink["proc"] = c["proc"]
    model_pfn = pfn if run.out_pfn is ea.pfn else sel(run.out_pfn)  # exact mode: the trace's pfns
    return pa.table({
        "policy": _const_dict(n, pi, pols),
        "seq": pa.array(seq, pa.int64()),
        "ts_ns": pa.array(c["ts"], pa.int64()),
        "vts_ns": pa.array(c["vts"], pa.int64()),
        "cpu": pa.array(c["cpu"], pa.int32()),
        "comm": comm,
        "pid": pa.array(c["pid"], pa.int32()),
        "event": _dict_codes(c["ev"], _event_names(c["ev"])),
        "pfn": pa.array(pfn, pa.int64(), mask=pfn < 0),
        "model_pfn": pa.array(model_pfn, pa.int64(), mask=model_pfn < 0),
        "order": pa.array(c["order"], pa.int8()),
        "zone": _dict_codes(np.maximum(zone, 0), znames, mask=zone < 0),
        "anomaly": _dict_codes(anom.astype(np.int32), kind_names, mask=anom == 0),
        "section": pa.array(c["sec"], pa.int64()),
        "added_ns": pa.array(c["added"], pa.int64()),
        "lock_wait_ns": pa.array(c["wait"], pa.int64()),
        "lock_wait_behind_accept_ns": pa.array(c["wait_accept"], pa.int64()),
        "lock_hold_ns": pa.array(c["hold"], pa.int64()),
        "firmware_ns": pa.array(c["fw"], pa.int64()),
        "accepted_bytes": pa.array(c["acc"], pa.int64()),
        "forced": pa.array(c["forced"].astype(bool), pa.bool_()),
    })


def _log_column(elog: np.ndarray, rows: np.ndarray, col: int) -> np.ndarray:
    """Column ``col`` of the event log at event ``rows`` (0 where the log has no row)."""
    ks = elog[:, EL_K]
    pos = np.minimum(np.searchsorted(ks, rows), max(len(ks) - 1, 0))
    if not len(ks):
        return np.zeros(len(rows), np.int64)
    return np.where(ks[pos] == rows, elog[pos, col], 0).astype(np.int64)


#: ``event_rows``' output columns and their types
_EVENT_ROW_COLUMNS = (("ts", np.int64), ("vts", np.int64), ("cpu", np.int32), ("ev", np.int32), ("pfn", np.int64),
                      ("order", np.int8), ("zone", np.int8), ("anom", np.int8), ("sec", np.int64),
                      ("added", np.int64), ("wait", np.int64), ("hold", np.int64), ("fw", np.int64),
                      ("acc", np.int64), ("forced", np.int8), ("seq", np.int64), ("pid", np.int32),
                      ("proc", np.int32))
#: ``event_rows``' bundles: its output (one array per ``_EVENT_ROW_COLUMNS`` entry, in order), the
#: event columns it reads (``seq`` empty: not flat; ``proc``: the (comm, pid) group), and the run's
#: per-event results, charge log (``timeline.EL_*``) and handled events with their values
EventRows = namedtuple("EventRows", [name for name, _ in _EVENT_ROW_COLUMNS])
EventCols = namedtuple("EventCols", ["ts", "cpu", "ev", "pfn", "order", "seq", "pid", "proc"])
RunCols = namedtuple("RunCols", ["out_zone", "out_anom", "out_sec", "elog", "handled", "firmware", "accepted",
                                 "forced"])


@kernel_entry(nrt=True)
def event_rows(rows: np.ndarray, ec: EventCols, rc: RunCols, ncpu: int, o: EventRows) -> None:
    """The events table's columns at ``rows`` (ascending) into ``o``: the event's own (``seq`` when
    given, ``pid`` and its (comm, pid) group ``proc``), its virtual time (``PolicyRun.vts_at``:
    trace time plus the added time logged on its CPU strictly before it), its charges
    (``charges_at``: the first log row of the event) and what the driver wrote at handled events
    (``firmware``, ``accepted``, ``forced``: one value per ``handled`` event, as
    ``handled_values``), in one merge of the rows with the log and the handled events."""
    elog, handled, cpu = rc.elog, rc.handled, ec.cpu
    cum = np.zeros(ncpu, np.int64)
    ne = elog.shape[0]
    nh = handled.shape[0]
    j = 0
    h = 0
    for r in range(rows.shape[0]):
        k = rows[r]
        while j < ne and elog[j, EL_K] < k:
            cum[cpu[elog[j, EL_K]]] += elog[j, EL_ADDED]
            j += 1
        _event_own(ec, rc, k, r, o)
        o.vts[r] = ec.ts[k] + cum[cpu[k]]
        if j < ne and elog[j, EL_K] == k:
            o.added[r] = elog[j, EL_ADDED]
            o.wait[r] = elog[j, EL_WAIT]
            o.hold[r] = elog[j, EL_HOLD]
        else:
            o.added[r] = 0
            o.wait[r] = 0
            o.hold[r] = 0
        while h < nh and handled[h] < k:
            h += 1
        if h < nh and handled[h] == k:
            o.fw[r] = rc.firmware[h]
            o.acc[r] = rc.accepted[h]
            o.forced[r] = rc.forced[h]
        else:
            o.fw[r] = 0
            o.acc[r] = 0
            o.forced[r] = 0


@kernel(nrt=True)
def _event_own(ec: EventCols, rc: RunCols, k: int, r: int, o: EventRows) -> None:
    """Row ``r`` of ``o``: event ``k``'s own columns and the model's results for it."""
    o.ts[r] = ec.ts[k]
    o.cpu[r] = ec.cpu[k]
    o.ev[r] = max(ec.ev[k], 0)
    o.pfn[r] = ec.pfn[k]
    o.order[r] = ec.order[k]
    o.zone[r] = rc.out_zone[k]
    o.anom[r] = rc.out_anom[k]
    o.sec[r] = rc.out_sec[k]
    if ec.seq.shape[0]:
        o.seq[r] = ec.seq[k]
    o.pid[r] = ec.pid[k]
    o.proc[r] = ec.proc[k]


#: lock_sections.kind categories (docs/results.md)
SECTION_KIND_CATEGORIES = ["pcp_refill", "pcp_drain", "buddy_alloc", "buddy_free", "fallback", "accept"]
K_ACCEPT = SECTION_KIND_CATEGORIES.index("accept")
#: irqs_off.cause categories
IRQ_CAUSES = ["accept_memory", "background_accept", "zone_lock"]


class _Actions:
    """``run.actions`` (one dict per acceptance action) as columns, built once per table set:
    the rows derived from them are then computed with array operations, not per action."""

    def __init__(self, run: PolicyRun) -> None:
        acts = run.actions
        n = len(acts)
        self.n = n
        self.k = np.fromiter((a["k"] for a in acts), np.int64, n)
        self.cpu = np.fromiter((a["cpu"] for a in acts), np.int64, n)
        self.vts = np.fromiter((a["vts"] for a in acts), np.int64, n)
        self.zone = np.fromiter((a["zone"] for a in acts), np.int64, n)
        self.blocks = np.fromiter((a["blocks"] for a in acts), np.int64, n)
        self.held = np.fromiter((a["held"] for a in acts), np.int64, n)
        self.global_blocker = np.fromiter((a.get("global_blocker", -1) for a in acts), np.int64, n)
        self.global_behind = np.fromiter((a.get("global_behind", WB_NONE) for a in acts), np.int64, n)
        self.range_blocker = np.fromiter((a.get("range_blocker", -1) for a in acts), np.int64, n)
        self.r = np.array([a["receipt"] for a in acts], np.float64).reshape(n, RECEIPT_LEN)


def _rint(x: np.ndarray) -> np.ndarray:
    """``int(round(v))`` of each value (round half to even, as Python's ``round`` of a float)."""
    return np.round(x).astype(np.int64)


def _sections(prep: Prepared, run: PolicyRun, acts: _Actions) -> dict[str, Any]:
    """Every lock section of one run as columns (zone->lock of the trace, then acceptance's).

    ``lock`` holds codes into ``lock_all`` (one zone->lock per zone, then the global accept lock
    and accepting_list), ``kind`` codes into ``SECTION_KIND_CATEGORIES``, ``zone`` codes into
    the zone names; ``zone_lock`` marks the zone->lock rows."""
    S = run.S
    m = int(S.n[0])
    ea = prep.events
    nz = len(prep.zone_names)
    ncpu = int(prep.state.pcp_count.shape[0])  # (the background acceptor's blocker id is ncpu: shown as -1)
    lock_all = [f"zone:{prep.zone_nodes[z]}:{prep.zone_names[z]}" for z in range(nz)] + ["accept_global",
                                                                                      "accepting_list"]
    l_global, l_accepting = nz, nz + 1
    kinds = S.kind[:m].astype(np.int64)
    hold = run.sec_hold[:m]
    kind_lut = np.zeros(max(SECTION_KIND_NAMES) + 1, np.int64)
    for code, name in SECTION_KIND_NAMES.items():
        kind_lut[code] = SECTION_KIND_CATEGORIES.index(SECTION_KINDS[name])
    zones = S.zone[:m].astype(np.int64)
    lock = [zones]
    kind = [kind_lut[kinds]]
    zone = [zones]
    cpu = [S.cpu[:m].astype(np.int64)]
    start = [run.sec_vstart[:m]]
    wait = [run.sec_wait[:m]]
    holds = [hold.astype(np.int64)]
    pages = [S.pages[:m].astype(np.int64)]
    fw = [run.sec_ext[:m]]
    irq = [np.ones(m, bool)]
    blocker = [run.sec_blocker_cpu[:m].astype(np.int64)]
    behind = [run.sec_behind[:m].astype(np.int64)]
    # acceptance's zone->lock sections (list_del + __free_pages_ok of the accepted blocks)
    # (event, hold, zone, background, wait) per event whose acceptance work held zone->lock
    az = run.acc_zl
    ks = az[:, 0]
    bpages = 1 << int(run.acc.geo[AcceptGeo.BLOCK_ORDER])
    if len(ks):
        # the blocks accepted at each of those events (an event can have several actions)
        ak, inv = np.unique(acts.k, return_inverse=True)
        nblk = np.zeros(len(ks), np.int64)
        if len(ak):
            blocks_at = np.bincount(inv, weights=acts.blocks, minlength=len(ak)).astype(np.int64)
            pos = np.minimum(np.searchsorted(ak, ks), len(ak) - 1)
            nblk = np.where(ak[pos] == ks, blocks_at[pos], 0)
        zz = az[:, 2].astype(np.int64)
        lock.append(zz)
        kind.append(np.full(len(ks), K_ACCEPT, np.int64))
        zone.append(zz)
        cpu.append(np.where(az[:, 3] != 0, -1, ea.cpu[ks]).astype(np.int64))
        start.append(run.vts_at(ks))
        wait.append(az[:, 4].copy())
        holds.append(az[:, 1].copy())
        pages.append((nblk * bpages).astype(np.int64))
        fw.append(np.zeros(len(ks), np.int64))
        irq.append(np.ones(len(ks), bool))
        blocker.append(az[:, AZ_BLOCKER].copy())
        behind.append(az[:, AZ_BEHIND].copy())
    # the global accept lock and accepting_list: per acceptance action, its global-lock row then
    # its accepting_list row (when it had them)
    r = acts.r
    g = np.nonzero(r[:, Receipt.GLOBAL_LOCK_SECTIONS] > 0)[0]
    c = np.nonzero(r[:, Receipt.ACCEPTING_COLLISIONS] > 0)[0]
    if len(g) or len(c):
        order_rows = np.argsort(np.concatenate([2 * g, 2 * c + 1]), kind="stable")
        zc = np.where(acts.zone >= 0, acts.zone, nz - 1)
        both = np.concatenate([g, c])

        def rows(gv: np.ndarray, cv: np.ndarray) -> np.ndarray:
            return np.concatenate([gv, cv])[order_rows]
        lock.append(rows(np.full(len(g), l_global, np.int64), np.full(len(c), l_accepting, np.int64)))
        kind.append(np.full(len(both), K_ACCEPT, np.int64))
        zone.append(zc[both][order_rows])
        cpu.append(acts.cpu[both][order_rows])
        start.append(acts.vts[both][order_rows])
        wait.append(rows(_rint(r[g, Receipt.GLOBAL_LOCK_WAIT_NS]), _rint(r[c, Receipt.ACCEPTING_SPIN_NS])))
        holds.append(rows(_rint(r[g, Receipt.GLOBAL_LOCK_HOLD_NS]), np.zeros(len(c), np.int64)))
        pages.append(rows(r[g, Receipt.BYTES].astype(np.int64) // PAGE_SIZE, np.zeros(len(c), np.int64)))
        fw.append(rows(np.where(acts.held[g] & HELD_GLOBAL_LOCK, _rint(r[g, Receipt.FW_NS]), 0).astype(np.int64),
                       np.zeros(len(c), np.int64)))
        irq.append(rows((acts.held[g] & HELD_IRQS_OFF) != 0, np.zeros(len(c), bool)))
        blocker.append(rows(acts.global_blocker[g], acts.range_blocker[c]))
        behind.append(rows(acts.global_behind[g], np.full(len(c), WB_ACCEPT, np.int64)))
    lock_codes = np.concatenate(lock)
    return {"lock": lock_codes, "lock_all": lock_all, "zone_lock": lock_codes < nz, "kind": np.concatenate(kind),
            "cpu": np.concatenate(cpu), "zone": np.concatenate(zone), "start_ns": np.concatenate(start),
            "wait_ns": np.concatenate(wait), "hold_ns": np.concatenate(holds), "pages": np.concatenate(pages),
            "firmware_ns": np.concatenate(fw), "irqs_off": np.concatenate(irq),
            "blocker_cpu": np.where(np.concatenate(blocker) >= ncpu, -1, np.concatenate(blocker)),
            "waited_behind": np.concatenate(behind)}


def _firmware_rows(prep: Prepared, run: PolicyRun, acts: _Actions) -> dict[str, Any]:
    """The firmware_calls rows as columns: the eager policies' boot acceptance, then one row per
    (acceptance action, call kind it made), the bytes on the action's first row."""
    ea = prep.events
    boot: list[dict[str, Any]] = []
    if run.policy.trigger != "none":
        b = run.boot
        calls = {k: int(v) for k, v in b.get("calls", {}).items() if k in CALL_KINDS and v}
        total = sum(calls.values())
        first = True
        for k in CALL_KIND_NAMES:
            if k in calls:
                boot.append({"seq": -1, "cpu": -1, "vts_ns": 0, "kind": CALL_KINDS[k], "calls": calls[k],
                             "ns": int(round(b["cpu_ns"] * calls[k] / total)),
                             "bytes": int(b["accepted_bytes"]) if first else 0,
                             "held": "irqs_off" if "irqs_off" in run.policy.held_during_call else "none"})
                first = False
    r = acts.r
    n = r[:, Receipt.CALLS:Receipt.CALLS + NR_FIRMWARE_CALL_KINDS]
    tot = n.sum(axis=1)
    ai, ki = np.nonzero((n > 0) & (tot > 0)[:, None])  # row-major: by action, then call kind
    first_row = np.ones(len(ai), bool)
    first_row[1:] = ai[1:] != ai[:-1]
    held_names = {int(h): _held_name(int(h)) for h in np.unique(acts.held[ai])} if len(ai) else {}
    col = {
        "seq": np.array([x["seq"] for x in boot] + ea.seq[acts.k[ai]].tolist(), np.int64),
        "cpu": np.array([x["cpu"] for x in boot] + acts.cpu[ai].tolist(), np.int64),
        "vts_ns": np.array([x["vts_ns"] for x in boot] + acts.vts[ai].tolist(), np.int64),
        "kind": [x["kind"] for x in boot] + [CALL_KINDS[CALL_KIND_NAMES[i]] for i in ki.tolist()],
        "calls": np.array([x["calls"] for x in boot] + n[ai, ki].astype(np.int64).tolist(), np.int64),
        "ns": np.array([x["ns"] for x in boot] + _rint(r[ai, Receipt.FW_NS] * n[ai, ki] / tot[ai]).tolist(), np.int64),
        "bytes": np.array([x["bytes"] for x in boot]
                          + np.where(first_row, r[ai, Receipt.BYTES].astype(np.int64), 0).tolist(), np.int64),
        "held": [x["held"] for x in boot] + [held_names[h] for h in acts.held[ai].tolist()],
    }
    return col


def _irqs_off(run: PolicyRun, sec: dict[str, Any], acts: _Actions) -> dict[str, Any]:
    """IRQs-off stretches: zone->lock sections and acceptance with IRQs off (``cause``: codes
    into ``IRQ_CAUSES``)."""
    zone_rows = sec["zone_lock"]
    m = acts.r[:, Receipt.IRQS_OFF_MAX_NS]
    on = np.nonzero(m > 0)[0]
    cause = np.where(acts.cpu[on] < 0, IRQ_CAUSES.index("background_accept"), IRQ_CAUSES.index("accept_memory"))
    return {"cpu": np.concatenate([sec["cpu"][zone_rows], acts.cpu[on]]),
            "start_ns": np.concatenate([sec["start_ns"][zone_rows], acts.vts[on]]),
            "duration_ns": np.concatenate([(sec["wait_ns"] + sec["hold_ns"])[zone_rows], _rint(m[on])]),
            "cause": np.concatenate([np.full(int(zone_rows.sum()), IRQ_CAUSES.index("zone_lock"), np.int64),
                                     cause.astype(np.int64)])}


def _nearest_sparse(nz_sorted: np.ndarray, n_zero: int, q: float) -> int:
    """Nearest-rank ``q`` quantile of ``nz_sorted`` (sorted) plus ``n_zero`` zeros, without building
    that array (one entry per mm_page_alloc: millions, almost all 0)."""
    n = len(nz_sorted) + n_zero
    if n == 0:
        return 0
    i = int(round(q * (n - 1)))
    neg = int(np.searchsorted(nz_sorted, 0, side="left"))
    if i < neg:
        return int(nz_sorted[i])
    if i < neg + n_zero:
        return 0
    return int(nz_sorted[i - n_zero])


#: the charges ``_group`` sums, as the events table names them
_CHARGE_COLUMNS = ("added_ns", "lock_wait_ns", "lock_wait_behind_accept_ns", "lock_hold_ns", "firmware_ns",
                   "accepted_bytes")


def _group(counts: tuple[np.ndarray, np.ndarray], keys: np.ndarray,
           charges: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-group events, allocations and the sums of what a run charged: ``charges``, the
    ``_CHARGE_COLUMNS`` at the charged events (only they carry anything), and ``keys``, their
    groups."""
    n_groups = len(counts[0])
    sums = {name: np.bincount(keys, weights=charges[name].astype(np.float64), minlength=n_groups).astype(np.int64)
            for name in _CHARGE_COLUMNS}
    return {"events": counts[0], "allocations": counts[1], **sums}


def summary_row(prep: Prepared, run: PolicyRun, sec: dict[str, Any], irq: dict[str, Any],
                n_alloc: int) -> dict[str, Any]:
    """One policy's summary row (``n_alloc``: the trace's mm_page_alloc events, from the context)."""
    ea = prep.events
    n = len(ea)
    total = int(run.acount.sum())
    unexplained = int(sum(int(v) for c, v in enumerate(run.acount) if v and c in KIND_BY_CODE
                          and not KIND_BY_CODE[c].explained))
    zone = sec["zone_lock"]
    accl = ~zone
    # nearest-rank percentiles over every mm_page_alloc: the log holds the non-zero latencies
    el = run.elog
    nz = el[(ea.ev[el[:, EL_K]] == EV_ALLOC) & (el[:, EL_LAT] != 0), EL_LAT] if len(el) else np.zeros(0, np.int64)
    lat = np.sort(nz)
    n_zero = max(n_alloc - len(nz), 0)
    tot = run.totals
    d = irq["duration_ns"]
    return {
        "policy": run.name, "mode": run.mode, "cost_preset": run.costs_name, "events_replayed": n,
        "anomalies": total, "anomaly_rate": total / n if n else 0.0,
        "unexplained_anomaly_rate": unexplained / n if n else 0.0,
        "invariants_ok": bool(run.invariants_ok and run.accepted_ok and run.conservation_ok),
        # mutual exclusion: holds of one lock that overlap in virtual time (0, else invariants_ok is false)
        "lock_overlaps": int(run.invariant_report.get("lock_overlaps", 0)),
        "forced_allocations": int(run.handled_forced.sum()),
        "firmware_calls": int(firmware_calls(tot)), "firmware_ns": int(round(tot[Receipt.FW_NS])),
        "accepted_bytes": int(tot[Receipt.BYTES]), "boot_accept_ns": int(round(run.boot.get("boot_accept_ns", 0.0))),
        "zone_lock_hold_ns": int(sec["hold_ns"][zone].sum()),
        "zone_lock_hold_max_ns": int(sec["hold_ns"][zone].max()) if zone.any() else 0,
        "zone_lock_wait_ns": int(sec["wait_ns"][zone].sum()),
        "zone_lock_wait_max_ns": int(sec["wait_ns"][zone].max()) if zone.any() else 0,
        "accept_lock_hold_ns": int(sec["hold_ns"][accl].sum()),
        "accept_lock_wait_ns": int(sec["wait_ns"][accl].sum()),
        "accept_lock_wait_max_ns": int(sec["wait_ns"][accl].max()) if accl.any() else 0,
        "irqs_off_max_ns": int(d.max()) if len(d) else 0,
        "irqs_off_over_1ms": int((d > NS_1MS).sum()), "irqs_off_over_20s": int((d > NS_20S).sum()),
        "alloc_added_p50_ns": _nearest_sparse(lat, n_zero, 0.5), "alloc_added_p90_ns": _nearest_sparse(lat, n_zero, 0.9),
        "alloc_added_p99_ns": _nearest_sparse(lat, n_zero, 0.99),
        "alloc_added_p999_ns": _nearest_sparse(lat, n_zero, 0.999),
        "alloc_added_max_ns": max(int(lat[-1]) if len(lat) else 0, 0) if n_zero else (int(lat[-1]) if len(lat) else 0),
    }


@dataclass(frozen=True)
class ResultContext:
    """What every policy's tables share: policy names, (comm, pid) per event and their groups.

    Built once before the policies run (forked workers inherit it)."""

    pols: list[str]
    comm: pa.Array
    pid: np.ndarray
    comm_names: list[Any]
    uniq: np.ndarray
    proc_key: np.ndarray
    names_sorted: list[int]
    ncpu: int
    #: per grouping ("cpu", "process"): (events, allocations) per group, policy independent
    counts: dict[str, tuple[np.ndarray, np.ndarray]]


@kernel_entry(nrt=True)
def renumber(values: np.ndarray, new: np.ndarray) -> None:
    """``values[k] = new[values[k]]`` in place (no n-long temporary: a page fault per 4 KiB)."""
    for k in range(values.shape[0]):
        values[k] = new[values[k]]


@kernel_entry(nrt=True)
def group_events(comm_idx: np.ndarray, pid: np.ndarray, cpu: np.ndarray, ev: np.ndarray, ev_alloc: int, span: int,
                 table_keys: np.ndarray, gid: np.ndarray, group: np.ndarray, cnt: np.ndarray,
                 cpu_cnt: np.ndarray) -> int:
    """Group id of each event's (comm, pid) key ``comm * span + pid + 1``, in first-seen order
    (open addressing: slot ``h`` holds a key in ``table_keys`` and its group in ``gid``), and the
    events and allocations per group and per CPU.  Returns the number of groups, or -1 when the
    table got half full (the caller retries with a bigger one)."""
    mask = table_keys.shape[0] - 1
    half = table_keys.shape[0] // 2
    shift = 32
    while shift > 0 and (1 << (32 - shift)) < table_keys.shape[0]:
        shift -= 1
    nd = 0
    for k in range(comm_idx.shape[0]):
        key = np.int64(comm_idx[k]) * span + pid[k] + 1
        # 32-bit Fibonacci hashing: the top bits of (k * golden) mod 2**32 (the product stays below
        # 2**63: no overflow warning in plain Python either)
        h = (((((key ^ (key >> 31)) & 0x7FFFFFFF) * 0x9E3779B1) & 0xFFFFFFFF) >> shift) & mask
        while table_keys[h] != -1 and table_keys[h] != key:
            h = (h + 1) & mask
        if table_keys[h] == -1:
            if nd >= half:
                return -1
            table_keys[h] = key
            gid[h] = nd
            nd += 1
        g = gid[h]
        group[k] = g
        a = 1 if ev[k] == ev_alloc else 0
        cnt[g, 0] += 1
        cnt[g, 1] += a
        c = cpu[k]
        cpu_cnt[c, 0] += 1
        cpu_cnt[c, 1] += a
    return nd


def result_context(table: pa.Table, pols: list[str], events: Any = None) -> ResultContext:
    """From the event table alone (its ``cpu`` and ``event`` from ``events``, the replay's
    ``EventArrays``, when given), so it can be built while ``prepare`` runs."""
    from replay.events.columns import column_values
    from replay.events.arrays import event_codes

    comm, pid = _comm_pid(table)
    comm_names = comm.dictionary.to_pylist()
    comm_idx = column_values(pa.table({"i": comm.indices}), "i", np.int32, 0, writable=False)
    # as replay.model.engine.event_arrays reads it
    cpu = events.cpu if events is not None else column_values(table, "cpu", np.int32, 0, writable=False)
    ncpu = int(cpu.max()) + 1 if len(cpu) else 1
    # (comm, pid) groups, in sorted order, shared by every policy: a few hundred distinct keys
    # among millions of events, found with a small hash table in one compiled pass
    span = int(pid.max()) + 2 if len(pid) else 1
    proc_key = np.empty(len(pid), np.int32)
    ev = events.ev if events is not None else event_codes(table)
    bits = 12
    while True:
        table_keys = np.full(1 << bits, -1, np.int64)
        gid = np.full(1 << bits, -1, np.int64)
        cnt = np.zeros((1 << (bits - 1), 2), np.int64)  # events, allocations per group (first-seen order)
        cpu_cnt = np.zeros((ncpu, 2), np.int64)
        nd = int(group_events(comm_idx, pid, cpu, ev, EV_ALLOC, span, table_keys, gid, proc_key, cnt, cpu_cnt))
        if nd >= 0:
            break
        bits += 3  # half full: a bigger table
    occ = table_keys != -1
    keys = np.empty(nd, np.int64)
    keys[gid[occ]] = table_keys[occ]
    order_k = np.argsort(keys, kind="stable")
    rank = np.empty(nd, np.int32)
    rank[order_k] = np.arange(nd, dtype=np.int32)
    renumber(proc_key, rank)  # groups in key order
    distinct = keys[order_k]
    uniq = np.stack([distinct // span, distinct % span - 1], axis=1)
    names_sorted = sorted(range(len(uniq)), key=lambda g: (str(comm_names[uniq[g, 0]]), int(uniq[g, 1])))
    counts = {"cpu": (cpu_cnt[:, 0].copy(), cpu_cnt[:, 1].copy()),
              "process": (cnt[order_k, 0].copy(), cnt[order_k, 1].copy())}
    return ResultContext(pols=list(pols), comm=comm, pid=pid, comm_names=comm_names, uniq=uniq,
                         proc_key=proc_key, names_sorted=names_sorted, ncpu=ncpu, counts=counts)


def charged_events(run: PolicyRun) -> np.ndarray:
    """Indices of the events ``run`` charged anything to (the rows of the sparse events table)."""
    el = run.elog
    logged = el[(el[:, EL_ADDED] != 0) | (el[:, EL_WAIT] != 0) | (el[:, EL_HOLD] != 0), EL_K]
    # firmware time, accepted bytes and forced placements are only written at the events the
    # driver handled: look there rather than read three n-long arrays (or an n-long mask)
    touched = run.handled[(run.handled_firmware != 0) | (run.handled_accepted != 0) | (run.handled_forced != 0)]
    # the log is in event order (a few events have two rows): a merge, not a hash of every row
    rows = np.concatenate([logged, touched]).astype(np.int64)
    rows.sort(kind="stable")
    return rows[np.concatenate([[True], rows[1:] != rows[:-1]])] if len(rows) else rows


def policy_tables(prep: Prepared, run: PolicyRun, ctx: ResultContext, *,
                  all_events: bool = False) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """One policy's rows of every per-policy table (docs/results.md) and its summary row.

    ``events``: the events the run charged something to (added latency, lock wait or hold,
    firmware time, accepted bytes, forced placement), every other event being charged nothing:
    ten policies on a 15M-event trace write about 10 x 50k rows, not 150M.  ``all_events=True``
    (a plain replay of ``none`` alone, or ``--all-events``): one row per input event, the model's
    own per-event result (zone, section, anomaly, model pfn) included.
    """
    pols = ctx.pols
    pi = pols.index(run.name)
    charged = charged_events(run)
    rows_idx = None if all_events else charged
    gathered: dict[str, np.ndarray] = {}
    out: dict[str, pa.Table] = {"events": _events(prep, run, pi, pols, ctx.comm, ctx.pid, rows_idx, ctx.ncpu,
                                                  ctx.proc_key, gathered)}
    acts = _Actions(run)
    sec = _sections(prep, run, acts)
    m = len(sec["lock"])
    # the lock names present, sorted, as the dictionary
    present = np.nonzero(np.bincount(sec["lock"], minlength=len(sec["lock_all"])))[0].tolist()
    lock_names = sorted(sec["lock_all"][c] for c in present)
    lock_lut = np.zeros(len(sec["lock_all"]), np.int32)
    for c in present:
        lock_lut[c] = lock_names.index(sec["lock_all"][c])
    out["lock_sections"] = pa.table({
        "policy": _const_dict(m, pi, pols), "id": pa.array(np.arange(m, dtype=np.int64)),
        "lock": _dict_codes(lock_lut[sec["lock"]], lock_names), "kind": _dict_codes(sec["kind"], SECTION_KIND_CATEGORIES),
        "cpu": pa.array(sec["cpu"], pa.int32()), "zone": _dict_codes(sec["zone"], list(prep.zone_names)),
        "start_ns": pa.array(sec["start_ns"], pa.int64()), "wait_ns": pa.array(sec["wait_ns"], pa.int64()),
        "hold_ns": pa.array(sec["hold_ns"], pa.int64()), "pages": pa.array(sec["pages"], pa.int64()),
        "firmware_ns": pa.array(sec["firmware_ns"], pa.int64()), "irqs_off": pa.array(sec["irqs_off"], pa.bool_()),
        "blocker_cpu": pa.array(sec["blocker_cpu"], pa.int32()),
        "waited_behind": _dict_codes(sec["waited_behind"], WAITED_BEHIND),
    })
    fw = _firmware_rows(prep, run, acts)
    fkinds = sorted(set(CALL_KINDS.values()))
    out["firmware_calls"] = pa.table({
        "policy": _const_dict(len(fw["seq"]), pi, pols),
        "seq": pa.array(fw["seq"], pa.int64()), "cpu": pa.array(fw["cpu"], pa.int32()),
        "vts_ns": pa.array(fw["vts_ns"], pa.int64()),
        "kind": _dict(fw["kind"], fkinds), "calls": pa.array(fw["calls"], pa.int64()),
        "ns": pa.array(fw["ns"], pa.int64()), "bytes": pa.array(fw["bytes"], pa.int64()),
        "held": _dict(fw["held"], ["accept_global", "irqs_off", "none", "zone_lock"]),
    })
    irq = _irqs_off(run, sec, acts)
    out["irqs_off"] = pa.table({
        "policy": _const_dict(len(irq["cause"]), pi, pols), "cpu": pa.array(irq["cpu"], pa.int32()),
        "start_ns": pa.array(irq["start_ns"], pa.int64()), "duration_ns": pa.array(irq["duration_ns"], pa.int64()),
        "cause": _dict_codes(irq["cause"], IRQ_CAUSES),
    })
    # the events table holds the charges at the charged rows (at every row with all_events), and
    # their CPUs and (comm, pid) groups
    ev_t = out["events"]
    at = slice(None) if not all_events else charged
    charges = {name: ev_t.column(name).to_numpy()[at] for name in _CHARGE_COLUMNS}
    g = _group(ctx.counts["cpu"], gathered["cpu"][at], charges)
    present = np.nonzero(g["events"])[0]
    out["attribution_cpu"] = pa.table({"policy": _const_dict(len(present), pi, pols),
                                       "cpu": pa.array(present.astype(np.int32), pa.int32()),
                                       **{k: pa.array(v[present], pa.int64()) for k, v in g.items()}})
    g = _group(ctx.counts["process"], gathered["proc"][at], charges)
    order = np.array(ctx.names_sorted, np.int64)
    out["attribution_process"] = pa.table({
        "policy": _const_dict(len(order), pi, pols),
        "comm": _dict([ctx.comm_names[int(ctx.uniq[i, 0])] for i in order], sorted({str(c) for c in ctx.comm_names})),
        "pid": pa.array(ctx.uniq[order, 1].astype(np.int32), pa.int32()),
        **{k: pa.array(v[order], pa.int64()) for k, v in g.items()}})
    nb = len(prep.edges)
    orders = np.zeros((nb, N_ORDER_COLS), np.int64)
    w = min(N_ORDER_COLS, run.ts_order.shape[1])
    orders[:, :w] = run.ts_order[:, :w]
    out["timeseries"] = pa.table({
        "policy": _const_dict(nb, pi, pols), "t_ns": pa.array(prep.edges, pa.int64()),
        "accepted_bytes": pa.array(np.maximum(run.present_bytes - run.ts_unaccepted, 0), pa.int64()),
        "unaccepted_bytes": pa.array(run.ts_unaccepted, pa.int64()),
        "free_pages": pa.array(run.ts_free, pa.int64()),
        **{f"free_order_{o}": pa.array(orders[:, o], pa.int64()) for o in range(N_ORDER_COLS)},
    })
    return out, summary_row(prep, run, sec, irq, n_alloc=int(ctx.counts["cpu"][1].sum()))


def combine_policy_tables(parts: list[tuple[dict[str, pa.Table], dict[str, Any]]],
                          anomalies: pa.Table) -> tuple[dict[str, pa.Table], list[dict[str, Any]]]:
    """Every policy's tables (``policy_tables`` results, ``none`` first) as the nine tables."""
    summary = [row for _, row in parts]
    pols = [r["policy"] for r in summary]
    sum_t = pa.table({k: ([r[k] for r in summary]) for k in summary[0]})
    sum_t = sum_t.set_column(0, "policy", _dict(pols, pols))
    sum_t = sum_t.set_column(1, "mode", _dict([r["mode"] for r in summary], sorted({r["mode"] for r in summary})))
    sum_t = sum_t.set_column(2, "cost_preset", _dict([r["cost_preset"] for r in summary],
                                                     sorted({r["cost_preset"] for r in summary})))
    for c in sum_t.column_names:
        if pa.types.is_integer(sum_t.schema.field(c).type):
            sum_t = sum_t.set_column(sum_t.column_names.index(c), c, sum_t.column(c).cast(pa.int64()))
    names = ("events", "lock_sections", "firmware_calls", "irqs_off", "attribution_cpu", "attribution_process",
             "timeseries")
    tables = {n: pa.concat_tables([t[n] for t, _ in parts]) for n in names}
    tables["anomalies"] = anomalies
    tables["summary"] = sum_t
    return tables, summary


def build_policy_tables(prep: Prepared, runs: list[PolicyRun], table: pa.Table, *,
                        all_events: bool | None = None) -> tuple[dict[str, pa.Table], list[dict[str, Any]]]:
    """The nine tables of docs/results.md and the summary rows (one per run, in order).

    ``all_events`` (default: only when a single run is given): one events row per input event."""
    all_events = len(runs) == 1 if all_events is None else all_events
    ctx = result_context(table, [r.name for r in runs])
    parts = [policy_tables(prep, run, ctx, all_events=all_events) for run in runs]
    return combine_policy_tables(parts, anomalies_table(prep, runs[0]))


def anomalies_table(prep: Prepared, run: PolicyRun) -> pa.Table:
    """The anomalous input events of the baseline run (policy independent)."""
    ea = prep.events
    kind_names = [""] + [KIND_BY_CODE[c].name if c in KIND_BY_CODE else f"kind_{c}"
                         for c in range(1, max(KIND_BY_CODE) + 1)]
    ai = np.flatnonzero(run.out_anom)
    codes = run.out_anom[ai].astype(np.int32)
    ev = ea.ev[ai]
    kinds = [KIND_BY_CODE.get(c) for c in range(len(kind_names))]
    explained = np.array([bool(k and k.explained) for k in kinds], bool)
    # the kernel paths as a dictionary over the kinds, decoded to plain strings as before
    paths = _dict_codes(codes, [k.kernel_path if k else "" for k in kinds]).cast(pa.string())
    return pa.table({
        "seq": pa.array(ea.seq[ai], pa.int64()), "ts_ns": pa.array(ea.ts[ai], pa.int64()),
        "cpu": pa.array(ea.cpu[ai], pa.int32()),
        "event": _dict_codes(np.where(ev < 0, 0, ev).astype(np.int32), _event_names(ev)),
        "pfn": pa.array(ea.pfn[ai], pa.int64()), "order": pa.array(ea.order[ai], pa.int8()),
        "kind": _dict_codes(codes, kind_names),
        "explained": pa.array(explained[codes], pa.bool_()),
        "kernel_path": paths,
    })


def results_metadata(prep: Prepared, runs: list[Any], costs: Any, *, seed: int = 0,
                     extra: dict[str, str] | None = None) -> dict[str, str]:
    """The ``pagereplay.*`` key-value metadata (prefix added by :func:`write_policy_results`)."""
    md = prep.metadata
    try:
        inputs = json.loads(md.get("pagereplay.inputs", "[]"))
    except ValueError:
        inputs = []
    try:
        from importlib.metadata import version
        tool = version("pagereplay")
    except Exception:  # noqa: BLE001 - not installed: the parser's own record
        tool = md.get("pagereplay.tool_version", "0")
    layout = prep.layout
    out = {
        "tool_version": tool, "schema_version": SCHEMA_VERSION,
        "input_name": ",".join(str(i.get("name", "")) for i in inputs if isinstance(i, dict)),
        "input_sha256": ",".join(str(i.get("sha256", "")) for i in inputs if isinstance(i, dict)),
        "inputs": md.get("pagereplay.inputs", "[]"), "format": md.get("pagereplay.format", ""),
        "kernel_version": md.get("pagereplay.kernel_version", ""), "mode": prep.mode, "seed": str(seed),
        "cost_preset": costs.name, "cost_preset_json": json.dumps(costs.as_dict(), sort_keys=True, default=str),
        # runs: PolicyRun objects or the AcceptancePolicy presets themselves
        "policies_json": json.dumps({r.name: getattr(r, "policy", r).as_dict() for r in runs}, sort_keys=True,
                                    default=str),
        "layout_json": layout.to_json() if hasattr(layout, "to_json") else json.dumps(layout.as_dict(), sort_keys=True),
    }
    out.update(extra or {})
    return out


def write_policy_results(folder: str | Path, tables: dict[str, pa.Table], metadata: dict[str, str],
                         extra_tables: dict[str, pa.Table] | None = None) -> list[Path]:
    """Write each table to ``folder/<name>.parquet`` (fixed writer options: deterministic bytes),
    whole tables at once through :class:`replay.results.writer.ResultsWriter` (a replay streams
    its per-policy parts through it instead)."""
    from replay.results.writer import STREAMED, ResultsWriter

    with ResultsWriter(folder, ["all"], metadata) as w:
        w.offer("all", {n: tables[n] for n in STREAMED})
        return w.finish([], {**{n: t for n, t in tables.items() if n not in STREAMED}, **(extra_tables or {})})
