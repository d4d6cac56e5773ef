"""The offline HTML report of a results folder, its layout description, CSV export and the demo.

``write_report(results_dir, out_dir)`` writes ``out_dir/index.html`` (inputs, summary table,
every chart of :data:`replay.report.charts.CHART_KINDS`, anomalies) with Vega, Vega-Lite and
vega-embed inlined from vl-convert's bundle, so the page works with no network and names no
external URL; each chart also goes to ``out_dir/charts/<kind>.{png,svg,vl.json}`` (vl-convert,
no browser).  ``results_readme()`` documents the folder (docs/results.md) and what a given
folder holds, ``export_csv()`` writes every table as CSV, and ``run_demo()`` chains a replay
step and the report.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from replay.report.format import human_bytes, human_ns
from replay.report.charts import (CHART_KINDS, REFERENCE_POLICY, ResultsError, make_chart,
                           policy_order, scan_table, table_path)

__all__ = [
    "PNG_SCALE", "RESULT_TABLES", "VL_VERSION", "chart_html", "default_demo_trace", "documented_columns",
    "export_csv", "inline_js", "results_metadata", "results_readme", "run_demo", "save_chart", "write_report",
    "write_results_readme",
]

VL_VERSION = "6.4"  # the Vega-Lite altair 6.x writes; vl-convert bundles it
PNG_SCALE = 2.0
METADATA_PREFIX = "pagereplay."

# docs/results.md, kept here so an installed tool can describe the folder without the repository
RESULT_TABLES: dict[str, tuple[str, str]] = {
    "events": ("(policy, input event the policy charged something to; every input event with --all-events "
               "or in a plain replay)",
               "policy, seq, ts_ns, vts_ns, cpu, comm, pid, event, pfn, order, zone, anomaly (nullable), "
               "section (id or -1), added_ns, lock_wait_ns, lock_wait_behind_accept_ns, lock_hold_ns, firmware_ns, "
               "accepted_bytes, "
               "forced (bool: exact mode charged the trace's placement)"),
    "lock_sections": ("(policy, critical section)",
                      "policy, id, lock (zone:<node>:<zone>, accept_global, accepting_list), kind (pcp_refill, "
                      "pcp_drain, buddy_alloc, buddy_free, fallback, accept), cpu, zone, start_ns (virtual), "
                      "wait_ns, hold_ns, pages, firmware_ns, irqs_off (bool), blocker_cpu, "
                      "waited_behind (accept, allocator)"),
    "firmware_calls": ("(policy, batch of calls made at one point)",
                       "policy, seq (event that triggered it, -1 at boot), cpu, vts_ns, kind (tdx_accept_4k, "
                       "tdx_accept_2m, tdx_accept_2m_failed, tdx_mapgpa, snp_psc, snp_pvalidate_4k, "
                       "snp_pvalidate_2m, zeroing), calls, ns, bytes, held (zone_lock, accept_global, irqs_off, none)"),
    "irqs_off": ("(policy, IRQs-off stretch)", "policy, cpu, start_ns, duration_ns, cause"),
    "attribution_cpu": ("(policy, cpu)", "policy, cpu, events, allocations, added_ns, lock_wait_ns, "
                                         "lock_wait_behind_accept_ns, lock_hold_ns, firmware_ns, accepted_bytes"),
    "attribution_process": ("(policy, comm, pid)", "policy, comm, pid, events, allocations, added_ns, lock_wait_ns, "
                                                   "lock_wait_behind_accept_ns, lock_hold_ns, firmware_ns, "
                                                   "accepted_bytes"),
    "timeseries": ("(policy, time bucket)", "policy, t_ns (bucket start), accepted_bytes, unaccepted_bytes, "
                                            "free_pages, free_order_0 .. free_order_10"),
    "anomalies": ("anomalous input event", "seq, ts_ns, cpu, event, pfn, order, kind, explained, kernel_path"),
    "summary": ("policy (none first)",
                "policy, mode, cost_preset, events_replayed, anomalies, anomaly_rate, unexplained_anomaly_rate, "
                "invariants_ok, lock_overlaps, forced_allocations, firmware_calls, firmware_ns, accepted_bytes, "
                "boot_accept_ns, "
                "zone_lock_hold_ns, zone_lock_hold_max_ns, zone_lock_wait_ns, zone_lock_wait_max_ns, "
                "accept_lock_hold_ns, accept_lock_wait_ns, accept_lock_wait_max_ns, irqs_off_max_ns, "
                "irqs_off_over_1ms, irqs_off_over_20s, alloc_added_p50_ns, alloc_added_p90_ns, alloc_added_p99_ns, "
                "alloc_added_p999_ns, alloc_added_max_ns"),
}

_README_HEAD = """\
pagereplay results folder
=========================

