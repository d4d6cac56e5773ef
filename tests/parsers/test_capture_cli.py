"""``pagereplay record`` wiring (replay/cli/record.py) on a typer app of its own."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import typer
from typer.testing import CliRunner

from replay.cli import record as record_cli


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    record_cli.register(a)

    @a.command("other")
    def _other() -> None:  # a second command, so that typer keeps the "record" sub-command name
        pass

    return a


def test_script_to_stdout(app, tmp_path):
    r = CliRunner().invoke(app, ["record", "-o", "/out/cap", "--script", "--duration", "5", "--untraced",
                                 "--contention", "--", "sh", "-c", "echo hi"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("#!/bin/sh\n")
    assert "OUT=${PAGEREPLAY_OUT:-'/out/cap'}" in r.stdout and "set -- 'sh' '-c' 'echo hi'" in r.stdout
    p = tmp_path / "c.sh"
    p.write_text(r.stdout)
    sh = shutil.which("busybox")
    argv = [sh, "sh", "-n", str(p)] if sh else ["sh", "-n", str(p)]
    assert subprocess.run(argv).returncode == 0


def test_script_without_output_uses_default(app):
    r = CliRunner().invoke(app, ["record", "--script"])
    assert r.exit_code == 0 and "pagereplay-capture" in r.stdout


@pytest.mark.parametrize("args, msg", [
    ([], "give the capture folder with -o DIR"),
    (["-o", "x", "--duration", "0"], "--duration must be positive"),
    (["-o", "x", "--buffer-mb", "-1"], "--buffer-mb must be positive"),
])
def test_argument_errors(app, args, msg):
    r = CliRunner().invoke(app, ["record", *args])
    assert r.exit_code == 2 and msg in r.output


def test_not_root_is_one_line(app, tmp_path, monkeypatch):
    import parsers.capture.record as rec

    monkeypatch.setattr(rec.os, "geteuid", lambda: 1000)
    r = CliRunner().invoke(app, ["record", "-o", str(tmp_path / "out"), "--duration", "1"])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "must run as root" in lines[0]


def test_record_against_a_tracefs(app, tmp_path):
    from tests.parsers.fake_tracefs import make_tracefs

    t = make_tracefs(tmp_path / "t", kmem=("mm_page_free",))
    r = CliRunner().invoke(app, ["record", "-o", str(tmp_path / "out"), "--tracefs", str(t), "--duration", "1"])
    assert r.exit_code == 1 and "kmem:mm_page_alloc is not available" in r.output
    assert not (tmp_path / "out").exists()
