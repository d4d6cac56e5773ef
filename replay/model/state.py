"""Struct-of-arrays model state of the page allocator (Linux 6.1 as traced).

Everything the replay loop touches is a flat NumPy array held in one
``ModelState`` namedtuple, so the same functions run as plain Python (tests)
and compiled with numba (``replay.jit``).

Per page (indexed by ``pfn - pfn_base``), 14 bytes:

========  =====  ==========================================================
array     dtype  meaning
========  =====  ==========================================================
pg_next   int32  next page on the list this block head is on (-1: none)
pg_prev   int32  previous page on that list (-1: none)
pg_state  uint8  PG_NONE (tail page or hole), PG_BUDDY, PG_PCP, PG_ALLOC, PG_FREEING
pg_order  int8   order of the block headed here (``buddy_order()`` for PG_BUDDY)
pg_mt     int8   PG_BUDDY: free list migratetype; PG_PCP: pcp migratetype
                 (``get_pcppage_migratetype``); PG_ALLOC: requested migratetype
pg_cpu    int16  PG_PCP: cpu whose per-cpu list holds the block
pg_origin uint8  free and pcp block heads: what placed the block where it is (``ORIGIN_*``),
                 for the disagreement causes of ``fidelity``; no kernel counterpart
========  =====  ==========================================================

Per pageblock: ``pb_mt`` (int8, ``get_pageblock_migratetype``).

Tracepoint log (``tp``, optional): the buddy and per-CPU list kernels append one row per
tracepoint Linux 6.1 fires where they run (``mm_page_alloc_zone_locked`` in
``__rmqueue_smallest``, ``mm_page_alloc_extfrag`` in ``__rmqueue_fallback``,
``mm_page_pcpu_drain`` in ``free_pcppages_bulk``), so that a caller (``replay.synth.emit``)
can write the trace the kernel would.  Off (a ``(0, TP_COLS)`` array, the default) it costs
one length test per site.  Row 0 is the header (``tp[0, 0]`` = rows written since the last
reset); rows ``1..`` are ``TP_*`` columns.

Lists (free_area[order][mt] per zone, and pcp->lists[pindex] per cpu and zone)
are intrusive doubly linked lists over ``pg_next``/``pg_prev`` with a head,
a tail and a length per list id, exactly as ``struct list_head`` threads
``page->lru`` / ``page->pcp_list`` in the kernel: ``list_add`` is insertion at
the head, ``list_add_tail`` at the tail, ``list_first_entry`` the head.

List ids: free_area list of (zone z, order o, migratetype mt) is
``(z * n_orders + o) * N_MT + mt``; pcp list of (cpu c, zone z, pindex p) is
``n_fa_lists + (c * n_zones + z) * NR_PCP_LISTS + p``.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from replay.jit import kernel

# ---------------------------------------------------------------- constants
#: MAX_ORDER in 6.1 is the number of orders (11: orders 0..10 = MAX_PAGE_ORDER in 6.12).
NR_ORDERS_DEFAULT = 11
PAGEBLOCK_ORDER = 9
PAGE_ALLOC_COSTLY_ORDER = 3

# enum migratetype, 6.1 x86-64 Debian (no CONFIG_CMA in the traced pagetypeinfo: ISOLATE == 4).
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
MIGRATE_HIGHATOMIC = 3
MIGRATE_ISOLATE = 4
N_MT = 6  # room for CMA-configured kernels (CMA=4, ISOLATE=5)

# 6.1 include/linux/mmzone.h: NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1),
# plus one list for THP (pageblock_order) pages.
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + 1

# page states (head pages only; tails and holes are PG_NONE)
PG_NONE = 0
PG_BUDDY = 1
PG_PCP = 2
PG_ALLOC = 3
PG_FREEING = 4  # mm_page_free seen, free_unref_page_list() commit (mm_page_free_batched) pending
PG_TAKEN = 5  # taken by rmqueue_buddy() (mm_page_alloc_zone_locked, not for a pcp list), mm_page_alloc pending

# pg_origin: what put a free or pcp block where the model has it, ordered so that the max over
# merged blocks is the least certain part (a block merged from a traced page and a pre-trace
# buddy exists only if the buddy really was free)
ORIGIN_TRACED = 0  # a traced event placed it (or every block it merged from)
ORIGIN_INFERRED = 1  # a repair: the model followed the trace through a path it did not see
ORIGIN_PRE_TRACE = 2  # free before the trace (its first event says so); list position unknown
ORIGIN_SEEDED = 3  # untouched by the trace, kept free to match the snapshot: a guess

# counters (ModelState.ctr); anomaly counters live in replay.model.anomalies
C_MERGES = 0
C_SPLITS = 1
C_STEALS = 2
C_RMQUEUE_PREDICTED = 3  # trace took the block __rmqueue_smallest() would have picked
C_RMQUEUE_CHECKED = 4
C_PCP_ALLOC_HEAD = 5  # mm_page_alloc took the head of the pcp list (list_first_entry)
C_PCP_ALLOC_CHECKED = 6
C_DRAIN_TAIL = 7  # drain took the tail of the pcp list (list_last_entry)
C_DRAIN_CHECKED = 8
C_FAILED_ALLOCS = 9
C_BULK_INFERRED = 10  # pages inferred to have left a pcp list through __alloc_pages_bulk()
C_OWNERSHIP_AGREE = 11
C_OWNERSHIP_CHECKED = 12
# disagreements by cause (the rest of checked - agreed is the model's own): the block the model
# predicted or the one the kernel took was placed before the trace, or by a repair
C_RMQUEUE_DIS_PRE_TRACE = 13
C_RMQUEUE_DIS_INFERRED = 14
C_PCP_ALLOC_DIS_PRE_TRACE = 15
C_PCP_ALLOC_DIS_INFERRED = 16
C_DRAIN_DIS_PRE_TRACE = 17
C_DRAIN_DIS_INFERRED = 18
C_PB_MT_FROM_ALLOC = 19  # pageblock types corrected by a pcp allocation (exact_alloc)
C_BULK_UNDONE = 20  # pages inferred taken by __alloc_pages_bulk() that a traced alloc or drain took from the list
#: ctr[C_AT_HALF + j]: counter j when the exact replay reached event ctr[C_HALF_AT] (half the
#: events; -1: never), for the second-half fidelity rates
C_HALF_AT = 31
C_AT_HALF = 32
N_CTR = 64

CTR_NAMES = {
    C_MERGES: "merges",
    C_SPLITS: "splits",
    C_STEALS: "steals",
    C_RMQUEUE_PREDICTED: "rmqueue_predicted",
    C_RMQUEUE_CHECKED: "rmqueue_checked",
    C_PCP_ALLOC_HEAD: "pcp_alloc_head",
    C_PCP_ALLOC_CHECKED: "pcp_alloc_checked",
    C_DRAIN_TAIL: "drain_tail",
    C_DRAIN_CHECKED: "drain_checked",
    C_FAILED_ALLOCS: "failed_allocs",
    C_BULK_INFERRED: "bulk_inferred",
    C_OWNERSHIP_AGREE: "ownership_agree",
    C_OWNERSHIP_CHECKED: "ownership_checked",
    C_RMQUEUE_DIS_PRE_TRACE: "rmqueue_disagree_pre_trace",
    C_RMQUEUE_DIS_INFERRED: "rmqueue_disagree_inferred",
    C_PCP_ALLOC_DIS_PRE_TRACE: "pcp_alloc_disagree_pre_trace",
    C_PCP_ALLOC_DIS_INFERRED: "pcp_alloc_disagree_inferred",
    C_DRAIN_DIS_PRE_TRACE: "drain_disagree_pre_trace",
    C_DRAIN_DIS_INFERRED: "drain_disagree_inferred",
    C_PB_MT_FROM_ALLOC: "pageblock_mt_from_alloc",
    C_BULK_UNDONE: "bulk_inferred_undone",
}

# ---------------------------------------------------------------- the state
ModelState = namedtuple(
    "ModelState",
    [
        # per page
        "pg_next", "pg_prev", "pg_state", "pg_order", "pg_mt", "pg_cpu", "pg_origin",
        # per pageblock
        "pb_mt",
        # lists
        "l_head", "l_tail", "l_len",
        # per zone (index z), in page-index space (pfn - pfn_base)
        "z_start", "z_end", "z_present", "z_nr_free", "z_nr_pcp", "z_nr_alloc",
        # per zone: pages inferred taken by __alloc_pages_bulk() (infer_bulk_taken less undone)
        "z_nr_bulk",
        # per (cpu, zone): pcp->count, high, batch, free_factor
        "pcp_count", "pcp_high", "pcp_batch", "pcp_free_factor",
        # scalars: [pfn_base, n_orders, n_zones, n_cpus, n_fa_lists, pageblock_order]
        "geo",
        # counters
        "ctr",
        # tracepoint log (shape (0, TP_COLS) when off), see the module docstring
        "tp",
        # the kernel profile's switches (replay/model/profiles.py: KernelProfile.params, KP_*)
        "kp",
    ],
)

G_PFN_BASE = 0
G_NR_ORDERS = 1
G_NR_ZONES = 2
G_NR_CPUS = 3
G_FA_LISTS = 4
G_PB_ORDER = 5

# tracepoint log columns (ModelState.tp); event codes are parsers.schema.Event
TP_EV = 0  # Event code
TP_PAGE = 1  # page index (pfn - pfn_base)
TP_ORDER = 2  # order (extfrag: alloc_order)
TP_MT = 3  # migratetype (extfrag: alloc_migratetype)
TP_A = 4  # zone_locked: percpu_refill; extfrag: fallback_order
TP_B = 5  # extfrag: fallback_migratetype
TP_C = 6  # extfrag: change_ownership
TP_ZONE = 7  # zone index (whose zone->lock is held)
TP_COLS = 8
TP_ZONE_LOCKED = 1
TP_DRAIN = 4
TP_EXTFRAG = 5


def new_state(
    zone_start: np.ndarray,
    zone_end: np.ndarray,
    n_cpus: int,
    *,
    n_orders: int = NR_ORDERS_DEFAULT,
    pageblock_order: int = PAGEBLOCK_ORDER,
    pcp_high: np.ndarray | None = None,
    pcp_batch: np.ndarray | None = None,
    profile_params: np.ndarray | None = None,
) -> ModelState:
    """An empty model (every page PG_NONE, every list empty) for zones [start, end) pfns, of the
    kernel profile whose ``params()`` is ``profile_params`` (default: 6.1)."""
    from replay.model.profiles import DEFAULT_PROFILE, PROFILES

    kp = PROFILES[DEFAULT_PROFILE].params() if profile_params is None else np.asarray(profile_params, np.int64)
    zone_start = np.asarray(zone_start, dtype=np.int64)
    zone_end = np.asarray(zone_end, dtype=np.int64)
    nz = len(zone_start)
    max_block = 1 << (n_orders - 1)
    base = int(zone_start.min()) // max_block * max_block if nz else 0
    top = -(-int(zone_end.max()) // max_block) * max_block if nz else max_block
    npages = top - base
    if npages >= 2**31:
        raise ValueError("guest too large for int32 page indices")
    n_fa = nz * n_orders * N_MT
    n_lists = n_fa + n_cpus * nz * NR_PCP_LISTS
    high = np.zeros((n_cpus, nz), np.int64) if pcp_high is None else np.asarray(pcp_high, np.int64).reshape(n_cpus, nz)
    batch = np.ones((n_cpus, nz), np.int64) if pcp_batch is None else np.asarray(pcp_batch, np.int64).reshape(n_cpus, nz)
    return ModelState(
        pg_next=np.full(npages, -1, np.int32),
        pg_prev=np.full(npages, -1, np.int32),
        # written, not calloc'ed: the initial-state pass reads each page's state before it writes
        # it, and a read of a never-touched page maps the zero page, which the write then replaces
        # with a TLB-shootdown IPI (~1,000 of them for a 20 GiB guest)
        pg_state=np.full(npages, 0, np.uint8),
        pg_order=np.zeros(npages, np.int8),
        pg_mt=np.zeros(npages, np.int8),
        pg_cpu=np.zeros(npages, np.int16),
        pg_origin=np.zeros(npages, np.uint8),
        pb_mt=np.full(npages >> pageblock_order, MIGRATE_MOVABLE, np.int8),
        l_head=np.full(n_lists, -1, np.int32),
        l_tail=np.full(n_lists, -1, np.int32),
        l_len=np.zeros(n_lists, np.int64),
        z_start=zone_start - base,
        z_end=zone_end - base,
        z_present=(zone_end - zone_start).astype(np.int64),
        z_nr_free=np.zeros(nz, np.int64),
        z_nr_pcp=np.zeros(nz, np.int64),
        z_nr_alloc=np.zeros(nz, np.int64),
        z_nr_bulk=np.zeros(nz, np.int64),
        pcp_count=np.zeros((n_cpus, nz), np.int64),
        pcp_high=high,
        pcp_batch=batch,
        pcp_free_factor=np.zeros((n_cpus, nz), np.int64),
        geo=np.array([base, n_orders, nz, n_cpus, n_fa, pageblock_order], np.int64),
        ctr=_new_counters(),
        tp=np.zeros((0, TP_COLS), np.int64),
        kp=kp.copy(),
    )


def _new_counters() -> np.ndarray:
    ctr = np.zeros(N_CTR, np.int64)
    ctr[C_HALF_AT] = -1
    return ctr


def with_trace_log(st: ModelState, cap: int) -> ModelState:
    """``st`` with a tracepoint log of ``cap`` rows (0: off); the other arrays are shared."""
    return st._replace(tp=np.zeros((cap + 1 if cap > 0 else 0, TP_COLS), np.int64))


def state_bytes_per_page(st: ModelState) -> float:
    """Model state bytes per 4 KiB page of the modelled pfn range (lists and zones included)."""
    total = sum(np.asarray(a).nbytes for a in st)
    return total / len(st.pg_state)


# ---------------------------------------------------------------- tracepoint log
@kernel(nrt=False)
def tp_emit(st: ModelState, ev: int, i: int, order: int, mt: int, a: int, b: int, c: int, z: int) -> None:
    """Append a tracepoint row to ``st.tp`` (nothing when the log is off).

    A full log keeps counting without writing, so the caller sees the overflow.
    """
    if st.tp.shape[0] == 0:
        return
    n = st.tp[0, 0] + 1
    st.tp[0, 0] = n
    if n < st.tp.shape[0]:
        st.tp[n, TP_EV] = ev
        st.tp[n, TP_PAGE] = i
        st.tp[n, TP_ORDER] = order
        st.tp[n, TP_MT] = mt
        st.tp[n, TP_A] = a
        st.tp[n, TP_B] = b
        st.tp[n, TP_C] = c
        st.tp[n, TP_ZONE] = z


# ---------------------------------------------------------------- list primitives
@kernel(nrt=False)
def zone_of(st: ModelState, i: int) -> int:
    """``page_zone()``: index of the zone spanning page index ``i``, -1 outside every zone."""
    for z in range(st.z_start.shape[0]):
        if st.z_start[z] <= i < st.z_end[z]:
            return z
    return -1


@kernel(nrt=False)
def fa_list(st: ModelState, z: int, order: int, mt: int) -> int:
    return (z * st.geo[G_NR_ORDERS] + order) * N_MT + mt


@kernel(nrt=False)
def order_to_pindex(mt: int, order: int) -> int:
    """6.1 ``order_to_pindex()``: THP pages share one list whatever their migratetype."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS
    return MIGRATE_PCPTYPES * order + mt


