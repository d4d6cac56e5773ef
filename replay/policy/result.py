"""What one policy's replay produced: ``PolicyRun``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replay.acceptance.unaccepted_memory import AcceptState
from replay.acceptance.policies import AcceptancePolicy
from replay.model.sections import Sections
from replay.model.state import ModelState
from replay.policy.timeline import EL_ADDED, EL_K


@dataclass
class PolicyRun:
    """What one policy's replay produced (arrays indexed by event / section / bucket)."""

    policy: AcceptancePolicy
    costs_name: str
    mode: str
    st: ModelState
    acc: AcceptState
    S: Sections
    out_anom: np.ndarray
    out_sec: np.ndarray
    out_zone: np.ndarray
    out_pfn: np.ndarray
    acount: np.ndarray
    #: one row per event the policy charged time to, in event order (``policy.timeline.EL_*`` columns)
    elog: np.ndarray
    ts: np.ndarray  # the events' trace times and CPUs (shared, read-only): virtual time of any event
    cpu: np.ndarray
    #: firmware ns, bytes accepted and forced placement (0/1) at each ``handled`` event (the
    #: only events they can be non-zero at)
    handled_firmware: np.ndarray
    handled_accepted: np.ndarray
    handled_forced: np.ndarray
    #: per zone->lock section (``policy.timeline``): its request in virtual time, its wait, the
    #: time it held the lock beyond its calibrated hold (work and waits inside it), its whole
    #: hold, and the CPU that held the lock when it had to wait (-1: none)
    sec_vstart: np.ndarray
    sec_wait: np.ndarray
    sec_ext: np.ndarray
    sec_hold: np.ndarray
    sec_blocker_cpu: np.ndarray
    #: per section: what its wait was spent behind (``policy.timeline.WB_*``)
    sec_behind: np.ndarray
    #: one row per event whose acceptance work held zone->lock (``policy.timeline.AZ_*`` columns)
    acc_zl: np.ndarray
    #: events the driver handled (sorted)
    handled: np.ndarray
    actions: list[dict[str, Any]]
    ts_free: np.ndarray
    ts_order: np.ndarray
    ts_unaccepted: np.ndarray
    totals: np.ndarray
    boot: dict[str, Any]
    present_bytes: int
    invariants_ok: bool
    invariant_report: dict[str, Any]
    accepted_ok: bool
    conservation_ok: bool
    seconds: float
    yields: int
    #: exact-mode baseline that recorded (``run_full(recorder=...)``): each event's change of its zone's free
    #: pages (``engine.exact_chunk``'s ``dfree``), what ``replay.policy.delta`` replays policies on
    dfree: np.ndarray | None = None
    #: the recording baseline's ``policy.delta.DeltaIndex`` (made once, shared by the delta replays)
    delta_index: Any = None
    #: events a delta replay ran its per-event body for (0: a full replay, which runs it for all)
    visited: int = 0
    #: how the run was made: "full" (the buddy model replayed) or "delta" (``replay.policy.delta``)
    method: str = "full"
    #: the periodic invariant reports of a full replay with ``check_every`` (``invariant_report``: the end's)
    invariant_checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.policy.name

    def vts_at(self, idx: np.ndarray) -> np.ndarray:
        """Virtual time of events ``idx``: trace time plus the delay added to the event's CPU by the
        events before it (a CPU's delay grows by exactly each event's ``added``)."""
        idx = np.asarray(idx, np.int64)
        ks = self.elog[:, EL_K]
        cpu_l = self.cpu[ks].astype(np.int64)
        added = self.elog[:, EL_ADDED]
        out = self.ts[idx].astype(np.int64)
        cpus = self.cpu[idx]
        for c in np.unique(cpus):
            sel = cpus == c
            mine = cpu_l == c
            cum = np.concatenate([[0], np.cumsum(added[mine])])
            before = np.searchsorted(ks[mine], idx[sel], side="left")  # logged events strictly before
            out[sel] += cum[before]
        return out
