"""Exact replay of synthetic traces through the buddy model finds no anomaly (issue 5)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from parsers.synthetic.emit import emit
from parsers.synthetic.workloads import WORKLOADS, BootParams, Machine, generate

engine = pytest.importorskip("replay.model.engine")
layout = pytest.importorskip("replay.model.layout_x86")
anomalies = pytest.importorskip("replay.model.anomalies")


@pytest.mark.parametrize("name", list(WORKLOADS))
@pytest.mark.parametrize("seed", [1, 2])
def test_exact_replay_has_no_anomalies(name: str, seed: int) -> None:
    m = Machine(events=15_000, seed=seed, cpus=3 if seed == 2 else 4)
    params = BootParams(early=1000, init=3000) if name == "boot" else None
    table = pa.Table.from_batches(list(emit(generate(name, params, m), m)))
    out = engine.replay(table, layout.layout_for_guest(m.memory, m.cpus), mode="exact", boot=name == "boot")
    found = {anomalies.KIND_BY_CODE[i].name: int(c) for i, c in enumerate(out.acount) if c and i in anomalies.KIND_BY_CODE}
    assert found == {}
