"""The offline HTML report and the chart files: no external URL, PNG/SVG sizes, and a real browser.

The browser test opens the report in headless Chromium (Debian's ``chromium``; ``.ci/run`` installs
it) over the DevTools protocol and checks that every chart drew an SVG with marks, that nothing was
logged as an error and that the page requested nothing but itself.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from replay.report.charts import CHART_KINDS
from replay.report.html import PNG_SCALE, chart_html, save_chart, write_report

from tests.helpers.chromium import find_chromium, render_page
from tests.helpers.results import DEFAULT_POLICIES, write_fake_results


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_results(tmp_path_factory.mktemp("results"), seed=11)


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(results, tmp_path_factory.mktemp("report") / "report")


def assert_offline(page: str) -> None:
    """No resource is fetched from anywhere: every script inline, no external src/href/CSS import."""
    low = page.lower()
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", low)
    assert "cdn" not in low
    assert "@import" not in low
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", low)
    assert not re.search(r"<link\b", low)
    scripts = re.findall(r"<script\b([^>]*)>", low)
    assert scripts and all("src" not in attrs for attrs in scripts)
    assert "fonts.googleapis" not in low and "jsdelivr" not in low and "unpkg" not in low


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_size(text: str) -> tuple[float, float]:
    m = re.search(r'<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"', text)
    assert m, text[:200]
    return float(m.group(1)), float(m.group(2))


def test_report_offline(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert_offline(page)
    assert "vegaEmbed" in page and len(page) > 500_000  # the vega bundle is inline


def test_report_content(report: Path, results: Path) -> None:
    page = report.read_text(encoding="utf-8")
    import pyarrow.parquet as pq

    md = {k.decode(): v.decode() for k, v in pq.read_metadata(results / "summary.parquet").metadata.items()}
    for needle in (md["pagereplay.input_name"], md["pagereplay.input_sha256"], md["pagereplay.kernel_version"],
                   "tdx-4k", "DMA32", "Normal", "every_zone_visit", "Memory layout", "Policies", "Summary",
                   "alloc_added_p99_ns", "irqs_off_over_20s", "Anomalies", "free_of_free", "not explained"):
        assert needle in page, needle
    for pol in DEFAULT_POLICIES:
        assert f"<th>{pol}</th>" in page
    for kind in CHART_KINDS:
        assert f'data-kind="{kind}"' in page and f'id="spec-{kind}"' in page
        assert f'href="charts/{kind}.png"' in page and f'href="charts/{kind}.svg"' in page


@pytest.mark.parametrize("kind", list(CHART_KINDS))
def test_chart_images(report: Path, kind: str) -> None:
    charts = report.parent / "charts"
    png = (charts / f"{kind}.png").read_bytes()
    svg = (charts / f"{kind}.svg").read_text()
    assert len(png) > 5_000 and svg.startswith("<svg") and "<path" in svg
    w, h = png_size(png)
    sw, sh = svg_size(svg)
    assert abs(w - round(sw * PNG_SCALE)) <= 1 and abs(h - round(sh * PNG_SCALE)) <= 1
    assert w >= 600 and h >= 150  # the charts are WIDTH (620) wide plus axes


def test_report_skips_missing_tables(results: Path, tmp_path: Path) -> None:
    part = tmp_path / "partial"
    part.mkdir()
    for f in results.glob("*.parquet"):
        if f.stem not in ("timeseries", "anomalies"):
            (part / f.name).write_bytes(f.read_bytes())
    page = write_report(part, tmp_path / "r", images=False).read_text()
    assert page.count("Not available") == 2 and "no timeseries.parquet" in page
    assert "no anomalies.parquet" in page
    assert not (tmp_path / "r" / "charts" / "acceptance.png").exists()
    assert (tmp_path / "r" / "charts" / "irqs-off.vl.json").is_file()


def test_report_deterministic(results: Path, tmp_path: Path) -> None:
    a = write_report(results, tmp_path / "a", images=False).read_bytes()
    b = write_report(results, tmp_path / "b", images=False).read_bytes()
    assert a == b


@pytest.mark.parametrize("suffix", [".html", ".png", ".svg", ".json"])
def test_save_chart(results: Path, tmp_path: Path, suffix: str) -> None:
    out = save_chart(results, "irqs-off", tmp_path / "sub" / f"irqs{suffix}")
    data = out.read_bytes()
    if suffix == ".html":
        assert_offline(data.decode())
    elif suffix == ".png":
        assert png_size(data)[0] > 600
    elif suffix == ".svg":
        assert data.startswith(b"<svg")
    else:
        assert b'"$schema"' in data


def test_chart_html_escapes_script_end() -> None:
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v6.json", "data": {"values": [{"a": "</script>"}]},
            "mark": "point"}
    page = chart_html(spec)
    body = page.split('<div id="chart"', 1)[1]
    assert body.count("</script>") == 2  # the spec's own "</script>" is escaped


# ------------------------------------------------------------------ headless Chromium
READY = "Array.from(document.querySelectorAll('div.chart[data-kind]')).every(e => e.hasAttribute('data-rendered'))"
PROBE = """Array.from(document.querySelectorAll('div.chart[data-kind]')).map(e => ({
  kind: e.getAttribute('data-kind'), rendered: e.getAttribute('data-rendered'),
  svgs: e.querySelectorAll('svg').length,
  marks: e.querySelectorAll('svg g.mark-symbol path, svg g.mark-rect path, svg g.mark-line path, svg g.mark-area path, svg g.mark-rule line, svg g.mark-text text').length,
  width: e.querySelector('svg') ? e.querySelector('svg').getBoundingClientRect().width : 0,
  height: e.querySelector('svg') ? e.querySelector('svg').getBoundingClientRect().height : 0,
  selects: e.querySelectorAll('select').length}))"""


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return exe


def test_report_in_chromium(report: Path, chromium: str, tmp_path: Path) -> None:
    rep = render_page(report, PROBE, READY, chromium=chromium, segment=1400)
    assert not rep.errors, rep.errors
    assert not [c for c in rep.console if c["type"] in ("error", "warning", "warn")], rep.console
    assert rep.requests == [report.resolve().as_uri()], rep.requests  # nothing but the page itself
    charts = {c["kind"]: c for c in rep.probe}
    assert list(charts) == list(CHART_KINDS)
    for c in charts.values():
        assert c["rendered"] == "true", c
        assert c["svgs"] >= 1 and c["marks"] >= 5 and c["width"] > 500 and c["height"] > 100, c
    assert charts["top-processes"]["selects"] == 1 and charts["added-latency"]["selects"] == 1
    assert rep.screenshots and all(png_size(s)[0] == 1300 for s in rep.screenshots)
    (tmp_path / "report.png").write_bytes(rep.screenshots[0])


def test_single_chart_page_in_chromium(results: Path, chromium: str, tmp_path: Path) -> None:
    page = save_chart(results, "lock-wait-heatmap", tmp_path / "heat.html")
    rep = render_page(page, "document.getElementById('chart').querySelectorAll('svg g.mark-rect path').length",
                      "document.getElementById('chart').hasAttribute('data-rendered')", chromium=chromium)
    assert not rep.errors, rep.errors
    assert rep.probe > 50
    assert rep.requests == [page.resolve().as_uri()]


def test_broken_spec_is_reported(tmp_path: Path, chromium: str) -> None:
    """The probe sees a failing chart: the test above would catch a report whose charts do not draw."""
    page = tmp_path / "bad.html"
    page.write_text(chart_html({"$schema": "https://vega.github.io/schema/vega-lite/v6.json",
                                "data": {"values": [{"a": 1}]}, "mark": "nonsense"}))
    rep = render_page(page, "document.getElementById('chart').getAttribute('data-rendered')",
                      "document.getElementById('chart').hasAttribute('data-rendered')", chromium=chromium)
    assert rep.probe == "error"
    assert rep.errors
