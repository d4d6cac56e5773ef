"""The policy-independent inputs of a multi-policy replay, made once (``prepare``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from replay.events.arrays import EventArrays
from replay.model.engine import InitialModel, prepare_events
from replay.model.sections import Calibration, calibrate_events
from replay.model.simulate import Zonelist, zonelist_of
from replay.model.state import ModelState

#: time-series buckets at most (``Prepared.edges``)
MAX_BUCKETS = 2000


@dataclass
class Prepared:
    """Event columns, initial buddy state, zone->lock calibration and time buckets of one trace:
    what every policy's replay starts from (each replays on its own copy of ``state``)."""

    mode: str
    layout: Any
    events: EventArrays
    state: ModelState  # the initial state (never written: runs copy it or share it read-only)
    initial: dict[str, Any]  # the initial-state report
    n_anomaly_kinds: int
    zone_names: list[str]
    zone_nodes: list[int]
    zmap: np.ndarray  # model zone -> index in layout.zones (acceptance zone)
    zonelist: Zonelist  # what get_page_from_freelist() walks: zone kinds, low watermarks
    cal: Calibration
    edges: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)
    _free_pages: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def initial_free_pages(self) -> np.ndarray:
        """1 for every page inside a free buddy block of the initial state (computed once, shared
        by the delta replays, which share that state)."""
        from replay.policy.loop import mark_free_pages

        with self._lock:
            if self._free_pages is None:
                ok = np.zeros(len(self.state.pg_state), np.uint8)
                mark_free_pages(self.state, ok)
                self._free_pages = ok
            return self._free_pages


def bucket_edges(ts: np.ndarray) -> np.ndarray:
    """Start times of the time-series buckets: at most ``MAX_BUCKETS`` equal spans of the trace."""
    if not len(ts):
        return np.zeros(1, np.int64)
    t0, t1 = int(ts.min()), int(ts.max()) + 1
    nb = int(min(MAX_BUCKETS, max(1, len(ts))))
    return np.unique(t0 + (np.arange(nb, dtype=np.int64) * (t1 - t0)) // nb)


def prepare(table: pa.Table, layout: Any, *, mode: str = "exact", snapshot: Any = None, boot: bool | None = None,
            metadata: dict[str, str] | None = None, cal: Calibration | None = None,
            events: EventArrays | None = None, initial: InitialModel | None = None) -> Prepared:
    """The policy-independent inputs: event columns and initial state (``initial``, or
    ``engine.prepare_events`` of the other arguments), the calibration (on those columns unless
    given), the time series' bucket edges."""
    from replay.model.anomalies import N_KINDS
    from replay.model.initial_state import model_zones

    init = initial or prepare_events(table, layout, mode=mode, snapshot=snapshot, boot=boot, events=events)
    ea = init.events
    if cal is None:  # on the columns just built (one compiled pass)
        cal = calibrate_events(ea.ev, ea.ts, ea.cpu, ea.refill)
    zones = model_zones(layout)
    zmap = np.array([next(i for i, lz in enumerate(layout.zones) if lz is z) for z in zones], np.int64)
    return Prepared(mode=mode, layout=layout, events=ea, state=init.state, initial=init.initial,
                    n_anomaly_kinds=N_KINDS, zone_names=[z.name for z in zones],
                    zone_nodes=[int(getattr(z, "node", 0)) for z in zones], zmap=zmap,
                    zonelist=zonelist_of(zones), cal=cal,
                    edges=bucket_edges(ea.ts), metadata=dict(metadata or {}))


def copy_state(st: ModelState) -> ModelState:
    """A private copy of a model state."""
    return ModelState._make(a.copy() for a in st)
