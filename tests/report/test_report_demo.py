"""The report of the real demo (``pagereplay demo`` on the bundled sample), as a new user opens it:
the findings come first, nothing overflows a 1280 px window, every chart draws data, the page
requests nothing but itself and names no absolute path of the machine that made it.  Also: the
bundled sample still meets the criteria it was cut by (``sample_traces/cut_demo_sample.py``), and
the findings say zero waits as such."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from replay.report.findings import findings
from replay.report.format import human_ns
from replay.report.html import default_demo_trace, write_report
from tests.conftest import ROOT, SAMPLES
from tests.helpers.chromium import find_chromium, render_page
from tests.helpers.results import write_fake_results

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a real ``pagereplay demo`` run (no images: the browser draws the charts)."""
    from replay.cli import app

    out = tmp_path_factory.mktemp("demo") / "out"
    r = runner.invoke(app, ["demo", "-o", str(out), "--no-images"])
    assert r.exit_code == 0, r.output
    assert (out / "report" / "index.html").is_file()
    return out


def _cut_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("cut_demo_sample", SAMPLES / "cut_demo_sample.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_demo_replays_the_cut_sample(demo: Path) -> None:
    cut = _cut_module()
    assert default_demo_trace() == cut.SAMPLE / "trace.txt.zst"
    assert default_demo_trace().stat().st_size <= cut.MAX_BYTES


def test_the_sample_still_shows_what_it_was_cut_for(demo: Path) -> None:
    """If the model changes so that this fails, re-cut: ``python sample_traces/cut_demo_sample.py``."""
    cut = _cut_module()
    s = {r["policy"]: r for r in pl.read_parquet(demo / "results" / "summary.parquet")
         .with_columns(pl.col("policy").cast(pl.String)).to_dicts()}
    failed = [name for name, fn in cut.CRITERIA.items() if not fn(s, demo / "results")]
    assert not failed, f"the demo sample no longer shows {failed}: re-run sample_traces/cut_demo_sample.py"


def test_findings_follow_the_numbers(demo: Path) -> None:
    res = demo / "results"
    f = findings(res)
    s = {r["policy"]: r for r in pl.read_parquet(res / "summary.parquet")
         .with_columns(pl.col("policy").cast(pl.String)).to_dicts()}
    text = dict(f.policies)
    assert list(text) == list(s)  # every policy, in the summary's order (none first)
    v1, none = s["v1-buddy-global-lock"], s["none"]
    wait = v1["zone_lock_wait_ns"] - none["zone_lock_wait_ns"]
    assert f"other CPUs waited {human_ns(wait)} more for zone->lock" in text["v1-buddy-global-lock"]
    assert f"{v1['firmware_calls']:,} firmware calls" in text["v1-buddy-global-lock"]
    assert f"{human_ns(s['kernel-eager']['boot_accept_ns'])} of acceptance at boot" in text["kernel-eager"]
    # what the sample was cut to show, said with its numbers: waits behind v1's firmware calls,
    # collisions on accepting_list, eager boot cost
    ls = (pl.read_parquet(res / "lock_sections.parquet", columns=["policy", "lock", "wait_ns", "waited_behind"])
          .with_columns(pl.col("policy", "lock", "waited_behind").cast(pl.String)))
    behind = ls.filter((pl.col("policy") == "v1-buddy-global-lock") & pl.col("lock").str.starts_with("zone")
                       & (pl.col("waited_behind") == "accept"))["wait_ns"].sum()
    assert behind > 0 and f"({human_ns(behind)} of it behind a CPU in firmware" in text["v1-buddy-global-lock"]
    collided = ls.filter(pl.col("lock") == "accepting_list").group_by("policy").agg(pl.col("wait_ns").sum())
    collided = {r["policy"]: r["wait_ns"] for r in collided.iter_rows(named=True) if r["wait_ns"] > 0}
    assert collided
    for p, w in collided.items():
        assert f"{human_ns(w)} of waits on accepting_list" in text[p]
    lazy = min(s[p]["boot_accept_ns"] for p in s if p not in ("none", "firmware-eager", "kernel-eager"))
    assert s["firmware-eager"]["boot_accept_ns"] > lazy and s["kernel-eager"]["boot_accept_ns"] > lazy
    # who paid: the CPU with the most added time under v1, from attribution_cpu
    cpu = (pl.read_parquet(res / "attribution_cpu.parquet").with_columns(pl.col("policy").cast(pl.String))
           .filter(pl.col("policy") == "v1-buddy-global-lock").sort("added_ns", "cpu", descending=[True, False]))
    assert f"Paid most: CPU {cpu['cpu'][0]} ({human_ns(cpu['added_ns'][0])}" in text["v1-buddy-global-lock"]
    axes = {label: (best, v) for label, best, v, _w, _wv in f.cheapest}
    others = [r for p, r in s.items() if p != "none"]
    lo = min(r["zone_lock_wait_ns"] - none["zone_lock_wait_ns"] for r in others)
    best, v = axes["zone->lock waits caused on other CPUs"]
    assert v == human_ns(lo)
    assert set(best) == {p for p, r in s.items() if p != "none" and r["zone_lock_wait_ns"] - none["zone_lock_wait_ns"] == lo}


def test_zero_waits_are_said_as_such(tmp_path: Path) -> None:
    res = write_fake_results(tmp_path / "res", seed=5, n_events=800)
    for name, cols in (("summary", ("zone_lock_wait_ns", "zone_lock_wait_max_ns", "accept_lock_wait_ns",
                                    "accept_lock_wait_max_ns")), ("lock_sections", ("wait_ns",))):
        p = res / f"{name}.parquet"
        t = pq.read_table(p)
        md = t.schema.metadata
        df = pl.from_arrow(t).with_columns([pl.lit(0, pl.Int64).alias(c) for c in cols])
        pq.write_table(df.to_arrow().replace_schema_metadata(md), p)
    f = findings(res)
    assert any("No CPU waited for any lock under any policy" in n for n in f.notes)
    assert all("no CPU waited longer for zone->lock" in t for p, t in f.policies if p != "none")
    assert ("zone->lock waits caused on other CPUs", ["every policy"], "0 ns", "", "all equal") in f.cheapest
    page = write_report(res, tmp_path / "rep", images=False).read_text()
    assert "no lock waits under any policy" in page  # the heat map says so instead of drawing nothing


def test_no_library_warning_reaches_the_terminal(tmp_path: Path) -> None:
    """The whole demo (parse, replay under every policy, report with PNG/SVG images) as a user runs
    it, every warning filter set to ``always`` (children too): nothing on stderr."""
    import os
    import subprocess

    env = dict(os.environ, PYTHONWARNINGS="always")
    p = subprocess.run([sys.executable, "-c", "from replay.cli import main; main()", "demo", "-o",
                        str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr == "", p.stderr[-3000:]
    assert (tmp_path / "out" / "report" / "charts" / "policy-comparison.png").is_file()


# ------------------------------------------------------------------ portable
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)


def test_the_report_names_no_absolute_path(demo: Path) -> None:
    page = (demo / "report" / "index.html").read_text(encoding="utf-8")
    for p in (demo, demo.parent, ROOT, SAMPLES, default_demo_trace().parent, Path(sys.prefix), Path.cwd()):
        assert str(p) not in page, p
    # nothing that looks like an absolute path outside the inline JavaScript bundle
    text = _SCRIPT.sub("", page) + "".join(re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page,
                                                       re.DOTALL))
    hits = re.findall(r"(?<![\w.~-])/(?:tmp|work|home|root|usr|opt|var|srv|mnt|media|Users)/[^\s\"'<]*", text)
    assert not hits, hits[:5]
    assert default_demo_trace().name in page and "sha256" in page
    assert "kernel profile" in page and "6.1.0-56-amd64" in page  # the sample's uname.txt


# ------------------------------------------------------------------ headless Chromium at 1280 px
READY = "Array.from(document.querySelectorAll('div.chart[data-kind]')).every(e => e.hasAttribute('data-rendered'))"
PROBE = """(() => {
  const W = window.innerWidth;
  const over = Array.from(document.querySelectorAll('body *')).filter(e => {
    const r = e.getBoundingClientRect(); return r.width > 0 && r.right > W + 1; })
    .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
  const scrolled = Array.from(document.querySelectorAll('body *')).filter(e =>
    e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
    .map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '/' + e.clientWidth);
  const top = id => document.getElementById(id).getBoundingClientRect().top;
  const charts = Array.from(document.querySelectorAll('div.chart[data-kind]'));
  return {W, docWidth: document.documentElement.scrollWidth, over, scrolled,
    sections: Array.from(document.querySelectorAll('main > section')).map(s => s.id),
    findingsTop: top('findings'), chartTops: charts.map(e => e.getBoundingClientRect().top),
    findingsItems: document.querySelectorAll('#findings ul.findings li').length,
    charts: charts.map(e => ({kind: e.getAttribute('data-kind'), rendered: e.getAttribute('data-rendered'),
      marks: e.querySelectorAll('svg g.mark-symbol path, svg g.mark-rect path, svg g.mark-line path, ' +
        'svg g.mark-area path, svg g.mark-rule line').length,
      messages: e.querySelectorAll('svg g.mark-text text').length}))};
})()"""


def test_the_demo_report_in_chromium_at_1280px(demo: Path) -> None:
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    index = demo / "report" / "index.html"
    rep = render_page(index, PROBE, READY, chromium=exe, width=1280)
    assert not rep.errors, rep.errors
    assert rep.requests == [index.resolve().as_uri()], rep.requests  # nothing leaves the page
    p = rep.probe
    assert p["sections"][0] == "findings" and p["sections"][1] == "comparison", p["sections"]
    assert p["findingsItems"] == 10 and all(p["findingsTop"] < t for t in p["chartTops"])
    assert p["W"] == 1280 and p["docWidth"] <= 1280 and not p["over"] and not p["scrolled"], (p["over"], p["scrolled"])
    from replay.report.charts import CHART_KINDS

    assert [c["kind"] for c in p["charts"]] == list(CHART_KINDS)
    for c in p["charts"]:  # drawn, and with data (an empty chart is one text mark saying why)
        assert c["rendered"] == "true" and c["marks"] >= 5, c
