"""Requests -> canonical events, *without* the buddy model (the stand-in emitter).

This is the plain fallback until the replay engine's simulate mode decides pfns and emits the
kernel-faithful bursts.  It keeps exactly the per-page consistency a replay needs and the event
shapes of a 6.1 kernel (era D), but its placement is deliberately simple:

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit, types
from numba.typed import Dict

from ..schema import EVENT_NAMES, Event, arrow_schema, decode_gfp
from .workloads import MAX_ORDER, PAGE_SIZE, Machine, RequestGenerator

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
@njit(cache=True, nogil=True)
def _push(stk, stk_t, top, fmap, o, b, t):
    """Put a free block on the lists, merging with free buddies (``__free_one_page()``)."""
    top_order = stk.shape[0] - 1
    while o < top_order:
        buddy = b ^ (1 << o)
        if buddy >= fmap.shape[0] or fmap[buddy] != o + 1:  # page_is_buddy()
            break
        fmap[buddy] = 0  # off its list (the stale stack entry is skipped when popped)
        b = min(b, buddy)
        o += 1
    fmap[b] = o + 1
    stk[o, top[o]] = b
    stk_t[o, top[o]] = t
    top[o] += 1


@njit(cache=True, nogil=True)
def _pop(stk, stk_t, top, fmap, o):
    """The most recently freed block of order o still free at that order; (-1, 0) if none."""
    while top[o] > 0:
        top[o] -= 1
        b = stk[o, top[o]]
        if fmap[b] == o + 1:
            fmap[b] = 0
            return b, stk_t[o, top[o]]
    return -1, 0


@njit(cache=True, nogil=True)
def _split(stk, stk_t, top, fmap, b, j, o, tb):
    while j > o:  # expand(): upper halves back on the lists
        j -= 1
        _push(stk, stk_t, top, fmap, j, b + (1 << j), tb)
    return b


@njit(cache=True, nogil=True)
def _take_fresh(stk, stk_t, top, fmap, fresh, fresh_i, o):
    """A block of order o split from the next never-used MAX_ORDER block (lowest pfn first); -1
    when they are all used."""
    if fresh_i[0] >= fresh_i[1]:
        return -1
    f = fresh[fresh_i[0]]
    fresh_i[0] += 1
    return _split(stk, stk_t, top, fmap, f, stk.shape[0] - 1, o, 0)


@njit(cache=True, nogil=True)
def _take_pretrace(fresh, fresh_i, o):
    """A block of order o for a page allocated before the trace: carved from never-used MAX_ORDER
    blocks taken from the top (normal allocations take them from the bottom), so it was never
    seen in the trace; the rest of that block stays free.  -1 when none is left."""
    size = 1 << o
    a = (fresh_i[2] + size - 1) & ~(size - 1)
    if fresh_i[3] == 0 or a + size > fresh_i[3]:
        if fresh_i[1] <= fresh_i[0]:
            return -1
        fresh_i[1] -= 1
        a = fresh[fresh_i[1]]
        fresh_i[3] = a + (1 << MAX_ORDER)
    fresh_i[2] = a + size
    return a


@njit(cache=True, nogil=True)
def _take_block(stk, stk_t, top, fmap, fresh, fresh_i, o):
    """(block, time it became free) of order o, as ``__rmqueue_smallest()``: the smallest order
    with a free block, split by ``expand()``; never-used memory last.  Block -1 if none.  The
    time keeps cross-CPU hand-offs causal: a block drained by one CPU is taken by another only
    after the drain's event."""
    for j in range(o, stk.shape[0]):
        b, tb = _pop(stk, stk_t, top, fmap, j)
        if b >= 0:
            return _split(stk, stk_t, top, fmap, b, j, o, tb), tb
    return _take_fresh(stk, stk_t, top, fmap, fresh, fresh_i, o), 0


@njit(cache=True, nogil=True)
def _pindex(o, mt):
    if o >= NR_LOWORDER:
        return NR_PCP_LISTS - 1
    return o * PCPTYPES + (mt if mt < PCPTYPES else 0)


