"""Page-allocator *requests*: their format and the generator that streams a workload's.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .emitted import KIND_ALLOC, KIND_FREE, KIND_FREE_BATCHED, KIND_FREE_CORE

if TYPE_CHECKING:
    from .workloads import Machine, Phase, Workload

MAX_ORDER = 10  # MAX_PAGE_ORDER on x86-64: orders 0..10
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


@dataclass
class _Episodes:
    """A block of episodes (a task issuing a burst of requests back to back on one CPU) on a
    Poisson timeline: stream ``s``, requests ``k``, start time, pid, CPU, and the lifetime draws
    an episode's requests share when its stream frees them together."""

    s: np.ndarray
    k: np.ndarray
    starts: np.ndarray
    pid: np.ndarray
    cpu: np.ndarray
    life: np.ndarray
    forever: np.ndarray
    u: np.ndarray


def _draw_episodes(rng: np.random.Generator, tb: _Tables, rate: float, t0: float, n_req: int) -> _Episodes:
    """Episodes from ``t0`` on for about ``n_req`` requests at ``rate`` requests per second."""
    n_ep = max(1, int(math.ceil(n_req / tb.mean_burst)))
    s = rng.choice(len(tb.w), n_ep, p=tb.w)
    k = rng.geometric(1.0 / tb.burst[s]).astype(np.int64)
    ep_rate = rate / tb.mean_burst  # episodes per second
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
    life = np.minimum(tb.med[s] * np.exp(tb.sigma[s] * rng.standard_normal(n_ep)), tb.max_life[s])
    forever = rng.random(n_ep) < tb.forever[s]
    return _Episodes(s, k, starts, pid, cpu, life, forever, rng.random(n_ep))


@dataclass
class _Requests:
    """The requests of a block of episodes: episode ``rep``, index ``idx`` in it, stream ``sr``,
    order, time (microsecond-aligned) and the draw ``u`` their order came from."""

    rep: np.ndarray
    idx: np.ndarray
    sr: np.ndarray
    order: np.ndarray
    ts: np.ndarray
    u: np.ndarray


