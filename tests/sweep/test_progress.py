"""The sweep's progress display: a bar with the ETA on a terminal, a line every tenth elsewhere."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from replay.sweep.execute import run_sweep
from replay.sweep.progress import SweepProgress
from replay.sweep.spec import spec_from_cli


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_every_tenth_of_the_points_to_do() -> None:
    out = io.StringIO()
    bar = SweepProgress(40, 20, stream=out)  # 20 already done: a tenth is 2 of the 20 left
    for i in range(20):
        bar.advance(ok=i != 3)
    bar.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert [int(re.match(r"sweep: (\d+)/40 points", ln).group(1)) for ln in lines] == list(range(22, 41, 2))
    assert "0 failed" in lines[0] and all("1 failed" in ln for ln in lines[1:])
    assert all(re.search(r"[\d.]+ points/s, ETA \d+ s$", ln) for ln in lines)
    assert lines[-1].endswith("ETA 0 s")


def test_a_bar_with_the_eta_on_a_terminal() -> None:
    out = _Terminal()
    bar = SweepProgress(12, 0, stream=out)
    assert bar._bar is not None
    for i in range(12):
        bar.advance(ok=i != 5)
    bar.stop()
    text = out.getvalue()
    assert "12/12" in text and "ETA" in text and "1 failed" in text and "points/s" in text


def test_quiet_shows_nothing() -> None:
    out = _Terminal()
    bar = SweepProgress(5, 0, enabled=False, stream=out)
    for _ in range(5):
        bar.advance(ok=True)
    bar.stop()
    assert out.getvalue() == "" and (bar.done, bar.failed) == (5, 0)


def test_a_sweep_reports_its_progress_on_stderr(tiny_traces: list[Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_from_cli([str(tiny_traces[0])], policies=["none,list-promo"], axes=["guest_size=1G,traced"])
    run_sweep(spec, tmp_path, jobs=1, progress=None)  # (stderr is no terminal here: lines)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("sweep: 4/4 points, 2 failed, ") and lines[-1].endswith("ETA 0 s")
