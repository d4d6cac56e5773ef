"""zone->lock sections: kinds, calibration of their cost, and modelled hold times.

Every operation that takes ``zone->lock`` in 6.1 becomes a section (the engine
finds them while replaying, see ``replay.engine``):

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
taken as one more block's worth (``base = max(a, 0) + b``).  Single-block
sections (alloc/free) use the refill (alloc) or drain (free) figures; a steal
adds the mean gap between an ``mm_page_alloc_extfrag`` and the next event of its
section.  Timestamps are µs-resolution (``trace_clock=global`` text) and the
traces ran under TCG emulation, so the absolute figures are those of an emulated
guest: they are parameters, to be overridden for a real machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from parsers.schema import Event

SEC_REFILL, SEC_DRAIN, SEC_ALLOC, SEC_FREE, SEC_FALLBACK = 1, 2, 3, 4, 5


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


def _bursts(t: np.ndarray, c: np.ndarray, s: np.ndarray, e: np.ndarray, max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(events, span_ns) of maximal runs of selected events, consecutive on their CPU.

    The arrays are already in per-CPU order (``_per_cpu_order``): a run is a stretch of
    consecutive positions.
    """
    # a run continues while the next event on the same CPU is selected, of the same type, and close in time
    cont = (c[1:] == c[:-1]) & s[1:] & s[:-1] & (e[1:] == e[:-1]) & ((t[1:] - t[:-1]) <= max_gap_ns)
    starts = np.nonzero(s & np.r_[True, ~cont])[0]
    if len(starts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ends = np.nonzero(s & np.r_[~cont, True])[0]
    # the canonical table is sorted by time, and the per-CPU order keeps it: first and last event
    # of a run are its earliest and latest
    return (ends - starts + 1).astype(np.int64), (t[ends] - t[starts]).astype(np.int64)


def _per_cpu_order(cpu: np.ndarray) -> np.ndarray:
    """Event indices grouped by CPU, trace order kept within a CPU (a stable radix sort)."""
    key = cpu.astype(np.int16) if len(cpu) and int(cpu.max()) < (1 << 15) and int(cpu.min()) >= 0 else cpu
    return np.argsort(key, kind="stable")


def _fit(n: np.ndarray, span: np.ndarray) -> tuple[float, float, int]:
    m = n >= 2
    if m.sum() < 3:
        return -1.0, -1.0, int(m.sum())
    x = (n[m] - 1).astype(np.float64)
    y = span[m].astype(np.float64)
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b), int(m.sum())


def calibrate(table: pa.Table, *, max_gap_ns: int = 100_000, verbose: bool = False) -> Calibration:
    """Calibrate section costs from the bursts of a real trace (see the module docstring)."""
    from replay.engine import event_codes

    ev = event_codes(table)
    ts = np.asarray(table.column("ts_ns").to_numpy(), np.int64)
    cpu = np.asarray(table.column("cpu").to_numpy(), np.int64)
    refill_col = table.column("percpu_refill").combine_chunks().cast(pa.int8()).fill_null(-1).to_numpy(zero_copy_only=False)
    is_refill = (ev == int(Event.MM_PAGE_ALLOC_ZONE_LOCKED)) & (np.asarray(refill_col) == 1)
    is_drain = ev == int(Event.MM_PAGE_PCPU_DRAIN)
    order = _per_cpu_order(cpu)
    e_o, t_o, c_o = ev[order], ts[order], cpu[order]
    n_r, s_r = _bursts(t_o, c_o, is_refill[order], e_o, max_gap_ns)
    n_d, s_d = _bursts(t_o, c_o, is_drain[order], e_o, max_gap_ns)
    a_r, b_r, k_r = _fit(n_r, s_r)
    a_d, b_d, k_d = _fit(n_d, s_d)
    d = DEFAULT_CALIBRATION
    if b_r <= 0:
        a_r, b_r = d.refill_base_ns - d.refill_per_block_ns, d.refill_per_block_ns
    if b_d <= 0:
        a_d, b_d = d.drain_base_ns - d.drain_per_block_ns, d.drain_per_block_ns
    # steal: gap between an extfrag and the next event on its CPU
    ex = np.nonzero((e_o[:-1] == int(Event.MM_PAGE_ALLOC_EXTFRAG)) & (c_o[1:] == c_o[:-1]))[0]
    gaps = (t_o[ex + 1] - t_o[ex]) if len(ex) else np.zeros(0, np.int64)
    gaps = gaps[gaps <= max_gap_ns]
    steal = float(gaps.mean()) if len(gaps) else d.steal_ns
    cal = Calibration(
        refill_base_ns=max(a_r, 0.0) + b_r, refill_per_block_ns=b_r,
        drain_base_ns=max(a_d, 0.0) + b_d, drain_per_block_ns=b_d,
        steal_ns=steal, refill_bursts=k_r, drain_bursts=k_d, steal_samples=int(len(gaps)), source="trace",
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
