"""Altair charts of a results folder (docs/results.md), one function per chart kind.

Every chart reads only the Parquet tables it needs with a lazy polars scan, aggregates in polars
(time buckets, log bins, top-N), and embeds the aggregate: no chart may embed more than
:data:`MAX_ROWS` rows (Altair's own ``MaxRowsError`` limit; peers-and-style C3), which
:func:`check_rows` enforces on the finished spec.  ``none`` (the plain VM) is the reference policy:
it comes first in every legend and the lock metrics of the comparison are drawn as the difference
against it.

``make_chart(results_dir, kind)`` is the entry point; ``CHART_KINDS`` lists the kinds in report
order.  The charts depend only on the results folder, so they work on the output of any replay
that follows the contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from parsers.errors import PagereplayError
from replay.report.format import human_bytes, human_ns

__all__ = [
    "CHART_KINDS", "ChartKind", "ChartLike", "MAX_ROWS", "ResultsError", "TooManyRowsError", "check_rows",
    "embedded_rows", "make_chart", "policy_order", "scan_table",
]

MAX_ROWS = 5000
REFERENCE_POLICY = "none"
ALLOC_EVENT = "mm_page_alloc"
ACCEPT_LOCKS = ("accept_global", "accepting_list")
IRQS_OFF_LINES_MS = ((1.0, "1 ms"), (20_000.0, "20 s: soft lockup (2 x watchdog_thresh)"))
WIDTH = 620

ChartLike = alt.Chart | alt.LayerChart | alt.FacetChart | alt.VConcatChart | alt.HConcatChart


class ResultsError(PagereplayError):
    """The results folder lacks a table or a column a chart or the report needs."""


class TooManyRowsError(AssertionError):
    """A chart would embed more than MAX_ROWS rows: a bug in its aggregation, not bad input."""


# ------------------------------------------------------------------ reading
def table_path(results_dir: str | Path, name: str) -> Path:
    p = Path(results_dir) / f"{name}.parquet"
    if not p.is_file():
        if not Path(results_dir).is_dir():
            raise ResultsError(f"{results_dir}: no such results folder")
        raise ResultsError(f"{results_dir}: no {name}.parquet (see `pagereplay results {results_dir} --describe`)")
    return p


def scan_table(results_dir: str | Path, name: str, columns: Sequence[str]) -> pl.LazyFrame:
    """``columns`` of ``name``.parquet as a LazyFrame; dictionary strings come back as plain strings."""
    lf = pl.scan_parquet(table_path(results_dir, name))
    schema = lf.collect_schema()
    missing = [c for c in columns if c not in schema]
    if missing:
        raise ResultsError(f"{results_dir}/{name}.parquet lacks column(s) {', '.join(missing)} "
                           "(docs/results.md lists the expected columns)")
    casts = [pl.col(c).cast(pl.String) for c in columns if schema[c] in (pl.Categorical, pl.Enum)
             or isinstance(schema[c], (pl.Categorical, pl.Enum))]
    return lf.select(list(columns)).with_columns(casts)


def policy_order(results_dir: str | Path, table: str = "summary") -> list[str]:
    """Policies in the order the replay ran them (summary.parquet), ``none`` first."""
    try:
        pols = scan_table(results_dir, "summary", ["policy"]).collect()["policy"].to_list()
    except ResultsError:
        pols = (scan_table(results_dir, table, ["policy"]).unique(maintain_order=True).collect()["policy"]
                .to_list())
    pols = list(dict.fromkeys(str(p) for p in pols if p is not None))
    if REFERENCE_POLICY in pols:
        pols.remove(REFERENCE_POLICY)
        pols.insert(0, REFERENCE_POLICY)
    return pols


# ------------------------------------------------------------------ spec checks
def embedded_rows(spec: dict[str, Any]) -> dict[str, int]:
    """Rows of every inline data set of a Vega-Lite spec dict (top-level datasets and data.values)."""
    found: dict[str, int] = {}
    for name, values in (spec.get("datasets") or {}).items():
        found[name] = len(values)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and isinstance(data.get("values"), list):
                found[f"{path}/data"] = len(data["values"])
            for k, v in node.items():
                if k != "datasets":
                    walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(spec, "")
    return found


def check_rows(chart: ChartLike, limit: int = MAX_ROWS) -> dict[str, Any]:
    """Validate ``chart`` (``to_dict`` checks the Vega-Lite schema) and return its spec dict.

    Raises :class:`TooManyRowsError` when any embedded data set exceeds ``limit`` rows.
    """
    spec = chart.to_dict()
    for name, n in embedded_rows(spec).items():
        if n > limit:
            raise TooManyRowsError(f"chart data set {name} embeds {n:,} rows (limit {limit:,}): aggregate first")
    return spec


# ------------------------------------------------------------------ shared pieces
def _policy_color(policies: Sequence[str], legend: bool = True) -> alt.Color:
    scheme = "tableau10" if len(policies) <= 10 else "category20"
    return alt.Color("policy:N", title="policy", scale=alt.Scale(domain=list(policies), scheme=scheme),
                     legend=alt.Legend(orient="right") if legend else None, sort=list(policies))


def _policy_picker(policies: Sequence[str], name: str) -> Any:
    """A dropdown that highlights one policy (empty selection = all)."""
    return alt.selection_point(
        name=name, fields=["policy"],
        bind=alt.binding_select(options=[None, *policies], labels=["all", *policies], name="policy "))


def _policy_filter(policies: Sequence[str], name: str, default: str) -> Any:
    """A dropdown that shows exactly one policy (for charts that cannot overlay policies)."""
    return alt.param(name=name, value=default,
                     bind=alt.binding_select(options=list(policies), name="policy "))


def _title(text: str, subtitle: str | Sequence[str] = "") -> alt.TitleParams:
    sub = [subtitle] if isinstance(subtitle, str) else list(subtitle)
    return alt.TitleParams(text=text, subtitle=[s for s in sub if s], anchor="start")


def _empty(title: alt.TitleParams, message: str) -> alt.Chart:
    """A chart that says why there is nothing to draw (still a valid spec with one row)."""
    return (alt.Chart(pl.DataFrame({"message": [message]}), title=title)
            .mark_text(fontSize=13, align="left", x=10, y=20)
            .encode(text="message:N").properties(width=WIDTH, height=40))


def _downsample_times(df: pl.DataFrame, time_col: str, keep: int) -> pl.DataFrame:
    """At most ``keep`` distinct time buckets per policy: coarser buckets keep each one's last row."""
    n = df.group_by("policy").len()["len"].max() or 0
    if n <= keep:
        return df
    step = math.ceil(n / keep)
    return (df.sort("policy", time_col)
            .with_columns(_i=pl.int_range(pl.len()).over("policy") // step)
            .group_by("policy", "_i", maintain_order=True).last().drop("_i"))


def _log_bin(col: str, per_decade: int) -> pl.Expr:
    """Log10 bin index of a positive value, ``per_decade`` bins per factor of 10."""
    return (pl.col(col).cast(pl.Float64).log10() * per_decade).floor().cast(pl.Int32)


# ------------------------------------------------------------------ 1. policy comparison
_COMPARE = (
    ("firmware_ns", "firmware time", False),
    ("boot_accept_ns", "acceptance at boot", False),
    ("zone_lock_hold_ns", "zone->lock hold added", True),
    ("zone_lock_wait_ns", "zone->lock wait added", True),
    ("alloc_added_p99_ns", "p99 added allocation latency", False),
    ("alloc_added_max_ns", "max added allocation latency", False),
)


def chart_policy_comparison(results_dir: str | Path) -> ChartLike:
    """Firmware time during the trace and at boot, zone->lock hold and wait added over ``none``, p99 and
    max added latency."""
    pols = policy_order(results_dir)
    cols = [c for c, _, _ in _COMPARE]
    s = scan_table(results_dir, "summary", ["policy", *cols]).collect()
    ref = s.filter(pl.col("policy") == REFERENCE_POLICY)
    rows = []
    for r in s.iter_rows(named=True):
        for c, label, delta in _COMPARE:
            raw = r[c] or 0
            base = (ref[c][0] or 0) if (delta and len(ref)) else 0
            shown = raw - base
            rows.append({"policy": r["policy"], "metric": label, "value_ns": raw, "shown_ns": shown,
                         "shown_ms": shown / 1e6, "label": human_ns(shown),
                         "reference": human_ns(base) if delta and len(ref) else "-"})
    df = pl.DataFrame(rows)
    base = alt.Chart(df).encode(
        y=alt.Y("policy:N", sort=pols, title=None),
        x=alt.X("shown_ms:Q", title="ms"),
        tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("metric:N"), alt.Tooltip("label:N", title="value"),
                 alt.Tooltip("shown_ns:Q", title="ns", format=","),
                 alt.Tooltip("reference:N", title="none (reference)")],
    )
    bars = base.mark_bar().encode(color=_policy_color(pols, legend=False))
    text = base.mark_text(align="left", dx=3, fontSize=10).encode(text="label:N")
    layered = alt.layer(bars, text).properties(width=270, height=18 * len(pols) + 10)
    sub = (f"lock hold/wait: difference against '{REFERENCE_POLICY}' (the plain VM); the others are absolute"
           if len(ref) else f"no '{REFERENCE_POLICY}' run in this folder: every figure is absolute")
    return (layered.facet(facet=alt.Facet("metric:N", sort=[lbl for _, lbl, _ in _COMPARE], title=None),
                          columns=2)
            .resolve_scale(x="independent")
            .properties(title=_title("Policy comparison", sub)))