@kernel(nrt=False)
def pindex_to_order(pindex: int, pb_order: int) -> int:
    if pindex == NR_LOWORDER_PCP_LISTS:
        return pb_order
    return pindex // MIGRATE_PCPTYPES


@kernel(nrt=False)
def pcp_list(st: ModelState, cpu: int, z: int, pindex: int) -> int:
    return st.geo[G_FA_LISTS] + (cpu * st.geo[G_NR_ZONES] + z) * NR_PCP_LISTS + pindex


@kernel(nrt=False)
def list_add(st: ModelState, lid: int, i: int) -> None:
    """``list_add()``: insert page index ``i`` at the head of list ``lid``."""
    h = int(st.l_head[lid])
    st.pg_prev[i] = -1
    st.pg_next[i] = h
    if h >= 0:
        st.pg_prev[h] = i
    else:
        st.l_tail[lid] = i
    st.l_head[lid] = i
    st.l_len[lid] += 1


@kernel(nrt=False)
def list_add_tail(st: ModelState, lid: int, i: int) -> None:
    """``list_add_tail()``: insert page index ``i`` at the tail of list ``lid``."""
    t = int(st.l_tail[lid])
    st.pg_next[i] = -1
    st.pg_prev[i] = t
    if t >= 0:
        st.pg_next[t] = i
    else:
        st.l_head[lid] = i
    st.l_tail[lid] = i
    st.l_len[lid] += 1


@kernel(nrt=False)
def list_del(st: ModelState, lid: int, i: int) -> None:
    """``list_del()`` of page index ``i`` from list ``lid``."""
    p = int(st.pg_prev[i])
    n = int(st.pg_next[i])
    if p >= 0:
        st.pg_next[p] = n
    else:
        st.l_head[lid] = n
    if n >= 0:
        st.pg_prev[n] = p
    else:
        st.l_tail[lid] = p
    st.pg_next[i] = -1
    st.pg_prev[i] = -1
    st.l_len[lid] -= 1


@kernel(nrt=False)
def block_head(st: ModelState, i: int) -> int:
    """Index of the head of the block (of any state) containing page index ``i``; -1 if none.

    Only heads carry a state (the kernel's PageBuddy/buddy_order live on the head too), so
    walk the aligned candidates upwards, like ``__find_buddy_pfn`` in reverse.
    """
    n_orders = st.geo[G_NR_ORDERS]
    for o in range(n_orders):
        h = i & ~((1 << o) - 1)
        s = int(st.pg_state[h])
        if s != PG_NONE:
            if h + (1 << int(st.pg_order[h])) > i:
                return h
            return -1
    return -1
