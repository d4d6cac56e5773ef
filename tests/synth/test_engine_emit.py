"""The engine emitter (``replay.synth.emit``): requests through the replay model of 6.1 (issue 5).

Exact replay of every workload's trace finds no anomaly; bursts are what 6.1 does (refills of
``max(batch >> order, 2)`` blocks, drains exactly when a free takes ``pcp->count`` to ``high``,
extfrag where ``__rmqueue_fallback`` steals); same seed, same bytes; text round trip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from parsers.api import parse_files, read_metadata
from parsers.schema import METADATA_PREFIX, arrow_schema, check_schema
from parsers.synthetic.config import load_config
from parsers.synthetic.emit import EmitParams, check_pages
from parsers.synthetic.pipeline import write_parquet
from parsers.synthetic.render import RenderOptions, as_rendered
from parsers.synthetic.requests import RequestGenerator
from parsers.synthetic.workloads import (
    WORKLOADS,
    BootParams,
    FaultInParams,
    Lifetime,
    Machine,
    Phase,
    Stream,
    Workload,
    generate,
)
from replay.synth import engine_emitter
from replay.model import anomalies, engine
from replay.model.initial_state import model_zones
from replay.model.layout_x86 import layout_for_guest
from replay.synth.emit import DESCRIPTION, EngineEmitter, emit
from tests.helpers.cli import invoke, run_ok
from tests.helpers.events import assert_synthetic_order

ROOT = Path(__file__).resolve().parents[2]
EV = {n: i for i, n in enumerate(("mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free", "mm_page_free_batched",
                                  "mm_page_pcpu_drain", "mm_page_alloc_extfrag"))}  # fmt: skip


def _table(requests, m: Machine, ep: EmitParams | None = None) -> pa.Table:
    return pa.Table.from_batches(list(emit(requests, m, ep)), schema=arrow_schema())


def _events(name: str, params=None, m: Machine | None = None, ep: EmitParams | None = None) -> pa.Table:
    m = m or Machine(events=15_000, seed=4, chunk=3000)
    return _table(generate(name, params, m), m, ep)


def _anomalies(t: pa.Table, m: Machine, boot: bool) -> tuple[dict[str, int], bool]:
    out = engine.replay(t, layout_for_guest(m.memory, m.cpus), mode="exact", boot=boot)
    kinds = anomalies.KIND_BY_CODE
    found = {kinds[i].name: int(c) for i, c in enumerate(out.acount) if c and i in kinds}
    return found, bool(out.invariant_reports[-1]["ok"])


def _assert_consistent(t: pa.Table) -> None:
    bad = check_pages(t)
    assert bad == dict.fromkeys(bad, 0)


# ------------------------------------------------------------------ exact replay: no anomaly
@pytest.mark.parametrize("name", list(WORKLOADS))
@pytest.mark.parametrize("seed", [1, 2])
def test_exact_replay_has_no_anomalies(name: str, seed: int) -> None:
    m = Machine(events=15_000, seed=seed, cpus=3 if seed == 2 else 4, memory=(4 << 30) if seed == 1 else (1 << 30))
    params = BootParams(early=1000, init=3000, memblock=seed == 2) if name == "boot" else None
    t = _table(generate(name, params, m), m)
    found, ok = _anomalies(t, m, boot=name == "boot")
    assert found == {} and ok
    assert_synthetic_order(t)
    _assert_consistent(t)


def test_mix_replays_without_anomalies(tmp_path: Path) -> None:
    cfg_path = tmp_path / "mix.toml"
    cfg_path.write_text('workload = "mix"\nseed = 5\ncpus = 2\nmemory = "512M"\nevents = 20000\n'
                        '[[mix]]\nworkload = "churn"\nweight = 0.5\n[[mix]]\nworkload = "page-cache"\nweight = 0.3\n'
                        '[[mix]]\nworkload = "fork-storm"\nweight = 0.2\n')  # fmt: skip
    cfg = load_config(cfg_path)
    out = tmp_path / "mix.parquet"
    md = write_parquet(cfg, out, emitter=EngineEmitter)
    assert md[METADATA_PREFIX + "synthetic.emitter"] == DESCRIPTION
    t = pq.read_table(out)
    found, ok = _anomalies(t, cfg.machine, boot=False)
    assert found == {} and ok
    _assert_consistent(t)
    kinds = set(pl.from_arrow(t)["event"].cast(pl.String).unique())
    assert {"mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free", "mm_page_free_batched",
            "mm_page_alloc_extfrag"} <= kinds  # fmt: skip


def test_exhausted_memory_fails_cleanly() -> None:
    m = Machine(events=None, duration_s=1e6, memory=64 << 20, seed=3)
    t = _table(RequestGenerator(generate("fault-in", FaultInParams(gib=0.1, thp=0.2, exit=True), m).wl, m), m)
    df = pl.from_arrow(t)
    fails = df.filter(pl.col("failed"))
    assert fails.height > 0 and fails["pfn"].null_count() == fails.height
    found, ok = _anomalies(t, m, boot=False)
    assert found == {} and ok
    _assert_consistent(t)


# ------------------------------------------------------------------ kernel shapes
def _runs(df: pl.DataFrame) -> list[tuple[int, int, int, int]]:
    """(cpu, order, zone_locked blocks, refill) of each allocation preceded by zone_locked events."""
    out = []
    cur: dict[int, list[tuple[int, bool]]] = {}
    for c, e, o, r in df.select("cpu", "event", "order", "percpu_refill").iter_rows():
        if e == "mm_page_alloc_zone_locked":
            cur.setdefault(c, []).append((o, bool(r)))
        elif e == "mm_page_alloc":
            zl = cur.pop(c, [])
            if zl:
                assert all(x == (o, zl[0][1]) for x in zl), "one section: one order, one refill flag"
                out.append((c, o, len(zl), int(zl[0][1])))
        elif e != "mm_page_alloc_extfrag":
            cur.pop(c, None)
    return out


def test_refill_bursts_equal_pcp_batch() -> None:
    m = Machine(events=20_000, seed=7, cpus=2)
    t = _events("page-cache", m=m)  # orders 0-3
    runs = _runs(pl.from_arrow(t))
    assert {o for _, o, _, _ in runs} >= {0, 2, 3}
    for _c, o, n, refill in runs:
        assert refill == 1
        assert n == max(63 >> o, 2), (o, n)  # __rmqueue_pcplist(): batch = max(batch >> order, 2)
    # THP blocks go to the per-CPU THP list too (refill of 2), others straight from the buddy
    t = _events("fault-in", FaultInParams(gib=0.05, thp=0.5), Machine(events=None, duration_s=1e6, seed=1))
    for _c, o, n, refill in _runs(pl.from_arrow(t)):
        assert (o, n, refill) in ((0, 63, 1), (9, 2, 1)), (o, n, refill)


def test_boot_pageset_refills_one_block() -> None:
    t = _events("boot", BootParams(early=400, init=500), Machine(events=1000, seed=2, memory=1 << 30))
    head = pl.from_arrow(t).head(300)
    assert set(head["comm"].cast(pl.String)) == {"swapper/0"}
    runs = _runs(head)
    assert runs and all(n == 1 for _, _, n, _ in runs)  # boot pageset: batch 1
    # high 0: every free drains at once
    found, ok = _anomalies(t, Machine(memory=1 << 30), boot=True)
    assert found == {} and ok


def _pcp_replay(t: pa.Table, m: Machine, high_override: int = 0) -> int:
    """Rebuild ``pcp->count`` per (cpu, zone) from the events and check 6.1's drain rule: a drain
    section follows a free exactly when the free took the count to ``high`` (or, for an order 1-3
    free, ``free_high``), and takes blocks only while ``nr_pcp_free()`` pages are left.  Returns
    the number of drain sections."""
    zones = model_zones(layout_for_guest(m.memory, m.cpus))
    starts = np.array([z.zone_start_pfn for z in zones])
    high = [high_override or z.pcp_high_for(0) for z in zones]
    batch = [z.pcp_batch_for(0) for z in zones]
    rows = pl.from_arrow(t).select("cpu", "event", "pfn", "order", "percpu_refill", "comm").rows()
    nxt = [-1] * len(rows)  # next row on the same CPU
    last: dict[int, int] = {}
    for k in range(len(rows) - 1, -1, -1):
        nxt[k] = last.get(rows[k][0], -1)
        last[rows[k][0]] = k
    count: dict[tuple[int, int], int] = {}
    must_drain: set[int] = set()
    budget: dict[int, int] = {}
    sections = 0
    for k, (c, e, pfn, o, r, comm) in enumerate(rows):
        if c in must_drain and e != "mm_page_pcpu_drain":
            raise AssertionError(f"row {k}: pcp count reached high without a drain")
        if e == "mm_page_pcpu_drain":
            must_drain.discard(c)
            assert budget.get(c, 0) > 0, f"row {k}: drain without a free past high, or past nr_pcp_free()"
            budget[c] -= 1 << o
            z = int(np.searchsorted(starts, pfn, side="right")) - 1
            count[(c, z)] -= 1 << o
            continue
        budget.pop(c, None)
        if pfn is None:
            continue
        z = int(np.searchsorted(starts, pfn, side="right")) - 1
        key = (c, z)
        pcp = o <= 3 or o == 9
        if e == "mm_page_alloc_zone_locked" and r:
            count[key] = count.get(key, 0) + (1 << o)
        elif e == "mm_page_alloc" and pcp:
            count[key] = count.get(key, 0) - (1 << o)
        elif e in ("mm_page_free", "mm_page_free_batched"):
            n = nxt[k]
            deferred = e == "mm_page_free" and n >= 0 and rows[n][1] == "mm_page_free_batched" and rows[n][2] == pfn
            if not pcp or deferred or str(comm).startswith("pgdatinit"):
                continue
            count[key] = count.get(key, 0) + (1 << o)
            drains = n >= 0 and rows[n][1] == "mm_page_pcpu_drain"
            if count[key] >= high[z]:
                must_drain.add(c)
            else:
                assert not drains or 1 <= o <= 3, f"row {k}: drain below high"
            if drains:
                sections += 1
                free_high = 1 <= o <= 3
                budget[c] = count[key] if free_high else (high[z] - batch[z] if high[z] >= batch[z] else 1)
    return sections


def test_drains_happen_past_high() -> None:
    m = Machine(events=15_000, seed=1, cpus=4)
    t = _events("fork-storm", m=m)  # layout high (Normal: 1281 with 4 CPUs)
    assert _pcp_replay(t, m) > 0
    m = Machine(events=20_000, seed=3, cpus=2)
    ep = EmitParams(high=200)
    t = _events("churn", m=m, ep=ep)
    assert _pcp_replay(t, m, high_override=200) > 10
    found, ok = _anomalies(t, m, boot=False)
    assert found == {} and ok


def test_extfrag_on_fallback() -> None:
    """All pageblocks start MOVABLE: the first unmovable request of a zone steals (6.1
    __rmqueue_fallback); the block it then takes lies in the stolen pageblock(s)."""
    m = Machine(events=8000, seed=2, cpus=2, memory=256 << 20)
    t = _events("churn", m=m)
    df = pl.from_arrow(t)
    xf = df.filter(pl.col("event") == "mm_page_alloc_extfrag")
    assert xf.height > 0
    assert (xf["migratetype"] != xf["fallback_migratetype"]).all()
    assert (xf["pageblock_order"] == 9).all()
    assert (xf["fragmenting"] == (xf["fallback_order"] < 9)).all()
    first = xf.row(0, named=True)
    assert first["fallback_migratetype"] == 1 and first["fallback_order"] == 10 and first["change_ownership"]
    rows = df.select("cpu", "event", "pfn", "order", "migratetype").rows()
    for k, (c, e, pfn, o, mt) in enumerate(rows):
        if e != "mm_page_alloc_extfrag":
            continue
        fb = df.row(k, named=True)["fallback_order"]
        nxt = next(x for x in rows[k + 1:] if x[0] == c and x[1] != "mm_page_alloc_extfrag")
        assert nxt[1] == "mm_page_alloc_zone_locked" and nxt[4] == mt
        lo = pfn & ~511
        hi = max(pfn + (1 << fb), lo + 512)
        assert lo <= nxt[2] < hi
    found, ok = _anomalies(t, m, boot=False)
    assert found == {} and ok


# ------------------------------------------------------------------ pipeline, CLI, text
def _run(*args: str) -> str:
    return run_ok("synth", *args)


def test_cli_default_engine_byte_identical(tmp_path: Path) -> None:
    a, b, c, s = (tmp_path / f"{x}.parquet" for x in "abcs")
    _run("churn", "-o", str(a), "--events", "5000", "--seed", "3", "--cpus", "3", "--memory", "1G")
    _run("churn", "-o", str(b), "--events", "5000", "--seed", "3", "--cpus", "3", "--memory", "1G")
    _run("churn", "-o", str(c), "--events", "5000", "--seed", "4", "--cpus", "3", "--memory", "1G")
    _run("churn", "-o", str(s), "--events", "5000", "--seed", "3", "--cpus", "3", "--memory", "1G",
         "--emitter", "standin")  # fmt: skip
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    md, mds = read_metadata(a), read_metadata(s)
    assert md[METADATA_PREFIX + "synthetic.emitter"] == DESCRIPTION == engine_emitter.DESCRIPTION
    assert mds[METADATA_PREFIX + "synthetic.emitter"].startswith("stand-in")
    pcp = json.loads(md[METADATA_PREFIX + "synthetic.pcp"])
    assert pcp["batch"]["DMA32"] == 63 and pcp["high"]["DMA32"] > 0
    assert check_schema(pq.read_table(a).schema) == []
    r = invoke("synth", "churn", "-o", a, "--emitter", "nope")
    assert r.exit_code == 1 and "engine" in r.output


@pytest.mark.parametrize("fmt,era", [("ftrace", "D"), ("perf", "B"), ("trace-cmd", "C")])
def test_text_round_trip(tmp_path: Path, fmt: str, era: str) -> None:
    out, txt = tmp_path / "t.parquet", tmp_path / "t.txt"
    _run("churn", "-o", str(out), "--events", "4000", "--memory", "256M", "--cpus", "2", "--text", str(txt),
         "--format", fmt, "--kernel-era", era)  # fmt: skip
    table = pq.read_table(out)
    assert (pl.from_arrow(table)["event"] == "mm_page_alloc_extfrag").any()
    parsed = parse_files([txt], strict=True).table
    want = as_rendered(table, RenderOptions(fmt=fmt, era=era))
    for name in want.column_names:
        if name not in ("source_file", "line"):
            assert parsed.column(name).to_pylist() == want.column(name).to_pylist(), name


# ------------------------------------------------------------------ randomized property
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=hs.dictionaries(hs.sampled_from([0, 1, 2, 3, 9, 10]), hs.floats(0.05, 1.0), min_size=1, max_size=4),
    mt=hs.sampled_from([0, 1, 2]),
    cpus=hs.integers(1, 4),
    mem_mib=hs.sampled_from([64, 128, 512]),
    batched=hs.floats(0.0, 1.0),
    median_us=hs.sampled_from([50.0, 2000.0, 200000.0]),
    prelive=hs.sampled_from([0.0, 0.05]),
    seed=hs.integers(0, 2**16),
)
def test_random_workloads_are_consistent(orders, mt, cpus, mem_mib, batched, median_us, prelive, seed) -> None:
    streams = (
        Stream("a", orders=orders, migratetype=mt, burst=8.0, lifetime=Lifetime(median_us=median_us, sigma=1.5),
               batched=batched, free_same_cpu=0.5, prelive_frees=prelive),
        Stream("b", weight=0.5, orders={0: 1.0}, migratetype=(mt + 1) % 3, gfp="GFP_KERNEL", burst=4.0,
               lifetime=Lifetime(median_us=median_us * 3, sigma=1.0), free_together=True),
    )  # fmt: skip
    wl = Workload("prop", (Phase("p", streams, rate_per_cpu=50000.0, exit_at_end=True),))
    m = Machine(events=3000, seed=seed, cpus=cpus, memory=mem_mib << 20, chunk=1000)
    t = _table(RequestGenerator(wl, m), m)
    assert_synthetic_order(t)
    _assert_consistent(t)
    found, ok = _anomalies(t, m, boot=False)
    assert found == {} and ok


def test_pure_python_model_gives_the_same_table(tmp_path: Path) -> None:
    """PAGEREPLAY_JIT=0 runs the same kernels uncompiled: the same events."""
    code = (
        "import sys, pyarrow as pa, pyarrow.parquet as pq\n"
        "from parsers.synthetic.workloads import Machine, generate\n"
        "from replay.synth.emit import emit\n"
        "m = Machine(events=400, seed=5, cpus=2, memory=64 << 20)\n"
        "t = pa.Table.from_batches(list(emit(generate('churn', None, m), m)))\n"
        "pq.write_table(t, sys.argv[1])\n"
    )
    outs = []
    for jit in ("1", "0"):
        p = tmp_path / f"jit{jit}.parquet"
        subprocess.run([sys.executable, "-c", code, str(p)], cwd=ROOT, check=True,
                       env=dict(os.environ, PAGEREPLAY_JIT=jit))  # fmt: skip
        outs.append(pq.read_table(p))
    assert outs[0].num_rows > 500
    assert outs[0].equals(outs[1])