# ------------------------------------------------------------------ 2. added latency distribution
def chart_added_latency(results_dir: str | Path) -> ChartLike:
    """Share of allocations whose added latency is at least x, per policy (log-log CCDF)."""
    pols = policy_order(results_dir, "events")
    per_decade = 10
    ev = (scan_table(results_dir, "events", ["policy", "event", "added_ns"])
          .filter(pl.col("event") == ALLOC_EVENT))
    # events.parquet may hold only the events a policy charged (docs/results.md): the number of
    # allocations per policy comes from the per-CPU attribution, which counts every event
    totals = (scan_table(results_dir, "attribution_cpu", ["policy", "allocations"])
              .group_by("policy").agg(allocations=pl.col("allocations").sum()))
    bins = (ev.filter(pl.col("added_ns") > 0).with_columns(b=_log_bin("added_ns", per_decade))
            .group_by("policy", "b").agg(n=pl.len()))
    df = (bins.join(totals, on="policy").sort("policy", "b", descending=[False, True])
          .with_columns(at_least=pl.col("n").cum_sum().over("policy"))
          .with_columns(share=pl.col("at_least") / pl.col("allocations"),
                        x_us=(10.0 ** (pl.col("b") / per_decade)) / 1e3)
          .sort("policy", "b").select("policy", "x_us", "share", "at_least", "allocations").collect())
    title = _title("Added allocation latency", [
        "share of allocations delayed by at least x (log-log); "
        f"policies that add nothing ('{REFERENCE_POLICY}') draw no line",
        "the dropdown highlights one policy"])
    if df.is_empty():
        return _empty(title, "no allocation has added latency under any policy")
    pick = _policy_picker(pols, "latency_policy")
    return (alt.Chart(df, title=title).mark_line(interpolate="step-after", point=True)
            .encode(x=alt.X("x_us:Q", scale=alt.Scale(type="log"), title="added latency (µs)"),
                    y=alt.Y("share:Q", scale=alt.Scale(type="log"), title="share of allocations ≥ x"),
                    color=_policy_color(pols),
                    opacity=alt.condition(pick, alt.value(1.0), alt.value(0.12)),
                    tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("x_us:Q", title="≥ µs", format=",.2f"),
                             alt.Tooltip("share:Q", format=".3%"),
                             alt.Tooltip("at_least:Q", title="allocations ≥ x", format=","),
                             alt.Tooltip("allocations:Q", title="allocations", format=",")])
            .add_params(pick).properties(width=WIDTH, height=300))


