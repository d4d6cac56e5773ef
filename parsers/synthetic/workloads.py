"""Workload models as data: generators of page-allocator *requests*.

A workload is a sequence of :class:`Phase` s; a phase is a weighted set of :class:`Stream` s; a
stream is one kind of activity (anonymous faults of a process, slab refills of a kernel thread,
readahead folios of a reader...) described entirely by numbers: order mix, migratetype, gfp text,
task names, burstiness, lifetime distribution, how its pages come back.  The named workloads
(``boot``, ``churn``, ``fault-in``, ``fork-storm``, ``page-cache``) are functions from their
parameter dataclass to phases; ``mix`` merges the streams of several; ``custom`` takes streams
straight from TOML (see :mod:`parsers.synthetic.config`).

Requests (:data:`REQUEST_SCHEMA`), one row each, in time order:

=============  ==============================================================================
ts_ns          when the task asks (ns since boot; microsecond-aligned, as ftrace prints)
cpu, pid       where and who; ``comm`` is a dictionary column
kind           ``0`` alloc, ``1`` free, ``2`` free through ``free_unref_page_list()`` (the page
               also gets ``mm_page_free_batched``), ``3`` ``__free_pages_core()`` (memblock release,
               deferred struct-page init: never-used memory straight to the buddy lists)
order          block order; migratetype (``enum migratetype``); ``gfp_flags`` text (allocs)
lifetime_ns    allocs: time until the free, ``-1`` = still allocated when the trace ends
req_id         allocs: their id; frees: the id of the allocation they free, ``-1`` = a page
               allocated before the trace started (memblock release, pre-trace pages)
phase          index of the phase that issued the request
=============  ==============================================================================

Generation is chunked: each step draws a block of *episodes* (a task issuing a burst of requests
back to back on one CPU) on a Poisson timeline, expands them with numpy, schedules the frees and
releases every request older than the newest episode start; so memory is bounded by the live
set, not by the length of the trace.  Everything comes from one ``numpy.random.Generator`` seeded
with ``seed``: the same parameters give byte-identical requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pyarrow as pa

PAGE_SIZE = 4096
MAX_ORDER = 10  # MAX_PAGE_ORDER on x86-64: orders 0..10
KIND_ALLOC, KIND_FREE, KIND_FREE_BATCHED, KIND_FREE_CORE = 0, 1, 2, 3
KIND_NAMES = ("alloc", "free", "free_batched", "free_core")

_DICT32 = pa.dictionary(pa.int32(), pa.string())
REQUEST_SCHEMA = pa.schema(
    [
        pa.field("ts_ns", pa.int64(), False),
        pa.field("cpu", pa.int32(), False),
        pa.field("pid", pa.int32(), False),
        pa.field("comm", _DICT32, False),
        pa.field("kind", pa.int8(), False),
        pa.field("order", pa.int8(), False),
        pa.field("migratetype", pa.int8(), False),
        pa.field("gfp_flags", _DICT32, True),
        pa.field("lifetime_ns", pa.int64(), False),
        pa.field("req_id", pa.int64(), False),
        pa.field("phase", pa.int8(), False),
    ]
)


# ----------------------------------------------------------------------------- model data
@dataclass(frozen=True)
class Lifetime:
    """How long an allocation lives: log-normal (heavy right tail), clipped.

    median_us: median lifetime in microseconds.
    sigma: log-normal shape; 2-3 gives the heavy tails of slab/page-cache objects.
    forever: share of long-lived allocations (kernel data, resident memory): freed max_s to 2*max_s
        after allocation, i.e. after any trace shorter than max_s, yet a long run's memory stays
        bounded; never freed when max_s is ``inf``.
    max_s: lifetimes are clipped to this many seconds.
    """

    median_us: float = 1000.0
    sigma: float = 2.0
    forever: float = 0.0
    max_s: float = 30.0


@dataclass(frozen=True)
class Stream:
    """One kind of activity.

    name: label (documentation only).
    kind: ``alloc`` (allocations, then their frees) or ``free`` (never-used memory handed to the
        buddy by ``__free_pages_core()``: memblock release, deferred struct-page init).
    weight: share of this stream's episodes within its phase.
    orders: ``{order: probability}``.
    migratetype: ``enum migratetype`` of the requests (0 unmovable, 1 movable, 2 reclaimable).
    gfp: ``show_gfp_flags()`` text printed for the allocations.
    comm: task name; tasks: number of distinct tasks (pids ``pid_base .. pid_base+tasks-1``).
    cpus: CPUs the stream may run on (empty = all); pinned: share of episodes on the task's home
        CPU (``pid mod cpus``), the rest on a random CPU.
    burst: mean requests per episode (geometric); gap_us: time between requests of an episode.
    lifetime: :class:`Lifetime`; free_together: one lifetime per episode (process exit, file
        truncate: the whole burst comes back together).
    batched: share of order-0 frees that go through ``free_unref_page_list()`` (the page gets
        ``mm_page_free`` then ``mm_page_free_batched``).
    free_same_cpu: share of frees on the allocating CPU.
    prelive_frees: extra frees of pre-trace pages per request (the "free-only" share of perf kmem).
    """

    name: str
    kind: str = "alloc"
    weight: float = 1.0
    orders: dict[int, float] = field(default_factory=lambda: {0: 1.0})
    migratetype: int = 1
    gfp: str = "GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO"
    comm: str = "a.out"
    pid_base: int = 1000
    tasks: int = 1
    cpus: tuple[int, ...] = ()
    pinned: float = 0.9
    burst: float = 1.0
    gap_us: float = 2.0
    lifetime: Lifetime = Lifetime()
    free_together: bool = False
    batched: float = 0.0
    free_same_cpu: float = 0.8
    prelive_frees: float = 0.0

    def __hash__(self) -> int:  # dict field: hash by identity of contents
        return hash((self.name, tuple(sorted(self.orders.items()))))


@dataclass(frozen=True)
class Phase:
    """A stretch of the workload.

    name: label; streams: the activities; rate_per_cpu: primary requests per second per CPU.
    share: share of the ``events`` budget; count: an absolute number of primary requests
    instead; pages: an absolute number of base pages allocated instead (the last request is
    split into order-0 pages to hit it exactly).
    watermarks_zero: early boot, before ``init_per_zone_wmark_min()``: watermarks are zero.
    pcp_batch: per-CPU list batch in force (1 = the boot pageset; None = the emitter's default).
    exit_at_end: the tasks exit when the phase ends: every page still allocated by the phase
        (and not ``forever``) is freed right then, one per microsecond per CPU.
    """

    name: str
    streams: tuple[Stream, ...]
    rate_per_cpu: float = 20000.0
    share: float = 1.0
    count: int | None = None
    pages: int | None = None
    watermarks_zero: bool = False
    pcp_batch: int | None = None
    exit_at_end: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    phases: tuple[Phase, ...]
    doc: str = ""


@dataclass(frozen=True)
class Machine:
    """The guest and the run.

    cpus: vCPUs.  memory: guest memory in bytes.  seed: the random seed.
    events: primary requests (allocations, and frees of pre-trace pages) to generate; phases with
        a ``count``/``pages`` of their own are not scaled by it.
    duration_s: alternatively, stop at this much trace time (whichever comes first).
    start_s: timestamp of the first request.  chunk: requests per generated chunk.
    """

    cpus: int = 4
    memory: int = 4 << 30
    seed: int = 0
    events: int | None = 1_000_000
    duration_s: float | None = None
    start_s: float = 10.0
    chunk: int = 1 << 18

    def __post_init__(self) -> None:
        if self.cpus < 1:
            raise ValueError("cpus must be >= 1")
        if self.memory < (64 << 20):
            raise ValueError("memory must be at least 64M")
        if self.events is None and self.duration_s is None:
            raise ValueError("give events or duration_s")


# ----------------------------------------------------------------------------- named workloads
_GFP_ANON = "GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO"
_GFP_THP = "GFP_TRANSHUGE|__GFP_THISNODE"
_GFP_SLAB = "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP"
_GFP_SLAB_RECL = "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_RECLAIMABLE"
_GFP_PGTABLE = "GFP_KERNEL_ACCOUNT|__GFP_ZERO"
_GFP_CACHE = "GFP_HIGHUSER_MOVABLE|__GFP_COMP"
_GFP_RA = "GFP_HIGHUSER_MOVABLE|__GFP_NORETRY|__GFP_COMP|__GFP_NOWARN"
_GFP_NOWAIT = "GFP_NOWAIT|__GFP_NOWARN"


@dataclass(frozen=True)
class ChurnParams:
    """``churn``: a steady mix of slab, page-table, anonymous and page-cache allocations.

    rate_per_cpu: allocation requests per second per CPU.
    unmovable: share of requests from the unmovable streams (slab order 0-3 and page tables
        order 0-1 ``__GFP_ZERO``); the rest are anonymous and page-cache order-0 movable pages.
    cache: share of the movable requests that are page cache (freed a file at a time).
    lifetime_median_us, lifetime_sigma: heavy-tailed (log-normal) lifetimes.
    forever: share of long-lived allocations (see Lifetime).  batched: share of order-0 frees batched.
    burst: mean requests per episode; gap_us: time between the requests of an episode.
    free_same_cpu: share of frees on the allocating CPU.
    prelive_frees: frees of pre-trace pages per request (perf kmem's free-only).
    thp: share of anonymous requests that are THP order-9 blocks.  tasks: tasks per stream.
    """

    rate_per_cpu: float = 3210.0
    unmovable: float = 0.358
    cache: float = 0.336
    lifetime_median_us: float = 1790000.0
    lifetime_sigma: float = 1.49
    forever: float = 0.435
    batched: float = 0.976
    burst: float = 300.0
    gap_us: float = 18.1
    free_same_cpu: float = 0.797
    prelive_frees: float = 0.0151
    thp: float = 0.0003
    tasks: int = 16


def churn(p: ChurnParams, m: Machine) -> Workload:
    lt = Lifetime(p.lifetime_median_us, p.lifetime_sigma, p.forever)
    u = min(max(p.unmovable, 0.0), 1.0)
    c = min(max(p.cache, 0.0), 1.0)
    b, g = max(1.0, p.burst), p.gap_us
    common = dict(lifetime=lt, batched=p.batched, free_same_cpu=p.free_same_cpu, prelive_frees=p.prelive_frees, gap_us=g)
    # episode weights: a stream's share of *requests* is weight * burst, so divide by the burst
    streams = (
        Stream("slab", weight=0.6 * u / (b / 2), orders={0: 0.93, 1: 0.05, 2: 0.015, 3: 0.005}, migratetype=0,
               gfp=_GFP_SLAB, comm="kworker/u8:2", pid_base=36, tasks=1, pinned=0.0, burst=b / 2, **common),
        Stream("pgtable", weight=0.4 * u / b, orders={0: 0.97, 1: 0.03}, migratetype=0, gfp=_GFP_PGTABLE, comm="sh",
               pid_base=2000, tasks=p.tasks, burst=b, free_together=True, **common),
        Stream("anon", weight=(1 - u) * (1 - c) / b, orders={0: 1.0 - p.thp, 9: p.thp}, migratetype=1, gfp=_GFP_ANON,
               comm="awk", pid_base=3000, tasks=p.tasks, burst=b, free_together=True, **common),
        Stream("cache", weight=(1 - u) * c / (4 * b), orders={0: 1.0}, migratetype=1, gfp=_GFP_CACHE, comm="dd",
               pid_base=4000, tasks=max(1, p.tasks // 4), burst=4 * b, free_together=True, **common),
    )  # fmt: skip
    return Workload("churn", (Phase("churn", streams, p.rate_per_cpu),), churn.__doc__ or "")


churn.__doc__ = ChurnParams.__doc__


@dataclass(frozen=True)
class PageCacheParams:
    """``page-cache``: readahead folios of orders 2-3 streaming through the page cache.

    rate_per_cpu: folio allocations per second per CPU.  readers: reading tasks.
    orders: readahead folio order mix.  window: folios per readahead window (burst);
    gap_us: time between the folios of a window.
    lifetime_median_us, lifetime_sigma: how long a window stays cached (it is dropped whole).
    batched: share of order-0 frees batched.  metadata: share of order-0 reclaimable
    allocations (xarray nodes, buffer heads) beside the folios.  free_same_cpu: share of
    frees on the reading CPU.  prelive_frees: frees of pre-trace pages (cache from before).
    """

    rate_per_cpu: float = 6510.0
    readers: int = 4
    orders: dict[int, float] = field(default_factory=lambda: {2: 0.6, 3: 0.4})
    window: float = 4.93
    gap_us: float = 17.9
    lifetime_median_us: float = 1480000.0
    lifetime_sigma: float = 1.23
    batched: float = 1.0
    metadata: float = 0.35
    free_same_cpu: float = 0.248
    prelive_frees: float = 0.0291

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.orders.items())))


def page_cache(p: PageCacheParams, m: Machine) -> Workload:
    lt = Lifetime(p.lifetime_median_us, p.lifetime_sigma, 0.05)
    md = min(max(p.metadata, 0.0), 1.0)
    common = dict(lifetime=lt, batched=p.batched, free_same_cpu=p.free_same_cpu, prelive_frees=p.prelive_frees)
    streams = (
        Stream("readahead", weight=(1.0 - md) / max(1.0, p.window), orders=dict(p.orders), migratetype=1, gfp=_GFP_RA,
               comm="cat", pid_base=5000, tasks=p.readers, burst=p.window, gap_us=p.gap_us, free_together=True, **common),
        Stream("xarray", weight=md / 2.0, orders={0: 1.0}, migratetype=2, gfp=_GFP_SLAB_RECL, comm="cat",
               pid_base=5000, tasks=p.readers, burst=2.0, gap_us=p.gap_us, **common),
    )  # fmt: skip
    return Workload("page-cache", (Phase("readahead", streams, p.rate_per_cpu),), page_cache.__doc__ or "")


page_cache.__doc__ = PageCacheParams.__doc__


@dataclass(frozen=True)
class FaultInParams:
    """``fault-in``: one process touching ``gib`` GiB of anonymous memory.

    gib: memory touched (the allocations add up to exactly this).  thp: share of it faulted as
    THP order-9 blocks (``GFP_TRANSHUGE``), the rest as order-0 movable pages.  threads: faulting
    threads (one per CPU by default).  rate_per_cpu: page faults per second per CPU.
    burst: faults per episode (a run of touches); gap_us: time between them.
    exit: the process exits at the end (every page freed together, through batched frees).
    """

    gib: float = 1.0
    thp: float = 0.103
    threads: int = 0
    rate_per_cpu: float = 3320.0
    burst: float = 8.52
    gap_us: float = 17.2
    exit: bool = False


def fault_in(p: FaultInParams, m: Machine) -> Workload:
    total_pages = int(round(p.gib * (1 << 30))) // PAGE_SIZE
    if total_pages <= 0:
        raise ValueError("fault-in: gib must be > 0")
    # order probability per request such that a share `thp` of the pages comes in order-9 blocks
    thp = min(max(p.thp, 0.0), 1.0)
    p9 = (thp / 512) / (thp / 512 + (1 - thp)) if thp < 1 else 1.0
    orders = {0: 1.0 - p9, 9: p9} if 0 < thp < 1 else ({9: 1.0} if thp >= 1 else {0: 1.0})
    lt = Lifetime(median_us=1e12, sigma=0.0, forever=0.0 if p.exit else 1.0, max_s=1e7 if p.exit else math.inf)
    threads = p.threads or m.cpus
    s = Stream("touch", orders=orders, migratetype=1, gfp=_GFP_ANON, comm="memtouch", pid_base=7000, tasks=threads,
               pinned=1.0, burst=p.burst, gap_us=p.gap_us, lifetime=lt, free_together=True,
               batched=1.0 if p.exit else 0.0)  # fmt: skip
    ph = Phase("touch", (s,), p.rate_per_cpu, pages=total_pages, exit_at_end=p.exit)
    return Workload("fault-in", (ph,), fault_in.__doc__ or "")


fault_in.__doc__ = FaultInParams.__doc__


@dataclass(frozen=True)
class ForkStormParams:
    """``fork-storm``: many short-lived processes (fork, exec, exit).

    forks: processes started.  pages_per_fork: mean allocations per process (page tables,
    stacks, anonymous memory, kernel stacks of order 2).  lifetime_ms: mean process lifetime.
    rate_per_cpu: allocation requests per second per CPU.
    """

    forks: int = 2000
    pages_per_fork: float = 60.0
    lifetime_ms: float = 5.0
    rate_per_cpu: float = 30000.0


def fork_storm(p: ForkStormParams, m: Machine) -> Workload:
    lt = Lifetime(median_us=p.lifetime_ms * 1000, sigma=0.6, forever=0.0, max_s=10.0)
    per = max(1.0, p.pages_per_fork)
    streams = (
        Stream("task", weight=0.7, orders={0: 0.55, 1: 0.3, 2: 0.15}, migratetype=0, gfp=_GFP_PGTABLE, comm="sh",
               pid_base=10000, tasks=max(1, p.forks), pinned=0.5, burst=per * 0.4, gap_us=1.5, lifetime=lt,
               free_together=True, batched=0.5),
        Stream("anon", weight=0.3, orders={0: 1.0}, migratetype=1, gfp=_GFP_ANON, comm="sh", pid_base=10000,
               tasks=max(1, p.forks), pinned=0.5, burst=per * 0.6, gap_us=1.5, lifetime=lt, free_together=True,
               batched=0.9),
    )  # fmt: skip
    count = int(p.forks * per)
    ph = Phase("storm", streams, p.rate_per_cpu, count=count, exit_at_end=True)  # every process exits
    return Workload("fork-storm", (ph,), fork_storm.__doc__ or "")


fork_storm.__doc__ = ForkStormParams.__doc__


@dataclass(frozen=True)
class BootParams:
    """``boot``: from an empty guest to running services.

    memblock: emit the memblock release (``memblock_free_all()``: frees of MAX_ORDER blocks
    covering the guest by ``swapper/0``; real traces enabled from the command line start after
    it, so off by default).  early: allocations by ``swapper/0`` on CPU 0 while the watermarks
    are still zero and the per-CPU lists use the boot pageset (batch 1).  deferred: share of
    memory released later by ``pgdatinit0`` (deferred struct-page init, order-9 frees).
    init: allocations of init and kernel threads bringing the system up.  services: requests
    of services starting (a churn mix).  rate_per_cpu: allocation requests per second per CPU.
    """

    memblock: bool = False
    early: int = 3000
    deferred: float = 0.25
    init: int = 20000
    services: float = 1.0
    rate_per_cpu: float = 8000.0


def boot(p: BootParams, m: Machine) -> Workload:
    never = Lifetime(forever=1.0, max_s=math.inf)
    short = Lifetime(median_us=3000.0, sigma=2.0, forever=0.3)
    phases = []
    blocks = m.memory // (PAGE_SIZE << MAX_ORDER)
    if p.memblock:
        phases.append(Phase("memblock", (Stream("memblock_free_all", kind="free", orders={MAX_ORDER: 1.0}, migratetype=1,
                                                 comm="swapper/0", pid_base=0, cpus=(0,), burst=64.0, gap_us=1.0),),
                            rate_per_cpu=200000.0, count=int(blocks * (1 - p.deferred)), watermarks_zero=True, pcp_batch=1))  # fmt: skip
    phases.append(Phase("early", (
        Stream("early", orders={0: 0.8, 1: 0.1, 2: 0.05, 3: 0.05}, migratetype=0, gfp="GFP_KERNEL|__GFP_RETRY_MAYFAIL",
               comm="swapper/0", pid_base=0, cpus=(0,), burst=8.0, lifetime=never),), rate_per_cpu=20000.0,
        count=p.early, watermarks_zero=True, pcp_batch=1))  # fmt: skip
    if p.deferred > 0:
        phases.append(Phase("deferred", (Stream("deferred_init", kind="free", orders={9: 1.0}, migratetype=1,
                                                 comm="pgdatinit0", pid_base=34, cpus=(0,), burst=32.0, gap_us=2.0),),
                            rate_per_cpu=50000.0, count=int(blocks * 2 * p.deferred)))  # fmt: skip
    phases.append(Phase("init", (
        Stream("kthreads", weight=0.5, orders={0: 0.85, 1: 0.1, 2: 0.05}, migratetype=0,
               gfp="GFP_KERNEL|__GFP_RETRY_MAYFAIL", comm="kworker/u8:2", pid_base=36, pinned=0.0, burst=16.0,
               lifetime=short, prelive_frees=0.0),
        Stream("init", weight=0.5, orders={0: 1.0}, migratetype=1, gfp=_GFP_CACHE, comm="init", pid_base=1, burst=16.0,
               lifetime=short, batched=0.3),), rate_per_cpu=p.rate_per_cpu, count=p.init))  # fmt: skip
    if p.services > 0:
        svc = churn(ChurnParams(rate_per_cpu=p.rate_per_cpu, prelive_frees=0.0), m).phases[0]
        phases.append(replace(svc, name="services", share=p.services))
    return Workload("boot", tuple(phases), boot.__doc__ or "")


boot.__doc__ = BootParams.__doc__

#: name -> (parameter dataclass, builder)
WORKLOADS: dict[str, tuple[type, Any]] = {
    "boot": (BootParams, boot),
    "churn": (ChurnParams, churn),
    "fault-in": (FaultInParams, fault_in),
    "fork-storm": (ForkStormParams, fork_storm),
    "page-cache": (PageCacheParams, page_cache),
}


def mix(components: list[tuple[str, float, Any]], m: Machine) -> Workload:
    """Weighted mix of steady workloads: one phase holding every component's streams.

    ``components`` are ``(workload name, weight, params)``; the rate is the weighted rate of the
    components; budgets of their own (fault-in's ``gib``...) are dropped: ``events`` rules.
    """
    streams: list[Stream] = []
    rate = 0.0
    total = sum(w for _, w, _ in components)
    if not components or total <= 0:
        raise ValueError("mix: give at least one component with a positive weight")
    for name, w, params in components:
        if name not in WORKLOADS or name == "boot":
            raise ValueError(f"mix: unknown or non-steady workload {name!r} (use: {', '.join(k for k in WORKLOADS if k != 'boot')})")
        wl = WORKLOADS[name][1](params if params is not None else WORKLOADS[name][0](), m)
        ph = wl.phases[-1]
        sw = sum(s.weight for s in ph.streams)
        for s in ph.streams:
            streams.append(replace(s, weight=w / total * s.weight / sw, name=f"{name}:{s.name}"))
        rate += w / total * ph.rate_per_cpu
    return Workload("mix", (Phase("mix", tuple(streams), rate),), "weighted mix: " + ", ".join(f"{n}={w}" for n, w, _ in components))


def build(name: str, params: Any | None, m: Machine) -> Workload:
    """The named workload with its parameters (defaults when ``params`` is None)."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)}, mix, custom)")
    cls, fn = WORKLOADS[name]
    return fn(params if params is not None else cls(), m)


# ----------------------------------------------------------------------------- generator
class _Tables:
    """Per-stream lookup arrays of one phase (vectorised sampling)."""

    def __init__(self, ph: Phase, m: Machine, comm_ids: dict[str, int], gfp_ids: dict[str, int]) -> None:
        S = ph.streams
        w = np.array([max(s.weight, 0.0) for s in S], float)
        if w.sum() <= 0:
            raise ValueError(f"phase {ph.name!r}: stream weights sum to 0")
        self.w = w / w.sum()
        self.burst = np.array([max(1.0, s.burst) for s in S])
        self.gap = np.array([max(0.0, s.gap_us) * 1000 for s in S])
        cdf = np.zeros((len(S), MAX_ORDER + 1))
        for i, s in enumerate(S):
            for o, pr in s.orders.items():
                if not 0 <= int(o) <= MAX_ORDER:
                    raise ValueError(f"stream {s.name!r}: order {o} outside 0..{MAX_ORDER}")
                cdf[i, int(o)] += pr
            if cdf[i].sum() <= 0:
                raise ValueError(f"stream {s.name!r}: order probabilities sum to 0")
            cdf[i] = np.cumsum(cdf[i] / cdf[i].sum())
        cdf[:, -1] = 1.0
        self.cdf = cdf
        self.mt = np.array([s.migratetype for s in S], np.int8)
        self.gfp = np.array([gfp_ids[s.gfp] if s.kind == "alloc" else -1 for s in S], np.int32)
        self.comm = np.array([comm_ids[s.comm] for s in S], np.int32)
        self.pid_base = np.array([s.pid_base for s in S], np.int64)
        self.tasks = np.array([max(1, s.tasks) for s in S], np.int64)
        self.pinned = np.array([s.pinned for s in S])
        self.is_free = np.array([s.kind == "free" for s in S])
        self.med = np.array([s.lifetime.median_us * 1000 for s in S])
        self.sigma = np.array([s.lifetime.sigma for s in S])
        self.forever = np.array([s.lifetime.forever for s in S])
        self.max_life = np.array([s.lifetime.max_s * 1e9 for s in S])
        self.together = np.array([s.free_together for s in S])
        self.batched = np.array([s.batched for s in S])
        self.same_cpu = np.array([s.free_same_cpu for s in S])
        self.prelive = np.array([min(1.0, s.prelive_frees) for s in S])
        self.cpus = [np.array([c for c in s.cpus if c < m.cpus] or range(m.cpus), np.int64) for s in S]
        self.mean_burst = float((self.w * self.burst).sum())


def _cols(n: int) -> dict[str, np.ndarray]:
    return {k: np.empty(n, t) for k, t in _DTYPES.items()}


_DTYPES = {
    "ts_ns": np.int64, "cpu": np.int32, "pid": np.int32, "comm": np.int32, "kind": np.int8, "order": np.int8,
    "migratetype": np.int8, "gfp_flags": np.int32, "lifetime_ns": np.int64, "req_id": np.int64, "phase": np.int8,
    "tie": np.int64,
}  # fmt: skip


def _cat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if len(p["ts_ns"])]
    if not parts:
        return _cols(0)
    return {k: np.concatenate([p[k] for p in parts]) for k in _DTYPES}


def _take(d: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in d.items()}


class RequestGenerator:
    """Streams the requests of a workload as Arrow record batches (:data:`REQUEST_SCHEMA`).

    >>> gen = RequestGenerator(build("churn", None, Machine(events=1000)), Machine(events=1000))
    >>> sum(b.num_rows for b in gen) > 1000
    True
    """

    def __init__(self, workload: Workload, machine: Machine) -> None:
        self.wl = workload
        self.m = machine
        comms: list[str] = []
        gfps: list[str] = []
        for ph in workload.phases:
            for s in ph.streams:
                if s.comm not in comms:
                    comms.append(s.comm)
                if s.kind == "alloc" and s.gfp not in gfps:
                    gfps.append(s.gfp)
                if s.kind not in ("alloc", "free"):
                    raise ValueError(f"stream {s.name!r}: kind must be 'alloc' or 'free', not {s.kind!r}")
        self.comms, self.gfps = comms, gfps
        self._comm_dict = pa.array(comms, pa.string())
        self._gfp_dict = pa.array(gfps, pa.string())
        self.budgets = self._budgets()
        self.stats = {"alloc": 0, "free": 0, "primary": 0, "pages_allocated": 0}

    def _budgets(self) -> list[tuple[str, int]]:
        """(unit, amount) per phase: unit ``count`` (primary requests) or ``pages``."""
        m = self.m
        free_share = [ph.share for ph in self.wl.phases if ph.count is None and ph.pages is None]
        total_share = sum(free_share) or 1.0
        out = []
        for ph in self.wl.phases:
            if ph.pages is not None:
                out.append(("pages", int(ph.pages)))
            elif ph.count is not None:
                out.append(("count", int(ph.count)))
            else:
                ev = m.events if m.events is not None else 1 << 62
                out.append(("count", int(round(ev * ph.share / total_share))))
        return out

    def phase_info(self) -> list[dict[str, Any]]:
        return [
            {"index": i, "name": ph.name, "watermarks_zero": ph.watermarks_zero, "pcp_batch": ph.pcp_batch, "budget": b}
            for i, (ph, b) in enumerate(zip(self.wl.phases, self.budgets, strict=True))
        ]

    # -------------------------------------------------------------- one step of episodes
    def _episodes(self, rng: np.random.Generator, tb: _Tables, pi: int, t0: float, n_req: int, unit: str,
                  remaining: int, tie0: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:  # fmt: skip
        m = self.m
        ph = self.wl.phases[pi]
        n_ep = max(1, int(math.ceil(n_req / tb.mean_burst)))
        s = rng.choice(len(tb.w), n_ep, p=tb.w)
        k = rng.geometric(1.0 / tb.burst[s]).astype(np.int64)
        ep_rate = ph.rate_per_cpu * m.cpus / tb.mean_burst  # episodes per second
        starts = t0 + np.cumsum(rng.exponential(1e9 / ep_rate, n_ep))
        pid = tb.pid_base[s] + rng.integers(0, tb.tasks[s])
        cpu = np.empty(n_ep, np.int64)
        roam = rng.random(n_ep) >= tb.pinned[s]
        pick = rng.random(n_ep)
        for i, allowed in enumerate(tb.cpus):
            sel = s == i
            if not sel.any():
                continue
            home = allowed[pid[sel] % len(allowed)]
            other = allowed[(pick[sel] * len(allowed)).astype(np.int64)]
            cpu[sel] = np.where(roam[sel], other, home)
        ep_life = np.minimum(tb.med[s] * np.exp(tb.sigma[s] * rng.standard_normal(n_ep)), tb.max_life[s])
        ep_forever = rng.random(n_ep) < tb.forever[s]
        ep_u = rng.random(n_ep)
        # expand episodes into requests
        n = int(k.sum())
        rep = np.repeat(np.arange(n_ep), k)
        idx = np.arange(n) - np.repeat(np.cumsum(k) - k, k)
        sr = s[rep]
        u = rng.random(n)
        order = np.empty(n, np.int64)
        for i in range(len(tb.w)):  # inverse CDF per stream (no n x orders temporary)
            sel = sr == i
            order[sel] = np.searchsorted(tb.cdf[i], u[sel], side="left")
        order = np.minimum(order, MAX_ORDER)
        ts = starts[rep] + idx * tb.gap[sr]
        # budget: cut where the phase's remaining count/pages is reached
        if unit == "count":
            if n > remaining:
                n = remaining
        else:
            cum = np.cumsum(1 << order)
            cut = int(np.searchsorted(cum, remaining, side="right"))
            if cut < len(order) and cum[-1] > remaining:
                before = int(cum[cut - 1]) if cut > 0 else 0
                extra = remaining - before  # fill the gap with order-0 pages of the same episode
                n = cut + extra
                if extra:
                    tail = np.full(extra, rep[cut] if cut < len(rep) else rep[-1])
                    rep = np.concatenate([rep[:cut], tail])
                    idx = np.concatenate([idx[:cut], idx[cut] + np.arange(extra) if cut < len(idx) else np.arange(extra)])
                    sr = s[rep]
                    order = np.concatenate([order[:cut], np.zeros(extra, np.int64)])
                    ts = starts[rep] + idx * tb.gap[sr]
                    u = np.concatenate([u[:cut], rng.random(extra)])
        rep, idx, sr, order, ts, u = rep[:n], idx[:n], sr[:n], order[:n], ts[:n], u[:n]
        ts = (ts // 1000).astype(np.int64) * 1000
        prim = _cols(n)
        is_free = tb.is_free[sr]
        prim["ts_ns"][:] = ts
        prim["cpu"][:] = cpu[rep]
        prim["pid"][:] = pid[rep]
        prim["comm"][:] = tb.comm[sr]
        prim["order"][:] = order
        prim["migratetype"][:] = tb.mt[sr]
        prim["gfp_flags"][:] = tb.gfp[sr]
        prim["phase"][:] = pi
        prim["tie"][:] = tie0 + np.arange(n)
        u2 = rng.random((5, n))
        batched = (order == 0) & (u2[0] < tb.batched[sr])
        prim["kind"][:] = np.where(is_free, KIND_FREE_CORE, KIND_ALLOC)
        # lifetimes
        life = np.minimum(tb.med[sr] * np.exp(tb.sigma[sr] * rng.standard_normal(n)), tb.max_life[sr])
        tog = tb.together[sr]
        ep_end = starts[rep] + (k[rep] - 1) * tb.gap[sr]
        free_ts = np.where(tog, ep_end + ep_life[rep] + idx * tb.gap[sr], ts + life)
        # long-lived: freed max_s..2*max_s later (after a typical trace, but a long run stays bounded)
        forever = np.where(tog, ep_forever[rep], u2[1] < tb.forever[sr])
        finite = np.isfinite(tb.max_life[sr])
        long_ts = np.where(tog, ep_end + tb.max_life[sr] * (1.0 + ep_u[rep]) + idx * tb.gap[sr],
                           ts + tb.max_life[sr] * (1.0 + u2[4]))  # fmt: skip
        never = is_free | (forever & ~finite)
        free_ts = np.where(forever & finite, long_ts, free_ts)
        free_ts = np.where(never, ts + 1000, free_ts)
        free_ts = np.maximum((free_ts // 1000).astype(np.int64) * 1000, ts + 1000)
        prim["lifetime_ns"][:] = np.where(never, -1, free_ts - ts)
        ids = self._next_id + np.arange(n, dtype=np.int64)
        prim["req_id"][:] = np.where(is_free, -1, ids)
        self._next_id += n
        alloc_stats = ~is_free
        self.stats["pages_allocated"] += int((1 << order[alloc_stats]).sum())
        # frees of these allocations
        fsel = ~never
        fr = _take(prim, fsel)
        nf = len(fr["ts_ns"])
        fr["ts_ns"] = free_ts[fsel]
        fr["kind"] = np.where(batched[fsel], KIND_FREE_BATCHED, KIND_FREE).astype(np.int8)
        same = u2[2][fsel] < tb.same_cpu[sr[fsel]]
        u_cpu = rng.random(nf)
        other_cpu = np.empty(nf, np.int64)
        fsr = sr[fsel]
        for i, allowed in enumerate(tb.cpus):  # a free elsewhere stays on the stream's CPUs
            sel = fsr == i
            other_cpu[sel] = allowed[(u_cpu[sel] * len(allowed)).astype(np.int64)]
        fr["cpu"] = np.where(same, fr["cpu"], other_cpu).astype(np.int32)
        fr["gfp_flags"] = np.full(nf, -1, np.int32)
        fr["lifetime_ns"] = np.full(nf, -1, np.int64)
        # frees of pages allocated before the trace (perf kmem's "free-only")
        pre = (u2[3] < tb.prelive[sr]) & ~is_free
        pf = _take(prim, pre)
        npf = len(pf["ts_ns"])
        pf["ts_ns"] = pf["ts_ns"] + 1000
        pf["kind"] = np.where(pf["order"] == 0, KIND_FREE_BATCHED, KIND_FREE).astype(np.int8)
        pf["gfp_flags"] = np.full(npf, -1, np.int32)
        pf["lifetime_ns"] = np.full(npf, -1, np.int64)
        pf["req_id"] = np.full(npf, -1, np.int64)
        later = _cat([fr, pf])
        later["tie"] = tie0 + n + np.arange(len(later["ts_ns"]))
        # the newest episode actually kept (a budget cut drops the tail): the release cut
        return prim, later, float(starts[rep[-1]]) if n else float(t0)

    # -------------------------------------------------------------- the stream
    def __iter__(self) -> Iterator[pa.RecordBatch]:
        m = self.m
        rng = np.random.default_rng(m.seed)
        self._next_id = 0
        t = m.start_s * 1e9
        t_stop = (m.start_s + m.duration_s) * 1e9 if m.duration_s is not None else math.inf
        pending = _cols(0)
        tie = 0
        last_prim = 0
        step = max(1024, m.chunk)
        for pi, ph in enumerate(self.wl.phases):
            unit, remaining = self.budgets[pi]
            tb = _Tables(ph, m, {c: i for i, c in enumerate(self.comms)}, {g: i for i, g in enumerate(self.gfps)})
            while remaining > 0 and t < t_stop:
                want = min(step, remaining)
                prim, later, t_last = self._episodes(rng, tb, pi, t, want, unit, remaining, tie)
                tie += len(prim["ts_ns"]) + len(later["ts_ns"])
                if unit == "count":
                    remaining -= len(prim["ts_ns"])
                else:
                    remaining -= int((1 << prim["order"].astype(np.int64)).sum())
                self.stats["primary"] += len(prim["ts_ns"])
                if len(prim["ts_ns"]):
                    last_prim = max(last_prim, int(prim["ts_ns"].max()))
                t = max(t_last, float(prim["ts_ns"][-1]) if len(prim["ts_ns"]) else t_last)
                pending = _cat([pending, prim, later])
                cut = min(t, t_stop)
                ready = pending["ts_ns"] < cut
                yield from self._release(_take(pending, ready))
                pending = _take(pending, ~ready)
            if ph.exit_at_end:
                sel = np.flatnonzero((pending["phase"] == pi) & (pending["kind"] != KIND_ALLOC))
                if len(sel):
                    order = sel[np.lexsort((pending["tie"][sel], pending["cpu"][sel]))]
                    cpu = pending["cpu"][order].astype(np.int64)
                    rank = np.arange(len(order)) - np.searchsorted(cpu, cpu, side="left")
                    pending["ts_ns"][order] = last_prim + 1000 * (1 + rank)
                    last_prim = int(pending["ts_ns"][order].max())
                    t = max(t, float(last_prim))
        # the trace ends with the last primary request: later frees never happen in it
        end = min(last_prim, t_stop)
        yield from self._release(_take(pending, pending["ts_ns"] <= end))

    def _release(self, d: dict[str, np.ndarray]) -> Iterator[pa.RecordBatch]:
        n = len(d["ts_ns"])
        if n == 0:
            return
        order = np.lexsort((d["tie"], d["ts_ns"]))
        d = _take(d, order)
        kinds = d["kind"]
        self.stats["alloc"] += int((kinds == KIND_ALLOC).sum())
        self.stats["free"] += int((kinds != KIND_ALLOC).sum())
        for s in range(0, n, self.m.chunk):
            e = min(n, s + self.m.chunk)
            g = d["gfp_flags"][s:e]
            arrays = [
                pa.array(d["ts_ns"][s:e]),
                pa.array(d["cpu"][s:e]),
                pa.array(d["pid"][s:e]),
                pa.DictionaryArray.from_arrays(pa.array(d["comm"][s:e]), self._comm_dict),
                pa.array(d["kind"][s:e]),
                pa.array(d["order"][s:e]),
                pa.array(d["migratetype"][s:e]),
                pa.DictionaryArray.from_arrays(pa.array(g, mask=g < 0), self._gfp_dict),
                pa.array(d["lifetime_ns"][s:e]),
                pa.array(d["req_id"][s:e]),
                pa.array(d["phase"][s:e]),
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=REQUEST_SCHEMA)


def generate(name: str, params: Any | None = None, machine: Machine | None = None) -> RequestGenerator:
    """The request stream of a named workload (iterate it for record batches)."""
    m = machine or Machine()
    return RequestGenerator(build(name, params, m), m)


def param_fields(cls: type) -> dict[str, Any]:
    """Field name -> default of a parameter dataclass (for the CLI and TOML checks)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


__all__ = [
    "KIND_ALLOC", "KIND_FREE", "KIND_FREE_BATCHED", "KIND_FREE_CORE", "REQUEST_SCHEMA", "WORKLOADS", "BootParams", "ChurnParams",
    "FaultInParams", "ForkStormParams", "Lifetime", "Machine", "PageCacheParams", "Phase", "RequestGenerator", "Stream",
    "Workload", "build", "generate", "mix",
]  # fmt: skip
