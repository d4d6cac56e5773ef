"""Altair charts of a sweep folder (``DIR/summary.parquet``) and ``pagereplay sweep-report``'s offline page.

* ``chart_axis(df, axis)``: each cost against one axis of the design space, one line per policy
  (the median over the other axes, the band from their minimum to their maximum), one panel per
  cost preset; dropdowns pick the trace.
* ``chart_heatmap(df, a, b, metric)``: one cost over two axes (median over the rest), one panel
  per policy.
* ``chart_pareto(df)``: boot-time acceptance against run-time cost (the delay the policy added to
  the traced CPUs) of every point, and the Pareto front (no other point is cheaper in both).

Every chart embeds aggregated rows only (``check_rows``: at most ``MAX_ROWS``).  ``write_sweep_report``
writes ``index.html`` (one page, JavaScript inlined: works offline) and each chart's Vega-Lite JSON.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from replay.report.charts import MAX_ROWS, REFERENCE_POLICY, ResultsError, check_rows
from replay.report.format import human_bytes
from replay.report.html import inline_js

__all__ = ["AXIS_COLUMNS", "METRICS", "chart_axis", "chart_heatmap", "chart_pareto", "load_summary",
           "sweep_charts", "varying_axes", "write_sweep_report"]

PANEL_WIDTH = 230
PANEL_HEIGHT = 150
#: heatmaps drawn at most (pairs of varying axes)
MAX_HEATMAP_PAIRS = 3


@dataclass(frozen=True)
class AxisColumn:
    column: str
    title: str
    unit: str  # "bytes", "rate", "" (a plain number) or "label" (a category)


AXIS_COLUMNS: dict[str, AxisColumn] = {a.column: a for a in [
    AxisColumn("guest_size_bytes", "guest RAM", "bytes"),
    AxisColumn("vcpus", "vCPUs", ""),
    AxisColumn("unit_bytes", "acceptance unit", "bytes"),
    AxisColumn("host_backing", "host backing", "label"),
    AxisColumn("calls_model", "calls per unit", "label"),
    AxisColumn("init_threads", "boot init threads (0: one per vCPU)", ""),
    AxisColumn("background_cpu_budget", "background CPU budget", ""),
    AxisColumn("background_rate_bytes_s", "background rate", "rate"),
    AxisColumn("firmware_accepted_bytes", "firmware-accepted RAM", "bytes"),
]}


@dataclass(frozen=True)
class Metric:
    key: str  # column of the chart data
    title: str
    unit: str
    scale: float  # summary value x scale = value in ``unit``
    columns: tuple[str, ...]  # summary columns summed into it


METRICS: tuple[Metric, ...] = (
    Metric("boot_s", "boot-time acceptance", "s", 1e-9, ("boot_accept_ns",)),
    Metric("added_ms", "run-time cost: delay added to the traced CPUs", "ms", 1e-6, ("added_ns",)),
    Metric("p99_us", "first-touch latency: p99 added per allocation", "µs", 1e-3, ("alloc_added_p99_ns",)),
    Metric("lock_wait_ms", "lock waits (zone->lock + acceptance locks)", "ms", 1e-6,
           ("zone_lock_wait_ns", "accept_lock_wait_ns")),
    Metric("accepted_mib", "memory accepted during the trace", "MiB", 1 / float(1 << 20), ("accepted_bytes",)),
    Metric("unaccepted_gib", "memory still unaccepted at the end", "GiB", 1 / float(1 << 30),
           ("unaccepted_bytes_end",)),
)
_METRIC = {m.key: m for m in METRICS}


# ------------------------------------------------------------------ data
def load_summary(sweep_dir: str | Path) -> pl.DataFrame:
    """The points that ran (``status == "ok"``) of a sweep folder, with the ``METRICS`` columns."""
    p = Path(sweep_dir) / "summary.parquet"
    if not p.is_file():
        raise ResultsError(f"{sweep_dir}: no summary.parquet (write one with `pagereplay sweep ... -o {sweep_dir}`)")
    df = pl.read_parquet(p)
    missing = [c for m in METRICS for c in m.columns if c not in df.columns]
    if missing or "status" not in df.columns:
        raise ResultsError(f"{p}: not a sweep summary (lacks {', '.join(missing) or 'status'}; see docs/sweep.md)")
    ok = df.filter(pl.col("status") == "ok")
    return ok.with_columns(**{m.key: pl.sum_horizontal(*m.columns).cast(pl.Float64) * m.scale for m in METRICS})


def varying_axes(df: pl.DataFrame) -> list[str]:
    """The axis columns that take more than one value among the points of one cost preset (the
    host backing of two presets differs, but it is an axis only where one preset takes both)."""
    out = []
    for c in AXIS_COLUMNS:
        if c in df.columns and len(df):
            n = df.group_by("costs").agg(n=pl.col(c).n_unique())["n"].max()
            if n is not None and int(n) > 1:
                out.append(c)
    return out


def policy_order(df: pl.DataFrame) -> list[str]:
    """Policies in the grid's order, ``none`` first."""
    pols = list(dict.fromkeys(df["policy"].to_list()))  # summary.parquet is in grid order
    if REFERENCE_POLICY in pols:
        pols.remove(REFERENCE_POLICY)
        pols.insert(0, REFERENCE_POLICY)
    return pols


