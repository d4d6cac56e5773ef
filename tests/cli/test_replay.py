"""`pagereplay replay --policy/--all-policies`, `compare`, `demo` and `report` on real replay output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from replay.report.html import RESULT_TABLES, documented_columns
from tests.conftest import SAMPLES

SMALL = SAMPLES / "debian12-6.1-small"
runner = CliRunner()
JSON_KEYS = ("policy", "firmware_calls", "firmware_ns", "zone_lock_hold_ns", "zone_lock_wait_ns", "accept_lock_wait_ns",
             "irqs_off_max_ns", "accepted_bytes", "boot_accept_ns", "alloc_added_p99_ns", "alloc_added_max_ns")


def _cli(*args: str):  # type: ignore[no-untyped-def]
    from replay.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def all_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("all") / "results"
    r = _cli("replay", SMALL / "trace.txt.zst", "--snapshot", SMALL / "proc_before", "--all-policies",
             "--costs", "tdx-4k", "--json", "-o", out)
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)


def test_all_policies_json(all_results: tuple[Path, list[dict]]) -> None:
    out, rows = all_results
    from replay.acceptance.policies import PRESET_ORDER

    assert [r["policy"] for r in rows] == list(PRESET_ORDER)
    for r in rows:
        for k in JSON_KEYS:
            assert k in r, k
        assert r["invariants_ok"] is True and r["events_replayed"] == 24957
    none = rows[0]
    assert none["firmware_calls"] == 0 and none["alloc_added_max_ns"] == 0 and none["zone_lock_wait_ns"] == 0
    by = {r["policy"]: r for r in rows}
    assert by["kernel-eager"]["boot_accept_ns"] > by["list-promo"]["boot_accept_ns"] > 0
    for name in ("v1-buddy-global-lock", "post-alloc", "list-6.5", "list-6.6", "list-promo"):
        assert by[name]["firmware_calls"] > 0 and by[name]["accepted_bytes"] > 0, name
    # v1 accepts under zone->lock: the zone lock is held longer than in the baseline
    assert by["v1-buddy-global-lock"]["zone_lock_hold_ns"] > none["zone_lock_hold_ns"]


def test_results_folder_follows_the_contract(all_results: tuple[Path, list[dict]]) -> None:
    out, rows = all_results
    for name in RESULT_TABLES:
        p = out / f"{name}.parquet"
        assert p.is_file(), name
        cols = pq.read_schema(p).names
        missing = [c for c in documented_columns(name) if c not in cols]
        assert not missing, (name, missing)
        md = {k.decode(): v.decode() for k, v in (pq.read_metadata(p).metadata or {}).items()}
        for key in ("input_name", "input_sha256", "inputs", "mode", "cost_preset", "cost_preset_json",
                    "policies_json", "layout_json", "tool_version", "schema_version", "seed"):
            assert f"pagereplay.{key}" in md, (name, key)
    import polars as pl

    ev = pl.read_parquet(out / "events.parquet").with_columns(pl.col("policy").cast(pl.String))
    per = dict(ev.group_by("policy").len().iter_rows())
    charged = ((pl.col("added_ns") != 0) | (pl.col("lock_wait_ns") != 0) | (pl.col("lock_hold_ns") != 0)
               | (pl.col("firmware_ns") != 0) | (pl.col("accepted_bytes") != 0) | pl.col("forced"))
    assert ev.filter(~charged).height == 0  # only the events a policy charged something to
    assert set(ev["policy"]) == {r["policy"] for r in rows}
    assert 0 < per["none"] < per["list-promo"] < 24957
    summ = pq.read_table(out / "summary.parquet").to_pylist()
    assert summ[0]["policy"] == "none" and len(summ) == len(rows)
    # attribution is the events table summed per CPU / per process
    ev = pl.read_parquet(out / "events.parquet").group_by("policy").agg(pl.col("added_ns").sum(),
                                                                         pl.col("firmware_ns").sum())
    for name in ("attribution_cpu", "attribution_process"):
        att = pl.read_parquet(out / f"{name}.parquet").group_by("policy").agg(pl.col("added_ns").sum(),
                                                                               pl.col("firmware_ns").sum())
        assert att.sort("policy").equals(ev.sort("policy")), name
    ts = pl.read_parquet(out / "timeseries.parquet")
    assert ts.group_by("policy").len()["len"].max() <= 2000
    lazy = ts.filter(pl.col("policy") == "list-promo")["unaccepted_bytes"].to_list()
    assert lazy[0] >= lazy[-1] > 0  # accepted on demand, never un-accepted


def test_all_events_is_the_dense_form_of_the_charged_rows(all_results: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """--all-events: every input event for every policy; the default rows are exactly its charged rows."""
    import polars as pl

    out, _ = all_results
    dense = tmp_path / "dense"
    r = _cli("replay", SMALL / "trace.txt.zst", "--snapshot", SMALL / "proc_before", "--policy", "list-promo",
             "--policy", "v1-buddy-global-lock", "--costs", "tdx-4k", "--all-events", "--json", "-o", dense)
    assert r.exit_code == 0, r.output
    d = pl.read_parquet(dense / "events.parquet").with_columns(pl.col("policy").cast(pl.String))
    assert dict(d.group_by("policy").len().iter_rows()) == {p: 24957 for p in ("none", "list-promo",
                                                                             "v1-buddy-global-lock")}
    charged = ((pl.col("added_ns") != 0) | (pl.col("lock_wait_ns") != 0) | (pl.col("lock_hold_ns") != 0)
               | (pl.col("firmware_ns") != 0) | (pl.col("accepted_bytes") != 0) | pl.col("forced"))
    sparse = pl.read_parquet(out / "events.parquet").with_columns(pl.col("policy").cast(pl.String))
    for pol in ("none", "list-promo", "v1-buddy-global-lock"):
        want = d.filter((pl.col("policy") == pol) & charged).drop("policy")
        got = sparse.filter(pl.col("policy") == pol).drop("policy")
        assert got.height > 0 and got.equals(want), pol


@pytest.mark.parametrize("mode", ["exact", "simulate"])
def test_policies_that_accept_nothing_share_the_baseline_replay(mode: str) -> None:
    """firmware-eager / kernel-eager leave nothing unaccepted: a full replay of them gives the
    baseline's tables (bar the policy name and boot-time rows), which is why run_policies reuses it."""
    from parsers.api import load_events
    from replay.acceptance.costs import get_costs
    from replay.model.layout import load_snapshot
    from replay.acceptance.policies import all_policies
    from replay.results.tables import policy_tables, result_context
    from replay.policy.prepare import prepare
    from replay.policy.run import accepts_nothing, baseline_run_as, run_policy

    table, md = load_events(SMALL / "trace.txt.zst")
    prep = prepare(table, load_snapshot(SMALL / "proc_before"), mode=mode, metadata=md)
    pols, cost = all_policies(), get_costs("snp-4k")
    names = ["none", "firmware-eager", "kernel-eager", "list-promo"]
    ctx = result_context(table, names)
    assert [accepts_nothing(prep, pols[n], cost) for n in names] == [True, True, True, False]
    base = run_policy(prep, pols["none"], cost)
    for name in ("firmware-eager", "kernel-eager"):
        full, full_row = policy_tables(prep, run_policy(prep, pols[name], cost), ctx, all_events=True)
        short, short_row = policy_tables(prep, baseline_run_as(prep, base, pols[name], cost), ctx, all_events=True)
        assert full.keys() == short.keys()
        for k in full:
            assert full[k].equals(short[k]), (name, k)
        assert full_row == short_row
        assert full_row["boot_accept_ns"] > 0


