"""zone->lock sections: kinds, the bookkeeping the replay loops find them with, the calibration
of their cost, and modelled hold times.

Every operation that takes ``zone->lock`` in 6.1 becomes a section (the engine
finds them while replaying, see ``replay.model.engine``):

=========  =========================================================  ===================
kind       kernel path                                                 events inside
=========  =========================================================  ===================
refill     ``rmqueue_bulk()`` from ``__rmqueue_pcplist()``             zone_locked (refill=1)
drain      ``free_pcppages_bulk()`` (local or remote, ``drain_*``)     mm_page_pcpu_drain
alloc      ``rmqueue_buddy()`` (order > 3 and not THP, or no pcp)      one zone_locked
free       ``free_one_page()`` from ``__free_pages_ok``/no pcp        none (an mm_page_free)
fallback   any of the above holding a ``__rmqueue_fallback`` steal    + mm_page_alloc_extfrag
=========  =========================================================  ===================

Hold time model: ``hold = base + per_block * blocks``.  Calibration (``calibrate``)
measures, in the real trace, bursts of consecutive ``mm_page_alloc_zone_locked``
(``percpu_refill=1``) or ``mm_page_pcpu_drain`` events on one CPU (kernel-notes
4.3: the events of one section are emitted back to back with IRQs off and
zone->lock held, so nothing else can interleave on that CPU).  Over bursts of at
least two events, the least-squares fit of ``span = a + b * (events - 1)`` gives
``per_block = b`` (the cost of one ``__rmqueue`` + list add, or one
``__free_one_page`` + list del).  The time from taking the lock to the first
event and from the last event to the unlock is not visible in the trace; it is
taken as one more block's worth (``base = max(a, 0) + b``).  Fewer than
three bursts, bursts all of one length (no slope to fit) or a slope <= 0 use
``DEFAULT_CALIBRATION``'s figure for that kind, and ``Calibration.source`` names
each such fallback and its reason (the replay summary prints it).  Single-block
sections (alloc/free) use the refill (alloc) or drain (free) figures; a steal
adds the mean gap between an ``mm_page_alloc_extfrag`` and the next event of its
section.  Timestamps are µs-resolution (``trace_clock=global`` text) and the
traces ran under TCG emulation, so the absolute figures are those of an emulated
guest: they are parameters, to be overridden for a real machine.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from parsers.schema import Event
from replay.jit import kernel, kernel_entry

SEC_REFILL = 1
SEC_DRAIN = 2
SEC_ALLOC = 3
SEC_FREE = 4
SEC_FALLBACK = 5
SECTION_KIND_NAMES = {SEC_REFILL: "refill", SEC_DRAIN: "drain", SEC_ALLOC: "alloc", SEC_FREE: "free",
                      SEC_FALLBACK: "fallback"}

CUR_NONE = 0
CUR_REFILL = 1
CUR_DRAIN = 2
CUR_PENDING_FB = 6

Sections = namedtuple(
    "Sections",
    ["kind", "cpu", "zone", "start", "end", "pages", "nev", "first", "fallbacks", "owner", "n",
     "cur", "cur_kind", "cur_order", "cur_mt", "cur_zl"],
)


def new_sections(cap: int, n_cpus: int) -> Sections:
    cap = max(cap, 1)
    return Sections(
        kind=np.zeros(cap, np.int8), cpu=np.zeros(cap, np.int32), zone=np.zeros(cap, np.int8),
        start=np.zeros(cap, np.int64), end=np.zeros(cap, np.int64), pages=np.zeros(cap, np.int64),
        nev=np.zeros(cap, np.int32), first=np.zeros(cap, np.int64), fallbacks=np.zeros(cap, np.int32),
        owner=np.zeros(cap, np.int32), n=np.zeros(1, np.int64),
        cur=np.full(n_cpus, -1, np.int64), cur_kind=np.zeros(n_cpus, np.int64),
        cur_order=np.zeros(n_cpus, np.int64), cur_mt=np.zeros(n_cpus, np.int64), cur_zl=np.zeros(n_cpus, np.int64),
    )





@dataclass(frozen=True)
class Calibration:
    """Section cost parameters (ns)."""

    refill_base_ns: float
    refill_per_block_ns: float
    drain_base_ns: float
    drain_per_block_ns: float
    steal_ns: float
    refill_bursts: int = 0
    drain_bursts: int = 0
    steal_samples: int = 0
    source: str = "default"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"zone->lock cost calibration ({self.source}): "
                f"refill {self.refill_base_ns:.0f} ns + {self.refill_per_block_ns:.0f} ns/block "
                f"({self.refill_bursts} bursts); drain {self.drain_base_ns:.0f} ns + "
                f"{self.drain_per_block_ns:.0f} ns/block ({self.drain_bursts} bursts); "
                f"steal +{self.steal_ns:.0f} ns ({self.steal_samples} samples)")


#: Measured on debian12-6.1-medium (TCG guest) with ``calibrate``; used when a trace has too few bursts.
DEFAULT_CALIBRATION = Calibration(
    refill_base_ns=2000.0, refill_per_block_ns=1000.0, drain_base_ns=2000.0, drain_per_block_ns=1000.0,
    steal_ns=2000.0, source="default",
)


@kernel(nrt=True)
def _close_run(runs: np.ndarray, nr: int, j: int, c: int, open_k: np.ndarray, open_n: np.ndarray,
               first_t: np.ndarray, last_t: np.ndarray) -> int:
    """Write CPU ``c``'s open run of kind ``j`` as row ``nr`` of ``runs`` and close it."""
    runs[nr, 0] = j
    runs[nr, 1] = c
    runs[nr, 2] = open_k[j, c]
    runs[nr, 3] = open_n[j, c]
    runs[nr, 4] = last_t[c] - first_t[j, c]
    open_k[j, c] = -1
    return nr + 1


