"""The named bundles the compiled walks and the events-table merge take: their fields are the
columns they say, in the columns' order, and they carry the arrays themselves (no copies)."""

from __future__ import annotations

import dataclasses

import numpy as np

from replay.events.arrays import EventArrays
from replay.policy.bundles import Trace, new_series, trace_of
from replay.policy.delta import AG_SID, new_walk
from replay.policy.loop import INT64_MAX
from replay.policy.prepare import prepare
from replay.results.tables import _EVENT_ROW_COLUMNS, EventRows
from tests.helpers.events import make_events
from tests.helpers.replay import tiny_layout
from tests.model.test_properties import _gen_trace


def test_trace_fields_are_the_event_columns_in_their_order() -> None:
    columns = [f.name for f in dataclasses.fields(EventArrays)]
    assert set(Trace._fields) <= set(columns)
    assert list(Trace._fields) == [c for c in columns if c in Trace._fields]


def test_trace_of_holds_the_event_arrays_themselves() -> None:
    rows, _, _ = _gen_trace([(0, 3, 1, 0), (1, 1, 2, 1), (2, 0, 0, 1), (4, 2, 2, 0)] * 5)
    prep = prepare(make_events(rows), tiny_layout(1 << 21), mode="exact", boot=True)
    tr = trace_of(prep.events)
    for name in Trace._fields:
        assert getattr(tr, name) is getattr(prep.events, name), name


def test_event_rows_bundle_is_the_column_list() -> None:
    assert EventRows._fields == tuple(name for name, _ in _EVENT_ROW_COLUMNS)


def test_new_walk_and_series_start_empty() -> None:
    w = new_walk(3, 4)
    assert w.next_bg.tolist() == [INT64_MAX] and w.inreq.tolist() == [0, 0, 0, 0]
    assert (w.agg[:, AG_SID] == -1).all() and w.drop.shape == (3,) and not w.sp.any()
    s = new_series(np.array([0, 10, 20], np.int64), 11)
    assert s.pos.tolist() == [0] and s.free.shape == (3,) and s.order.shape == (3, 11)