def test_compare_json(all_results: tuple[Path, list[dict]]) -> None:
    out, rows = all_results
    r = _cli("compare", out, "--json")
    assert r.exit_code == 0, r.output
    cmp = json.loads(r.stdout)
    assert cmp["reference"] == "none"
    assert all(v == 0 for v in cmp["deltas"]["none"].values())
    fw = {x["policy"]: x["firmware_ns"] for x in rows}
    assert cmp["deltas"]["list-promo"]["firmware_ns"] == fw["list-promo"] - fw["none"]
    r = _cli("compare", out)
    assert r.exit_code == 0 and "list-promo" in r.stdout
    r = _cli("compare", out.parent / "nope")
    assert r.exit_code == 1


def test_report_on_real_replay_output(all_results: tuple[Path, list[dict]], tmp_path: Path) -> None:
    out, _ = all_results
    r = _cli("report", out, "-o", tmp_path / "rep", "--no-images")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "index.html").is_file()


def test_default_is_none_only_and_deterministic(tmp_path: Path) -> None:
    args = [SMALL / "trace.txt.zst", "--snapshot", SMALL / "proc_before", "--policy", "list-6.6", "--workers", "1"]
    for d in ("a", "b"):
        r = _cli("replay", *args, "-o", tmp_path / d)
        assert r.exit_code == 0, r.output
    for name in RESULT_TABLES:
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (tmp_path / "b" / f"{name}.parquet").read_bytes()
    pols = pq.read_table(tmp_path / "a" / "summary.parquet").column("policy").to_pylist()
    assert pols == ["none", "list-6.6"]
    r = _cli("replay", SMALL / "trace.txt.zst", "--policy", "nope", "-o", tmp_path / "c")
    assert r.exit_code == 1


