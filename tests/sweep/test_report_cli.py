"""``pagereplay sweep`` and ``sweep-report`` on the command line; the charts of a sweep."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from replay.cli import sweep as sweep_cli
from replay.report.sweep_charts import load_summary, pareto_front, sweep_charts, varying_axes
from replay.sweep.spec import AXES


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer(pretty_exceptions_enable=False)
    sweep_cli.register(a)
    return a


@pytest.fixture(scope="module")
def swept(app: typer.Typer, tiny_traces: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sweep"
    r = CliRunner().invoke(app, ["sweep", *map(str, tiny_traces), "--policy", "none,kernel-eager",
                                 "--policy", "list-promo", "--costs", "tdx-4k,snp-2m", "--axis", "vcpus=1,4",
                                 "--axis", "guest_size=traced,8G..16G*2", "-o", str(out), "-j", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert (res["points"], res["ran"], res["failed"], res["executor"]) == (72, 72, 0, "pool")
    return out


def test_the_help_lists_every_axis() -> None:
    assert sweep_cli.AXIS_NAMES == tuple(AXES)


def test_a_rerun_skips_what_is_done(app: typer.Typer, swept: Path, tiny_traces: list[Path]) -> None:
    r = CliRunner().invoke(app, ["sweep", *map(str, tiny_traces), "--policy", "none,kernel-eager,list-promo",
                                 "--costs", "tdx-4k,snp-2m", "--axis", "vcpus=1,4", "--axis",
                                 "guest_size=traced,8G,16G", "-o", str(swept), "-q"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("72 points: 72 already done, 0 replayed")


def test_bad_input_is_one_line(app: typer.Typer, tiny_traces: list[Path], tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["sweep", str(tiny_traces[0]), "--axis", "gest_size=8G", "-o", str(tmp_path)])
    assert r.exit_code == 1
    assert "unknown axis 'gest_size'; did you mean 'guest_size'?" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["sweep", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "give TRACE... or --spec" in r.output


def test_sweep_report_writes_an_offline_page(app: typer.Typer, swept: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["sweep-report", str(swept), "-o", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "vegaEmbed" in page and "https://" not in page.split("<script>", 1)[0]
    # offline: nothing fetched from elsewhere (the libraries are inlined)
    assert not re.search(r"""<(script|link|img)[^>]*(src|href)\s*=\s*["']?(https?:)?//""", page)
    charts = sorted(p.name for p in (tmp_path / "report" / "charts").glob("*.vl.json"))
    assert charts == ["axis-guest_size_bytes.vl.json", "axis-vcpus.vl.json",
                      "heat-guest_size_bytes-vcpus-added_ms.vl.json", "heat-guest_size_bytes-vcpus-boot_s.vl.json",
                      "pareto.vl.json"]
    assert CliRunner().invoke(app, ["sweep-report", str(tmp_path / "nothing")]).exit_code == 1


def test_the_charts_embed_aggregates_only(swept: Path) -> None:
    df = load_summary(swept)
    assert varying_axes(df) == ["guest_size_bytes", "vcpus"]  # host backing follows the preset: no axis
    for c in sweep_charts(df):
        rows = sum(len(v) for v in c.spec.get("datasets", {}).values())
        assert 0 < rows <= 5000, c.id


def test_the_pareto_front_keeps_the_points_nothing_beats() -> None:
    df = pl.DataFrame({"trace": ["t"] * 5, "costs": ["c"] * 5, "guest": ["g"] * 5,
                       "policy": ["none", "a", "b", "c", "d"], "boot_s": [0.0, 1.0, 2.0, 2.5, 3.0],
                       "added_ms": [0.0, 5.0, 6.0, 1.0, 0.0]})
    assert pareto_front(df)["policy"].to_list() == ["a", "c", "d"]  # none is the reference, b is beaten by a