@kernel_entry(nrt=True)
def scan_bursts(ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, refill: np.ndarray, ev_zl: int, ev_drain: int,
                ev_extfrag: int, max_gap_ns: int, ncpu: int, runs: np.ndarray, gaps: np.ndarray) -> tuple[int, int]:
    """Maximal runs of refill (``mm_page_alloc_zone_locked`` with ``percpu_refill``) and of drain
    events consecutive on their CPU, plus the extfrag gaps, in one pass in trace order.

    Per CPU it keeps the open run of each kind and a pending extfrag; a run ends at the first
    event of its CPU that does not continue it.  ``runs`` rows: (kind 0 refill / 1 drain, cpu,
    first event, events, span ns); ``gaps`` rows: (cpu, extfrag event, gap ns).  Returns the
    row counts (the caller puts them in per-CPU order).
    """
    open_k = np.full((2, ncpu), -1, np.int64)  # first event of the open run
    open_n = np.zeros((2, ncpu), np.int64)
    first_t = np.zeros((2, ncpu), np.int64)
    last_t = np.zeros(ncpu, np.int64)  # time of the CPU's previous event
    pend_x = np.full(ncpu, -1, np.int64)  # an extfrag waiting for the next event of its CPU
    nr = 0
    ng = 0
    for k in range(ev.shape[0]):
        c = cpu[k]
        t = ts[k]
        e = ev[k]
        if pend_x[c] >= 0:
            g = t - ts[pend_x[c]]
            if g <= max_gap_ns:
                gaps[ng, 0] = c
                gaps[ng, 1] = pend_x[c]
                gaps[ng, 2] = g
                ng += 1
            pend_x[c] = -1
        kind = -1
        if e == ev_zl and refill[k] == 1:
            kind = 0
        elif e == ev_drain:
            kind = 1
        for j in range(2):
            if open_k[j, c] < 0:
                continue
            if j == kind and t - last_t[c] <= max_gap_ns:
                continue
            nr = _close_run(runs, nr, j, c, open_k, open_n, first_t, last_t)
        if kind >= 0:
            if open_k[kind, c] < 0:
                open_k[kind, c] = k
                open_n[kind, c] = 0
                first_t[kind, c] = t
            open_n[kind, c] += 1
        if e == ev_extfrag:
            pend_x[c] = k
        last_t[c] = t
    for c in range(ncpu):
        for j in range(2):
            if open_k[j, c] >= 0:
                nr = _close_run(runs, nr, j, c, open_k, open_n, first_t, last_t)
    return nr, ng