`pagereplay replay TRACE --policy P [--policy Q ...] -o results/` writes one folder. Every table is a
Parquet file with file-level key-value metadata under the `pagereplay.` prefix (tool and schema
version, input name and sha256, mode, cost preset name and JSON, policy parameters JSON, seed,
layout JSON). Every table that depends on the policy has a `policy` column (dictionary string).
Times are integer nanoseconds. `ts_ns` is trace time; `vts_ns` is virtual time (trace time plus
the delay the policy has added to that CPU so far).

Read any table with polars or pyarrow alone:
    polars.read_parquet("results/summary.parquet")
    polars.read_parquet_metadata("results/summary.parquet")      # the pagereplay.* keys
    pyarrow.parquet.read_metadata("results/summary.parquet").metadata
"""


def documented_columns(name: str) -> list[str]:
    """The column names :data:`RESULT_TABLES` lists for table ``name`` (notes in parentheses dropped)."""
    text = re.sub(r"\([^)]*\)", "", RESULT_TABLES[name][1])
    cols: list[str] = []
    for part in text.split(","):
        c = part.strip().split(" ")[0]
        if c == "free_order_0":
            cols += [f"free_order_{k}" for k in range(11)]
        elif c and c != "free_order_10":
            cols.append(c)
    return cols


# ------------------------------------------------------------------ metadata
def _md_of(path: Path) -> dict[str, str]:
    raw = pq.read_metadata(path).metadata or {}
    out = {}
    for k, v in raw.items():
        key = k.decode("utf-8", "replace")
        if key.startswith(METADATA_PREFIX):
            out[key.removeprefix(METADATA_PREFIX)] = v.decode("utf-8", "replace")
    return out


def results_metadata(results_dir: str | Path) -> dict[str, str]:
    """The ``pagereplay.*`` file metadata (prefix removed) of summary.parquet, else of any table."""
    d = Path(results_dir)
    for name in ("summary", *RESULT_TABLES):
        p = d / f"{name}.parquet"
        if p.is_file():
            md = _md_of(p)
            md.pop("table", None)
            return md
    raise ResultsError(f"{results_dir}: no pagereplay result tables (*.parquet) found")


def _json(md: dict[str, str], *keys: str) -> Any:
    for k in keys:
        if k in md and md[k]:
            try:
                return json.loads(md[k])
            except ValueError:
                return md[k]
    return None


def _first(md: dict[str, str], *keys: str) -> str:
    return next((md[k] for k in keys if md.get(k)), "")


#: an absolute POSIX path (two or more components, not inside a word: "kB/s", "4K/2M" stay)
_ABS_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.+@~-]+/)+[\w.+@~-]+")


def portable(text: str) -> str:
    """``text`` with every absolute path cut to its last two components (``/home/u/t/proc_before`` ->
    ``t/proc_before``): a report names no folder of the machine that made it."""
    return _ABS_PATH.sub(lambda m: "/".join(m.group(0).rsplit("/", 2)[-2:]), text)


def _file_name(path: str) -> str:
    return Path(path).name if path else ""


def _inputs(md: dict[str, str]) -> list[dict[str, Any]]:
    """The trace inputs, from ``inputs`` (JSON list, as `pagereplay parse` writes) or single keys."""
    inputs = _json(md, "inputs")
    if isinstance(inputs, dict):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        inputs = [{"name": _first(md, "input_name", "input", "trace"), "sha256": _first(md, "input_sha256", "sha256")}]
    return [i for i in inputs if isinstance(i, dict)]


# ------------------------------------------------------------------ describe / csv
def results_readme(results_dir: str | Path | None = None) -> str:
    """The folder layout (docs/results.md) and, given a folder, what it holds (rows, columns, metadata)."""
    lines = [_README_HEAD, "Tables (one Parquet file each):", ""]
    for name, (per, cols) in RESULT_TABLES.items():
        lines.append(f"  {name}.parquet   one row per {per}")
        lines.append(f"      {cols}")
    if results_dir is None:
        return "\n".join(lines) + "\n"
    d = Path(results_dir)
    if not d.is_dir():
        raise ResultsError(f"{results_dir}: no such results folder")
    lines += ["", f"This folder: {d}", ""]
    present = {p.stem: p for p in sorted(d.glob("*.parquet"))}
    for name in [*RESULT_TABLES, *sorted(set(present) - set(RESULT_TABLES))]:
        p = present.get(name)
        if p is None:
            lines.append(f"  {name}.parquet   MISSING")
            continue
        meta = pq.read_metadata(p)
        schema = pl.read_parquet_schema(p)
        expected = documented_columns(name) if name in RESULT_TABLES else []
        extra = "" if name in RESULT_TABLES else "   (not in the documented layout)"
        lines.append(f"  {name}.parquet   {meta.num_rows:,} rows, {len(schema)} columns{extra}")
        lines.append("      " + ", ".join(f"{c}: {t}" for c, t in schema.items()))
        missing = [c for c in expected if c not in schema]
        if name in RESULT_TABLES and missing:
            lines.append(f"      missing documented columns: {', '.join(missing)}")
    try:
        md = results_metadata(d)
    except ResultsError:
        md = {}
    if md:
        lines += ["", "Metadata (pagereplay.* keys of summary.parquet):"]
        for k, v in sorted(md.items()):
            lines.append(f"  {k} = {v if len(v) <= 100 else v[:97] + '...'}")
    return "\n".join(lines) + "\n"


def write_results_readme(results_dir: str | Path) -> Path:
    """Write ``results_dir/README.txt`` (what :func:`results_readme` prints) beside the tables."""
    p = Path(results_dir) / "README.txt"
    p.write_text(results_readme(results_dir), encoding="utf-8")
    return p


def export_csv(results_dir: str | Path, out: str | Path) -> list[Path]:
    """Every table of ``results_dir`` as ``out/<table>.csv`` plus ``out/metadata.json`` (CSV has no metadata)."""
    d, o = Path(results_dir), Path(out)
    tables = sorted(d.glob("*.parquet"), key=lambda p: (list(RESULT_TABLES).index(p.stem)
                                                        if p.stem in RESULT_TABLES else 99, p.stem))
    if not tables:
        raise ResultsError(f"{results_dir}: no pagereplay result tables (*.parquet) found")
    o.mkdir(parents=True, exist_ok=True)
    written, meta = [], {}
    for p in tables:
        df = pl.read_parquet(p)
        df = df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items()
                              if isinstance(t, (pl.Categorical, pl.Enum))])
        target = o / f"{p.stem}.csv"
        df.write_csv(target)
        written.append(target)
        meta[p.stem] = _md_of(p)
    (o / "metadata.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    written.append(o / "metadata.json")
    return written


# ------------------------------------------------------------------ chart files
@functools.lru_cache(maxsize=1)
def inline_js() -> str:
    """vega + vega-lite + vega-embed as one script (vl-convert's bundle; no network)."""
    import vl_convert as vlc

    return vlc.javascript_bundle(vl_version=VL_VERSION).replace("</script", "<\\/script")


def _png(spec: dict[str, Any], scale: float = PNG_SCALE) -> bytes:
    import vl_convert as vlc

    return vlc.vegalite_to_png(spec, vl_version=VL_VERSION, scale=scale, allowed_base_urls=[])


def _svg(spec: dict[str, Any]) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(spec, vl_version=VL_VERSION, allowed_base_urls=[])


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(obj, sort_keys=True).replace("</", "<\\/").replace("<!--", "<\\!--")


def chart_html(spec: dict[str, Any], title: str = "pagereplay chart") -> str:
    """A standalone, offline HTML page showing one Vega-Lite spec."""
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:system-ui,sans-serif;margin:16px}}</style>\n<script>{inline_js()}</script>\n"
            f"</head><body><div id=\"chart\" class=\"chart\"></div>\n"
            f"<script type=\"application/json\" id=\"spec\">{_script_json(spec)}</script>\n"
            f"<script>{_EMBED_ONE}</script></body></html>\n")


