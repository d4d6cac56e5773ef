"""`pagereplay report / chart / results` through typer's runner, the CSV export, and run_demo."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from replay.report.charts import CHART_KINDS
from replay.cli.report import register
from replay.report.html import RESULT_TABLES, default_demo_trace, export_csv, results_readme, run_demo

from tests.helpers.results import write_fake_results

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:  # a second command so typer keeps sub-command names
        pass

    return app


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_results(tmp_path_factory.mktemp("results"), seed=5, n_events=800)


def test_register_on_the_main_app() -> None:
    from replay.cli import app

    probe = typer.Typer()
    for cmd in app.registered_commands:
        probe.registered_commands.append(cmd)
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    if "report" not in names:  # not wired yet by the lead: registering must still work
        register(probe)
        names = {c.name or c.callback.__name__ for c in probe.registered_commands}
    assert {"report", "chart", "results"} <= names


def test_report_command(results: Path, tmp_path: Path) -> None:
    r = runner.invoke(_app(), ["report", str(results), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "index.html" in r.output
    assert (tmp_path / "rep" / "index.html").is_file()
    assert sorted(p.name for p in (tmp_path / "rep" / "charts").glob("*.png")) == sorted(f"{k}.png" for k in CHART_KINDS)


@pytest.mark.parametrize("suffix", [".html", ".png", ".svg"])
def test_chart_command(results: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"c{suffix}"
    r = runner.invoke(_app(), ["chart", str(results), "acceptance", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000


def test_chart_command_errors(results: Path, tmp_path: Path) -> None:
    r = runner.invoke(_app(), ["chart", str(results), "pie", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2
    assert "unknown chart kind 'pie'" in r.output and ", ".join(CHART_KINDS) in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(_app(), ["chart", str(results), "irqs-off", "-o", str(tmp_path / "x.pdf")])
    assert r.exit_code == 2 and ".html, .png, .svg" in r.output
    r = runner.invoke(_app(), ["chart", str(tmp_path / "nope"), "irqs-off", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and "no such results folder" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(_app(), ["chart", str(empty), "irqs-off", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and "no irqs_off.parquet" in r.output and "Traceback" not in r.output
    r = runner.invoke(_app(), ["report", str(empty), "-o", str(tmp_path / "r")])
    assert r.exit_code == 1 and "no pagereplay result tables" in r.output


def test_results_describe(results: Path, tmp_path: Path) -> None:
    r = runner.invoke(_app(), ["results", str(results), "--describe"])
    assert r.exit_code == 0, r.output
    for name in RESULT_TABLES:
        assert f"{name}.parquet" in r.output
    assert "events.parquet   4,000 rows" in r.output  # 800 input events x 5 policies
    assert "pagereplay." in r.output and "input_sha256 =" in r.output and "MISSING" not in r.output
    part = tmp_path / "part"
    part.mkdir()
    (part / "summary.parquet").write_bytes((results / "summary.parquet").read_bytes())
    text = results_readme(part)
    assert "events.parquet   MISSING" in text
    assert "one row per (policy, input event the policy charged something to" in results_readme(None)


def test_results_csv(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    r = runner.invoke(_app(), ["results", str(results), "--format", "csv", "-o", str(out)])
    assert r.exit_code == 0, r.output
    for name in RESULT_TABLES:
        csv = pl.read_csv(out / f"{name}.csv")
        pq = pl.read_parquet(results / f"{name}.parquet")
        assert csv.shape == pq.shape and csv.columns == pq.columns, name
    summary = pl.read_csv(out / "summary.csv")
    assert summary["policy"][0] == "none"
    assert "input_sha256" in (out / "metadata.json").read_text()
    r = runner.invoke(_app(), ["results", str(results), "--format", "xlsx", "-o", str(out)])
    assert r.exit_code == 2 and "choose one of: csv" in r.output
    r = runner.invoke(_app(), ["results", str(results)])
    assert r.exit_code == 2 and "--describe" in r.output
    assert len(export_csv(results, tmp_path / "again")) == len(RESULT_TABLES) + 1


def test_run_demo_with_fake_replay(tmp_path: Path) -> None:
    calls: list[tuple[Path, Path]] = []

    def fake_replay(trace: Path, results_dir: Path) -> None:
        calls.append((trace, results_dir))
        write_fake_results(results_dir, seed=9, n_events=600)

    index = run_demo(tmp_path / "demo", replay_fn=fake_replay, images=False)
    assert index == tmp_path / "demo" / "report" / "index.html" and index.is_file()
    assert calls == [(default_demo_trace(), tmp_path / "demo" / "results")]
    assert default_demo_trace().is_file()
    assert "policy-comparison" in index.read_text()


def test_demo_command(tmp_path: Path) -> None:
    from replay.cli.report import register_demo

    seen: list[Path] = []

    def fake_replay(trace: Path, results_dir: Path) -> None:
        seen.append(trace)
        write_fake_results(results_dir, seed=2, n_events=500)

    app = _app()
    register_demo(app, fake_replay)
    r = runner.invoke(app, ["demo", "-o", str(tmp_path / "d"), "--no-images"])
    assert r.exit_code == 0, r.output
    assert f"report:  {tmp_path / 'd' / 'report' / 'index.html'}" in r.output
    assert seen == [default_demo_trace()]

    def broken(trace: Path, results_dir: Path) -> None:
        raise ValueError("replay failed: bad trace")

    app = _app()
    register_demo(app, broken)
    r = runner.invoke(app, ["demo", "-o", str(tmp_path / "e")])
    assert r.exit_code == 1 and "replay failed: bad trace" in r.output and "Traceback" not in r.output


def test_chart_kind_names_for_help_match_the_registry():
    from replay.report.charts import CHART_KINDS
    from replay.cli.report import CHART_KIND_NAMES

    assert tuple(CHART_KINDS) == CHART_KIND_NAMES
