"""The ahead-of-time compiled scanner (parsers/scan/aot.py) and the JIT give the same table.

``parsers.scan`` picks its kernels once per process, so each side runs in a child interpreter: one
with the compiled module (built on first use), one with ``PAGEREPLAY_NO_AOT=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from parsers.compiled import cache_root

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_traces"


def _parse(src: Path, out: Path, no_aot: bool) -> str:
    env = {**os.environ, "PAGEREPLAY_NO_AOT": "1" if no_aot else "0"}
    code = ("import sys; from parsers import scan; from parsers.api import parse_files; import pyarrow.parquet as pq;"
            " scan.warm_up(); r = parse_files([sys.argv[1]]); pq.write_table(r.table, sys.argv[2]);"
            " print(scan.backend(), 'numba' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, str(src), str(out)], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout.strip().splitlines()[-1]


def test_compiled_scanner_and_jit_agree(tmp_path: Path) -> None:
    traces = sorted(p for p in SAMPLE.iterdir() if p.name.endswith((".txt", ".txt.gz", ".txt.zst")))
    if not traces:
        pytest.skip("no text sample traces")
    src = traces[0]
    jit = _parse(src, tmp_path / "jit.parquet", no_aot=True)
    assert jit == "jit True"
    aot = _parse(src, tmp_path / "aot.parquet", no_aot=False)
    if aot == "aot True":  # the first run built it; the next one loads it without importing numba
        aot = _parse(src, tmp_path / "aot.parquet", no_aot=False)
        assert aot == "aot False"
    if aot != "aot False":  # no C compiler here: the fallback is the JIT, which the first run checked
        folder = cache_root("aot")
        marker = [*folder.glob("*.failed")] if folder is not None else []
        assert aot == "jit True" and marker, "the compiled scanner was neither loaded nor marked as failed"
    assert pq.read_table(tmp_path / "aot.parquet").equals(pq.read_table(tmp_path / "jit.parquet"))
