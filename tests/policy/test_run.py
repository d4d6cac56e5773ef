"""replay/policy/run.py: what the walks keep of their own (write-only) event log does not matter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from replay.acceptance.costs import COST_PRESETS
from replay.acceptance.policies import PRESETS
from replay.policy import run as R
from replay.policy.loop import EL_LEN
from replay.policy.prepare import prepare
from replay.results.tables import policy_tables, result_context
from tests.helpers.events import make_events
from tests.helpers.replay import tiny_layout
from tests.model.test_properties import _gen_trace


class _TinyLog(R._Walk):
    """A delta walk's log with room for one event's rows: emptied (``grow_log``) at every other event."""

    grown = 0

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.elog = np.zeros((9, EL_LEN), np.int64)

    def grow_log(self) -> None:
        if self.elog_n[0] == 0:  # a full walk (it needs room for a quiet run): the usual log
            self.elog = np.zeros((2 * R.QUIET_MAX, EL_LEN), np.int64)
            return
        _TinyLog.grown += 1
        super().grow_log()


@pytest.mark.parametrize("name", ["v1-buddy-global-lock", "list-6.6", "post-alloc"])
def test_a_delta_walk_that_empties_its_log_gives_the_same_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's event log is the lock schedule's: a walk whose own log is emptied over and over
    gives the tables of one whose log never fills (and of the full replay)."""
    rows, _, _ = _gen_trace([(0, 3, 1, 0), (1, 1, 2, 1), (2, 0, 0, 1), (3, 0, 0, 0), (0, 4, 1, 1), (4, 2, 2, 0)] * 40)
    table = make_events(rows)
    prep = prepare(table, tiny_layout(1 << 21), mode="exact", boot=True)
    cost = COST_PRESETS["snp-2m"]
    ctx = result_context(table, ["none", name])
    base = R.run_full(prep, PRESETS["none"], cost, record=True)
    roomy = R.run_policy(prep, PRESETS[name], cost, baseline=base)
    full = R.run_full(prep, PRESETS[name], cost)
    monkeypatch.setattr(R, "_Walk", _TinyLog)
    _TinyLog.grown = 0
    tiny = R.run_policy(prep, PRESETS[name], cost, baseline=base)
    assert tiny.method == roomy.method == "delta" and _TinyLog.grown > 10
    for other in (roomy, full):
        ta, ra = policy_tables(prep, tiny, ctx, all_events=True)
        tb, rb = policy_tables(prep, other, ctx, all_events=True)
        assert ra == rb and set(ta) == set(tb) and all(ta[k].equals(tb[k]) for k in ta)