def test_workers_give_the_same_bytes(tmp_path: Path) -> None:
    """Forked workers (each reusing its buffer arena across policies) write exactly what the
    sequential in-process run writes."""
    pols = ["--policy", "firmware-eager", "--policy", "v1-buddy-global-lock", "--policy", "list-promo",
            "--policy", "background", "--policy", "post-alloc"]
    args = [SMALL / "trace.txt.zst", "--snapshot", SMALL / "proc_before", *pols, "--costs", "snp-4k"]
    for d, w in (("seq", "1"), ("par", "2")):
        r = _cli("replay", *args, "--workers", w, "-o", tmp_path / d)
        assert r.exit_code == 0, r.output
    for name in RESULT_TABLES:
        assert (tmp_path / "seq" / f"{name}.parquet").read_bytes() == (tmp_path / "par" / f"{name}.parquet").read_bytes(), name


def test_demo_on_the_sample(tmp_path: Path) -> None:
    r = _cli("demo", "-o", tmp_path / "demo", "--no-images")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "demo" / "report" / "index.html").is_file()
    summ = pq.read_table(tmp_path / "demo" / "results" / "summary.parquet").to_pylist()
    assert len(summ) == 10 and {s["cost_preset"] for s in summ} == {"tdx-4k"}
    assert "report" in r.stdout


def test_real_demo_report_draws_every_chart_in_chromium(all_results: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """The report of a real replay (not the fake results) opens offline in headless Chromium with every chart drawn."""
    from replay.report.charts import CHART_KINDS
    from replay.report.html import write_report
    from tests.report.test_html import PROBE, READY
    from tests.helpers.chromium import find_chromium, render_page

    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    out, _ = all_results
    page = write_report(out, tmp_path / "rep", images=False)
    page = page if Path(page).name == "index.html" else tmp_path / "rep" / "index.html"
    rep = render_page(page, PROBE, READY, chromium=exe, segment=1400)
    assert not rep.errors, rep.errors
    assert not [c for c in rep.console if c["type"] in ("error", "warning", "warn")], rep.console
    assert rep.requests == [Path(page).resolve().as_uri()]
    charts = {c["kind"]: c for c in rep.probe}
    assert list(charts) == list(CHART_KINDS)
    for c in charts.values():
        assert c["rendered"] == "true" and c["svgs"] >= 1, c


def test_damaged_parquet_input_is_one_line_error(tmp_path: Path) -> None:
    """A Parquet event table cut short, or damaged inside its row groups: one line on stderr,
    exit 1, no traceback (the row groups are read a few at a time in reader threads)."""
    from parsers.api import parse_to_parquet
    from tests.cli.test_parse_info import assert_one_line_failure

    good = tmp_path / "events.parquet"
    parse_to_parquet([SMALL / "trace.txt.zst"], good)
    data = bytearray(good.read_bytes())
    (tmp_path / "cut.parquet").write_bytes(bytes(data[: len(data) // 2]))
    for i in range(len(data) // 5, 3 * len(data) // 5, 7):  # footer intact, pages garbled
        data[i] ^= 0x5A
    (tmp_path / "garbled.parquet").write_bytes(bytes(data))
    for name in ("cut", "garbled"):
        res = _cli("replay", tmp_path / f"{name}.parquet", "--all-policies", "-o", tmp_path / name)
        assert_one_line_failure(res, f"{name}.parquet", "unreadable Parquet file", code=1)
        assert not (tmp_path / name / "summary.parquet").exists()


def test_arrow_compute_is_registered_before_the_replay_threads_start(tmp_path: Path) -> None:
    """Arrow registers its compute kernels when ``pyarrow.compute`` is first imported; a Parquet
    read on another thread during that registration once failed ("No function registered with
    name: cast").  A fresh process replaying a Parquet trace imports it on the main thread while
    it is the only thread."""
    import subprocess
    import sys

    from parsers.api import parse_to_parquet

    trace = tmp_path / "events.parquet"
    parse_to_parquet([SMALL / "trace.txt.zst"], trace)
    code = (
        "import sys, threading\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pyarrow._compute':\n"
        "            print('compute imported on', threading.current_thread().name, 'threads', threading.active_count(),\n"
        "                  file=sys.stderr)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hook())\n"
        "from replay.pipeline.job import run_replay\n"
        "from pathlib import Path\n"
        f"run_replay(Path({str(trace)!r}), 'exact', Path({str(tmp_path / 'out')!r}), all_presets=True)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False,
                       cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("compute imported on")]
    assert lines == ["compute imported on MainThread threads 1"], p.stderr[-2000:]
    assert (tmp_path / "out" / "summary.parquet").exists()
