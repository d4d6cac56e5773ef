"""The calibration search (``parsers.synthetic.fit``, ``replay.synth.fit``): either emitter, deterministic.

The fit with the engine emitter evaluates exactly what ``pagereplay synth`` writes with it; the
search never returns worse than where it starts; parsers/ still never imports replay/.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq

from parsers.synthetic import fit as F
from parsers.synthetic.compare import trace_stats
from parsers.synthetic.config import load_config
from parsers.synthetic.pipeline import write_parquet
from parsers.synthetic.workloads import ChurnParams, Machine
from replay.synth import fit as synth_fit


def test_fit_module_does_not_import_replay() -> None:
    code = ("import sys, parsers.synthetic.fit; "
            "bad = [m for m in sys.modules if m == 'replay' or m.startswith('replay.')]; "
            "assert not bad, bad")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_fit_evaluates_what_synth_writes(tmp_path: Path) -> None:
    """The table a fit run scores is the one ``pagereplay synth`` writes (engine emitter, same machine)."""
    m = Machine(cpus=2, memory=256 << 20, seed=5, events=None, duration_s=0.3)
    table = F.synthesize_table("page-cache", F.WORKLOADS["page-cache"][0](), m, synth_fit.engine_emitter)
    out = tmp_path / "p.parquet"
    machine = {"cpus": 2, "memory": 256 << 20, "seed": 5, "events": None, "duration_s": 0.3}
    cfg = load_config(None, workload="page-cache", machine=machine)
    write_parquet(cfg, out, emitter=synth_fit.engine_emitter)
    written = pq.read_table(out)
    assert table.num_rows == written.num_rows > 1000
    cols = ["ts_ns", "cpu", "event", "pfn", "order", "migratetype", "percpu_refill"]
    assert table.select(cols).to_pylist() == written.select(cols).to_pylist()
    standin = F.synthesize_table("page-cache", F.WORKLOADS["page-cache"][0](), m)
    assert standin.select(cols).to_pylist() != table.select(cols).to_pylist()  # the emitter is really switched


def test_fit_deterministic_and_never_worse() -> None:
    # "real" trace: a churn run with other parameters; the search starts from the defaults
    m = Machine(cpus=2, memory=256 << 20, seed=1, events=None, duration_s=0.4)
    target = replace(ChurnParams(), rate_per_cpu=6000.0, unmovable=0.2, lifetime_median_us=50_000.0)
    real = trace_stats(F.synthesize_table("churn", target, m, synth_fit.engine_emitter))
    start_d, _ = synth_fit.evaluate("churn", ChurnParams(), real, replace(m, seed=0))
    runs = [synth_fit.fit("churn", real, span_s=0.4, samples=3, rounds=1, cpus=2, memory=256 << 20, log=lambda s: None)
            for _ in range(2)]  # fmt: skip
    (p1, d1, c1), (p2, d2, c2) = runs
    assert p1 == p2 and d1 == d2 and c1.equals(c2)
    assert d1 <= start_d
    assert d1 == F.distance(c1, F.TARGETS["churn"])