def _label(axis: str, v: Any) -> str:
    unit = AXIS_COLUMNS[axis].unit
    if v is None:
        return "-"
    if unit == "bytes":
        return human_bytes(v).replace(".00 ", " ")
    if unit == "rate":
        return human_bytes(v).replace(".00 ", " ") + "/s"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _with_label(df: pl.DataFrame, axis: str, name: str) -> tuple[pl.DataFrame, list[str]]:
    """``df`` with the axis value as text (``name``) and the labels in value order."""
    values = sorted(v for v in df[axis].unique().to_list() if v is not None)
    labels = [_label(axis, v) for v in values]
    lut = pl.DataFrame({axis: values, name: labels}, schema={axis: df.schema[axis], name: pl.String})
    return df.join(lut, on=axis, how="left"), labels


def _picker(name: str, options: Sequence[str], title: str) -> Any:
    return alt.param(name=name, value=options[0], bind=alt.binding_select(options=list(options), name=f"{title} "))


def _policy_color(policies: Sequence[str]) -> alt.Color:
    scheme = "tableau10" if len(policies) <= 10 else "category20"
    return alt.Color("policy:N", title="policy", scale=alt.Scale(domain=list(policies), scheme=scheme),
                     sort=list(policies))


def _title(text: str, *sub: str) -> alt.TitleParams:
    return alt.TitleParams(text=text, subtitle=[s for s in sub if s], anchor="start")


# ------------------------------------------------------------------ cost against one axis
def chart_axis(df: pl.DataFrame, axis: str, metrics: Sequence[str] = tuple(_METRIC)) -> alt.FacetChart:
    """Each metric against ``axis``: a line per policy (median over the other axes, band min..max),
    a row per metric, a column per cost preset; a dropdown picks the trace."""
    pols = policy_order(df)
    lab, order = _with_label(df, axis, "x")
    agg = (lab.unpivot(index=["trace", "costs", "policy", "x"], on=list(metrics), variable_name="metric",
                       value_name="v")
           .group_by("trace", "costs", "policy", "x", "metric")
           .agg(median=pl.col("v").median(), lo=pl.col("v").min(), hi=pl.col("v").max(), points=pl.len())
           .with_columns(metric=pl.col("metric").replace_strict({k: f"{_METRIC[k].title} ({_METRIC[k].unit})"
                                                                  for k in metrics}))
           .sort("trace", "costs", "metric", "policy", "x"))
    traces = agg["trace"].unique(maintain_order=True).to_list()
    pick = _picker(f"trace_{axis}", traces, "trace")
    x = alt.X("x:O", sort=order, title=AXIS_COLUMNS[axis].title)
    color = _policy_color(pols)
    tip = [alt.Tooltip("policy:N"), alt.Tooltip("x:O", title=AXIS_COLUMNS[axis].title),
           alt.Tooltip("median:Q", format=",.4g"), alt.Tooltip("lo:Q", title="min", format=",.4g"),
           alt.Tooltip("hi:Q", title="max", format=",.4g"), alt.Tooltip("points:Q")]
    base = alt.Chart().transform_filter(alt.datum.trace == pick).encode(x=x, color=color)
    # (the band takes the lines' colour encoding: a layer without the legend hides the shared one)
    band = base.mark_area(opacity=0.15).encode(y=alt.Y("lo:Q", title=None), y2="hi:Q")
    line = base.mark_line(point=True).encode(y=alt.Y("median:Q", title=None), tooltip=tip)
    inner = alt.layer(band, line).add_params(pick).properties(width=PANEL_WIDTH, height=PANEL_HEIGHT)
    metric_titles = [f"{_METRIC[k].title} ({_METRIC[k].unit})" for k in metrics]
    return (inner.facet(data=agg, row=alt.Row("metric:N", sort=metric_titles, title=None,
                                              header=alt.Header(labelAngle=0, labelAlign="left", labelOrient="top")),
                        column=alt.Column("costs:N", title="cost preset"))
            .resolve_scale(y="independent")
            .properties(title=_title(f"Costs against {AXIS_COLUMNS[axis].title}",
                                     "line: median over the other axes; band: their minimum to maximum")))