# ------------------------------------------------------------------ 3. lock hold distribution
def chart_lock_hold(results_dir: str | Path) -> ChartLike:
    """Log-binned histogram of lock hold times per policy, zone->lock and the acceptance locks."""
    pols = policy_order(results_dir, "lock_sections")
    per_decade = 5
    df = (scan_table(results_dir, "lock_sections", ["policy", "lock", "hold_ns"])
          .filter(pl.col("hold_ns") > 0)
          .with_columns(lock_class=pl.when(pl.col("lock").str.starts_with("zone:")).then(pl.lit("zone->lock"))
                        .otherwise(pl.lit("acceptance locks")), b=_log_bin("hold_ns", per_decade))
          .group_by("policy", "lock_class", "b").agg(sections=pl.len())
          .with_columns(lo_us=(10.0 ** (pl.col("b") / per_decade)) / 1e3,
                        hi_us=(10.0 ** ((pl.col("b") + 1) / per_decade)) / 1e3)
          .with_columns(mid_us=(pl.col("lo_us") * pl.col("hi_us")).sqrt())
          .sort("policy", "lock_class", "b").drop("b").collect())
    title = _title("Lock hold time per section", [
        f"log-binned histogram ({per_decade} bins per decade); 'acceptance locks' = "
        "unaccepted_memory_lock and accepting_list", "the dropdown highlights one policy"])
    if df.is_empty():
        return _empty(title, "no lock sections")
    pick = _policy_picker(pols, "hold_policy")
    classes = [c for c in ("zone->lock", "acceptance locks") if c in set(df["lock_class"].to_list())]
    inner = (alt.Chart().mark_line(point=True)
             .encode(x=alt.X("mid_us:Q", scale=alt.Scale(type="log"), title="hold time (µs)"),
                     y=alt.Y("sections:Q", scale=alt.Scale(type="log"), title="sections"),
                     color=_policy_color(pols),
                     opacity=alt.condition(pick, alt.value(1.0), alt.value(0.12)),
                     tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("lock_class:N", title="lock"),
                              alt.Tooltip("lo_us:Q", title="from µs", format=",.2f"),
                              alt.Tooltip("hi_us:Q", title="to µs", format=",.2f"),
                              alt.Tooltip("sections:Q", format=",")])
             .add_params(pick).properties(width=300 if len(classes) > 1 else WIDTH, height=280))
    return (inner.facet(column=alt.Column("lock_class:N", sort=classes, title=None), data=df)
            .resolve_scale(x="shared").properties(title=title))


