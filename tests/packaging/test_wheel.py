"""A normal (non-editable) install works: the wheel, installed into a fresh virtual environment,
runs ``pagereplay --help``, ``parse``, a small ``replay`` and finds the bundled sample traces."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLES

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``pagereplay`` script of a fresh venv that has only the built wheel (and its dependencies)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    p = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)])
    assert p.returncode == 0, p.stderr[-2000:]
    wheels = list(dist.glob("pagereplay-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    p = _run([str(py), "-m", "pip", "install", "-q", str(wheels[0])])
    assert p.returncode == 0, p.stderr[-2000:]
    # the installed package, not the checkout: run from elsewhere
    p = _run([str(py), "-c", "import replay, parsers; print(replay.__file__, parsers.__file__)"], cwd=tmp)
    assert p.returncode == 0 and str(ROOT) not in p.stdout, p.stdout + p.stderr
    return env_dir / "bin" / "pagereplay"


def test_help_parse_and_replay_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    p = _run([str(installed), "--help"], cwd=tmp_path)
    assert p.returncode == 0 and "replay" in p.stdout and "synth" in p.stdout, p.stderr
    small = SAMPLES / "debian12-6.1-small"
    ev = tmp_path / "events.parquet"
    p = _run([str(installed), "parse", str(small / "trace.txt.zst"), "-o", str(ev), "--json"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    acc = json.loads(p.stdout)
    assert acc["lines_total"] == 24971 and acc["lines_malformed"] == 0
    p = _run([str(installed), "replay", str(ev), "-o", str(tmp_path / "res"), "--policy", "list-promo",
              "--snapshot", str(small / "proc_before"), "--json"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["policy"] for r in rows] == ["none", "list-promo"]
    assert (tmp_path / "res" / "summary.parquet").is_file()


def test_the_wheel_carries_the_sample_traces(installed: Path) -> None:
    py = installed.parent / "python"
    p = _run([str(py), "-c", "from replay.report.html import default_demo_trace; print(default_demo_trace())"],
             cwd=installed.parent)
    assert p.returncode == 0, p.stderr
    path = Path(p.stdout.strip())
    assert path.is_file() and str(ROOT) not in str(path)


def test_the_wheel_carries_the_compiled_kernels(installed: Path, tmp_path: Path) -> None:
    """The first demo after the install, with an empty user cache, compiles nothing: the wheel's
    kernels (replay/jit.py, "Compiled ahead of time") are copied into the cache and loaded, though
    the package sits elsewhere than the tree they were compiled in.  Its stderr is empty."""
    import os

    py = installed.parent / "python"
    code = ("import json; from replay.jit import BUNDLE, cache_key; "
            "m = json.loads((BUNDLE / 'manifest.json').read_text()); print(m['cache_key'] == cache_key())")
    p = _run([str(py), "-c", code], cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "True", p.stdout + p.stderr
    cache = tmp_path / "cache"
    env = dict(os.environ, PAGEREPLAY_CACHE_DIR=str(cache))
    p = _run([str(installed), "demo", "-o", str(tmp_path / "demo"), "--no-images"], cwd=tmp_path, env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr[-3000:]
    assert [m.read_text() for m in cache.glob(".seeded-*")] == ["copied\n"]
    env["NUMBA_DEBUG_CACHE"] = "1"  # numba says "[cache] data saved" for each function it compiled
    p = _run([str(installed), "demo", "-o", str(tmp_path / "demo2"), "--no-images"], cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "data loaded" in p.stdout and "data saved" not in p.stdout, p.stdout[-3000:]
