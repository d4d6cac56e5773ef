"""Fit a workload's default parameters to a real trace (calibration; run by hand, see docs/synthetic.md).

A plain search, deterministic for a seed: random samples of the parameter box, then rounds of
coordinate steps (each parameter up and down: x0.6 / x1.6 on log-scaled parameters, -/+15 % of the
range on the others) accepted when :func:`compare.distance` drops; a round that finds nothing
halves the steps (down to a quarter), one more at that size ends the search.
Each evaluation generates a trace as long as the real one (``duration_s`` = the real span), runs
it through an emitter and compares :func:`compare.trace_stats`.  The emitter is a factory
(``pipeline.EmitterFactory``; default: the stand-in :class:`~.emit.Emitter`): parsers/ never imports
replay/, so the replay engine's emitter is passed in by ``replay.synth.fit``.

    python -m parsers.synthetic.fit churn /tmp/medium.parquet [SAMPLES [ROUNDS]]   # stand-in emitter
    python -m replay.synth.fit churn /tmp/medium.parquet [SAMPLES [ROUNDS]]        # engine emitter (the default one)
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from .compare import compare, distance, trace_stats
from .emit import EmitParams, Emitter
from .pipeline import EmitterFactory
from .workloads import WORKLOADS, Machine, generate

#: parameter -> (low, high, log scale)
SPACES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "churn": {
        "rate_per_cpu": (500, 20000, True),
        "unmovable": (0.05, 0.8, False),
        "cache": (0.05, 1.0, False),  # keep a page-cache stream
        "lifetime_median_us": (1e3, 1e7, True),
        "lifetime_sigma": (0.2, 3.0, False),
        "forever": (0.0, 0.6, False),
        "batched": (0.0, 1.0, False),
        "burst": (1.0, 300.0, True),
        "gap_us": (1.0, 100.0, True),
        "free_same_cpu": (0.0, 1.0, False),
        "prelive_frees": (0.0, 0.2, False),
    },
    "page-cache": {
        "rate_per_cpu": (200, 20000, True),
        "window": (2.0, 256.0, True),
        "gap_us": (1.0, 100.0, True),
        "lifetime_median_us": (1e3, 1e7, True),
        "lifetime_sigma": (0.2, 3.0, False),
        "batched": (0.0, 1.0, False),
        "metadata": (0.0, 0.35, False),  # keep the folios the bulk of it
        "free_same_cpu": (0.0, 1.0, False),
        "prelive_frees": (0.0, 0.2, False),
    },
    "fault-in": {
        "thp": (0.0, 1.0, False),
        "rate_per_cpu": (500, 100000, True),
        "burst": (1.0, 512.0, True),
        "gap_us": (1.0, 100.0, True),
    },
}
_COMMON = {
    ("events", "allocs per s per cpu"): 1.0,
    ("refill", "sections per 1000 allocs"): 1.0,
    ("interarrival", "us p50"): 1.0,
    ("interarrival", "us p90"): 0.5,
}
#: statistics each workload is fitted on (a page-cache or fault-in run cannot look like a whole
#: mixed trace in its order mix or lifetimes, so those are left out where they are by design)
_DRAIN_LIFETIME_FREE = {
    ("drain", "sections per 1000 allocs"): 1.0,
    ("drain", "events per section p50"): 0.5,
    ("lifetime", "ms p50"): 1.0,
    ("lifetime", "ms p90"): 0.5,
    ("lifetime", "allocs freed in trace"): 1.0,
    ("free", "free-only share"): 1.0,
    ("free", "batched share"): 1.0,
}
TARGETS: dict[str, dict[tuple[str, str], float]] = {
    "churn": {
        **_COMMON,
        ("order", "order 0"): 1.0,
        ("migratetype", "unmovable"): 1.0,
        ("migratetype", "movable"): 1.0,
        ("refill", "events per section p50"): 0.5,
        **_DRAIN_LIFETIME_FREE,
    },
    "page-cache": {**_COMMON, **_DRAIN_LIFETIME_FREE},
    "fault-in": {**_COMMON, ("order", "order 0"): 1.0, ("order", "pages per alloc"): 1.0},
}


def synthesize_table(name: str, params: Any, m: Machine, emitter: EmitterFactory | None = None) -> pa.Table:
    """The canonical event table of one run of workload ``name`` with ``params`` (default ``EmitParams``)."""
    gen = generate(name, params, m)
    em = (emitter or Emitter)(m, EmitParams(), phases=gen.phase_info(), source=f"<synthetic:{name}>")
    out: list[pa.RecordBatch] = []
    for b in gen:
        out.extend(em.feed(b))
    out.extend(em.finish())
    return pa.Table.from_batches(out)


def evaluate(name: str, params: Any, real: pl.DataFrame, m: Machine,
             emitter: EmitterFactory | None = None) -> tuple[float, pl.DataFrame]:  # fmt: skip
    """``(distance over TARGETS[name], comparison table)`` of one run against the real statistics."""
    cmp = compare(synthesize_table(name, params, m, emitter), real)
    return distance(cmp, TARGETS[name]), cmp


def _draw(rng: np.random.Generator, lo: float, hi: float, log: bool) -> float:
    if log:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(lo, hi))


def _round(v: float) -> float:
    return float(f"{v:.3g}")


def fit(name: str, real: pl.DataFrame, *, span_s: float, samples: int = 24, rounds: int = 8, seed: int = 0,
        cpus: int = 4, memory: int = 4 << 30, emitter: EmitterFactory | None = None, start: Any = None,
        log=print) -> tuple[Any, float, pl.DataFrame]:  # fmt: skip
    """Search ``SPACES[name]`` from ``start`` (default: the dataclass defaults) for the smallest distance.

    ``emitter``: the emitter factory every evaluation runs (default: the stand-in).  Deterministic:
    ``seed`` drives both the runs (``Machine.seed``) and the random samples.
    """
    cls = WORKLOADS[name][0]
    space = SPACES[name]
    m = Machine(cpus=cpus, memory=memory, seed=seed, events=None, duration_s=span_s)
    rng = np.random.default_rng(seed)
    ev = lambda p: evaluate(name, p, real, m, emitter)  # noqa: E731
    best = start if start is not None else cls()
    best_d, best_cmp = ev(best)
    log(f"{name}: defaults d={best_d:.3f}")
    for i in range(samples):
        cand = replace(best, **{k: _round(_draw(rng, *v)) for k, v in space.items()})
        d, cmp = ev(cand)
        if d < best_d:
            best, best_d, best_cmp = cand, d, cmp
            log(f"  sample {i}: d={d:.3f}")
    scale = 1.0  # step size: halved (down to 1/4) when a round of coordinate steps finds nothing
    for r in range(rounds):
        improved = False
        for k, (lo, hi, lg) in space.items():
            for f in ((0.6**scale, 1.6**scale) if lg else (-0.15 * scale, 0.15 * scale)):
                v = getattr(best, k)
                nv = v * f if lg else v + f * (hi - lo)
                nv = _round(min(max(nv, lo), hi))
                if nv == v:
                    continue
                cand = replace(best, **{k: nv})
                d, cmp = ev(cand)
                if d < best_d - 1e-4:
                    best, best_d, best_cmp, improved = cand, d, cmp, True
                    log(f"  round {r} (step x{scale:g}): {k}={nv} d={d:.3f}")
        if not improved:
            if scale <= 0.25:
                break
            scale /= 2
    return best, best_d, best_cmp


def real_span_s(real_path: str) -> float:
    """Span of a real canonical Parquet table in seconds (the length of every fit run)."""
    ts = pl.read_parquet(real_path, columns=["ts_ns"])["ts_ns"]
    return float((ts.max() - ts.min()) / 1e9)  # type: ignore[operator]


def main(argv: list[str], emitter: EmitterFactory | None = None, emitter_name: str = "standin") -> None:
    """``WORKLOAD REAL.parquet [SAMPLES [ROUNDS]]``: fit, print the parameters (JSON) and the comparison."""
    if len(argv) < 2:
        raise SystemExit("usage: WORKLOAD REAL.parquet [SAMPLES [ROUNDS]]")
    name, real_path = argv[0], argv[1]
    samples = int(argv[2]) if len(argv) > 2 else 24
    rounds = int(argv[3]) if len(argv) > 3 else 8
    real = trace_stats(real_path)
    best, d, cmp = fit(name, real, span_s=real_span_s(real_path), samples=samples, rounds=rounds, emitter=emitter)
    print(json.dumps({"workload": name, "emitter": emitter_name, "distance": d,
                      "params": {k: getattr(best, k) for k in SPACES[name]}}))  # fmt: skip
    with pl.Config(tbl_rows=80, fmt_str_lengths=40):
        print(cmp)


if __name__ == "__main__":
    main(sys.argv[1:])