# ------------------------------------------------------------------ 4. acceptance progress
def chart_acceptance(results_dir: str | Path) -> ChartLike:
    """Accepted and unaccepted memory over time, per policy."""
    pols = policy_order(results_dir, "timeseries")
    ts = scan_table(results_dir, "timeseries", ["policy", "t_ns", "accepted_bytes", "unaccepted_bytes"]).collect()
    ts = _downsample_times(ts, "t_ns", MAX_ROWS // max(1, 2 * len(pols)))
    df = (ts.unpivot(index=["policy", "t_ns"], on=["accepted_bytes", "unaccepted_bytes"], variable_name="memory",
                     value_name="bytes")
          .with_columns(memory=pl.col("memory").str.replace("_bytes", ""), t_s=pl.col("t_ns") / 1e9,
                        gib=pl.col("bytes") / float(1 << 30))
          .with_columns(label=pl.col("bytes").map_elements(human_bytes, return_dtype=pl.String))
          .select("policy", "memory", "t_s", "gib", "label"))
    title = _title("Acceptance progress", ["accepted and unaccepted guest memory over trace time",
                                           "the dropdown highlights one policy"])
    if df.is_empty():
        return _empty(title, "empty timeseries")
    pick = _policy_picker(pols, "accept_policy")
    inner = (alt.Chart().mark_line(interpolate="step-after")
             .encode(x=alt.X("t_s:Q", title="trace time (s)", scale=alt.Scale(zero=False)),
                     y=alt.Y("gib:Q", title="GiB"), color=_policy_color(pols),
                     opacity=alt.condition(pick, alt.value(1.0), alt.value(0.12)),
                     tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("memory:N"),
                              alt.Tooltip("t_s:Q", title="t (s)", format=",.3f"),
                              alt.Tooltip("label:N", title="memory")])
             .add_params(pick).properties(width=WIDTH, height=170))
    return (inner.facet(row=alt.Row("memory:N", sort=["accepted", "unaccepted"], title=None), data=df)
            .properties(title=title))


