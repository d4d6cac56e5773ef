"""Calibration: the statistics that matter, for a synthetic and a real table, side by side.

Every statistic is one row ``(group, statistic, value)`` of a polars DataFrame
(:func:`trace_stats`); :func:`compare` joins two of them and adds the ratio.  All of it is
vectorised polars over the canonical table (:mod:`parsers.schema`).

=========== ===================================================================================
group       statistics
=========== ===================================================================================
events      share of each tracepoint among all events; allocations per second per CPU
order       share of successful ``mm_page_alloc`` by order; base pages per allocation
migratetype share of successful ``mm_page_alloc`` by migratetype
refill      ``rmqueue_bulk()`` sections (runs of ``percpu_refill`` zone_locked events per CPU, as
            :func:`parsers.stats.lock_bursts` finds them): per 1000 allocations; events per
            section mean/p50/p90/max; us per event inside a section
drain       ``free_pcppages_bulk()`` sections (runs of ``mm_page_pcpu_drain``): the same
interarrival per-CPU time between consecutive ``mm_page_alloc`` (us): mean, p50, p90, p99
lifetime    allocation lifetime by pfn pairing (alloc -> the next ``mm_page_free`` of that pfn,
            ms): mean, p50, p90, p99; share of allocations freed within the trace
free        free-only share (perf kmem ``nr_page_nomatch``: frees whose pfn has no earlier
            allocation in the trace); share of frees that also get ``mm_page_free_batched``
=========== ===================================================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from ..schema import Event, Migratetype
from ..stats import lock_bursts

_ALLOC, _FREE, _BATCHED = (Event.MM_PAGE_ALLOC.tracepoint, Event.MM_PAGE_FREE.tracepoint,
                           Event.MM_PAGE_FREE_BATCHED.tracepoint)  # fmt: skip
_COLS = ["ts_ns", "cpu", "event", "pfn", "order", "migratetype", "failed", "seq"]


def _frame(table: pa.Table | pl.DataFrame | str | os.PathLike[str]) -> pl.DataFrame:
    if isinstance(table, pl.DataFrame):
        df = table
    elif isinstance(table, (str, os.PathLike)):
        df = pl.read_parquet(table, columns=_COLS)
    else:
        df = pl.from_arrow(table.select(_COLS))  # type: ignore[assignment]
    return df.select(_COLS).with_columns(pl.col("event").cast(pl.String))


def _q(expr: pl.Expr, name: str) -> list[pl.Expr]:
    return [
        expr.mean().alias(f"{name}_mean"),
        expr.quantile(0.5, "linear").alias(f"{name}_p50"),
        expr.quantile(0.9, "linear").alias(f"{name}_p90"),
        expr.quantile(0.99, "linear").alias(f"{name}_p99"),
    ]


def trace_stats(table: pa.Table | pl.DataFrame | str | os.PathLike[str], *, bursts: pl.DataFrame | None = None) -> pl.DataFrame:
    """Long-format statistics of one canonical table (or Parquet path): ``group, statistic, value``."""
    src = table
    df = _frame(table)
    rows: list[tuple[str, str, float | None]] = []
    n = df.height
    ncpu = max(1, df["cpu"].n_unique())
    span_s = max((df["ts_ns"].max() - df["ts_ns"].min()) / 1e9, 1e-9) if n else 1.0  # type: ignore[operator]
    for e in Event:
        rows.append(("events", f"share {e.tracepoint}", df.filter(pl.col("event") == e.tracepoint).height / max(n, 1)))
    allocs = df.filter((pl.col("event") == _ALLOC) & ~pl.col("failed"))
    na = allocs.height
    rows.append(("events", "allocs per s per cpu", na / span_s / ncpu))
    rows.append(("events", "failed allocs", float(df.filter(pl.col("failed")).height)))
    for o, c in allocs.group_by("order").len().sort("order").iter_rows():
        rows.append(("order", f"order {o}", c / max(na, 1)))
    rows.append(("order", "pages per alloc", float(allocs.select((pl.lit(2.0).pow(pl.col("order").cast(pl.Float64))).mean()).item() or 0)))
    for m, c in allocs.group_by("migratetype").len().sort("migratetype").iter_rows():
        name = Migratetype(m).name.lower() if m is not None and 0 <= m < len(Migratetype) else str(m)
        rows.append(("migratetype", name, c / max(na, 1)))
    # zone->lock sections
    b = bursts if bursts is not None else lock_bursts(src if not isinstance(src, pl.DataFrame) else src.to_arrow())
    for kind, group in (("pcp_refill", "refill"), ("pcp_drain", "drain")):
        k = b.filter(pl.col("kind") == kind)
        rows.append((group, "sections per 1000 allocs", 1000 * k.height / max(na, 1)))
        if k.height:
            r = k.select(
                pl.col("events").mean().alias("mean"),
                pl.col("events").quantile(0.5, "linear").alias("p50"),
                pl.col("events").quantile(0.9, "linear").alias("p90"),
                pl.col("events").max().cast(pl.Float64).alias("max"),
                (pl.col("duration_ns").sum() / (pl.col("events") - 1).clip(0).sum().clip(1) / 1000).alias("us"),
            ).row(0, named=True)
            for s in ("mean", "p50", "p90", "max"):
                rows.append((group, f"events per section {s}", float(r[s])))
            rows.append((group, "us per event in section", float(r["us"])))
    # per-CPU inter-arrival of allocations
    ia = (
        allocs.sort("cpu", "ts_ns", "seq")
        .with_columns(((pl.col("ts_ns") - pl.col("ts_ns").shift(1).over("cpu")) / 1000).alias("d"))
        .drop_nulls("d")
    )
    if ia.height:
        for s, v in ia.select(_q(pl.col("d"), "x")).row(0, named=True).items():
            rows.append(("interarrival", f"us {s.split('_')[1]}", float(v)))
    # lifetimes by pfn pairing (perf kmem's live tree: alloc, then the next free of that pfn)
    af = (
        df.filter(pl.col("event").is_in([_ALLOC, _FREE]) & pl.col("pfn").is_not_null())
        .sort("pfn", "ts_ns", "seq")
        .with_columns(
            pl.col("event").shift(1).over("pfn").alias("prev_ev"),
            pl.col("ts_ns").shift(1).over("pfn").alias("prev_ts"),
        )
    )
    frees = af.filter(pl.col("event") == _FREE)
    paired = frees.filter(pl.col("prev_ev") == _ALLOC)
    if paired.height:
        life = (pl.col("ts_ns") - pl.col("prev_ts")) / 1e6
        for s, v in paired.select(_q(life, "x")).row(0, named=True).items():
            rows.append(("lifetime", f"ms {s.split('_')[1]}", float(v)))
    rows.append(("lifetime", "allocs freed in trace", paired.height / max(na, 1)))
    nf = frees.height
    rows.append(("free", "free-only share", (nf - paired.height) / max(nf, 1)))
    nb = df.filter(pl.col("event") == _BATCHED).height
    rows.append(("free", "batched share", nb / max(nf, 1)))
    return pl.DataFrame(rows, schema={"group": pl.String, "statistic": pl.String, "value": pl.Float64}, orient="row")


def compare(synthetic: Any, real: Any) -> pl.DataFrame:
    """Side by side: ``group, statistic, synthetic, real, ratio`` (synthetic / real)."""
    a = trace_stats(synthetic) if not isinstance(synthetic, pl.DataFrame) or "statistic" not in synthetic.columns else synthetic
    b = trace_stats(real) if not isinstance(real, pl.DataFrame) or "statistic" not in real.columns else real
    out = a.rename({"value": "synthetic"}).join(b.rename({"value": "real"}), on=["group", "statistic"], how="full", coalesce=True)
    order = {g: i for i, g in enumerate(["events", "order", "migratetype", "refill", "drain", "interarrival", "lifetime", "free"])}
    return (
        out.with_columns(
            pl.when(pl.col("real").abs() > 1e-12).then(pl.col("synthetic") / pl.col("real")).otherwise(None).alias("ratio"),
            pl.col("group").replace_strict(order, default=99, return_dtype=pl.Int32).alias("_g"),
        )
        .sort("_g", "statistic")
        .drop("_g")
    )


#: statistics the default parameters are fitted on, with their weight in :func:`distance`
FIT_TARGETS: dict[tuple[str, str], float] = {
    ("order", "order 0"): 1.0,
    ("migratetype", "unmovable"): 1.0,
    ("migratetype", "movable"): 1.0,
    ("refill", "sections per 1000 allocs"): 1.0,
    ("refill", "events per section p50"): 0.5,
    ("drain", "sections per 1000 allocs"): 0.5,
    ("interarrival", "us p50"): 1.0,
    ("lifetime", "ms p50"): 1.0,
    ("lifetime", "allocs freed in trace"): 1.0,
    ("free", "free-only share"): 1.0,
    ("free", "batched share"): 1.0,
}


def distance(cmp: pl.DataFrame, targets: dict[tuple[str, str], float] | None = None) -> float:
    """Weighted mean |log(synthetic / real)| over the fit targets (0 = identical; missing = 2)."""
    import math

    t = targets or FIT_TARGETS
    total = 0.0
    wsum = 0.0
    idx = {(g, s): (a, b) for g, s, a, b, _ in cmp.iter_rows()}
    for key, w in t.items():
        a, b = idx.get(key, (None, None))
        if a is None or b is None or a <= 0 or b <= 0:
            d = 2.0 if (a or 0) != (b or 0) else 0.0
        else:
            d = abs(math.log(a / b))
        total += w * d
        wsum += w
    return total / max(wsum, 1e-12)


def comparison_chart(cmp: pl.DataFrame, title: str):  # type: ignore[no-untyped-def]
    """Altair chart of a :func:`compare` table: log2(synthetic / real) per statistic (0 = equal)."""
    import altair as alt

    df = cmp.filter((pl.col("synthetic") > 0) & (pl.col("real") > 0)).with_columns(
        (pl.col("synthetic") / pl.col("real")).log(2).alias("log2_ratio"),
        (pl.col("group") + ": " + pl.col("statistic")).alias("stat"),
    )
    return (
        alt.Chart(alt.Data(values=df.to_dicts()), title=title)
        .mark_bar()
        .encode(
            x=alt.X("log2_ratio:Q", title="log2(synthetic / real)  (0 = equal, 1 = twice)"),
            y=alt.Y("stat:N", sort=None, title=None),
            color=alt.Color("group:N"),
            tooltip=["group:N", "statistic:N", "synthetic:Q", "real:Q", "log2_ratio:Q"],
        )
        .properties(width=480)
    )


def write_comparison(cmp: pl.DataFrame, out: str | os.PathLike[str]) -> None:
    """Write a :func:`compare` table as Parquet (``.parquet``), JSON (``.json``) or else CSV."""
    out = Path(out)
    if out.suffix == ".parquet":
        cmp.write_parquet(out)
    elif out.suffix == ".json":
        out.write_text(json.dumps(cmp.to_dicts(), indent=1))
    else:
        cmp.write_csv(out)


def write_comparison_chart(cmp: pl.DataFrame, out: str | os.PathLike[str], title: str) -> None:
    """Save :func:`comparison_chart` as standalone HTML (``.html``, the Vega JS inlined: it opens
    offline) or in the format the suffix names (``.png``, ``.svg``)."""
    c = comparison_chart(cmp, title)
    if Path(out).suffix == ".html":
        c.save(str(out), inline=True)
    else:
        c.save(str(out))


__all__ = ["FIT_TARGETS", "compare", "comparison_chart", "distance", "trace_stats", "write_comparison",
           "write_comparison_chart"]