def save_chart(results_dir: str | Path, kind: str, out: str | Path) -> Path:
    """Chart ``kind`` to ``out`` (.html offline page, .png or .svg by suffix)."""
    o = Path(out)
    fmt = o.suffix.lower().lstrip(".")
    if fmt not in ("html", "png", "svg", "json"):
        raise ResultsError(f"{out}: unknown output type {o.suffix!r}; use .html, .png, .svg or .json")
    spec = make_chart(results_dir, kind).to_dict()
    if o.parent and not o.parent.exists():
        o.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        o.write_bytes(_png(spec))
    elif fmt == "svg":
        o.write_text(_svg(spec))
    elif fmt == "json":
        o.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    else:
        o.write_text(chart_html(spec, f"pagereplay {kind}: {Path(results_dir).name}"))
    return o


# ------------------------------------------------------------------ HTML pieces
def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _kv_table(rows: Iterable[tuple[str, Any]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v if isinstance(v, _Raw) else _e(v)}</td></tr>" for k, v in rows)
    return f"<table class=\"{cls}\">{body}</table>"


class _Raw(str):
    """Already-escaped HTML."""


def _grid(header: list[str], rows: list[list[Any]], cls: str = "grid", num: Iterable[int] = ()) -> str:
    """A table; columns whose index is in ``num`` are right-aligned (numbers)."""
    nums = set(num)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    td = ("<td>", '<td class="num">')
    body = "".join("<tr>" + "".join(f"{td[i in nums]}{c if isinstance(c, _Raw) else _e(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return (f"<div class=\"scroll\"><table class=\"{cls}\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _short(v: Any, n: int = 160) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= n else s[: n - 3] + "..."


def _kernel_profile(md: dict[str, str]) -> str:
    """The kernel profile the model ran (issue 16's ``kernel_profile`` key: a name or a JSON object)."""
    prof = _json(md, "kernel_profile")
    if isinstance(prof, dict):
        name = prof.get("name") or prof.get("version") or ""
        rest = ", ".join(f"{k} {v}" for k, v in prof.items() if k not in ("name",) and not isinstance(v, (dict, list)))
        return portable(f"{name} ({rest})" if rest and name else (name or rest))
    return portable(str(prof)) if prof else "not recorded"


def _options(md: dict[str, str]) -> str:
    """The replay's options as recorded (mode, costs, seed, snapshots, and an ``options`` object if any)."""
    opts = [("mode", _first(md, "mode")), ("costs", _first(md, "cost_preset", "costs")), ("seed", _first(md, "seed")),
            ("snapshot", portable(_first(md, "snapshot"))), ("end snapshot", portable(_first(md, "end_snapshot")))]
    extra = _json(md, "options")
    if isinstance(extra, dict):
        opts += [(str(k), portable(json.dumps(v) if isinstance(v, (dict, list)) else str(v))) for k, v in extra.items()]
    return "; ".join(f"{k} {v}" for k, v in opts if v not in ("", None))


def _inputs_html(md: dict[str, str], pols: list[str]) -> str:
    parts = []
    ins = _inputs(md)
    rows: list[tuple[str, Any]] = []
    for i, inp in enumerate(ins):
        sfx = f" {i + 1}" if len(ins) > 1 else ""
        rows.append((f"trace{sfx}", _file_name(str(inp.get("name", ""))) or "(unknown)"))
        rows.append((f"sha256{sfx}", _Raw(f"<code>{_e(inp.get('sha256', '') or '(not recorded)')}</code>")))
    rows += [("format", _first(md, "format") or ", ".join(str(i.get("format", "")) for i in ins if i.get("format"))),
             ("kernel", _first(md, "kernel_version", "kernel") or "not recorded"),
             ("kernel profile", _kernel_profile(md)),
             ("replay options", _options(md)),
             ("pagereplay", " / ".join(x for x in (_first(md, "tool_version", "version"),
                                                    "results schema " + _first(md, "schema_version")) if x.strip()))]
    parts.append(_kv_table([(k, v) for k, v in rows if v != ""]))
    parts.append(_layout_html(_json(md, "layout_json", "layout")))
    parts.append(_policies_html(_json(md, "policies_json", "policies", "policy_params", "policy_json"), pols))
    cost = _json(md, "cost_preset_json", "costs_json", "cost_json", "cost_params")
    if isinstance(cost, dict):
        parts.append("<details><summary>Cost preset parameters" + (f": {_e(cost.get('name', ''))}" if
                     cost.get("name") else "") + "</summary>"
                     + _kv_table((k, portable(_short(v, 400))) for k, v in cost.items()) + "</details>")
    elif cost:
        parts.append(f"<details><summary>Cost preset parameters</summary><pre>{_e(portable(str(cost)))}</pre></details>")
    parts.append("<details><summary>All metadata keys</summary>"
                 + _kv_table((f"pagereplay.{k}", portable(_short(v, 300))) for k, v in sorted(md.items()))
                 + "</details>")
    return "".join(parts)


def _layout_html(layout: Any) -> str:
    if not isinstance(layout, dict):
        return "<p class=\"note\">Memory layout: not recorded.</p>" if layout is None else \
            f"<details><summary>Memory layout</summary><pre>{_e(layout)}</pre></details>"
    page = int(layout.get("page_size") or 4096)
    zones = [z for z in layout.get("zones", []) if isinstance(z, dict)]
    present = layout.get("total_present") or sum(int(z.get("present") or 0) for z in zones)
    head = (f"<h3>Memory layout</h3><p>{len(layout.get('nodes', [])) or 1} node(s), "
            f"{_e(layout.get('nr_cpus', '?'))} CPUs, {_e(human_bytes(present * page))} present "
            f"({int(present):,} pages of {page} B), MAX_PAGE_ORDER {_e(layout.get('max_page_order', '?'))}"
            + (f"; source: {_e(portable(str(layout['source'])))}" if layout.get("source") else "") + "</p>")
    cols = ["node", "name", "zone_start_pfn", "spanned", "present", "managed", "wmark_min", "wmark_low",
            "wmark_high", "wmark_promo"]
    rows = [[(f"{z[c]:,}" if isinstance(z.get(c), int) and c not in ("node",) else z.get(c, "")) for c in cols]
            for z in zones if z.get("present", 1)]
    return head + (_grid(["node", "zone", "start pfn", "spanned", "present", "managed", "min", "low", "high",
                          "promo"], rows, num=range(2, 10)) if rows else "")


#: the policy parameters of the compact table (the design-space axes; the rest is behind <details>)
POLICY_COLUMNS = ("trigger", "unit_bytes", "held_during_call", "bitmap_locking", "accept_target", "collision",
                  "kernel_version")


def _param(k: str, v: Any) -> str:
    if k == "unit_bytes" and isinstance(v, int):
        return human_bytes(v)
    if isinstance(v, list):
        return "+".join(str(x) for x in v) or "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return portable(_short(v, 120))


def _policies_html(pol: Any, order: list[str]) -> str:
    if isinstance(pol, list):
        pol = {str(p.get("name", i)): p for i, p in enumerate(pol) if isinstance(p, dict)}
    if not isinstance(pol, dict) or not pol:
        return "<p class=\"note\">Policy parameters: not recorded.</p>"
    names = [p for p in order if p in pol] + [p for p in pol if p not in order]
    params = {n: (pol[n] if isinstance(pol[n], dict) else {"value": pol[n]}) for n in names}
    cols = [c for c in POLICY_COLUMNS if any(c in params[n] for n in names)]
    rows = [[n, *[_param(c, params[n].get(c, "")) for c in cols]] for n in names]
    every = "".join(f"<details><summary>{_e(n)}</summary>"
                    + _kv_table((k, _param(k, v)) for k, v in params[n].items() if k != "name") + "</details>"
                    for n in names)
    return ("<h3>Policies</h3>" + _grid(["policy", *[c.replace("_", " ") for c in cols]], rows, "grid params")
            + "<p class=\"note\">Every parameter of each policy:</p>" + every)


def _fmt_summary(col: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if col.endswith("_ns"):
        return human_ns(v)
    if col.endswith("_bytes"):
        return human_bytes(v)
    if col.endswith("_rate") and isinstance(v, (int, float)):
        return f"{100 * v:.4f} %"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _summary_html(results_dir: Path) -> str:
    try:
        path = table_path(results_dir, "summary")
    except ResultsError as e:
        return f"<p class=\"note\">{_e(e)}</p>"
    df = pl.read_parquet(path)
    df = df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items()
                          if isinstance(t, (pl.Categorical, pl.Enum))])
    if "policy" not in df.columns or df.is_empty():
        return "<p class=\"note\">summary.parquet has no policy rows.</p>"
    recs = df.to_dicts()
    order = policy_order(results_dir)
    recs.sort(key=lambda r: order.index(r["policy"]) if r["policy"] in order else len(order))
    ref = next((r for r in recs if r["policy"] == REFERENCE_POLICY), None)
    rows = []
    for col in df.columns:
        if col == "policy":
            continue
        cells: list[Any] = [col]
        for r in recs:
            v = r[col]
            txt = _e(_fmt_summary(col, v))
            bad = (col == "invariants_ok" and v is False) or (col == "irqs_off_over_20s" and (v or 0) > 0)
            delta = ""
            if ref is not None and r is not ref and isinstance(v, (int, float)) and not isinstance(v, bool) \
                    and isinstance(ref[col], (int, float)) and (col.endswith("_ns") or col.endswith("_bytes")):
                d = v - ref[col]
                if d:
                    sign = "+" if d > 0 else "−"
                    dtxt = human_ns(abs(d)) if col.endswith("_ns") else human_bytes(abs(d))
                    delta = f"<span class=\"delta\">{sign}{_e(dtxt)}</span>"
            cells.append(_Raw(f"<span class=\"{'bad' if bad else ''}\">{txt}</span>{delta}"))
        rows.append(cells)
    return (_grid(["", *[r["policy"] for r in recs]], rows, "grid summary", num=range(1, len(recs) + 1))
            + f"<p class=\"note\">Small figures: difference against '{REFERENCE_POLICY}'.</p>")


def _anomalies_html(results_dir: Path) -> str:
    try:
        lf = scan_table(results_dir, "anomalies", ["seq", "ts_ns", "event", "kind", "explained", "kernel_path"])
    except ResultsError as e:
        return f"<p class=\"note\">{_e(e)}</p>"
    df = lf.collect()
    if df.is_empty():
        return "<p>No anomalous input events.</p>"
    n, unexpl = len(df), int((~df["explained"].fill_null(False)).sum())
    events = None
    try:
        events = pl.read_parquet(table_path(results_dir, "summary"), columns=["events_replayed"])["events_replayed"][0]
    except (ResultsError, pl.exceptions.PolarsError, IndexError):
        pass
    rate = f" of {events:,} events ({100 * n / events:.3f} %)" if events else ""
    g = (df.group_by("kind", "event", "explained", "kernel_path")
         .agg(count=pl.len(), first_seq=pl.col("seq").min(), first_ts_ns=pl.col("ts_ns").min())
         .sort(["count", "kind", "event", "first_seq"], descending=[True, False, False, False]))
    rows = [[r["kind"], r["event"], "yes" if r["explained"] else _Raw("<span class=\"bad\">no</span>"),
             f"{r['count']:,}", r["first_seq"], human_ns(r["first_ts_ns"]), r["kernel_path"] or ""]
            for r in g.iter_rows(named=True)]
    return (f"<p>{n:,} anomalous input events{rate}; {unexpl:,} not explained by a known kernel path.</p>"
            + _grid(["kind", "event", "explained", "events", "first seq", "first at", "kernel path"], rows,
                    num=(3, 4, 5)))


_EMBED_ONE = """
(function () {
  var el = document.getElementById('chart');
  var spec = JSON.parse(document.getElementById('spec').textContent);
  vegaEmbed(el, spec, {actions: false, renderer: 'svg'})
    .then(function () { el.setAttribute('data-rendered', 'true'); })
    .catch(function (e) { el.setAttribute('data-rendered', 'error'); el.textContent = 'chart failed: ' + e;
                          console.error(e); });
})();
"""

_EMBED_ALL = """
(function () {
  document.querySelectorAll('div.chart[data-kind]').forEach(function (el) {
    var spec = JSON.parse(document.getElementById('spec-' + el.getAttribute('data-kind')).textContent);
    vegaEmbed(el, spec, {actions: false, renderer: 'svg'})
      .then(function () { el.setAttribute('data-rendered', 'true'); })
      .catch(function (e) { el.setAttribute('data-rendered', 'error'); el.textContent = 'chart failed: ' + e;
                            console.error(e); });
  });
})();
"""

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#24292f;color:#fff;padding:14px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#d0d7de}nav a{color:#9ecbff;margin-right:14px;text-decoration:none}
main{padding:8px 28px 40px;max-width:1250px}section{margin-top:26px}
h2{border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;background:#fff}th,td{border:1px solid #d0d7de;padding:3px 8px;
vertical-align:top}table.kv th{text-align:left;background:#f3f4f6;white-space:nowrap}
table.grid thead th{background:#f3f4f6;position:sticky;top:0}table.grid td{text-align:left;overflow-wrap:anywhere}
table.grid td.num{text-align:right;white-space:nowrap}table.summary{table-layout:fixed;width:100%}
table.summary th{overflow-wrap:anywhere;font-size:12px}table.summary th:first-child{width:200px}
table.summary td:first-child{overflow-wrap:anywhere}ul.findings li{margin:0 0 6px}*{box-sizing:border-box}table.grid td:first-child{font-weight:600}table.params td{text-align:left;white-space:normal;
max-width:260px}.scroll{overflow-x:auto;max-width:100%}.delta{display:block;color:#57606a;font-size:11px}
.bad{color:#cf222e;font-weight:700}.note{color:#57606a;font-size:13px}code{font-size:12px}
figure{margin:0 0 26px;background:#fff;border:1px solid #d0d7de;padding:12px 14px}figcaption{font-size:12px;
color:#57606a;margin-top:6px}figure p{margin:0 0 6px;color:#57606a;font-size:13px}.chart{min-height:60px}
details{margin:8px 0}.toc a{color:#0969da;text-decoration:none}summary{cursor:pointer;color:#0969da}
"""


def _findings_html(results_dir: Path) -> str:
    """The findings (``replay.report.findings``): a sentence per policy, the cheapest per axis."""
    from replay.report.findings import findings

    try:
        f = findings(results_dir)
    except ResultsError as e:
        return f"<p class=\"note\">No findings: {_e(e)}</p>"
    items = "".join(f"<li><strong>{_e(p)}</strong>: {_e(t)}</li>" for p, t in f.policies)
    rows = [[label, ", ".join(best), v, worst or "-", wv] for label, best, v, worst, wv in f.cheapest]
    notes = "".join(f"<p class=\"note\">{_e(n)}</p>" for n in f.notes)
    ref = (f"Against '{_e(f.reference)}' (the plain VM): zone->lock hold and wait and the IRQs-off figures are "
           "differences from it, the rest are absolute." if f.reference else "")
    return (f"<p class=\"note\">{ref}</p><ul class=\"findings\">{items}</ul>{notes}"
            "<h3>Cheapest on each axis</h3>"
            + _grid(["axis", "cheapest", "its cost", "costliest", "its cost"], rows, "grid cheapest", num=(2, 4)))


def _figure(rd: Path, kind: str, charts_dir: Path, images: bool) -> tuple[str, str | None]:
    """(the figure's HTML, its spec's <script> or None when the chart is not available)."""
    ck = CHART_KINDS[kind]
    try:
        spec = make_chart(rd, kind).to_dict()
    except ResultsError as e:
        return (f"<figure id=\"fig-{_e(kind)}\"><h3>{_e(ck.title)}</h3>"
                f"<p class=\"note\">Not available: {_e(e)}</p></figure>", None)
    (charts_dir / f"{kind}.vl.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    links = f"<a href=\"charts/{_e(kind)}.vl.json\">Vega-Lite JSON</a>"
    if images:
        (charts_dir / f"{kind}.png").write_bytes(_png(spec))
        (charts_dir / f"{kind}.svg").write_text(_svg(spec))
        links = f"<a href=\"charts/{_e(kind)}.png\">PNG</a> · <a href=\"charts/{_e(kind)}.svg\">SVG</a> · " + links
    # the chart carries its own title; the caption says where the data comes from
    return (f"<figure id=\"fig-{_e(kind)}\">"
            f"<div class=\"chart\" id=\"chart-{_e(kind)}\" data-kind=\"{_e(kind)}\"></div>"
            f"<figcaption>{_e(ck.description)} <code>{_e(kind)}</code> from "
            f"{_e(', '.join(t + '.parquet' for t in ck.tables))} · {links}</figcaption></figure>",
            f"<script type=\"application/json\" id=\"spec-{_e(kind)}\">{_script_json(spec)}</script>")


#: the chart drawn right after the findings
LEAD_CHART = "policy-comparison"


def write_report(results_dir: str | Path, out_dir: str | Path, *, kinds: Iterable[str] | None = None,
                 images: bool = True) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/charts/<kind>.{png,svg,vl.json}``; return the HTML path.

    The page answers first (findings, then the policy comparison chart), then gives the details
    (summary table, the other charts, anomalies, inputs and parameters).  A chart whose table is
    missing from the folder is listed as not available instead of failing the whole report.  The
    page names its inputs by file name and sha256, never by a path of the machine that made it.
    """
    rd, od = Path(results_dir), Path(out_dir)
    md = results_metadata(rd)
    charts_dir = od / "charts"
    charts_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    specs: list[str] = []
    for kind in (list(kinds) if kinds is not None else list(CHART_KINDS)):
        figures[kind], spec = _figure(rd, kind, charts_dir, images)
        if spec is not None:
            specs.append(spec)
    lead = figures.pop(LEAD_CHART, "")
    toc = " · ".join(f"<a href=\"#fig-{_e(k)}\">{_e(CHART_KINDS[k].title)}</a>" for k in figures)
    trace = ", ".join(_file_name(str(i.get("name", ""))) for i in _inputs(md) if i.get("name")) or rd.name
    try:
        pols = policy_order(rd)
    except ResultsError:
        pols = []
    subtitle = " · ".join(x for x in (
        f"trace {trace}", f"mode {_first(md, 'mode')}" if _first(md, "mode") else "",
        f"cost preset {_first(md, 'cost_preset', 'costs')}" if _first(md, "cost_preset", "costs") else "",
        f"{len(pols)} policies" if pols else "") if x)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pagereplay report: {_e(trace)}</title><style>{_CSS}</style>
<script>{inline_js()}</script>
</head><body>
<header><h1>pagereplay report</h1><p>{_e(subtitle)}</p>
<nav><a href="#findings">Findings</a><a href="#comparison">Comparison</a><a href="#summary">Summary</a>
<a href="#charts">Charts</a><a href="#anomalies">Anomalies</a><a href="#inputs">Inputs</a></nav>
</header><main>
<section id="findings"><h2>Findings</h2>{_findings_html(rd)}</section>
<section id="comparison"><h2>Policy comparison</h2>{lead}</section>
<section id="summary"><h2>Summary</h2>{_summary_html(rd)}</section>
<section id="charts"><h2>Charts</h2><p class="toc">{toc}</p>{''.join(figures.values())}</section>
<section id="anomalies"><h2>Anomalies</h2>{_anomalies_html(rd)}</section>
<section id="inputs"><h2>Inputs</h2>{_inputs_html(md, pols)}</section>
<p class="note">Results folder: {_e(rd.name)}. Everything on this page works offline; the charts are
interactive (tooltips, policy dropdowns).</p>
</main>
{''.join(specs)}
<script>{_EMBED_ALL}</script>
</body></html>
"""
    index = od / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


# ------------------------------------------------------------------ demo
def sample_traces_dir() -> Path:
    """The bundled sample traces: ``sample_traces/`` of a checkout, else the copy a wheel installs
    under ``<prefix>/share/pagereplay/sample_traces``."""
    import sysconfig

    checkout = Path(__file__).resolve().parents[2] / "sample_traces"
    installed = Path(sysconfig.get_path("data")) / "share" / "pagereplay" / "sample_traces"
    for d in (checkout, installed):
        if d.is_dir():
            return d
    return checkout


def default_demo_trace() -> Path:
    """The bundled sample trace the demo replays."""
    root = sample_traces_dir()
    for cand in (root / "debian12-6.1-medium-head" / "trace.txt.zst", root / "debian12-6.1-small" / "trace.txt.zst",
                 root / "debian12-6.1-boot-head3k.txt"):
        if cand.is_file():
            return cand
    raise ResultsError(f"no bundled sample trace under {root}")


def run_demo(out_dir: str | Path, *, replay_fn: Callable[[Path, Path], Any], trace: str | Path | None = None,
             images: bool = True) -> Path:
    """The whole pipeline on the sample trace: ``replay_fn(trace, out_dir/'results')`` then the report.

    ``replay_fn`` parses the trace and replays it under every policy preset, writing a results
    folder (docs/results.md); the report goes to ``out_dir/report/``.  Returns the index.html path.
    """
    od = Path(out_dir)
    results = od / "results"
    results.mkdir(parents=True, exist_ok=True)
    tr = Path(trace) if trace is not None else default_demo_trace()
    replay_fn(tr, results)
    return write_report(results, od / "report", images=images)