# ------------------------------------------------------------------ 5. per-CPU lock wait heat map
def chart_lock_wait_heatmap(results_dir: str | Path) -> ChartLike:
    """Lock wait per CPU and time bucket (virtual time), one row of cells per CPU, one panel per policy."""
    pols = policy_order(results_dir, "lock_sections")
    ls = scan_table(results_dir, "lock_sections", ["policy", "cpu", "start_ns", "wait_ns", "lock"])
    bounds = ls.select(lo=pl.col("start_ns").min(), hi=pl.col("start_ns").max(),
                       cpus=pl.col("cpu").n_unique()).collect()
    title = _title("Lock wait per CPU over time", [
        "sum of wait_ns per CPU and time bucket (virtual time; all locks); blank = no waiting",
        "one panel per policy, same colour scale"])
    if bounds["lo"][0] is None:
        return _empty(title, "no lock sections")
    lo, hi, cpus = int(bounds["lo"][0]), int(bounds["hi"][0]), int(bounds["cpus"][0])
    n_buckets = max(10, min(120, MAX_ROWS // max(1, len(pols) * cpus)))
    width_ns = max(1, math.ceil((hi - lo + 1) / n_buckets))
    df = (ls.filter(pl.col("wait_ns") > 0)
          .with_columns(k=(pl.col("start_ns") - lo) // width_ns,
                        zone_wait=pl.when(pl.col("lock").str.starts_with("zone:")).then(pl.col("wait_ns")).otherwise(0))
          .group_by("policy", "cpu", "k").agg(wait_ns=pl.col("wait_ns").sum(), zone_wait_ns=pl.col("zone_wait").sum(),
                                              sections=pl.len())
          .with_columns(t0_s=(lo + pl.col("k") * width_ns) / 1e9, t1_s=(lo + (pl.col("k") + 1) * width_ns) / 1e9,
                        wait_ms=pl.col("wait_ns") / 1e6, zone_wait_ms=pl.col("zone_wait_ns") / 1e6)
          .sort("policy", "cpu", "k").select("policy", "cpu", "t0_s", "t1_s", "wait_ms", "zone_wait_ms", "sections")
          .collect())
    if df.is_empty():
        return _empty(title, "no lock waits under any policy")
    inner = (alt.Chart().mark_rect()
             .encode(x=alt.X("t0_s:Q", title="virtual time (s)", scale=alt.Scale(domain=[lo / 1e9, hi / 1e9])),
                     x2="t1_s:Q", y=alt.Y("cpu:O", title="CPU"),
                     color=alt.Color("wait_ms:Q", title="wait (ms)", scale=alt.Scale(type="log", scheme="orangered"),
                                     legend=alt.Legend(format=".3~g")),
                     tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("cpu:O", title="CPU"),
                              alt.Tooltip("t0_s:Q", title="from s", format=",.3f"),
                              alt.Tooltip("t1_s:Q", title="to s", format=",.3f"),
                              alt.Tooltip("wait_ms:Q", title="wait ms (all locks)", format=",.3f"),
                              alt.Tooltip("zone_wait_ms:Q", title="of which zone->lock", format=",.3f"),
                              alt.Tooltip("sections:Q", title="sections that waited", format=",")])
             .properties(width=WIDTH, height=max(40, 14 * cpus)))
    return (inner.facet(row=alt.Row("policy:N", sort=pols, title=None, header=alt.Header(labelAngle=0,
                                                                                           labelAlign="left")),
                        data=df)
            .properties(title=title))


# ------------------------------------------------------------------ 6. top processes
TOP_PROCESSES = 15


def chart_top_processes(results_dir: str | Path) -> ChartLike:
    """The processes (comm-pid) with the most added latency under the chosen policy."""
    pols = policy_order(results_dir, "attribution_process")
    cols = ["policy", "comm", "pid", "events", "allocations", "added_ns", "lock_wait_ns", "lock_hold_ns",
            "firmware_ns", "accepted_bytes"]
    ap = scan_table(results_dir, "attribution_process", cols)
    df = (ap.with_columns(rank=pl.col("added_ns").rank("ordinal", descending=True).over("policy"))
          .filter(pl.col("rank") <= TOP_PROCESSES)
          .with_columns(process=pl.col("comm") + "-" + pl.col("pid").cast(pl.String),
                        added_ms=pl.col("added_ns") / 1e6, wait_ms=pl.col("lock_wait_ns") / 1e6,
                        hold_ms=pl.col("lock_hold_ns") / 1e6, firmware_ms=pl.col("firmware_ns") / 1e6,
                        accepted_mib=pl.col("accepted_bytes") / float(1 << 20))
          .sort("policy", "rank").drop("comm", "pid").collect())
    title_text = f"Top {TOP_PROCESSES} processes by added latency"
    if df.is_empty():
        return _empty(_title(title_text), "no per-process attribution")
    totals = df.group_by("policy").agg(pl.col("added_ns").sum())
    nonref = [p for p in pols if p != REFERENCE_POLICY] or pols
    tot = dict(zip(totals["policy"].to_list(), totals["added_ns"].to_list(), strict=True))
    default = max(nonref, key=lambda p: (tot.get(p, 0), -nonref.index(p)))
    pick = _policy_filter(pols, "top_policy", default)
    title = _title(title_text, [f"per policy (dropdown; default: the policy with the most added latency, "
                                f"'{default}'); tooltips give the cost components"])
    return (alt.Chart(df, title=title).mark_bar()
            .encode(y=alt.Y("process:N", sort="-x", title=None),
                    x=alt.X("added_ms:Q", title="added latency (ms)"),
                    color=_policy_color(pols, legend=False),
                    tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("process:N"),
                             alt.Tooltip("events:Q", format=","), alt.Tooltip("allocations:Q", format=","),
                             alt.Tooltip("added_ms:Q", title="added ms", format=",.3f"),
                             alt.Tooltip("wait_ms:Q", title="lock wait ms", format=",.3f"),
                             alt.Tooltip("hold_ms:Q", title="lock hold ms", format=",.3f"),
                             alt.Tooltip("firmware_ms:Q", title="firmware ms", format=",.3f"),
                             alt.Tooltip("accepted_mib:Q", title="accepted MiB", format=",.1f")])
            .add_params(pick).transform_filter(alt.datum.policy == pick)
            .properties(width=WIDTH - 120, height=alt.Step(18)))