@njit(cache=True, nogil=True)
def emit_requests(
    r_ts, r_cpu, r_pid, r_comm, r_kind, r_order, r_mt, r_gfp, r_life, r_id, r_phase, start,
    phase_batch, phase_high, pcp_thp, costs,
    stk, stk_t, top, fmap, fresh, fresh_i, pl, ph, pn, pcount, pfactor, pindex, clock, live, live_t, zlock,
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
                    t = max(t, zlock[0])  # spin_lock(&zone->lock): sections never overlap
                    for _ in range(want):
                        b, tb = _take_block(stk, stk_t, top, fmap, fresh, fresh_i, o)
                        if b < 0:
                            break
                        t = max(t, tb + 1000)
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
                    zlock[0] = (t // 1000 + 1) * 1000
                if pn[c, L] > 0:  # take the head
                    pfn = pl[c, L, ph[c, L]]
                    ph[c, L] = (ph[c, L] + 1) % lcap
                    pn[c, L] -= 1
                    pcount[c] -= 1 << o
            else:  # rmqueue_buddy()
                pfn, tb = _take_block(stk, stk_t, top, fmap, fresh, fresh_i, o)
                if pfn >= 0:
                    t = max(t, tb + 1000, zlock[0])
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
                    zlock[0] = (t // 1000 + 1) * 1000
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
                live_t[r_id[i]] = t  # a free (on any CPU) must come after the allocation's event
        else:
            rid = r_id[i]
            if rid < 0:  # allocated before the trace: never seen in it, so from the untouched range
                pfn = _take_pretrace(fresh, fresh_i, o)
            else:
                pfn = -1
                if rid in live:
                    pfn = live[rid]
                    t = max(t, live_t[rid] + 1000)
                    del live[rid]
                    del live_t[rid]
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
                if kind == 3:  # __free_pages_core(): straight to the buddy lists, never a per-CPU list
                    _push(stk, stk_t, top, fmap, o, pfn, t)
                elif pcp_ok:
                    L = _pindex(o, mt)
                    ph[c, L] = (ph[c, L] - 1) % lcap  # list_add at the head
                    pl[c, L, ph[c, L]] = pfn
                    pn[c, L] += 1
                    pcount[c] += 1 << o
                    if pcount[c] >= high:  # free_pcppages_bulk(nr_pcp_free()): one zone->lock section
                        t = max(t, zlock[0])
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
                                _push(stk, stk_t, top, fmap, od, b, t)
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
                        zlock[0] = (t // 1000 + 1) * 1000
                else:
                    _push(stk, stk_t, top, fmap, o, pfn, t)
        clock[c] = t
        i += 1
    return i, ne, 0


# ----------------------------------------------------------------------------- Python driver
_OUT = {
    "ts_ns": np.int64, "cpu": np.int32, "pid": np.int32, "comm": np.int32, "ev": np.int8, "pfn": np.int64,
    "order": np.int8, "mt": np.int8, "gfp": np.int32, "pcp": np.int8, "fail": np.int8,
}  # fmt: skip


class HeldBack:
    """What both emitters share: the events of a batch that a later request could still precede are
    held back (``release_sorted``) until the next batch, and released by ``finish`` at the end."""

    held: dict[str, np.ndarray] | None

    def _batch(self, ev: dict[str, np.ndarray]) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def finish(self) -> Iterator[pa.RecordBatch]:
        if self.held is not None:
            ready, _ = release_sorted(self.held, None)
            yield from self._batch(ready)
            self.held = None


class Emitter(HeldBack):
    """Stateful stand-in emitter: feed request batches, get canonical record batches in order.

    ``phases`` gives per-phase ``pcp_batch`` overrides (``RequestGenerator.phase_info()``);
    ``source`` names the ``source_file`` column.
    """

    def __init__(self, machine: Machine, params: EmitParams | None = None, *, phases: list[dict] | None = None,
                 source: str = "<synthetic>") -> None:  # fmt: skip
        if machine.cpus > 4096:
            raise ValueError("the emitter packs (time, cpu) sort keys for up to 4096 CPUs")
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
        self.ranges = ram_ranges(machine.memory, p)
        self.stk = np.zeros((MAX_ORDER + 1, 1 << 14), np.int64)
        self.stk_t = np.zeros((MAX_ORDER + 1, 1 << 14), np.int64)
        self.top = np.zeros(MAX_ORDER + 1, np.int64)
        self.fmap = np.zeros(self.ranges[-1][1] + 1, np.int8)  # order+1 at the head of each free block
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
        self.fresh = np.array(fresh, np.int64)
        # [next from the bottom, end (exclusive) from the top, pre-trace carve pointer, its limit]
        self.fresh_i = np.array([0, len(fresh), 0, 0], np.int64)
        lcap = high + 2 * p.batch + 16
        self.pl = np.zeros((machine.cpus, NR_PCP_LISTS, lcap), np.int64)
        self.ph = np.zeros((machine.cpus, NR_PCP_LISTS), np.int64)
        self.pn = np.zeros((machine.cpus, NR_PCP_LISTS), np.int64)
        self.pcount = np.zeros(machine.cpus, np.int64)
        self.pfactor = np.zeros(machine.cpus, np.int64)
        self.pindex = np.zeros(machine.cpus, np.int64)
        self.clock = np.zeros(machine.cpus, np.int64)
        self.zlock = np.zeros(1, np.int64)  # when zone->lock is next free (one zone)
        self.live = Dict.empty(key_type=types.int64, value_type=types.int64)
        self.live_t = Dict.empty(key_type=types.int64, value_type=types.int64)
        self.costs = np.array([p.alloc_ns, p.free_ns, p.zone_locked_ns, p.drain_ns], np.int64)
        self.cap = 1 << 20
        self.held: dict[str, np.ndarray] | None = None
        self.seq = 0
        self.emit_idx = 0
        self.schema = arrow_schema()
        self.source = source
        self._gfp_masks: dict[str, int | None] = {}

    def _free_range(self, lo: int, hi: int) -> None:
        """Put [lo, hi) on the free lists as naturally aligned blocks."""
        p = lo
        while p < hi:
            k = 0
            while k < MAX_ORDER and p % (2 << k) == 0 and p + (2 << k) <= hi:
                k += 1
            _push(self.stk, self.stk_t, self.top, self.fmap, k, p, 0)
            p += 1 << k

    def _compact(self) -> None:
        """Drop stale stack entries (blocks merged away or taken); grow if still crowded."""
        cap = self.stk.shape[1]
        for o in range(MAX_ORDER + 1):
            n = int(self.top[o])
            ent, ts = self.stk[o, :n], self.stk_t[o, :n]
            ok = self.fmap[ent] == o + 1
            # keep the newest entry of each block (it is the one a pop would find first)
            rev = ent[::-1]
            _, first = np.unique(rev, return_index=True)
            keep = np.zeros(n, bool)
            keep[n - 1 - first] = True
            keep &= ok
            k = int(keep.sum())
            self.stk[o, :k], self.stk_t[o, :k] = ent[keep], ts[keep]
            self.top[o] = k
        if int(self.top.max()) * 2 > cap - 4 * (self.pl.shape[2] + MAX_ORDER):
            for name in ("stk", "stk_t"):
                old = getattr(self, name)
                grown = np.zeros((old.shape[0], old.shape[1] * 2), np.int64)
                grown[:, : old.shape[1]] = old
                setattr(self, name, grown)

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
                self.stk, self.stk_t, self.top, self.fmap, self.fresh, self.fresh_i, self.pl, self.ph, self.pn, self.pcount, self.pfactor,
                self.pindex, self.clock, self.live, self.live_t, self.zlock, *out.values(),
            )  # fmt: skip
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
        ready, self.held = release_sorted(ev, int(req[0][-1]))
        yield from self._batch(ready)

    def _batch(self, ev: dict[str, np.ndarray]) -> Iterator[pa.RecordBatch]:
        """One record batch of events already in (ts_ns, cpu, emission) order."""
        n = len(ev["ts_ns"])
        if n == 0:
            return
        pcp = ev["pcp"]
        batch = event_batch(self, ev, percpu_refill=pa.array(pcp == 1, mask=pcp < 0),
                            failed=pa.array(ev["fail"] == 1), extfrag=None)
        self.seq += n
        yield batch


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
    em = Emitter(machine, params, phases=phases, source=source)
    for b in requests:
        yield from em.feed(b)
    yield from em.finish()


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
        if e == 0 and failed[i]:
            continue
        if pfn[i] is None or (isinstance(pfn[i], float) and np.isnan(pfn[i])):
            continue
        p, o = int(pfn[i]), int(order[i])
        st = state.get(p)
        if e == 1:
            if st is not None and st[0] in ("pcp", "taken", "alloc", "freed_pcp"):
                bad["double_take"] += 1
            state[p] = ("pcp" if pcp[i] else "taken", o)
        elif e == 0:
            if st is None or st[0] not in ("pcp", "taken", "freed_pcp", "freed_any"):
                bad["alloc_not_taken"] += 1
            elif st[1] != o:
                bad["alloc_order"] += 1
            state[p] = ("alloc", o)
        elif e == 2:
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
        elif e == 3:
            if last_free.get(int(cpu[i])) != p:
                bad["batched_without_free"] += 1
        elif e == 4:
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
