"""Dense per-event views of a ``PolicyRun``, for small test traces.

A run keeps its per-event charges sparse (the event log, the handled events); these rebuild
n-long arrays from them, and read them at given events by plain NumPy, as the reference the
results tables' compiled merge (``results.tables.event_rows``) is checked against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.policy.timeline import EL_ADDED, EL_HOLD, EL_K, EL_LAT, EL_WAIT


def charges_at(run: Any, col: int, idx: np.ndarray) -> np.ndarray:
    """Column ``col`` (``EL_ADDED``, ``EL_WAIT``, ``EL_HOLD``, ``EL_LAT``) of the event log at events
    ``idx`` (0 where not logged)."""
    idx = np.asarray(idx, np.int64)
    ks = run.elog[:, EL_K]
    pos = np.searchsorted(ks, idx)
    hit = pos < len(ks)
    hit[hit] = ks[pos[hit]] == idx[hit]
    out = np.zeros(len(idx), np.int64)
    out[hit] = run.elog[pos[hit], col]
    return out


def handled_values(run: Any, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """One of the ``handled_*`` arrays at events ``idx`` (0 where the driver did not handle the event)."""
    idx = np.asarray(idx, np.int64)
    out = np.zeros(len(idx), values.dtype)
    h = run.handled
    if len(h) and len(idx):
        pos = np.minimum(np.searchsorted(h, idx), len(h) - 1)
        hit = h[pos] == idx
        out[hit] = values[pos[hit]]
    return out


def conserved_pages(run: Any) -> int:
    """free + pcp + allocated + unaccepted (listed) pages: constant through a replay."""
    st, acc = run.st, run.acc
    return int(st.z_nr_free.sum() + st.z_nr_pcp.sum() + st.z_nr_alloc.sum()) + int(acc.z_nr_unaccepted.sum())


class DenseRun:
    """A ``PolicyRun`` with n-long per-event arrays: ``added``, ``wait``, ``hold``, ``alloc_lat``
    (event log columns), ``firmware``, ``accepted``, ``forced`` (handled events) and ``vts``."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def _dense(self, col: int) -> np.ndarray:
        out = np.zeros(len(self.run.ts), np.int64)
        out[self.run.elog[:, EL_K]] = self.run.elog[:, col]
        return out

    def _per_event(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.run.ts), values.dtype)
        out[self.run.handled] = values
        return out

    @property
    def added(self) -> np.ndarray:
        return self._dense(EL_ADDED)

    @property
    def wait(self) -> np.ndarray:
        return self._dense(EL_WAIT)

    @property
    def hold(self) -> np.ndarray:
        return self._dense(EL_HOLD)

    @property
    def alloc_lat(self) -> np.ndarray:
        return self._dense(EL_LAT)

    @property
    def firmware(self) -> np.ndarray:
        return self._per_event(self.run.handled_firmware)

    @property
    def accepted(self) -> np.ndarray:
        return self._per_event(self.run.handled_accepted)

    @property
    def forced(self) -> np.ndarray:
        return self._per_event(self.run.handled_forced)

    @property
    def vts(self) -> np.ndarray:
        return self.run.vts_at(np.arange(len(self.run.ts), dtype=np.int64))