# ------------------------------------------------------------------ 7. free pages per order
def _free_order_columns(schema: pl.Schema) -> list[tuple[int, str]]:
    out = []
    for c in schema.names():
        if c.startswith("free_order_") and c.removeprefix("free_order_").isdigit():
            out.append((int(c.removeprefix("free_order_")), c))
    return sorted(out)


def chart_free_pages(results_dir: str | Path) -> ChartLike:
    """Free pages per buddy order over time (log scale), one policy at a time."""
    pols = policy_order(results_dir, "timeseries")
    schema = pl.scan_parquet(table_path(results_dir, "timeseries")).collect_schema()
    orders = _free_order_columns(schema)
    if not orders:
        raise ResultsError(f"{results_dir}/timeseries.parquet has no free_order_<k> columns")
    ts = scan_table(results_dir, "timeseries", ["policy", "t_ns", "free_pages", *[c for _, c in orders]]).collect()
    # the contract says "free pages per order"; accept block counts too (sum * 2^k == free_pages)
    as_pages = sum(ts[c].sum() for _, c in orders)
    as_blocks = sum(ts[c].sum() << k for k, c in orders)
    mult = {c: 1 for _, c in orders}
    if as_pages != ts["free_pages"].sum() and as_blocks == ts["free_pages"].sum():
        mult = {c: 1 << k for k, c in orders}
    ts = _downsample_times(ts, "t_ns", MAX_ROWS // max(1, len(pols) * len(orders)))
    df = (ts.with_columns([(pl.col(c) * mult[c]).alias(str(k)) for k, c in orders])
          .unpivot(index=["policy", "t_ns"], on=[str(k) for k, _ in orders], variable_name="order", value_name="pages")
          .with_columns(order=pl.col("order").cast(pl.Int32), t_s=pl.col("t_ns") / 1e9,
                        mib=pl.col("pages") * 4096 / float(1 << 20))
          .select("policy", "order", "t_s", "pages", "mib"))
    title = _title("Free memory per order", ["free pages in blocks of each buddy order (log scale), "
                                             "one policy at a time (dropdown)"])
    df = df.filter(pl.col("pages") > 0)  # a log axis cannot show an empty order; the gap says it
    if df.is_empty():
        return _empty(title, "no free pages in the timeseries")
    default = next((p for p in pols if p != REFERENCE_POLICY), pols[0])
    pick = _policy_filter(pols, "free_policy", default)
    return (alt.Chart(df, title=title).mark_line(interpolate="step-after")
            .encode(x=alt.X("t_s:Q", title="trace time (s)", scale=alt.Scale(zero=False)),
                    y=alt.Y("pages:Q", scale=alt.Scale(type="log"), title="free pages"),
                    color=alt.Color("order:O", title="order", scale=alt.Scale(scheme="viridis")),
                    tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("order:O"),
                             alt.Tooltip("t_s:Q", title="t (s)", format=",.3f"),
                             alt.Tooltip("pages:Q", format=","), alt.Tooltip("mib:Q", title="MiB", format=",.1f")])
            .add_params(pick).transform_filter(alt.datum.policy == pick)
            .properties(width=WIDTH, height=300))