# ------------------------------------------------------------------ two axes
def chart_heatmap(df: pl.DataFrame, a: str, b: str, metric: str = "boot_s") -> alt.FacetChart:
    """``metric`` over axes ``a`` (x) and ``b`` (y), median over the others; a panel per policy;
    dropdowns pick the trace and the cost preset."""
    pols = policy_order(df)
    lab, xo = _with_label(df, a, "x")
    lab, yo = _with_label(lab, b, "y")
    agg = (lab.group_by("trace", "costs", "policy", "x", "y").agg(v=pl.col(metric).median(), points=pl.len())
           .sort("trace", "costs", "policy", "x", "y"))
    m = _METRIC[metric]
    tp = _picker(f"trace_{a}_{b}_{metric}", agg["trace"].unique(maintain_order=True).to_list(), "trace")
    cp = _picker(f"costs_{a}_{b}_{metric}", agg["costs"].unique(maintain_order=True).to_list(), "cost preset")
    inner = (alt.Chart().transform_filter((alt.datum.trace == tp) & (alt.datum.costs == cp)).mark_rect()
             .encode(x=alt.X("x:O", sort=xo, title=AXIS_COLUMNS[a].title),
                     y=alt.Y("y:O", sort=list(reversed(yo)), title=AXIS_COLUMNS[b].title),
                     color=alt.Color("v:Q", title=m.unit, scale=alt.Scale(scheme="viridis")),
                     tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("x:O", title=AXIS_COLUMNS[a].title),
                              alt.Tooltip("y:O", title=AXIS_COLUMNS[b].title),
                              alt.Tooltip("v:Q", title=f"{m.title} ({m.unit})", format=",.4g"),
                              alt.Tooltip("points:Q")])
             .add_params(tp, cp).properties(width=150, height=120))
    return (inner.facet(data=agg, facet=alt.Facet("policy:N", sort=pols, title=None), columns=4)
            .properties(title=_title(f"{m.title} ({m.unit}) over {AXIS_COLUMNS[a].title} and {AXIS_COLUMNS[b].title}",
                                     "median over the other axes")))


# ------------------------------------------------------------------ the Pareto front
_GROUP = ("trace", "costs", "guest")