#: bursts of two or more events a fit needs (fewer: the default figures)
MIN_FIT_BURSTS = 3


def _fit(n: np.ndarray, span: np.ndarray) -> tuple[float, float, int, str]:
    """``(a, b, bursts, why_not)`` of ``span = a + b * (events - 1)``; ``why_not`` is empty when
    the fit is usable, else why the default figures are used instead (``b`` is then -1)."""
    m = n >= 2
    k = int(m.sum())
    if k < MIN_FIT_BURSTS:
        return -1.0, -1.0, k, f"{k} bursts of 2+ events, {MIN_FIT_BURSTS} needed"
    x = (n[m] - 1).astype(np.float64)
    y = span[m].astype(np.float64)
    if np.unique(x).size < 2:  # every burst the same length: no slope (np.polyfit's RankWarning)
        return -1.0, -1.0, k, f"all {k} bursts have {int(x[0]) + 1} events: no slope"
    b, a = np.polyfit(x, y, 1)
    if b <= 0:
        return -1.0, -1.0, k, f"fitted slope {b:.0f} ns/block <= 0"
    return float(a), float(b), k, ""


def _scan_runs(ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, refill: np.ndarray, max_gap_ns: int,
               ncpu: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], np.ndarray]:
    """(events, span) of the refill and of the drain bursts, and the extfrag gaps, each in per-CPU
    order (CPU, then time: ``tests/test_sections_scan.py`` checks them against a NumPy reference),
    from ``scan_bursts``: one pass, no n-long temporaries (its row buffers are touched only as far as
    used)."""
    zl, dr, xf = int(Event.MM_PAGE_ALLOC_ZONE_LOCKED), int(Event.MM_PAGE_PCPU_DRAIN), int(Event.MM_PAGE_ALLOC_EXTFRAG)
    # at most one run or gap per event: room for that many rows costs address space only (the
    # pages of the rows never written are never touched)
    runs = np.empty((len(ev) + 1, 5), np.int64)
    gaps = np.empty((len(ev) + 1, 3), np.int64)
    nr, ng = scan_bursts(ev, ts, cpu, refill, zl, dr, xf, int(max_gap_ns), int(ncpu), runs, gaps)
    runs, gaps = runs[:nr], gaps[:ng]
    out = []
    for kind in (0, 1):
        r = runs[runs[:, 0] == kind]
        r = r[np.lexsort((r[:, 2], r[:, 1]))]
        out.append((r[:, 3].copy(), r[:, 4].copy()))
    g = gaps[np.lexsort((gaps[:, 1], gaps[:, 0])), 2].copy()
    return out[0], out[1], g


def calibrate(table: pa.Table, *, max_gap_ns: int = 100_000, verbose: bool = False) -> Calibration:
    """Calibrate section costs from the bursts of a real trace (see the module docstring)."""
    from replay.events.columns import column_values
    from replay.events.arrays import event_codes

    return calibrate_events(event_codes(table), column_values(table, "ts_ns", np.int64, 0, writable=False),
                            column_values(table, "cpu", np.int32, 0, writable=False),
                            column_values(table, "percpu_refill", np.int8, -1, writable=False),
                            max_gap_ns=max_gap_ns, verbose=verbose)