# ------------------------------------------------------------------ 8. IRQs-off stretches
def chart_irqs_off(results_dir: str | Path) -> ChartLike:
    """Every IRQs-off stretch over 1 ms plus the longest shorter ones, against the 1 ms and 20 s lines."""
    pols = policy_order(results_dir, "irqs_off")
    lf = scan_table(results_dir, "irqs_off", ["policy", "cpu", "start_ns", "duration_ns", "cause"])
    budget = max(50, (MAX_ROWS - 10) // max(1, len(pols)))
    ranked = lf.with_columns(rank=pl.col("duration_ns").rank("ordinal", descending=True).over("policy"))
    df = (ranked.filter(pl.col("rank") <= budget)
          .with_columns(start_s=pl.col("start_ns") / 1e9, duration_ms=pl.col("duration_ns") / 1e6)
          .with_columns(label=pl.col("duration_ns").map_elements(human_ns, return_dtype=pl.String))
          .sort("policy", "start_ns").select("policy", "cpu", "start_s", "duration_ms", "cause", "label").collect())
    counts = lf.group_by("policy").agg(n=pl.len()).collect()
    dropped = int(sum(max(0, n - budget) for n in counts["n"].to_list()))
    subtitle = ["duration of each stretch (log); lines: 1 ms and 20 s (soft lockup)",
                "the dropdown highlights one policy"]
    if dropped:
        subtitle.insert(1, f"the {budget:,} longest stretches per policy are drawn ({dropped:,} shorter ones not)")
    title = _title("IRQs-off stretches", subtitle)
    lines = pl.DataFrame({"duration_ms": [v for v, _ in IRQS_OFF_LINES_MS], "text": [t for _, t in IRQS_OFF_LINES_MS]})
    lo = min([1e-3, *df["duration_ms"].to_list()]) if len(df) else 1e-3
    hi = max([30_000.0, *df["duration_ms"].to_list()]) if len(df) else 30_000.0
    y = alt.Y("duration_ms:Q", scale=alt.Scale(type="log", domain=[lo, hi]), title="IRQs off (ms)")
    rules = alt.Chart(lines).mark_rule(strokeDash=[6, 4], color="#b22222").encode(y=y)
    texts = (alt.Chart(lines).mark_text(align="left", dy=-6, x=4, color="#b22222", fontSize=11)
             .encode(y=y, text="text:N"))
    if df.is_empty():
        return alt.layer(rules, texts, title=title).properties(width=WIDTH, height=320)
    pick = _policy_picker(pols, "irq_policy")
    pts = (alt.Chart(df).mark_point(filled=True, size=36)
           .encode(x=alt.X("start_s:Q", title="virtual time (s)"), y=y, color=_policy_color(pols),
                   shape=alt.Shape("cause:N", title="cause"),
                   opacity=alt.condition(pick, alt.value(0.85), alt.value(0.06)),
                   tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("cpu:Q", title="CPU"), alt.Tooltip("cause:N"),
                            alt.Tooltip("start_s:Q", title="start (s)", format=",.6f"),
                            alt.Tooltip("label:N", title="duration")])
           .add_params(pick))
    return alt.layer(pts, rules, texts, title=title).properties(width=WIDTH, height=320)