def _expand(rng: np.random.Generator, tb: _Tables, ep: _Episodes, unit: str, remaining: int) -> _Requests:
    """The episodes' requests, cut where the phase's ``remaining`` count (``unit`` ``count``) or
    pages (``pages``: the gap is filled with order-0 pages of the same episode) is reached."""
    k, s = ep.k, ep.s
    n = int(k.sum())
    rep = np.repeat(np.arange(len(k)), k)
    idx = np.arange(n) - np.repeat(np.cumsum(k) - k, k)
    sr = s[rep]
    u = rng.random(n)
    order = np.empty(n, np.int64)
    for i in range(len(tb.w)):  # inverse CDF per stream (no n x orders temporary)
        sel = sr == i
        order[sel] = np.searchsorted(tb.cdf[i], u[sel], side="left")
    order = np.minimum(order, MAX_ORDER)
    ts = ep.starts[rep] + idx * tb.gap[sr]
    if unit == "count":
        n = min(n, remaining)
    else:
        cum = np.cumsum(1 << order)
        cut = int(np.searchsorted(cum, remaining, side="right"))
        if cut < len(order) and cum[-1] > remaining:
            before = int(cum[cut - 1]) if cut > 0 else 0
            extra = remaining - before
            n = cut + extra
            if extra:
                tail = np.full(extra, rep[cut] if cut < len(rep) else rep[-1])
                rep = np.concatenate([rep[:cut], tail])
                idx = np.concatenate([idx[:cut], idx[cut] + np.arange(extra) if cut < len(idx) else np.arange(extra)])
                sr = s[rep]
                order = np.concatenate([order[:cut], np.zeros(extra, np.int64)])
                ts = ep.starts[rep] + idx * tb.gap[sr]
                u = np.concatenate([u[:cut], rng.random(extra)])
    ts = (ts[:n] // 1000).astype(np.int64) * 1000
    return _Requests(rep[:n], idx[:n], sr[:n], order[:n], ts, u[:n])


def _free_times(rng: np.random.Generator, tb: _Tables, ep: _Episodes, rq: _Requests, is_free: np.ndarray,
                u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(when each request's page is freed, whether it never is in the trace): log-normal
    lifetimes, per episode for streams that free together; long-lived pages max_s..2*max_s later
    (after a typical trace, but a long run stays bounded)."""
    sr, ts, rep, idx = rq.sr, rq.ts, rq.rep, rq.idx
    life = np.minimum(tb.med[sr] * np.exp(tb.sigma[sr] * rng.standard_normal(len(ts))), tb.max_life[sr])
    tog = tb.together[sr]
    ep_end = ep.starts[rep] + (ep.k[rep] - 1) * tb.gap[sr]
    free_ts = np.where(tog, ep_end + ep.life[rep] + idx * tb.gap[sr], ts + life)
    forever = np.where(tog, ep.forever[rep], u2[1] < tb.forever[sr])
    finite = np.isfinite(tb.max_life[sr])
    long_ts = np.where(tog, ep_end + tb.max_life[sr] * (1.0 + ep.u[rep]) + idx * tb.gap[sr],
                       ts + tb.max_life[sr] * (1.0 + u2[4]))  # fmt: skip
    never = is_free | (forever & ~finite)
    free_ts = np.where(forever & finite, long_ts, free_ts)
    free_ts = np.where(never, ts + 1000, free_ts)
    return np.maximum((free_ts // 1000).astype(np.int64) * 1000, ts + 1000), never


def _frees(rng: np.random.Generator, tb: _Tables, prim: dict[str, np.ndarray], sr: np.ndarray, fsel: np.ndarray,
           free_ts: np.ndarray, batched: np.ndarray, u2: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """The frees of the primary allocations ``fsel`` (batched ones through ``free_unref_page_list()``),
    on the allocating CPU or, elsewhere, on one of the stream's CPUs."""
    fr = _take(prim, fsel)
    nf = len(fr["ts_ns"])
    fr["ts_ns"] = free_ts[fsel]
    fr["kind"] = np.where(batched[fsel], KIND_FREE_BATCHED, KIND_FREE).astype(np.int8)
    same = u2[2][fsel] < tb.same_cpu[sr[fsel]]
    u_cpu = rng.random(nf)
    other_cpu = np.empty(nf, np.int64)
    fsr = sr[fsel]
    for i, allowed in enumerate(tb.cpus):
        sel = fsr == i
        other_cpu[sel] = allowed[(u_cpu[sel] * len(allowed)).astype(np.int64)]
    fr["cpu"] = np.where(same, fr["cpu"], other_cpu).astype(np.int32)
    fr["gfp_flags"] = np.full(nf, -1, np.int32)
    fr["lifetime_ns"] = np.full(nf, -1, np.int64)
    return fr


def _prelive_frees(tb: _Tables, prim: dict[str, np.ndarray], sr: np.ndarray, is_free: np.ndarray,
                   u2: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """Frees of pages allocated before the trace (perf kmem's "free-only"), right after primaries."""
    pf = _take(prim, (u2[3] < tb.prelive[sr]) & ~is_free)
    npf = len(pf["ts_ns"])
    pf["ts_ns"] = pf["ts_ns"] + 1000
    pf["kind"] = np.where(pf["order"] == 0, KIND_FREE_BATCHED, KIND_FREE).astype(np.int8)
    pf["gfp_flags"] = np.full(npf, -1, np.int32)
    pf["lifetime_ns"] = np.full(npf, -1, np.int64)
    pf["req_id"] = np.full(npf, -1, np.int64)
    return pf


class RequestGenerator:
    """Streams the requests of a workload as Arrow record batches (:data:`REQUEST_SCHEMA`).

    >>> from parsers.synthetic.workloads import Machine, build
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
        """(primary requests, the frees they cause, the release cut) of one step of phase ``pi``.

        Draws episodes from ``t0`` on, expands them into about ``n_req`` requests (cut where the
        phase's ``remaining`` count or pages is reached), and schedules their frees.  The random
        draws come in a fixed order: the same seed gives the same requests.
        """
        ep = _draw_episodes(rng, tb, self.wl.phases[pi].rate_per_cpu * self.m.cpus, t0, n_req)
        rq = _expand(rng, tb, ep, unit, remaining)
        n = len(rq.ts)
        prim = _cols(n)
        is_free = tb.is_free[rq.sr]
        prim["ts_ns"][:] = rq.ts
        prim["cpu"][:] = ep.cpu[rq.rep]
        prim["pid"][:] = ep.pid[rq.rep]
        prim["comm"][:] = tb.comm[rq.sr]
        prim["order"][:] = rq.order
        prim["migratetype"][:] = tb.mt[rq.sr]
        prim["gfp_flags"][:] = tb.gfp[rq.sr]
        prim["phase"][:] = pi
        prim["tie"][:] = tie0 + np.arange(n)
        u2 = rng.random((5, n))
        batched = (rq.order == 0) & (u2[0] < tb.batched[rq.sr])
        prim["kind"][:] = np.where(is_free, KIND_FREE_CORE, KIND_ALLOC)
        free_ts, never = _free_times(rng, tb, ep, rq, is_free, u2)
        prim["lifetime_ns"][:] = np.where(never, -1, free_ts - rq.ts)
        ids = self._next_id + np.arange(n, dtype=np.int64)
        prim["req_id"][:] = np.where(is_free, -1, ids)
        self._next_id += n
        self.stats["pages_allocated"] += int((1 << rq.order[~is_free]).sum())
        later = _cat([_frees(rng, tb, prim, rq.sr, ~never, free_ts, batched, u2), _prelive_frees(tb, prim, rq.sr, is_free, u2)])
        later["tie"] = tie0 + n + np.arange(len(later["ts_ns"]))
        # the newest episode actually kept (a budget cut drops the tail): the release cut
        return prim, later, float(ep.starts[rq.rep[-1]]) if n else float(t0)

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


__all__ = ["KIND_ALLOC", "KIND_FREE", "KIND_FREE_BATCHED", "KIND_FREE_CORE", "KIND_NAMES", "MAX_ORDER", "REQUEST_SCHEMA",
           "RequestGenerator"]  # fmt: skip
