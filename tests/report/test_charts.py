"""Charts of a results folder: schema-valid Vega-Lite, at most 5,000 embedded rows, right aggregates.

The results folder comes from ``tests/util_results.py`` (docs/results.md, several policies);
the test of that helper against the documented columns is here too, so the charts are built
against the contract and not against the helper's quirks.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import altair as alt
import jsonschema
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.report.charts import (CHART_KINDS, MAX_ROWS, ResultsError, TooManyRowsError, check_rows, embedded_rows,
                           human_bytes, human_ns, make_chart, policy_order)
from replay.report.html import RESULT_TABLES, documented_columns

from tests.helpers.results import DEFAULT_POLICIES, write_fake_results


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_results(tmp_path_factory.mktemp("results"), seed=7)


@pytest.fixture(scope="module")
def vl_validator() -> jsonschema.protocols.Validator:
    import altair.vegalite.v6.schema as sc

    schema = json.loads((Path(sc.__file__).parent / "vega-lite-schema.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _data(spec: dict) -> list[dict]:
    """The (single) embedded data set of a chart spec, largest first."""
    sets = sorted(spec.get("datasets", {}).values(), key=len, reverse=True)
    return sets[0] if sets else []


# ------------------------------------------------------------------ the fake results follow the contract
def _columns(text: str) -> list[str]:
    """Column names of a docs/results.md column list ("a, b (note, note), free_order_0 .. free_order_10")."""
    text = re.sub(r"\([^)]*\)", "", text.replace("`", ""))
    cols: list[str] = []
    for part in text.split(","):
        c = part.strip().split(" ")[0]
        if c == "free_order_0":
            cols += [f"free_order_{k}" for k in range(11)]
        elif c and c != "free_order_10":
            cols.append(c)
    return cols


def _documented_columns(name: str) -> list[str]:
    """The columns docs/results.md (the contract) lists for ``name``."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    if name == "summary":
        m = re.search(r"`summary.parquet` columns \(one row per policy, `none` first\): (.*?)\.\n\n", doc, re.S)
        assert m
        return _columns(m.group(1).replace("\n", " "))
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}.parquet`"))
    return _columns(row.split("|")[3])


def test_readme_copy_matches_docs() -> None:
    """replay.report.html.RESULT_TABLES (what `results --describe` prints) says what docs/results.md says."""
    for name, (_, cols) in RESULT_TABLES.items():
        assert _columns(cols) == _documented_columns(name) == documented_columns(name), name


def test_fake_results_match_docs(results: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    for name in RESULT_TABLES:
        assert f"`{name}.parquet`" in doc
        table = pq.read_table(results / f"{name}.parquet")
        assert table.column_names == _documented_columns(name), name
        if "policy" in table.column_names:
            assert pa.types.is_dictionary(table.schema.field("policy").type)
        md = pq.read_metadata(results / f"{name}.parquet").metadata
        keys = {k.decode() for k in md}
        for k in ("tool_version", "schema_version", "input_name", "input_sha256", "mode", "cost_preset",
                  "cost_preset_json", "policies_json", "seed", "layout_json"):
            assert f"pagereplay.{k}" in keys
    s = pl.read_parquet(results / "summary.parquet")
    assert s["policy"].cast(pl.String).to_list() == list(DEFAULT_POLICIES)
    assert pl.read_parquet(results / "events.parquet").height > MAX_ROWS  # charts must aggregate
    irq = pl.read_parquet(results / "irqs_off.parquet")
    assert (irq["duration_ns"] > 1_000_000).sum() > 3 and (irq["duration_ns"] > 20_000_000_000).sum() == 1


def test_fake_results_deterministic(tmp_path: Path) -> None:
    a = write_fake_results(tmp_path / "a", seed=3)
    b = write_fake_results(tmp_path / "b", seed=3)
    c = write_fake_results(tmp_path / "c", seed=4)
    for name in RESULT_TABLES:
        assert pq.read_table(a / f"{name}.parquet").equals(pq.read_table(b / f"{name}.parquet")), name
    assert not pq.read_table(a / "events.parquet").equals(pq.read_table(c / "events.parquet"))


# ------------------------------------------------------------------ every chart
@pytest.mark.parametrize("kind", list(CHART_KINDS))
def test_chart_valid_and_small(results: Path, kind: str, vl_validator: jsonschema.protocols.Validator) -> None:
    chart = make_chart(results, kind)
    spec = chart.to_dict(validate=True)
    assert spec["$schema"] == alt.SCHEMA_URL
    assert "/vega-lite/v6" in spec["$schema"]
    errors = [e.message for e in vl_validator.iter_errors(spec)]
    assert not errors, errors[:3]
    rows = embedded_rows(spec)
    assert rows and all(0 < n <= MAX_ROWS for n in rows.values()), rows
    assert "tooltip" in json.dumps(spec)
    assert json.dumps(spec, sort_keys=True) == json.dumps(make_chart(results, kind).to_dict(), sort_keys=True)


def test_registry_and_errors(results: Path, tmp_path: Path) -> None:
    assert list(CHART_KINDS)[0] == "policy-comparison"
    with pytest.raises(ResultsError, match="choose one of: policy-comparison, added-latency"):
        make_chart(results, "pie")
    with pytest.raises(ResultsError, match="no such results folder"):
        make_chart(tmp_path / "missing", "irqs-off")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "summary.parquet").write_bytes((results / "summary.parquet").read_bytes())
    with pytest.raises(ResultsError, match="no irqs_off.parquet"):
        make_chart(partial, "irqs-off")
    pl.DataFrame({"policy": ["none"], "cpu": [0]}).write_parquet(partial / "irqs_off.parquet")
    with pytest.raises(ResultsError, match="lacks column"):
        make_chart(partial, "irqs-off")


def test_check_rows_limit() -> None:
    df = pl.DataFrame({"x": list(range(200))})
    chart = alt.Chart(df).mark_point().encode(x="x:Q")
    assert check_rows(chart, limit=200)
    with pytest.raises(TooManyRowsError, match="200 rows"):
        check_rows(chart, limit=199)
    inline = alt.Chart(alt.Data(values=[{"x": i} for i in range(10)])).mark_point().encode(x="x:Q")
    assert list(embedded_rows(inline.to_dict()).values()) == [10]


def test_policy_order_none_first(results: Path) -> None:
    assert policy_order(results) == list(DEFAULT_POLICIES)
    assert policy_order(results, "events") == list(DEFAULT_POLICIES)


# ------------------------------------------------------------------ what the charts show
def test_policy_comparison_reference(results: Path) -> None:
    rows = _data(make_chart(results, "policy-comparison").to_dict())
    s = pl.read_parquet(results / "summary.parquet").with_columns(pl.col("policy").cast(pl.String))
    ref_hold = s.filter(pl.col("policy") == "none")["zone_lock_hold_ns"][0]
    for r in rows:
        src = s.filter(pl.col("policy") == r["policy"]).row(0, named=True)
        if r["metric"] == "zone->lock hold added":
            assert r["shown_ns"] == src["zone_lock_hold_ns"] - ref_hold
        if r["metric"] == "firmware time":
            assert r["shown_ns"] == src["firmware_ns"]
        if r["metric"] == "acceptance at boot":
            assert r["shown_ns"] == src["boot_accept_ns"]
        if r["policy"] == "none" and "added" in r["metric"]:
            assert r["shown_ns"] == 0
    assert {r["metric"] for r in rows} == {"firmware time", "acceptance at boot", "zone->lock hold added",
                                           "zone->lock wait added",
                                           "p99 added allocation latency", "max added allocation latency"}


def test_added_latency_ccdf(results: Path) -> None:
    rows = _data(make_chart(results, "added-latency").to_dict())
    ev = pl.read_parquet(results / "events.parquet").with_columns(pl.col(c).cast(pl.String) for c in ("policy", "event"))
    for pol in {r["policy"] for r in rows}:
        pts = sorted((r for r in rows if r["policy"] == pol), key=lambda r: r["x_us"])
        shares = [p["share"] for p in pts]
        assert shares == sorted(shares, reverse=True) and 0 < shares[-1] <= shares[0] <= 1
        allocs = ev.filter((pl.col("policy") == pol) & (pl.col("event") == "mm_page_alloc"))
        assert pts[0]["at_least"] == (allocs["added_ns"] > 0).sum()
        assert pts[0]["allocations"] == allocs.height
    assert "none" not in {r["policy"] for r in rows}  # nothing added under the reference


def test_heatmap_conserves_wait(results: Path) -> None:
    rows = _data(make_chart(results, "lock-wait-heatmap").to_dict())
    ls = pl.read_parquet(results / "lock_sections.parquet").with_columns(pl.col("policy").cast(pl.String))
    for pol in policy_order(results):
        total = ls.filter(pl.col("policy") == pol)["wait_ns"].sum() / 1e6
        got = sum(r["wait_ms"] for r in rows if r["policy"] == pol)
        assert math.isclose(got, total, rel_tol=1e-9, abs_tol=1e-9)
    assert all(r["t1_s"] > r["t0_s"] for r in rows)


def test_irqs_off_reference_lines(results: Path) -> None:
    spec = make_chart(results, "irqs-off").to_dict()
    sets = list(spec["datasets"].values())
    lines = next(d for d in sets if len(d) == 2 and "text" in d[0])
    assert [r["duration_ms"] for r in lines] == [1.0, 20_000.0]
    dom = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert dom[0] <= 1e-3 and dom[1] >= 21_500.0  # the 21.5 s stretch and the 20 s line both fit


def test_top_processes_default_policy(results: Path) -> None:
    spec = make_chart(results, "top-processes").to_dict()
    param = next(p for p in spec["params"] if p["name"] == "top_policy")
    ap = pl.read_parquet(results / "attribution_process.parquet").with_columns(pl.col("policy").cast(pl.String))
    tot = ap.group_by("policy").agg(pl.col("added_ns").sum()).sort("added_ns", descending=True)
    assert param["value"] == tot["policy"][0] and param["bind"]["input"] == "select"
    assert max(sum(1 for r in _data(spec) if r["policy"] == p) for p in DEFAULT_POLICIES) <= 15


def test_free_pages_accepts_block_counts(results: Path, tmp_path: Path) -> None:
    """free_order_k as block counts (sum * 2^k == free_pages) is converted back to pages."""
    d = tmp_path / "blocks"
    d.mkdir()
    for f in results.glob("*.parquet"):
        (d / f.name).write_bytes(f.read_bytes())
    t = pq.read_table(results / "timeseries.parquet")
    cols = {}
    for name in t.column_names:
        c = t.column(name)
        if name.startswith("free_order_"):
            c = pa.array(np.asarray(c) >> int(name.removeprefix("free_order_")), pa.int64())
        cols[name] = c
    pq.write_table(pa.table(cols), d / "timeseries.parquet")
    a = _data(make_chart(results, "free-pages").to_dict())
    b = _data(make_chart(d, "free-pages").to_dict())
    assert a == b


def test_single_policy_and_empty_tables(tmp_path: Path) -> None:
    """A plain-VM replay (only `none`): every chart still builds (some say there is nothing to draw)."""
    d = write_fake_results(tmp_path / "none", seed=1, policies=("none",), n_events=400)
    for kind in CHART_KINDS:
        spec = make_chart(d, kind).to_dict()
        assert spec["$schema"] == alt.SCHEMA_URL
    fw = pl.read_parquet(d / "firmware_calls.parquet")
    assert fw.is_empty()
    # an irqs_off table with no rows at all
    t = pq.read_table(d / "irqs_off.parquet").slice(0, 0)
    pq.write_table(t, d / "irqs_off.parquet")
    assert make_chart(d, "irqs-off").to_dict()["layer"]


def test_many_policies_stay_under_limit(tmp_path: Path) -> None:
    pols = ("none", "firmware-eager", "kernel-eager", "post-alloc", "list-6.5", "list-6.6", "list-promo",
            "background", "list-x1", "list-x2", "list-x3", "list-x4")
    d = write_fake_results(tmp_path / "many", seed=2, policies=pols, n_events=1500, n_cpus=16, buckets=700)
    for kind in CHART_KINDS:
        rows = embedded_rows(make_chart(d, kind).to_dict())
        assert max(rows.values()) <= MAX_ROWS, (kind, rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=300))
def test_ccdf_property(added: list[int]) -> None:
    """For any added latencies: the CCDF starts at the share of delayed allocations and never rises."""
    with tempfile.TemporaryDirectory() as tmp:
        n = len(added)
        dt = pa.dictionary(pa.int32(), pa.string())
        # the sparse events table of a policy run: only the charged events; the allocation count
        # comes from attribution_cpu (docs/results.md)
        charged = [a for a in added if a > 0]
        k = len(charged)
        pq.write_table(pa.table({"policy": pa.array(["p"] * k, pa.string()).cast(dt),
                                 "event": pa.array(["mm_page_alloc"] * k, pa.string()).cast(dt),
                                 "added_ns": pa.array(charged, pa.int64())}), Path(tmp) / "events.parquet")
        pq.write_table(pa.table({"policy": pa.array(["p", "p"]).cast(dt), "cpu": pa.array([0, 1], pa.int32()),
                                 "allocations": pa.array([n // 2, n - n // 2], pa.int64())}),
                       Path(tmp) / "attribution_cpu.parquet")
        pq.write_table(pa.table({"policy": pa.array(["none", "p"]).cast(dt)}), Path(tmp) / "summary.parquet")
        spec = make_chart(tmp, "added-latency").to_dict()
        delayed = sum(1 for a in added if a > 0)
        if not delayed:
            assert "no allocation has added latency" in json.dumps(spec)
            return
        pts = sorted(_data(spec), key=lambda r: r["x_us"])
        assert math.isclose(pts[0]["share"], delayed / n)
        assert all(a["share"] >= b["share"] for a, b in zip(pts, pts[1:], strict=False))
        assert all(p["x_us"] * 1e3 <= max(added) * 1.0000001 for p in pts)


def test_human_units() -> None:
    assert human_ns(0) == "0 ns" and human_ns(1500) == "1.50 µs" and human_ns(2_500_000) == "2.50 ms"
    assert human_ns(21_500_000_000) == "21.50 s" and human_ns(None) == "-" and human_ns(-3_000_000) == "-3.00 ms"
    assert human_bytes(4 << 30) == "4.00 GiB" and human_bytes(512) == "512 B" and human_bytes(3 << 20) == "3.00 MiB"
