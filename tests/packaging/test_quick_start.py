"""README's two Quick-start commands: the second is exactly what ``.ci/run`` runs, and the first
installs the package the way a user does (a wheel, not editable) before running the demo."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.split("\n## ", 1)[1].startswith("Quick start\n")  # the first section
    demo, tests = _quick_start_commands()[:2]
    assert "pip install -q . " in demo and "-e" not in demo.split("pagereplay")[0] and "pagereplay demo" in demo
    assert tests.endswith("pytest -q -n 2") and "'.[test]'" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().splitlines()[-1]
    assert ci == _quick_start_commands()[1]
