"""The named bundles of arrays the policy walks' compiled loops take (``policy.loop.policy_chunk``,
``policy.delta.delta_chunk``), like ``ModelState`` / ``AcceptState``: a namedtuple of arrays is
one argument to numba, and compiled without NRT its arrays cost nothing more than positional
ones.  ``Trace`` and ``Replayed`` are the model's own (``replay.events.arrays``,
``replay.model.replayed``: the engine's loops take them too), named here with the rest.

=========  ==================================================================================
bundle     what it holds
=========  ==================================================================================
Trace      the trace's event columns (``events.arrays.EventArrays`` without ``fb_mt`` and ``seq``)
Policy     one policy's parameters (``loop.PP_*``) and values (``acceptance.policies.PV_*``)
Zones      the guest's zones as the call sites see them: acceptance zone per model zone, and
           what ``get_page_from_freelist()`` walks (``model.simulate.Zonelist``: zone kinds in
           zonelist order, low watermarks)
Replayed   what the model writes per event: anomaly, zone->lock section, zone, pfn placed
           (simulate mode), anomaly counts, change of the zone's free pages (``dfree``)
Series     the time series: bucket edges, the next bucket to sample, free pages in total
           and per order at each bucket
Baseline   a recording baseline's results as a delta walk reads them: section, zone and change
           of free pages per event, its time series (free pages in total and per order)
Index      what a delta walk may skip to (``delta.DeltaIndex``): per section its last event so
           far, its sums of free-page changes and of their absolute values, the flag of a
           section in two zones; the always-visited events, the event of each bucket; and the
           policy's first touches of blocks and of bitmap units (``delta.Touches``)
Walk       a walk's own state across the driver's round trips: the background acceptor's next
           tick, the request in progress per CPU, quiet-run scratch, simulate mode's page map,
           and the delta walk's open summed sections and index positions
=========  ==================================================================================

Each bundle's fields are in the order of the columns they hold (``Trace``: ``EventArrays``'
fields; tests/policy/test_bundles.py checks it).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from replay.events.arrays import Trace, trace_of
from replay.model.replayed import Replayed

__all__ = ["Baseline", "Index", "Policy", "Replayed", "Series", "Trace", "Walk", "Zones", "new_series", "trace_of",
           "zones_of"]

Policy = namedtuple("Policy", ["pp", "pv"])
Zones = namedtuple("Zones", ["zmap", "zonelist"])
Series = namedtuple("Series", ["edges", "pos", "free", "order"])
Baseline = namedtuple("Baseline", ["sec", "zone", "dfree", "free", "order"])
Index = namedtuple("Index", ["sec_last", "sec_df", "sec_abs", "sec_flag", "vis", "bucket_ev", "blk_ev", "unit_ev"])
Walk = namedtuple("Walk", ["next_bg", "inreq", "drop", "simmap", "agg", "sp"])


def zones_of(prep: Any) -> Zones:
    """The ``Zones`` of a prepared trace (``policy.prepare.Prepared``)."""
    return Zones(prep.zmap, prep.zonelist)


def new_series(edges: np.ndarray, n_orders: int) -> Series:
    """An empty time series over bucket ``edges`` (nothing sampled yet)."""
    nb = len(edges)
    return Series(edges, np.zeros(1, np.int64), np.zeros(nb, np.int64), np.zeros((nb, n_orders), np.int64))
