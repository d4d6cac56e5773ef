"""``pagereplay sweep`` / ``sweep-report`` through the real ``pagereplay`` app: registered, wired,
and every bad input one line with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from replay.cli import app
from tests.sweep.traces import tree


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _one_line_error(r, code: int, message: str) -> None:
    assert r.exit_code == code, r.output
    text = r.output.strip()
    assert text.startswith("error: ") and "\n" not in text, text
    assert message in text, text
    assert "Traceback" not in r.output


def test_both_commands_are_registered() -> None:
    r = _invoke("--help")
    assert r.exit_code == 0 and "sweep-report" in r.output and "│ sweep " in r.output


def test_a_sweep_and_its_report_from_the_command_line(tiny_traces: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    r = _invoke("sweep", *map(str, tiny_traces), "--policy", "none,list-promo", "--axis", "vcpus=1,4",
                "-o", str(out), "-j", "2", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert (res["points"], res["ran"], res["failed"], res["executor"], res["workers"]) == (8, 8, 0, "pool", 2)
    r = _invoke("sweep-report", str(out))
    assert r.exit_code == 0, r.output
    assert (out / "report" / "index.html").is_file() and (out / "report" / "charts" / "pareto.vl.json").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--axis", "gest_size=8G"], "unknown axis 'gest_size'; did you mean 'guest_size'?"),
    (["--axis", "vcpus"], "expected NAME=V1,V2,..."),
    (["--axis", "vcpus=0"], "axis vcpus: 0; allowed: an integer >= 1"),
    (["--axis", "guest_size=1G..8G"], "needs +STEP or *FACTOR"),
    (["--axis", "unit=3M"], "3145728 is not a power of two"),
    (["--policy", "list-promoo"], "unknown policy 'list-promoo'; did you mean 'list-promo'?"),
    (["--costs", "tdx4k"], "unknown cost preset 'tdx4k'; did you mean 'tdx-4k'?"),
])
def test_bad_options_are_one_line(tiny_traces: list[Path], tmp_path: Path, args: list[str], message: str) -> None:
    _one_line_error(_invoke("sweep", str(tiny_traces[0]), *args, "-o", str(tmp_path / "out")), 1, message)
    assert not (tmp_path / "out" / "summary.parquet").exists()


def test_a_missing_trace_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt.zst"
    _one_line_error(_invoke("sweep", str(missing), "-o", str(tmp_path / "out")), 1,
                    f"{missing}: no such file or folder")
    _one_line_error(_invoke("sweep", str(tmp_path / "*.nothing"), "-o", str(tmp_path / "out")), 1, "matches no file")


@pytest.mark.parametrize(("body", "message"), [
    ("traces = [", "not valid TOML"),
    ('traces = "x.parquet"\npolices = ["none"]', "unknown key 'polices'; did you mean 'policies'?"),
    ('traces = "x.parquet"\n[axes]\nvcpus = {from = 8, to = 1, step = 1}', "runs backwards"),
])
def test_a_bad_spec_is_one_line(tiny_traces: list[Path], tmp_path: Path, body: str, message: str) -> None:
    spec = tmp_path / "sweep.toml"
    spec.write_text(body.replace("x.parquet", str(tiny_traces[0])) + "\n")
    _one_line_error(_invoke("sweep", "--spec", str(spec), "-o", str(tmp_path / "out")), 1, f"{spec}")
    _one_line_error(_invoke("sweep", "--spec", str(spec), "-o", str(tmp_path / "out")), 1, message)


def test_a_missing_spec_and_no_traces_are_one_line(tmp_path: Path) -> None:
    _one_line_error(_invoke("sweep", "--spec", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "o")), 1,
                    "sweep spec file not found")
    _one_line_error(_invoke("sweep", "-o", str(tmp_path / "o")), 2, "give TRACE... or --spec sweep.toml")


def test_sweep_report_of_no_sweep_is_one_line(tmp_path: Path) -> None:
    _one_line_error(_invoke("sweep-report", str(tmp_path / "nothing")), 1, "no such sweep folder")
    (tmp_path / "empty").mkdir()
    _one_line_error(_invoke("sweep-report", str(tmp_path / "empty")), 1, "no summary.parquet")


def test_ray_local_from_the_command_line(tiny_traces: list[Path], tmp_path: Path) -> None:
    """``--ray local --jobs 2``: a private Ray of two CPUs started and stopped by the command, the
    same bytes as one process."""
    import ray

    args = ["sweep", str(tiny_traces[0]), "--policy", "none,kernel-eager,list-promo", "--axis",
            "guest_size=traced,16G", "--json"]
    r = _invoke(*args, "-o", str(tmp_path / "one"), "-j", "1")
    assert r.exit_code == 0, r.output
    r = _invoke(*args, "-o", str(tmp_path / "ray"), "--ray", "local", "-j", "2")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert (res["ran"], res["failed"], res["executor"], res["workers"]) == (6, 0, "ray", 2)
    assert not ray.is_initialized()  # the command shut its Ray down
    assert tree(tmp_path / "one") == tree(tmp_path / "ray")
