"""Requests -> canonical events, *without* the buddy model (the stand-in emitter).

This is the plain fallback until the replay engine's simulate mode decides pfns and emits the
kernel-faithful bursts.  It keeps exactly the per-page consistency a replay needs and the event
shapes of a 6.1 kernel (era D), but its placement is deliberately simple:

* **pfn allocator** (stands in for ``__rmqueue_smallest()``/``expand()``): free blocks per order
  on LIFO stacks; an empty order is served by splitting the smallest larger free block (upper
  halves go back, as ``expand()`` does) or else by a bump pointer over the never-used range,
  aligned to the order (the skipped pages become free blocks).  No merging of buddies.
* **per-CPU lists** (``struct per_cpu_pages`` of 6.1): one list per (order <= 3, migratetype)
  plus one THP list; ``__rmqueue_pcplist()`` refills an empty list with ``rmqueue_bulk()`` of
  ``batch`` pages (``max(batch >> order, 2)`` blocks for order > 0), each block an
  ``mm_page_alloc_zone_locked`` with ``percpu_refill=1``; ``free_unref_page_commit()`` puts
  the page at the head and, once ``count >= high``, ``free_pcppages_bulk()`` drains
  ``nr_pcp_free()`` pages (the doubling ``free_factor`` of 5.14+, halved by each allocation)
  round-robin over the lists from their tails, one ``mm_page_pcpu_drain`` per block.  Orders
  that no per-CPU list takes go to ``rmqueue_buddy()``: one ``mm_page_alloc_zone_locked``
  with ``percpu_refill=0``.
* **events**: ``mm_page_alloc`` after any zone_locked burst; ``mm_page_free`` for every free
  (``free_pages_prepare()``), followed by ``mm_page_free_batched`` for frees through
  ``free_unref_page_list()``; failed allocations (the range is exhausted) as
  ``mm_page_alloc`` with a null pfn, and their frees dropped.  A free of a page allocated
  before the trace (``req_id == -1``) takes a block from the allocator silently first.
* **time**: each CPU has a clock; an event happens at ``max(clock, request time)`` and
  advances the clock by its cost (:class:`EmitParams`), so bursts take time and per-CPU
  timestamps never go backwards.  Timestamps are microsecond-aligned, as ftrace prints them.

Not modelled here (the engine's job): zones, watermarks, migratetype fallback and
``mm_page_alloc_extfrag``, buddy merging, high-order ``free_high`` drains.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit, types
from numba.typed import Dict

from ..schema import EVENT_NAMES, Event, arrow_schema, decode_gfp
from .workloads import KIND_ALLOC, KIND_FREE_BATCHED, MAX_ORDER, PAGE_SIZE, Machine, RequestGenerator

NR_LOWORDER = 4  # orders 0..PAGE_ALLOC_COSTLY_ORDER on the per-CPU lists
PCPTYPES = 3
NR_PCP_LISTS = NR_LOWORDER * PCPTYPES + 1  # + the THP list
THP_ORDER = 9


@dataclass(frozen=True)
class EmitParams:
    """Knobs of the stand-in emitter (defaults fitted to the 4-vCPU 4 GiB 6.1 capture).

    base_pfn: first pfn of the managed range (above the 16 MiB DMA zone).
    batch: ``pcp->batch`` (``zone_batchsize()``: 63 for zones over 1 GiB).
    high: ``pcp->high``; 0 = ``zone_highsize()``-like default: 1288 (the capture's
        ``low_wmark / nr_cpus``) scaled by sqrt(memory / 4 GiB) * 4 / cpus, at least 4 * batch.
    pcp_thp: THP order-9 blocks use a per-CPU list (6.1 with CONFIG_TRANSPARENT_HUGEPAGE).
    alloc_ns, free_ns, zone_locked_ns, drain_ns: time each event takes on its CPU (zone_locked and
        drain: the mean gap inside refill/drain sections of the capture, 1.34 and 0.84 us).
    """

    base_pfn: int = 0x1000
    batch: int = 63
    high: int = 0
    pcp_thp: bool = True
    alloc_ns: int = 1000
    free_ns: int = 1000
    zone_locked_ns: int = 1340
    drain_ns: int = 840

    def pcp_high(self, m: Machine) -> int:
        if self.high > 0:
            return self.high
        h = 1288 * math.sqrt(m.memory / (4 << 30)) * 4 / m.cpus
        return max(int(h), 4 * self.batch)


# ----------------------------------------------------------------------------- compiled core
@njit(cache=True, nogil=True)
def _push(stk, top, o, b):
    stk[o, top[o]] = b
    top[o] += 1


@njit(cache=True, nogil=True)
def _take_block(stk, top, bump, end, o):
    """A free block of order o: own stack, else split a larger one, else the bump range; -1 if none."""
    if top[o] > 0:
        top[o] -= 1
        return stk[o, top[o]]
    for j in range(o + 1, stk.shape[0]):
        if top[j] > 0:
            top[j] -= 1
            b = stk[j, top[j]]
            while j > o:  # expand(): upper halves back on the lists
                j -= 1
                _push(stk, top, j, b + (1 << j))
            return b
    p = bump[0]
    size = 1 << o
    a = (p + size - 1) & ~(size - 1)
    if a + size > end:
        return -1
    while p < a:  # the alignment gap becomes free blocks
        k = 0
        while k < stk.shape[0] - 1 and (p & ((2 << k) - 1)) == 0 and p + (2 << k) <= a:
            k += 1
        _push(stk, top, k, p)
        p += 1 << k
    bump[0] = a + size
    return a


@njit(cache=True, nogil=True)
def _pindex(o, mt):
    if o >= NR_LOWORDER:
        return NR_PCP_LISTS - 1
    return o * PCPTYPES + (mt if mt < PCPTYPES else 0)


@njit(cache=True, nogil=True)
def emit_requests(
    r_ts, r_cpu, r_pid, r_comm, r_kind, r_order, r_mt, r_gfp, r_life, r_id, r_phase, start,
    phase_batch, phase_high, pcp_thp, costs,
    stk, top, bump, end, pl, ph, pn, pcount, pfactor, pindex, clock, live,
    o_ts, o_cpu, o_pid, o_comm, o_ev, o_pfn, o_order, o_mt, o_gfp, o_pcp, o_fail,
):  # fmt: skip
    """Emit events for requests [start, len); returns (next request, events written, status).

    status 0: done; 1: output nearly full; 2: a free stack nearly full (grow and call again).
    """
    n = r_ts.shape[0]
    ne = 0
    cap_out = o_ts.shape[0]
    cap_stk = stk.shape[1]
    lcap = pl.shape[2]
    alloc_ns, free_ns, zl_ns, drain_ns = costs[0], costs[1], costs[2], costs[3]
    i = start
    while i < n:
        batch0 = phase_batch[r_phase[i]]
        high = phase_high[r_phase[i]]
        if ne + 2 * lcap + 16 > cap_out:
            return i, ne, 1
        for o in range(stk.shape[0]):
            if top[o] + 2 * MAX_ORDER + 2 * lcap + 16 > cap_stk:
                return i, ne, 2
        c = r_cpu[i]
        o = r_order[i]
        mt = r_mt[i]
        kind = r_kind[i]
        t = max(clock[c], r_ts[i])
        pcp_ok = o < NR_LOWORDER or (pcp_thp and o == THP_ORDER)
        if kind == 0:
            pfn = -1
            if pcp_ok:
                L = _pindex(o, mt)
                pfactor[c] >>= 1
                if pn[c, L] == 0:  # rmqueue_bulk(): one zone->lock section
                    want = batch0 if o == 0 else max(batch0 >> o, 2)
                    for _ in range(want):
                        b = _take_block(stk, top, bump, end, o)
                        if b < 0:
                            break
                        pl[c, L, (ph[c, L] + pn[c, L]) % lcap] = b  # list_add_tail
                        pn[c, L] += 1
                        pcount[c] += 1 << o
                        o_ts[ne] = (t // 1000) * 1000
                        o_cpu[ne] = c
                        o_pid[ne] = r_pid[i]
                        o_comm[ne] = r_comm[i]
                        o_ev[ne] = 1
                        o_pfn[ne] = b
                        o_order[ne] = o
                        o_mt[ne] = mt
                        o_gfp[ne] = -1
                        o_pcp[ne] = 1
                        o_fail[ne] = 0
                        ne += 1
                        t += zl_ns
                if pn[c, L] > 0:  # take the head
                    pfn = pl[c, L, ph[c, L]]
                    ph[c, L] = (ph[c, L] + 1) % lcap
                    pn[c, L] -= 1
                    pcount[c] -= 1 << o
            else:  # rmqueue_buddy()
                pfn = _take_block(stk, top, bump, end, o)
                if pfn >= 0:
                    o_ts[ne] = (t // 1000) * 1000
                    o_cpu[ne] = c
                    o_pid[ne] = r_pid[i]
                    o_comm[ne] = r_comm[i]
                    o_ev[ne] = 1
                    o_pfn[ne] = pfn
                    o_order[ne] = o
                    o_mt[ne] = mt
                    o_gfp[ne] = -1
                    o_pcp[ne] = 0
                    o_fail[ne] = 0
                    ne += 1
                    t += zl_ns
            o_ts[ne] = (t // 1000) * 1000
            o_cpu[ne] = c
            o_pid[ne] = r_pid[i]
            o_comm[ne] = r_comm[i]
            o_ev[ne] = 0
            o_pfn[ne] = pfn
            o_order[ne] = o
            o_mt[ne] = mt
            o_gfp[ne] = r_gfp[i]
            o_pcp[ne] = -1
            o_fail[ne] = 1 if pfn < 0 else 0
            ne += 1
            t += alloc_ns
            if r_life[i] >= 0:
                live[r_id[i]] = pfn
        else:
            rid = r_id[i]
            if rid < 0:  # allocated before the trace
                pfn = _take_block(stk, top, bump, end, o)
            else:
                pfn = live.pop(rid, -1)
            if pfn >= 0:
                o_ts[ne] = (t // 1000) * 1000
                o_cpu[ne] = c
                o_pid[ne] = r_pid[i]
                o_comm[ne] = r_comm[i]
                o_ev[ne] = 2
                o_pfn[ne] = pfn
                o_order[ne] = o
                o_mt[ne] = -1
                o_gfp[ne] = -1
                o_pcp[ne] = -1
                o_fail[ne] = 0
                ne += 1
                t += free_ns
                if kind == 2 and o == 0:
                    o_ts[ne] = (t // 1000) * 1000
                    o_cpu[ne] = c
                    o_pid[ne] = r_pid[i]
                    o_comm[ne] = r_comm[i]
                    o_ev[ne] = 3
                    o_pfn[ne] = pfn
                    o_order[ne] = 0
                    o_mt[ne] = -1
                    o_gfp[ne] = -1
                    o_pcp[ne] = -1
                    o_fail[ne] = 0
                    ne += 1
                    t += free_ns
                if pcp_ok:
                    L = _pindex(o, mt)
                    ph[c, L] = (ph[c, L] - 1) % lcap  # list_add at the head
                    pl[c, L, ph[c, L]] = pfn
                    pn[c, L] += 1
                    pcount[c] += 1 << o
                    if pcount[c] >= high:  # free_pcppages_bulk(nr_pcp_free())
                        if high < batch0:
                            count = 1
                        else:
                            bt = batch0 << pfactor[c]
                            if bt < high - batch0:
                                pfactor[c] += 1
                            count = min(max(bt, batch0), high - batch0)
                        while count > 0 and pcount[c] > 0:
                            Ld = pindex[c]
                            while True:
                                Ld = Ld + 1 if Ld + 1 < NR_PCP_LISTS else 0
                                if pn[c, Ld] > 0:
                                    break
                            pindex[c] = Ld
                            od = Ld // PCPTYPES if Ld < NR_PCP_LISTS - 1 else THP_ORDER
                            md = Ld % PCPTYPES if Ld < NR_PCP_LISTS - 1 else 1
                            while count > 0 and pn[c, Ld] > 0:
                                pn[c, Ld] -= 1
                                b = pl[c, Ld, (ph[c, Ld] + pn[c, Ld]) % lcap]  # list_last_entry
                                count -= 1 << od
                                pcount[c] -= 1 << od
                                _push(stk, top, od, b)
                                o_ts[ne] = (t // 1000) * 1000
                                o_cpu[ne] = c
                                o_pid[ne] = r_pid[i]
                                o_comm[ne] = r_comm[i]
                                o_ev[ne] = 4
                                o_pfn[ne] = b
                                o_order[ne] = od
                                o_mt[ne] = md
                                o_gfp[ne] = -1
                                o_pcp[ne] = -1
                                o_fail[ne] = 0
                                ne += 1
                                t += drain_ns
                else:
                    _push(stk, top, o, pfn)
        clock[c] = t
        i += 1
    return i, ne, 0


# ----------------------------------------------------------------------------- Python driver
_OUT = {
    "ts_ns": np.int64, "cpu": np.int32, "pid": np.int32, "comm": np.int32, "ev": np.int8, "pfn": np.int64,
    "order": np.int8, "mt": np.int8, "gfp": np.int32, "pcp": np.int8, "fail": np.int8,
}  # fmt: skip


class Emitter:
    """Stateful stand-in emitter: feed request batches, get canonical record batches in order.

    ``phases`` gives per-phase ``pcp_batch`` overrides (``RequestGenerator.phase_info()``);
    ``source`` names the ``source_file`` column.
    """

    def __init__(self, machine: Machine, params: EmitParams | None = None, *, phases: list[dict] | None = None,
                 source: str = "<synthetic>") -> None:  # fmt: skip
        self.m = machine
        self.p = p = params or EmitParams()
        high = p.pcp_high(machine)
        nph = max(1, len(phases or []))
        self.phase_batch = np.full(max(nph, 128), p.batch, np.int64)
        self.phase_high = np.full(max(nph, 128), high, np.int64)
        for ph in phases or []:
            if ph.get("pcp_batch"):
                self.phase_batch[ph["index"]] = int(ph["pcp_batch"])
                self.phase_high[ph["index"]] = 0 if int(ph["pcp_batch"]) <= 1 else high  # the boot pageset
        self.high = high
        pages = machine.memory // PAGE_SIZE
        self.end = p.base_pfn + pages
        self.stk = np.zeros((MAX_ORDER + 1, 1 << 14), np.int64)
        self.top = np.zeros(MAX_ORDER + 1, np.int64)
        self.bump = np.array([p.base_pfn], np.int64)
        lcap = high + 2 * p.batch + 16
        self.pl = np.zeros((machine.cpus, NR_PCP_LISTS, lcap), np.int64)
        self.ph = np.zeros((machine.cpus, NR_PCP_LISTS), np.int64)
        self.pn = np.zeros((machine.cpus, NR_PCP_LISTS), np.int64)
        self.pcount = np.zeros(machine.cpus, np.int64)
        self.pfactor = np.zeros(machine.cpus, np.int64)
        self.pindex = np.zeros(machine.cpus, np.int64)
        self.clock = np.zeros(machine.cpus, np.int64)
        self.live = Dict.empty(key_type=types.int64, value_type=types.int64)
        self.costs = np.array([p.alloc_ns, p.free_ns, p.zone_locked_ns, p.drain_ns], np.int64)
        self.cap = 1 << 20
        self.held: dict[str, np.ndarray] | None = None
        self.seq = 0
        self.emit_idx = 0
        self.schema = arrow_schema()
        self.source = source
        self._gfp_masks: dict[str, int | None] = {}

    def _out(self, n: int) -> dict[str, np.ndarray]:
        return {k: np.empty(n, t) for k, t in _OUT.items()}

    def feed(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """Emit the events of one request batch; yields the events that are final (time-ordered)."""
        n = batch.num_rows
        if n == 0:
            return
        col = lambda name: batch.column(name).to_numpy(zero_copy_only=False)  # noqa: E731
        comm_arr = batch.column("comm")
        gfp_arr = batch.column("gfp_flags")
        self.comm_dict = comm_arr.dictionary
        self.gfp_dict = gfp_arr.dictionary
        req = (
            col("ts_ns").astype(np.int64), col("cpu").astype(np.int64), col("pid").astype(np.int64),
            comm_arr.indices.to_numpy(zero_copy_only=False).astype(np.int64), col("kind").astype(np.int64),
            col("order").astype(np.int64), col("migratetype").astype(np.int64),
            gfp_arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64),
            col("lifetime_ns").astype(np.int64), col("req_id").astype(np.int64), col("phase").astype(np.int64),
        )  # fmt: skip
        parts = []
        i = 0
        while i < n:
            out = self._out(self.cap)
            i2, ne, status = emit_requests(
                *req, i, self.phase_batch, self.phase_high, self.p.pcp_thp, self.costs,
                self.stk, self.top, self.bump, self.end, self.pl, self.ph, self.pn, self.pcount, self.pfactor,
                self.pindex, self.clock, self.live, *out.values(),
            )  # fmt: skip
            parts.append({k: v[:ne] for k, v in out.items()})
            if status == 2:
                grown = np.zeros((self.stk.shape[0], self.stk.shape[1] * 2), np.int64)
                grown[:, : self.stk.shape[1]] = self.stk
                self.stk = grown
            elif status == 1 and i2 == i:
                self.cap *= 2
            i = i2
        ev = {k: np.concatenate([p[k] for p in parts]) for k in _OUT}
        ev["idx"] = self.emit_idx + np.arange(len(ev["ts_ns"]), dtype=np.int64)
        self.emit_idx += len(ev["ts_ns"])
        if self.held is not None:
            ev = {k: np.concatenate([self.held[k], ev[k]]) for k in ev}
        # every later event happens at or after the last request's time
        t_cut = int(req[0][-1])
        final = ev["ts_ns"] < t_cut
        self.held = {k: v[~final] for k, v in ev.items()}
        yield from self._batch({k: v[final] for k, v in ev.items()})

    def finish(self) -> Iterator[pa.RecordBatch]:
        if self.held is not None:
            yield from self._batch(self.held)
            self.held = None

    def _batch(self, ev: dict[str, np.ndarray]) -> Iterator[pa.RecordBatch]:
        n = len(ev["ts_ns"])
        if n == 0:
            return
        order = np.lexsort((ev["idx"], ev["cpu"], ev["ts_ns"]))
        ev = {k: v[order] for k, v in ev.items()}
        seq = self.seq + np.arange(n, dtype=np.int64)
        self.seq += n
        gfp_names = self.gfp_dict.to_pylist()
        for g in gfp_names:
            if g not in self._gfp_masks:
                self._gfp_masks[g] = decode_gfp(g)
        masks = np.array([self._gfp_masks[g] or 0 for g in gfp_names] + [0], np.uint64)
        known = np.array([self._gfp_masks[g] is not None for g in gfp_names] + [False])
        g = ev["gfp"]
        has_g = g >= 0
        fail = ev["fail"] == 1
        pfn = ev["pfn"]
        pcp = ev["pcp"]
        mt = ev["mt"]
        nulls = lambda typ: pa.nulls(n, typ)  # noqa: E731
        arrays = [
            pa.array(ev["ts_ns"]),
            pa.array(ev["cpu"]),
            pa.array(ev["pid"]),
            pa.array(ev["pid"]),  # tgid: every synthetic task is a thread-group leader
            pa.DictionaryArray.from_arrays(pa.array(ev["comm"]), self.comm_dict),
            pa.DictionaryArray.from_arrays(pa.array(ev["ev"]), pa.array(list(EVENT_NAMES))),
            pa.array(pfn, mask=pfn < 0),
            pa.array(ev["order"]),
            pa.array(mt, mask=mt < 0),
            pa.DictionaryArray.from_arrays(pa.array(g, mask=~has_g), self.gfp_dict),
            pa.array(masks[np.where(has_g, g, len(gfp_names))], mask=~(has_g & known[np.where(has_g, g, -1)])),
            pa.array(pcp == 1, mask=pcp < 0),
            pa.array(fail),
            nulls(pa.int8()), nulls(pa.int8()), nulls(pa.int8()), nulls(pa.bool_()), nulls(pa.bool_()), nulls(pa.bool_()),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int16)), pa.array([self.source])),
            pa.array(seq + 1),
            pa.array(seq),
        ]  # fmt: skip
        yield pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def emit(requests: Iterable[pa.RecordBatch], machine: Machine, params: EmitParams | None = None, *,
         phases: list[dict] | None = None, source: str = "<synthetic>") -> Iterator[pa.RecordBatch]:  # fmt: skip
    """Canonical event batches (sorted by ts_ns, cpu, seq) for a stream of request batches."""
    if isinstance(requests, RequestGenerator) and phases is None:
        phases = requests.phase_info()
    em = Emitter(machine, params, phases=phases, source=source)
    for b in requests:
        yield from em.feed(b)
    yield from em.finish()


__all__ = ["EmitParams", "Emitter", "emit", "Event"]