def _guest_label(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with ``guest``: its guest shape as text ("64 GiB, 4 vCPUs")."""
    lut = df.select("guest_size_bytes", "vcpus").unique().with_columns(
        guest=pl.struct("guest_size_bytes", "vcpus").map_elements(
            lambda r: f"{_label('guest_size_bytes', r['guest_size_bytes'])}, {r['vcpus']} vCPUs",
            return_dtype=pl.String))
    return df.join(lut, on=["guest_size_bytes", "vcpus"], how="left")


def pareto_front(df: pl.DataFrame, x: str = "boot_s", y: str = "added_ms") -> pl.DataFrame:
    """The points of ``df`` no other point beats in both ``x`` and ``y`` (lower is better), per
    trace, cost preset and guest shape, in ``x`` order.  The plain VM (``none``) is left out: it
    is the reference, not a way to run a confidential guest."""
    cand = df.filter(pl.col("policy") != REFERENCE_POLICY).sort(*_GROUP, x, y)
    out = []
    for _, g in cand.group_by(*_GROUP, maintain_order=True):
        best = float("inf")
        keep = []
        for v in g[y].to_list():
            keep.append(v < best)
            best = min(best, v)
        out.append(g.filter(pl.Series(keep, dtype=pl.Boolean)))
    return pl.concat(out) if out else cand.head(0)


def _thin(df: pl.DataFrame, limit: int) -> pl.DataFrame:
    """At most ``limit`` rows: points drawn at the same spot (3 significant digits) kept once."""
    if len(df) <= limit:
        return df

    def sig(c: str) -> pl.Expr:
        return pl.col(c).map_elements(lambda v: float(f"{v:.3g}"), return_dtype=pl.Float64)
    return (df.with_columns(_x=sig("boot_s"), _y=sig("added_ms"))
            .unique([*_GROUP, "policy", "_x", "_y"], keep="first", maintain_order=True).drop("_x", "_y").head(limit))


def chart_pareto(df: pl.DataFrame) -> alt.LayerChart:
    """Boot-time acceptance against run-time cost of every point, the Pareto front as a line;
    dropdowns pick the trace, the cost preset and the guest shape."""
    pols = policy_order(df)
    axes = [c for c in AXIS_COLUMNS if c in df.columns]
    df = _guest_label(df)
    keep = ["point", *_GROUP, "policy", "boot_s", "added_ms", "p99_us", *axes]
    front = pareto_front(df).select(keep).with_columns(front=pl.lit(True))
    pts = _thin(df.select(keep), MAX_ROWS - len(front) - 10).with_columns(front=pl.lit(False))
    data = pl.concat([pts, front], how="vertical_relaxed")
    picks = [_picker(f"pareto_{g}", data[g].unique(maintain_order=True).to_list(), t)
             for g, t in zip(_GROUP, ("trace", "cost preset", "guest"))]
    flt = (alt.datum.trace == picks[0]) & (alt.datum.costs == picks[1]) & (alt.datum.guest == picks[2])
    sx = alt.Scale(type="symlog", constant=1)
    sy = alt.Scale(type="symlog", constant=1)
    tip = [alt.Tooltip("policy:N"), alt.Tooltip("boot_s:Q", title="boot (s)", format=",.4g"),
           alt.Tooltip("added_ms:Q", title="added (ms)", format=",.4g"),
           alt.Tooltip("p99_us:Q", title="p99 (µs)", format=",.4g"),
           *(alt.Tooltip(f"{c}:Q" if AXIS_COLUMNS[c].unit != "label" else f"{c}:N", title=AXIS_COLUMNS[c].title)
             for c in axes)]
    base = alt.Chart(data).transform_filter(flt)
    dots = (base.transform_filter(~alt.datum.front).mark_point(filled=True, size=45, opacity=0.7)
            .encode(x=alt.X("boot_s:Q", scale=sx, title="boot-time acceptance (s)"),
                    y=alt.Y("added_ms:Q", scale=sy, title="run-time cost: delay added (ms)"),
                    color=_policy_color(pols), tooltip=tip))
    line = (base.transform_filter(alt.datum.front).mark_line(color="#444", strokeDash=[4, 3], point=True)
            .encode(x=alt.X("boot_s:Q", scale=sx), y=alt.Y("added_ms:Q", scale=sy), order="boot_s:Q", tooltip=tip))
    return (alt.layer(dots, line).add_params(*picks).properties(width=560, height=380)
            .properties(title=_title("Boot cost against run-time cost", "every point of the sweep; dashed: the "
                                     f"Pareto front ('{REFERENCE_POLICY}', the plain VM, left out)",
                                     "symlog scales")))


# ------------------------------------------------------------------ the page
@dataclass
class SweepChart:
    id: str
    title: str
    spec: dict[str, Any]


def sweep_charts(df: pl.DataFrame) -> list[SweepChart]:
    """Every chart of the report: one per varying axis, the heatmaps, the Pareto front."""
    axes = varying_axes(df)
    out = [SweepChart("pareto", "Pareto front: boot against run-time cost", check_rows(chart_pareto(df)))]
    for a in axes:
        out.append(SweepChart(f"axis-{a}", f"Costs against {AXIS_COLUMNS[a].title}", check_rows(chart_axis(df, a))))
    numeric = [a for a in axes if AXIS_COLUMNS[a].unit != "label"] + [a for a in axes if AXIS_COLUMNS[a].unit == "label"]
    for a, b in list(itertools.combinations(numeric, 2))[:MAX_HEATMAP_PAIRS]:
        for m in ("boot_s", "added_ms"):
            out.append(SweepChart(f"heat-{a}-{b}-{m}", f"{_METRIC[m].title}: {AXIS_COLUMNS[a].title} x "
                                  f"{AXIS_COLUMNS[b].title}", check_rows(chart_heatmap(df, a, b, m))))
    return out


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _script_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True).replace("</", "<\\/").replace("<!--", "<\\!--")


_EMBED = """
document.querySelectorAll('div.chart[data-id]').forEach(function (el) {
  var spec = JSON.parse(document.getElementById('spec-' + el.getAttribute('data-id')).textContent);
  vegaEmbed(el, spec, {actions: false, renderer: 'svg'})
    .then(function () { el.setAttribute('data-rendered', 'true'); })
    .catch(function (e) { el.setAttribute('data-rendered', 'error'); el.textContent = 'chart failed: ' + e; });
});
"""
_CSS = """body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#24292f;color:#fff;padding:14px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#d0d7de}
main{padding:8px 28px 40px}figure{margin:0 0 26px;background:#fff;border:1px solid #d0d7de;padding:12px 14px}
table{border-collapse:collapse;font-size:13px;background:#fff}th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
.note{color:#57606a;font-size:13px}.toc a{color:#0969da;margin-right:12px;text-decoration:none}"""


def _overview(full: pl.DataFrame, ok: pl.DataFrame) -> str:
    failed = full.filter(pl.col("status") != "ok")
    rows = [("points", f"{len(full):,}"), ("replayed", f"{len(ok):,}"), ("failed", f"{len(failed):,}"),
            ("traces", ", ".join(full["trace"].unique(maintain_order=True).to_list())),
            ("policies", ", ".join(full["policy"].unique(maintain_order=True).to_list())),
            ("cost presets", ", ".join(full["costs"].unique(maintain_order=True).to_list())),
            ("axes varying", ", ".join(AXIS_COLUMNS[a].title for a in varying_axes(ok)) or "none")]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    errs = ""
    if len(failed):
        items = "".join(f"<tr><td>{_e(r['trace'])}/{_e(r['policy'])}/{_e(r['costs'])}</td><td>{_e(r['point'])}</td>"
                        f"<td>{_e(r['error'])}</td></tr>" for r in failed.head(50).iter_rows(named=True))
        errs = f"<h3>Failed points</h3><table><tr><th>point</th><th>id</th><th>error</th></tr>{items}</table>"
    return f"<table>{body}</table>{errs}"


def write_sweep_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """``out_dir/index.html`` (default ``DIR/report``) and ``charts/<id>.vl.json``; returns the page."""
    sd = Path(sweep_dir)
    od = Path(out_dir) if out_dir is not None else sd / "report"
    ok = load_summary(sd)
    full = pl.read_parquet(sd / "summary.parquet")
    charts = sweep_charts(ok) if len(ok) else []
    (od / "charts").mkdir(parents=True, exist_ok=True)
    figs, specs, toc = [], [], []
    for c in charts:
        (od / "charts" / f"{c.id}.vl.json").write_text(json.dumps(c.spec, indent=1, sort_keys=True) + "\n")
        figs.append(f"<figure id=\"fig-{_e(c.id)}\"><div class=\"chart\" data-id=\"{_e(c.id)}\"></div>"
                    f"<p class=\"note\"><a href=\"charts/{_e(c.id)}.vl.json\">Vega-Lite JSON</a></p></figure>")
        specs.append(f"<script type=\"application/json\" id=\"spec-{_e(c.id)}\">{_script_json(c.spec)}</script>")
        toc.append(f"<a href=\"#fig-{_e(c.id)}\">{_e(c.title)}</a>")
    empty = "" if charts else "<p class=\"note\">No point replayed: nothing to chart.</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pagereplay sweep: {_e(sd.name)}</title><style>{_CSS}</style>
<script>{inline_js()}</script></head><body>
<header><h1>pagereplay sweep</h1><p>{_e(sd.name)}: {len(full):,} points</p></header><main>
<section><h2>Sweep</h2>{_overview(full, ok)}</section>
<section><h2>Charts</h2><p class="toc">{''.join(toc)}</p>{''.join(figs)}{empty}</section>
<p class="note">Everything on this page works offline; the dropdowns pick the trace and the cost preset.</p>
</main>{''.join(specs)}<script>{_EMBED}</script></body></html>
"""
    index = od / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
