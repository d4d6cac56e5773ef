"""Workload models as data: what asks the page allocator for what, and when.

A workload is a sequence of :class:`Phase` s; a phase is a weighted set of :class:`Stream` s; a
stream is one kind of activity (anonymous faults of a process, slab refills of a kernel thread,
readahead folios of a reader...) described entirely by numbers: order mix, migratetype, gfp text,
task names, burstiness, lifetime distribution, how its pages come back.  The named workloads
(``boot``, ``churn``, ``fault-in``, ``fork-storm``, ``page-cache``) are functions from their
parameter dataclass to phases; ``mix`` merges the streams of several; ``custom`` takes streams
straight from TOML (see :mod:`parsers.synthetic.config`).

They generate *requests* (:mod:`parsers.synthetic.requests`): :func:`generate` streams those of
a named workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .requests import MAX_ORDER, RequestGenerator

PAGE_SIZE = 4096


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
        if self.events is not None and self.events < 1:
            raise ValueError(f"events must be >= 1, got {self.events}")
        for k in ("duration_s", "start_s"):
            v = getattr(self, k)
            if v is not None and not (math.isfinite(v) and v >= (0 if k == "start_s" else 1e-9)):
                raise ValueError(f"{k} must be a finite number {'>= 0' if k == 'start_s' else '> 0'}, got {v}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


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


def generate(name: str, params: Any | None = None, machine: Machine | None = None) -> RequestGenerator:
    """The request stream of a named workload (iterate it for record batches)."""
    m = machine or Machine()
    return RequestGenerator(build(name, params, m), m)


__all__ = [
    "MAX_ORDER", "PAGE_SIZE", "WORKLOADS", "BootParams", "ChurnParams", "FaultInParams", "ForkStormParams", "Lifetime",
    "Machine", "PageCacheParams", "Phase", "Stream", "Workload", "build", "generate", "mix",
]  # fmt: skip