def calibrate_events(ev: np.ndarray, ts: np.ndarray, cpu: np.ndarray, refill: np.ndarray, *,
                     max_gap_ns: int = 100_000, verbose: bool = False) -> Calibration:
    """``calibrate`` on the event columns (``replay.model.engine.EventArrays``: ev, ts, cpu, refill)."""
    ncpu = int(cpu.max()) + 1 if len(cpu) else 1
    if len(cpu) and int(cpu.min()) < 0:
        raise ValueError("negative cpu numbers in the event table")
    (n_r, s_r), (n_d, s_d), gaps = _scan_runs(ev, ts, cpu, refill, max_gap_ns, ncpu)
    a_r, b_r, k_r, why_r = _fit(n_r, s_r)
    a_d, b_d, k_d, why_d = _fit(n_d, s_d)
    d = DEFAULT_CALIBRATION
    if why_r:
        a_r, b_r = d.refill_base_ns - d.refill_per_block_ns, d.refill_per_block_ns
    if why_d:
        a_d, b_d = d.drain_base_ns - d.drain_per_block_ns, d.drain_per_block_ns
    # a degenerate fit falls back to DEFAULT_CALIBRATION's figure and the source says which and why
    notes = [f"default {what} ({why})" for what, why in (("refill", why_r), ("drain", why_d)) if why]
    # steal: gap between an extfrag and the next event on its CPU
    steal = float(gaps.mean()) if len(gaps) else d.steal_ns
    cal = Calibration(
        refill_base_ns=max(a_r, 0.0) + b_r, refill_per_block_ns=b_r,
        drain_base_ns=max(a_d, 0.0) + b_d, drain_per_block_ns=b_d,
        steal_ns=steal, refill_bursts=k_r, drain_bursts=k_d, steal_samples=int(len(gaps)),
        source="; ".join(["trace", *notes]),
    )
    if verbose:
        print(cal.describe())
    return cal


def hold_times(kind: np.ndarray, nev: np.ndarray, fallbacks: np.ndarray, cal: Calibration) -> np.ndarray:
    """Modelled zone->lock hold time (ns) per section."""
    kind = np.asarray(kind)
    blocks = np.maximum(np.asarray(nev, np.float64) - np.asarray(fallbacks, np.float64), 1.0)
    hold = np.zeros(len(kind), np.float64)
    r = (kind == SEC_REFILL) | (kind == SEC_ALLOC) | (kind == SEC_FALLBACK)
    hold[r] = cal.refill_base_ns + cal.refill_per_block_ns * blocks[r]
    d = (kind == SEC_DRAIN) | (kind == SEC_FREE)
    hold[d] = cal.drain_base_ns + cal.drain_per_block_ns * blocks[d]
    hold += cal.steal_ns * np.asarray(fallbacks, np.float64)
    return np.rint(hold).astype(np.int64)


# ------------------------------------------------------------------ sections as the replay finds them
@kernel(nrt=False)
def sec_close(S: Sections, c: int) -> None:
    S.cur[c] = -1
    S.cur_kind[c] = CUR_NONE


@kernel(nrt=False)
def sec_new(S: Sections, kind: int, c: int, z: int, t: int, k: int, owner: int, pages: int, nev: int) -> int:
    """A new zone->lock section of CPU ``c`` in zone ``z`` from event ``k`` at time ``t``."""
    sid = S.n[0]
    S.n[0] += 1
    S.kind[sid] = kind
    S.cpu[sid] = c
    S.zone[sid] = z
    S.start[sid] = t
    S.end[sid] = t
    S.pages[sid] = pages
    S.nev[sid] = nev
    S.first[sid] = k
    S.fallbacks[sid] = 0
    S.owner[sid] = owner
    return sid


@kernel(nrt=False)
def sec_open(S: Sections, c: int, kind: int, z: int, t: int, k: int, owner: int, cur_kind: int) -> int:
    """A new section that stays open on CPU ``c`` while the trace's events add to it."""
    sid = sec_new(S, kind, c, z, t, k, owner, 0, 0)
    S.cur[c] = sid
    S.cur_kind[c] = cur_kind
    return sid


@kernel(nrt=False)
def sec_add(S: Sections, sid: int, t: int, pages: int) -> None:
    S.end[sid] = t
    S.pages[sid] += pages
    S.nev[sid] += 1