# ------------------------------------------------------------------ registry
@dataclass(frozen=True)
class ChartKind:
    name: str
    title: str
    description: str
    tables: tuple[str, ...]
    build: Callable[[str | Path], ChartLike]


CHART_KINDS: dict[str, ChartKind] = {k.name: k for k in (
    ChartKind("policy-comparison", "Policy comparison",
              "Firmware time during the trace and at boot, zone->lock hold and wait added over 'none', p99 and "
              "max added allocation latency.",
              ("summary",), chart_policy_comparison),
    ChartKind("added-latency", "Added allocation latency",
              "Share of allocations (mm_page_alloc) delayed by at least x, per policy, log-log.",
              ("events", "attribution_cpu"), chart_added_latency),
    ChartKind("lock-hold", "Lock hold times",
              "Log-binned histogram of hold_ns per lock section, zone->lock and the acceptance locks.",
              ("lock_sections",), chart_lock_hold),
    ChartKind("acceptance", "Acceptance progress",
              "Accepted and unaccepted memory over trace time, per policy.",
              ("timeseries",), chart_acceptance),
    ChartKind("lock-wait-heatmap", "Lock wait per CPU",
              "Sum of lock wait per CPU and virtual-time bucket, one panel per policy.",
              ("lock_sections",), chart_lock_wait_heatmap),
    ChartKind("top-processes", "Top processes",
              f"The {TOP_PROCESSES} processes with the most added latency, per policy.",
              ("attribution_process",), chart_top_processes),
    ChartKind("free-pages", "Free memory per order",
              "Free pages per buddy order over time (log scale), per policy.",
              ("timeseries",), chart_free_pages),
    ChartKind("irqs-off", "IRQs-off stretches",
              "IRQs-off stretches against the 1 ms and 20 s (soft lockup) lines.",
              ("irqs_off",), chart_irqs_off),
)}


def make_chart(results_dir: str | Path, kind: str) -> ChartLike:
    """Build chart ``kind`` (a key of :data:`CHART_KINDS`) from a results folder.

    The returned chart has been validated against the Vega-Lite schema and embeds at most
    :data:`MAX_ROWS` rows per data set.
    """
    if kind not in CHART_KINDS:
        raise ResultsError(f"unknown chart kind {kind!r}; choose one of: {', '.join(CHART_KINDS)}")
    chart = CHART_KINDS[kind].build(results_dir)
    check_rows(chart)
    return chart
