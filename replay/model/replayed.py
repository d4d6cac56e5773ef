"""What the replay loops write per event (``Replayed``), one argument of the compiled loops.

A namedtuple of arrays, like ``ModelState``: compiled without NRT its arrays cost nothing more
than positional ones.  ``engine.exact_chunk`` and ``simulate.simulate_chunk`` fill it for
``replay.model.engine.run_loop`` and for the policy walks (``replay.policy.loop``).

=======  =====  ===========================================================================
field    dtype  per event ``k`` (``acount``: per anomaly kind)
=======  =====  ===========================================================================
anom     int8   the anomaly the event raised (``replay.model.anomalies``; 0: none)
sec      int32  the zone->lock section it belongs to (``replay.model.sections``; -1: none)
zone     int8   the model zone it touched (-1: none, outside the model)
pfn      int64  the pfn the model placed it at (simulate mode; exact mode: the trace's)
acount   int64  events raising each anomaly kind
dfree    int32  exact mode, when not empty: the change of its zone's ``NR_FREE_PAGES``
               (what ``replay.policy.delta`` replays policies on)
=======  =====  ===========================================================================
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

Replayed = namedtuple("Replayed", ["anom", "sec", "zone", "pfn", "acount", "dfree"])


def new_replayed(n: int, pfn: np.ndarray, n_kinds: int, *, dfree: bool = False) -> Replayed:
    """Fresh outputs for ``n`` events: nothing raised, no section, no zone; ``pfn`` as given (the
    trace's, written in place by simulate mode: pass a copy); ``dfree``: record free-page changes."""
    return Replayed(np.zeros(n, np.int8), np.full(n, -1, np.int32), np.full(n, -1, np.int8), pfn,
                    np.zeros(n_kinds, np.int64), np.zeros(n if dfree else 0, np.int32))
