"""Requests -> canonical events, *without* the buddy model (the stand-in emitter).

The kernel-faithful emitter is the replay engine's (``replay.synth.emit``, the default of
``pagereplay synth``); this one (``--emitter standin``) needs nothing from ``replay/``.  It keeps
exactly the per-page consistency a replay needs and the event shapes of a 6.1 kernel (era D), but
its placement is deliberately simple:

* **pfn allocator** (a small buddy allocator): free blocks per order on LIFO stacks, with
  ``__free_one_page()`` merging (a byte per page marks free heads; merged-away entries are
  skipped lazily); ``__rmqueue_smallest()`` takes the smallest order with a free block and
  ``expand()`` puts the upper halves back; whole MAX_ORDER blocks that were never used are
  handed out last (in pfn order).  One zone, no migratetypes, no watermarks.
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
  before the trace (``req_id == -1``) takes a never-used block silently first; a
  ``__free_pages_core()`` free (kind 3: memblock release, deferred init) then goes straight to
  the buddy lists.
* **time**: each CPU has a clock; an event happens at ``max(clock, request time)`` and
  advances the clock by its cost (:class:`EmitParams`), so bursts take time and per-CPU
  timestamps never go backwards.  The zone->lock sections (refill, drain, buddy allocation)
  of all CPUs are serialised in time, as the spinlock serialises them; a block handed from one
  CPU to another (drained then refilled, allocated then freed) is used only after the event
  that released it.  Timestamps are microsecond-aligned, as ftrace prints them.

Not modelled here (the engine's job): zones, watermarks, migratetype lists, fallback and
``mm_page_alloc_extfrag``, high-order ``free_high`` drains.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit, types
from numba.typed import Dict

from ..schema import EVENT_NAMES, Event, arrow_schema, decode_gfp
from .emitted import EVENT_COLUMNS, KIND_ALLOC, KIND_FREE_BATCHED, KIND_FREE_CORE, put_event
from .requests import MAX_ORDER, RequestGenerator
from .workloads import PAGE_SIZE, Machine

NR_LOWORDER = 4  # orders 0..PAGE_ALLOC_COSTLY_ORDER on the per-CPU lists
PCPTYPES = 3
NR_PCP_LISTS = NR_LOWORDER * PCPTYPES + 1  # + the THP list
THP_ORDER = 9


@dataclass(frozen=True)
class EmitParams:
    """Knobs of the stand-in emitter (defaults fitted to the 4-vCPU 4 GiB 6.1 capture).

    base_pfn: lowest pfn handed out (above the 16 MiB DMA zone).
    layout: ``qemu`` (the guest's e820 RAM ranges, see :func:`ram_ranges`) or ``flat``.
    batch: ``pcp->batch`` (``zone_batchsize()``: 63 for zones over 1 GiB).
    high: ``pcp->high``; 0 = ``zone_highsize()``-like default: 1288 (the capture's
        ``low_wmark / nr_cpus``) scaled by sqrt(memory / 4 GiB) * 4 / cpus, at least 4 * batch.
    pcp_thp: THP order-9 blocks use a per-CPU list (6.1 with CONFIG_TRANSPARENT_HUGEPAGE).
    alloc_ns, free_ns, zone_locked_ns, drain_ns: time each event takes on its CPU (zone_locked and
        drain: the mean gap inside refill/drain sections of the capture, 1.34 and 0.84 us).
    """

    base_pfn: int = 0x1000
    layout: str = "qemu"
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


def ram_ranges(memory: int, p: "EmitParams") -> list[tuple[int, int]]:
    """Usable pfn ranges [lo, hi) of the guest.

    ``layout="qemu"``: the e820 map of a qemu pc guest as ``replay.model.layout`` infers it (RAM split
    at 3 GiB when the guest has >= 3.5 GiB, the rest from 4 GiB; the BIOS hole and the top 47
    low pages reserved), so exact replay of the output stays in range; ``"flat"``: one range.
    Pages below ``base_pfn`` (the 16 MiB DMA zone by default) are left out: nothing but
    ``GFP_DMA`` allocates there.
    """
    pages = memory // PAGE_SIZE
    if p.layout == "flat":
        return [(p.base_pfn, p.base_pfn + pages)]
    if p.layout != "qemu":
        raise ValueError(f"EmitParams.layout must be 'qemu' or 'flat', not {p.layout!r}")
    low = 0xC0000000 if memory >= 0xE0000000 else memory
    low_pages = min(low, memory, 1 << 32) // PAGE_SIZE
    rs = [(1, min(0x9F, low_pages)), (0x100, low_pages - 47), (1 << 20, (1 << 20) + pages - low_pages)]
    out = [(max(lo, p.base_pfn), hi) for lo, hi in rs if hi > max(lo, p.base_pfn)]
    if not out:
        raise ValueError(f"guest of {memory} bytes has no memory above base_pfn {p.base_pfn:#x}")
    return out


# ----------------------------------------------------------------------------- compiled core
EV_ALLOC = int(Event.MM_PAGE_ALLOC)
EV_ZONE_LOCKED = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED)
EV_FREE = int(Event.MM_PAGE_FREE)
EV_BATCHED = int(Event.MM_PAGE_FREE_BATCHED)
EV_DRAIN = int(Event.MM_PAGE_PCPU_DRAIN)

#: the buddy lists: per order a LIFO stack of free blocks (``stk``) with the time each became free
#: (``stk_t``) and its height (``top``); ``fmap``: order + 1 at the head of each free block (stale
#: stack entries are skipped when popped); ``fresh``: never-used MAX_ORDER blocks, ``fresh_i``: [next
#: from the bottom, end (exclusive) from the top, pre-trace carve pointer, its limit]
Buddy = namedtuple("Buddy", ("stk", "stk_t", "top", "fmap", "fresh", "fresh_i"))
#: per CPU: the lists (ring buffers ``pl`` with head ``ph`` and length ``pn`` per list), ``count``
#: pages on them, the ``free_factor`` and the drain's round-robin list index
PcpLists = namedtuple("PcpLists", ("pl", "ph", "pn", "count", "free_factor", "drain_index"))
#: per phase: ``pcp->batch`` and ``pcp->high`` in force
PcpPhases = namedtuple("PcpPhases", ("batch", "high"))
#: a request batch (``REQUEST_SCHEMA``, comm and gfp as dictionary indices, gfp -1 none)
Requests = namedtuple("Requests", ("ts", "cpu", "pid", "comm", "kind", "order", "mt", "gfp", "life", "id", "phase"))
#: the emitted events: ``EVENT_COLUMNS``, ``pcp`` (percpu_refill or -1) and ``fail``
Emitted = namedtuple("Emitted", (*EVENT_COLUMNS, "pcp", "fail"))


@njit(cache=True, nogil=True, _nrt=False)
def _push(bd, o, b, t):
    """Put a free block on the lists, merging with free buddies (``__free_one_page()``)."""
    top_order = bd.stk.shape[0] - 1
    while o < top_order:
        buddy = b ^ (1 << o)
        if buddy >= bd.fmap.shape[0] or bd.fmap[buddy] != o + 1:  # page_is_buddy()
            break
        bd.fmap[buddy] = 0  # off its list (the stale stack entry is skipped when popped)
        b = min(b, buddy)
        o += 1
    bd.fmap[b] = o + 1
    bd.stk[o, bd.top[o]] = b
    bd.stk_t[o, bd.top[o]] = t
    bd.top[o] += 1


@njit(cache=True, nogil=True, _nrt=False)
def _pop(bd, o):
    """The most recently freed block of order o still free at that order; (-1, 0) if none."""
    while bd.top[o] > 0:
        bd.top[o] -= 1
        b = bd.stk[o, bd.top[o]]
        if bd.fmap[b] == o + 1:
            bd.fmap[b] = 0
            return b, bd.stk_t[o, bd.top[o]]
    return -1, 0


@njit(cache=True, nogil=True, _nrt=False)
def _split(bd, b, j, o, tb):
    while j > o:  # expand(): upper halves back on the lists
        j -= 1
        _push(bd, j, b + (1 << j), tb)
    return b


@njit(cache=True, nogil=True, _nrt=False)
def _take_fresh(bd, o):
    """A block of order o split from the next never-used MAX_ORDER block (lowest pfn first); -1
    when they are all used."""
    if bd.fresh_i[0] >= bd.fresh_i[1]:
        return -1
    f = bd.fresh[bd.fresh_i[0]]
    bd.fresh_i[0] += 1
    return _split(bd, f, bd.stk.shape[0] - 1, o, 0)


@njit(cache=True, nogil=True, _nrt=False)
def _take_pretrace(bd, o):
    """A block of order o for a page allocated before the trace: carved from never-used MAX_ORDER
    blocks taken from the top (normal allocations take them from the bottom), so it was never
    seen in the trace; the rest of that block stays free.  -1 when none is left."""
    fi = bd.fresh_i
    size = 1 << o
    a = (fi[2] + size - 1) & ~(size - 1)
    if fi[3] == 0 or a + size > fi[3]:
        if fi[1] <= fi[0]:
            return -1
        fi[1] -= 1
        a = bd.fresh[fi[1]]
        fi[3] = a + (1 << MAX_ORDER)
    fi[2] = a + size
    return a


@njit(cache=True, nogil=True, _nrt=False)
def _take_block(bd, o):
    """(block, time it became free) of order o, as ``__rmqueue_smallest()``: the smallest order
    with a free block, split by ``expand()``; never-used memory last.  Block -1 if none.  The
    time keeps cross-CPU hand-offs causal: a block drained by one CPU is taken by another only
    after the drain's event."""
    for j in range(o, bd.stk.shape[0]):
        b, tb = _pop(bd, j)
        if b >= 0:
            return _split(bd, b, j, o, tb), tb
    return _take_fresh(bd, o), 0


@njit(cache=True, nogil=True, _nrt=False)
def _pindex(o, mt):
    if o >= NR_LOWORDER:
        return NR_PCP_LISTS - 1
    return o * PCPTYPES + (mt if mt < PCPTYPES else 0)


@njit(cache=True, nogil=True, _nrt=False)
def _emit(out, ne, t, c, pid, comm, ev, pfn, order, mt, gfp, pcp, fail):
    """Write one event at row ``ne`` of ``out``; returns ``ne + 1``."""
    put_event(out, ne, t, c, pid, comm, ev, pfn, order, mt, gfp)
    out.pcp[ne] = pcp
    out.fail[ne] = fail
    return ne + 1


@njit(cache=True, nogil=True, _nrt=False)
def _rmqueue_pcplist(bd, pcp, zlock, zl_ns, req, i, batch, t, out, ne):
    """``__rmqueue_pcplist()`` for request ``i`` at time ``t``: an empty list is refilled by
    ``rmqueue_bulk()`` (one zone->lock section, an ``mm_page_alloc_zone_locked`` with
    ``percpu_refill=1`` per block), then the head is taken.  Returns (pfn or -1, events, time)."""
    c, o, mt = req.cpu[i], req.order[i], req.mt[i]
    lcap = pcp.pl.shape[2]
    L = _pindex(o, mt)
    pcp.free_factor[c] >>= 1
    if pcp.pn[c, L] == 0:
        want = batch if o == 0 else max(batch >> o, 2)
        t = max(t, zlock[0])  # spin_lock(&zone->lock): sections never overlap
        for _ in range(want):
            b, tb = _take_block(bd, o)
            if b < 0:
                break
            t = max(t, tb + 1000)
            pcp.pl[c, L, (pcp.ph[c, L] + pcp.pn[c, L]) % lcap] = b  # list_add_tail
            pcp.pn[c, L] += 1
            pcp.count[c] += 1 << o
            ne = _emit(out, ne, t, c, req.pid[i], req.comm[i], EV_ZONE_LOCKED, b, o, mt, -1, 1, 0)
            t += zl_ns
        zlock[0] = (t // 1000 + 1) * 1000
    if pcp.pn[c, L] == 0:
        return -1, ne, t
    pfn = pcp.pl[c, L, pcp.ph[c, L]]  # the head
    pcp.ph[c, L] = (pcp.ph[c, L] + 1) % lcap
    pcp.pn[c, L] -= 1
    pcp.count[c] -= 1 << o
    return pfn, ne, t


@njit(cache=True, nogil=True, _nrt=False)
def _rmqueue_buddy(bd, zlock, zl_ns, req, i, t, out, ne):
    """``rmqueue_buddy()``: one block under zone->lock (``percpu_refill=0``); (pfn or -1, events, time)."""
    o = req.order[i]
    pfn, tb = _take_block(bd, o)
    if pfn < 0:
        return pfn, ne, t
    t = max(t, tb + 1000, zlock[0])
    ne = _emit(out, ne, t, req.cpu[i], req.pid[i], req.comm[i], EV_ZONE_LOCKED, pfn, o, req.mt[i], -1, 0, 0)
    t += zl_ns
    zlock[0] = (t // 1000 + 1) * 1000
    return pfn, ne, t


@njit(cache=True, nogil=True, _nrt=False)
def _free_pcppages_bulk(bd, pcp, zlock, drain_ns, req, i, batch, high, t, out, ne):
    """``free_pcppages_bulk(nr_pcp_free())`` on the request's CPU: one zone->lock section, blocks
    round-robin over the lists from their tails, one ``mm_page_pcpu_drain`` each; (events, time)."""
    c = req.cpu[i]
    lcap = pcp.pl.shape[2]
    t = max(t, zlock[0])
    if high < batch:
        count = 1
    else:
        bt = batch << pcp.free_factor[c]
        if bt < high - batch:
            pcp.free_factor[c] += 1
        count = min(max(bt, batch), high - batch)
    while count > 0 and pcp.count[c] > 0:
        Ld = pcp.drain_index[c]
        while True:
            Ld = Ld + 1 if Ld + 1 < NR_PCP_LISTS else 0
            if pcp.pn[c, Ld] > 0:
                break
        pcp.drain_index[c] = Ld
        od = Ld // PCPTYPES if Ld < NR_PCP_LISTS - 1 else THP_ORDER
        md = Ld % PCPTYPES if Ld < NR_PCP_LISTS - 1 else 1
        while count > 0 and pcp.pn[c, Ld] > 0:
            pcp.pn[c, Ld] -= 1
            b = pcp.pl[c, Ld, (pcp.ph[c, Ld] + pcp.pn[c, Ld]) % lcap]  # list_last_entry
            count -= 1 << od
            pcp.count[c] -= 1 << od
            _push(bd, od, b, t)
            ne = _emit(out, ne, t, c, req.pid[i], req.comm[i], EV_DRAIN, b, od, md, -1, -1, 0)
            t += drain_ns
    zlock[0] = (t // 1000 + 1) * 1000
    return ne, t


@njit(cache=True, nogil=True, _nrt=False)
def _free(bd, pcp, zlock, costs, req, i, pfn, pcp_ok, batch, high, t, out, ne):
    """Free request ``i`` of block ``pfn``: ``mm_page_free`` (and ``mm_page_free_batched`` for a
    list free), then ``free_unref_page_commit()`` (a drain past ``high``) or the buddy; (events, time)."""
    c, o, kind = req.cpu[i], req.order[i], req.kind[i]
    free_ns = costs[1]
    ne = _emit(out, ne, t, c, req.pid[i], req.comm[i], EV_FREE, pfn, o, -1, -1, -1, 0)
    t += free_ns
    if kind == KIND_FREE_BATCHED and o == 0:
        ne = _emit(out, ne, t, c, req.pid[i], req.comm[i], EV_BATCHED, pfn, 0, -1, -1, -1, 0)
        t += free_ns
    if kind == KIND_FREE_CORE:  # __free_pages_core(): straight to the buddy lists, never a per-CPU list
        _push(bd, o, pfn, t)
    elif pcp_ok:
        lcap = pcp.pl.shape[2]
        L = _pindex(o, req.mt[i])
        pcp.ph[c, L] = (pcp.ph[c, L] - 1) % lcap  # list_add at the head
        pcp.pl[c, L, pcp.ph[c, L]] = pfn
        pcp.pn[c, L] += 1
        pcp.count[c] += 1 << o
        if pcp.count[c] >= high:
            ne, t = _free_pcppages_bulk(bd, pcp, zlock, costs[3], req, i, batch, high, t, out, ne)
    else:
        _push(bd, o, pfn, t)
    return ne, t


@njit(cache=True, nogil=True)
def emit_requests(req, start, phases, pcp_thp, costs, bd, pcp, clock, zlock, live, live_t, out):
    """Emit events for requests [start, len); returns (next request, events written, status).

    status 0: done; 1: output nearly full; 2: a free stack nearly full (grow and call again).
    ``clock``: each CPU's clock; ``zlock``: when zone->lock is next free (one zone); ``live``,
    ``live_t``: req_id -> (pfn, time of its allocation event) of the allocations not freed yet.
    """
    n = req.ts.shape[0]
    ne = 0
    cap_out = out.ts_ns.shape[0]
    cap_stk = bd.stk.shape[1]
    lcap = pcp.pl.shape[2]
    i = start
    while i < n:
        batch = phases.batch[req.phase[i]]
        high = phases.high[req.phase[i]]
        if ne + 2 * lcap + 16 > cap_out:
            return i, ne, 1
        for o in range(bd.stk.shape[0]):
            if bd.top[o] + 2 * MAX_ORDER + 2 * lcap + 16 > cap_stk:
                return i, ne, 2
        c = req.cpu[i]
        o = req.order[i]
        t = max(clock[c], req.ts[i])
        pcp_ok = o < NR_LOWORDER or (pcp_thp and o == THP_ORDER)
        if req.kind[i] == KIND_ALLOC:
            if pcp_ok:
                pfn, ne, t = _rmqueue_pcplist(bd, pcp, zlock, costs[2], req, i, batch, t, out, ne)
            else:
                pfn, ne, t = _rmqueue_buddy(bd, zlock, costs[2], req, i, t, out, ne)
            ne = _emit(out, ne, t, c, req.pid[i], req.comm[i], EV_ALLOC, pfn, o, req.mt[i], req.gfp[i], -1,
                       1 if pfn < 0 else 0)  # fmt: skip
            t += costs[0]
            if req.life[i] >= 0:
                live[req.id[i]] = pfn
                live_t[req.id[i]] = t  # a free (on any CPU) must come after the allocation's event
        else:
            rid = req.id[i]
            if rid < 0:  # allocated before the trace: never seen in it, so from the untouched range
                pfn = _take_pretrace(bd, o)
            else:
                pfn = -1
                if rid in live:
                    pfn = live[rid]
                    t = max(t, live_t[rid] + 1000)
                    del live[rid]
                    del live_t[rid]
            if pfn >= 0:
                ne, t = _free(bd, pcp, zlock, costs, req, i, pfn, pcp_ok, batch, high, t, out, ne)
        clock[c] = t
        i += 1
    return i, ne, 0


# ----------------------------------------------------------------------------- Python driver
_OUT = {**EVENT_COLUMNS, "pcp": np.int8, "fail": np.int8}


assert tuple(_OUT) == Emitted._fields


class HeldBack:
    """What both emitters share: the events of a batch that a later request could still precede are
    held back (``release_sorted``) until the next batch, and released by ``finish`` at the end; the
    request columns of a batch (``_request_columns``); a record batch of events (``_batch``: the
    columns of :func:`event_batch` an emitter computes itself come from ``_own_columns``)."""

    held: dict[str, np.ndarray] | None
    comm_dict: pa.Array | None
    gfp_dict: pa.Array | None

    def _setup(self, machine: Machine, params: EmitParams | None, source: str) -> EmitParams:
        """The state every emitter starts with; returns the parameters in force."""
        if machine.cpus > 4096:
            raise ValueError("the emitter packs (time, cpu) sort keys for up to 4096 CPUs")
        self.m = machine
        self.p = params or EmitParams()
        self.cap = 1 << 20
        self.held = None
        self.seq = 0
        self.schema = arrow_schema()
        self.source = source
        self._gfp_masks: dict[str, int | None] = {}
        self.comm_dict = None
        self.gfp_dict = None
        return self.p

    def _own_columns(self, ev: dict[str, np.ndarray]) -> dict[str, Any]:
        """``percpu_refill``, ``failed`` and ``extfrag`` of :func:`event_batch` for events ``ev``."""
        raise NotImplementedError

    def _batch(self, ev: dict[str, np.ndarray]) -> Iterator[pa.RecordBatch]:
        """One record batch of events already in (ts_ns, cpu, emission) order."""
        n = len(ev["ts_ns"])
        if n == 0:
            return
        batch = event_batch(self, ev, **self._own_columns(ev))
        self.seq += n
        yield batch

    def stream(self, requests: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The events of every request batch of ``requests``, then of ``finish``."""
        for b in requests:
            yield from self.feed(b)  # type: ignore[attr-defined]
        yield from self.finish()

    def finish(self) -> Iterator[pa.RecordBatch]:
        if self.held is not None:
            ready, _ = release_sorted(self.held, None)
            yield from self._batch(ready)
            self.held = None

    def _request_columns(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        """The columns of a request batch as int64 arrays, named as :data:`Requests` names them
        (comm and gfp as their dictionary index, gfp -1 for none); keeps the batch's dictionaries."""
        comm_arr = batch.column("comm")
        gfp_arr = batch.column("gfp_flags")
        self.comm_dict = comm_arr.dictionary
        self.gfp_dict = gfp_arr.dictionary
        col = {
            "ts": "ts_ns", "cpu": "cpu", "pid": "pid", "kind": "kind", "order": "order", "mt": "migratetype",
            "life": "lifetime_ns", "id": "req_id", "phase": "phase",
        }  # fmt: skip
        out = {k: batch.column(name).to_numpy(zero_copy_only=False).astype(np.int64) for k, name in col.items()}
        out["comm"] = comm_arr.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        out["gfp"] = gfp_arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return out


class Emitter(HeldBack):
    """Stateful stand-in emitter: feed request batches, get canonical record batches in order.

    ``phases`` gives per-phase ``pcp_batch`` overrides (``RequestGenerator.phase_info()``);
    ``source`` names the ``source_file`` column.
    """

    def __init__(self, machine: Machine, params: EmitParams | None = None, *, phases: list[dict] | None = None,
                 source: str = "<synthetic>") -> None:  # fmt: skip
        p = self._setup(machine, params, source)
        high = p.pcp_high(machine)
        nph = max(1, len(phases or []))
        self.phases = PcpPhases(np.full(max(nph, 128), p.batch, np.int64), np.full(max(nph, 128), high, np.int64))
        for ph in phases or []:
            if ph.get("pcp_batch"):
                self.phases.batch[ph["index"]] = int(ph["pcp_batch"])
                self.phases.high[ph["index"]] = 0 if int(ph["pcp_batch"]) <= 1 else high  # the boot pageset
        self.high = high
        self.ranges = ram_ranges(machine.memory, p)
        self.buddy = Buddy(
            np.zeros((MAX_ORDER + 1, 1 << 14), np.int64), np.zeros((MAX_ORDER + 1, 1 << 14), np.int64),
            np.zeros(MAX_ORDER + 1, np.int64), np.zeros(self.ranges[-1][1] + 1, np.int8), np.zeros(0, np.int64),
            np.zeros(4, np.int64),
        )  # fmt: skip
        fresh: list[int] = []
        big = 1 << MAX_ORDER
        for lo, hi in self.ranges:  # whole MAX_ORDER blocks stay "never used"; the ragged edges are free blocks
            a = (lo + big - 1) & ~(big - 1)
            z = hi & ~(big - 1)
            if a >= z:
                self._free_range(lo, hi)
                continue
            self._free_range(lo, a)
            fresh.extend(range(a, z, big))
            self._free_range(z, hi)
        self.buddy = self.buddy._replace(fresh=np.array(fresh, np.int64), fresh_i=np.array([0, len(fresh), 0, 0], np.int64))
        lcap = high + 2 * p.batch + 16
        ncpu = machine.cpus
        self.pcp = PcpLists(
            np.zeros((ncpu, NR_PCP_LISTS, lcap), np.int64), np.zeros((ncpu, NR_PCP_LISTS), np.int64),
            np.zeros((ncpu, NR_PCP_LISTS), np.int64), np.zeros(ncpu, np.int64), np.zeros(ncpu, np.int64),
            np.zeros(ncpu, np.int64),
        )  # fmt: skip
        self.clock = np.zeros(ncpu, np.int64)
        self.zlock = np.zeros(1, np.int64)  # when zone->lock is next free (one zone)
        self.live = Dict.empty(key_type=types.int64, value_type=types.int64)
        self.live_t = Dict.empty(key_type=types.int64, value_type=types.int64)
        self.costs = np.array([p.alloc_ns, p.free_ns, p.zone_locked_ns, p.drain_ns], np.int64)

    def _free_range(self, lo: int, hi: int) -> None:
        """Put [lo, hi) on the free lists as naturally aligned blocks."""
        p = lo
        while p < hi:
            k = 0
            while k < MAX_ORDER and p % (2 << k) == 0 and p + (2 << k) <= hi:
                k += 1
            _push(self.buddy, k, p, 0)
            p += 1 << k

    def _compact(self) -> None:
        """Drop stale stack entries (blocks merged away or taken); grow if still crowded."""
        bd = self.buddy
        cap = bd.stk.shape[1]
        for o in range(MAX_ORDER + 1):
            n = int(bd.top[o])
            ent, ts = bd.stk[o, :n], bd.stk_t[o, :n]
            ok = bd.fmap[ent] == o + 1
            # keep the newest entry of each block (it is the one a pop would find first)
            rev = ent[::-1]
            _, first = np.unique(rev, return_index=True)
            keep = np.zeros(n, bool)
            keep[n - 1 - first] = True
            keep &= ok
            k = int(keep.sum())
            bd.stk[o, :k], bd.stk_t[o, :k] = ent[keep], ts[keep]
            bd.top[o] = k
        if int(bd.top.max()) * 2 > cap - 4 * (self.pcp.pl.shape[2] + MAX_ORDER):
            grown = {}
            for name in ("stk", "stk_t"):
                old = getattr(bd, name)
                grown[name] = np.zeros((old.shape[0], old.shape[1] * 2), np.int64)
                grown[name][:, : old.shape[1]] = old
            self.buddy = bd._replace(**grown)

    def feed(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """Emit the events of one request batch; yields the events that are final (time-ordered)."""
        n = batch.num_rows
        if n == 0:
            return
        req = Requests(**self._request_columns(batch))
        parts = []
        i = 0
        while i < n:
            out = {k: np.empty(self.cap, t) for k, t in _OUT.items()}
            i2, ne, status = emit_requests(req, i, self.phases, self.p.pcp_thp, self.costs, self.buddy, self.pcp,
                                           self.clock, self.zlock, self.live, self.live_t, Emitted(**out))  # fmt: skip
            parts.append({k: v[:ne] for k, v in out.items()})
            if status == 2:
                self._compact()
            elif status == 1 and i2 == i:
                self.cap *= 2
            i = i2
        if self.held is not None:
            parts.insert(0, self.held)
        ev = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in _OUT}
        # every later event happens at or after the last request's time
        ready, self.held = release_sorted(ev, int(req.ts[-1]))
        yield from self._batch(ready)

    def _own_columns(self, ev: dict[str, np.ndarray]) -> dict[str, Any]:
        pcp = ev["pcp"]
        return {"percpu_refill": pa.array(pcp == 1, mask=pcp < 0), "failed": pa.array(ev["fail"] == 1), "extfrag": None}


def event_batch(em: Any, ev: dict[str, np.ndarray], *, percpu_refill: pa.Array, failed: pa.Array,
                extfrag: list[pa.Array] | None) -> pa.RecordBatch:
    """One canonical record batch from an emitter's event columns (``ts_ns cpu pid comm ev pfn
    order mt gfp``), numbered from ``em.seq``; ``extfrag``: fallback_order, pageblock_order,
    fallback_migratetype, fragmenting, change_ownership (None: all null).  Shared by both
    emitters (``em``: ``schema``, ``comm_dict``, ``gfp_dict``, ``_gfp_masks``, ``source``, ``seq``)."""
    n = len(ev["ts_ns"])
    seq = em.seq + np.arange(n, dtype=np.int64)
    masks, known = gfp_lookup(em.gfp_dict.to_pylist(), em._gfp_masks)
    g = ev["gfp"]
    has_g = g >= 0
    pfn = ev["pfn"]
    mt = ev["mt"]
    if extfrag is None:
        extfrag = [pa.nulls(n, t) for t in (pa.int8(), pa.int8(), pa.int8(), pa.bool_(), pa.bool_())]
    arrays = [
        pa.array(ev["ts_ns"]),
        pa.array(ev["cpu"]),
        pa.array(ev["pid"]),
        pa.array(ev["pid"]),  # tgid: every synthetic task is a thread-group leader
        pa.DictionaryArray.from_arrays(pa.array(ev["comm"]), em.comm_dict),
        pa.DictionaryArray.from_arrays(pa.array(ev["ev"]), pa.array(list(EVENT_NAMES))),
        pa.array(pfn, mask=pfn < 0),
        pa.array(ev["order"]),
        pa.array(mt, mask=mt < 0),
        pa.DictionaryArray.from_arrays(pa.array(g, mask=~has_g), em.gfp_dict),
        pa.array(masks[np.where(has_g, g, len(masks) - 1)], mask=~(has_g & known[np.where(has_g, g, -1)])),
        percpu_refill,
        failed,
        *extfrag,
        pa.nulls(n, pa.bool_()),  # cold: not in the era D kmem format
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int16)), pa.array([em.source])),
        pa.array(seq + 1),
        pa.array(seq),
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(arrays, schema=em.schema)


def gfp_lookup(names: list[str], cache: dict[str, int | None]) -> tuple[np.ndarray, np.ndarray]:
    """(mask, known) per gfp text of ``names``, plus a trailing (0, False) slot for "no gfp";
    ``cache`` keeps the decoded masks across batches.  Shared by both emitters."""
    for g in names:
        if g not in cache:
            cache[g] = decode_gfp(g)
    masks = np.array([cache[g] or 0 for g in names] + [0], np.uint64)
    known = np.array([cache[g] is not None for g in names] + [False])
    return masks, known


def release_sorted(ev: dict[str, np.ndarray], t_cut: int | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split emitted event columns into (ready, held): ready = the events before ``t_cut`` in
    (microsecond, cpu, emission) order; held = the rest, which later events may still precede
    (``t_cut`` None: everything is ready).  Shared by both emitters.

    (us, cpu) packed in one key; the stable sort keeps emission order (held events first) at
    ties, and timsort is linear on the nearly sorted runs the per-CPU clocks produce.
    """
    order = np.argsort((ev["ts_ns"] // 1000) * 4096 + ev["cpu"], kind="stable")
    k = len(order) if t_cut is None else int(np.searchsorted(ev["ts_ns"][order], t_cut, side="left"))
    return {name: v[order[:k]] for name, v in ev.items()}, {name: v[order[k:]] for name, v in ev.items()}


def emit(requests: Iterable[pa.RecordBatch], machine: Machine, params: EmitParams | None = None, *,
         phases: list[dict] | None = None, source: str = "<synthetic>") -> Iterator[pa.RecordBatch]:  # fmt: skip
    """Canonical event batches (sorted by ts_ns, cpu, seq) for a stream of request batches."""
    if isinstance(requests, RequestGenerator) and phases is None:
        phases = requests.phase_info()
    yield from Emitter(machine, params, phases=phases, source=source).stream(requests)


def check_pages(table: pa.Table, examples: dict[str, list[int]] | None = None) -> dict[str, int]:
    """Per-page consistency of an emitted table: counts of each violation (all zero when consistent).

    Tracks every pfn through the states the emitter (and the kernel) moves it through: taken from
    the buddy lists (``mm_page_alloc_zone_locked``: onto a per-CPU list, or straight to the
    caller), allocated (``mm_page_alloc``), freed (``mm_page_free``; a page never seen before was
    allocated before the trace), back to the buddy lists (``mm_page_pcpu_drain``, or directly for
    orders without a per-CPU list).  ``examples`` (if given) collects row indices per violation.
    A plain Python loop: meant for tests and small tables.
    """
    ev = table.column("event").combine_chunks()
    names = ev.dictionary.to_pylist()
    code = np.array([int(Event[n.upper()]) for n in names], np.int64)[ev.indices.to_numpy(zero_copy_only=False)]
    pfn = table.column("pfn").to_numpy(zero_copy_only=False)
    order = table.column("order").to_numpy(zero_copy_only=False)
    pcp = table.column("percpu_refill").to_pylist()
    failed = table.column("failed").to_numpy(zero_copy_only=False)
    state: dict[int, tuple[str, int]] = {}
    bad = {"double_take": 0, "alloc_not_taken": 0, "alloc_order": 0, "free_not_allocated": 0, "free_order": 0,
           "batched_without_free": 0, "drain_not_freed": 0, "drain_order": 0}  # fmt: skip
    last_free: dict[int, int] = {}
    nbad = 0
    cpu = table.column("cpu").to_numpy(zero_copy_only=False)
    for i in range(len(code)):
        e = int(code[i])
        if e == EV_ALLOC and failed[i]:
            continue
        if pfn[i] is None or (isinstance(pfn[i], float) and np.isnan(pfn[i])):
            continue
        p, o = int(pfn[i]), int(order[i])
        st = state.get(p)
        if e == EV_ZONE_LOCKED:
            if st is not None and st[0] in ("pcp", "taken", "alloc", "freed_pcp"):
                bad["double_take"] += 1
            state[p] = ("pcp" if pcp[i] else "taken", o)
        elif e == EV_ALLOC:
            if st is None or st[0] not in ("pcp", "taken", "freed_pcp", "freed_any"):
                bad["alloc_not_taken"] += 1
            elif st[1] != o:
                bad["alloc_order"] += 1
            state[p] = ("alloc", o)
        elif e == EV_FREE:
            if st is not None and st[0] != "alloc":
                bad["free_not_allocated"] += 1
            elif st is not None and st[1] != o:
                bad["free_order"] += 1
            # a first-seen block of pageblock order or more is __free_pages_core() (memblock, deferred
            # init): straight to the buddy lists, as replay.model.engine.boot_free_core_mask() reads it
            # (a first-seen THP-order free is ambiguous: core, or a pre-trace THP page to a per-CPU list)
            core = st is None and o >= THP_ORDER
            if core and o == THP_ORDER:
                state[p] = ("freed_any", o)
            else:
                state[p] = ("freed_pcp" if (o < NR_LOWORDER or o == THP_ORDER) and not core else "buddy", o)
            last_free[int(cpu[i])] = p
        elif e == EV_BATCHED:
            if last_free.get(int(cpu[i])) != p:
                bad["batched_without_free"] += 1
        elif e == EV_DRAIN:
            if st is None or st[0] not in ("freed_pcp", "pcp", "freed_any"):
                bad["drain_not_freed"] += 1
            elif st[1] != o:
                bad["drain_order"] += 1
            state[p] = ("buddy", o)
        if examples is not None and sum(bad.values()) > nbad:
            nbad = sum(bad.values())
            examples.setdefault("rows", []).append(i)
    return bad


__all__ = ["EmitParams", "Emitter", "check_pages", "emit"]
