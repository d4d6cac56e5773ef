"""``pagereplay synth``: byte-identical Parquet per seed, metadata, text that parses back, --compare-to."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from parsers.api import parse_files, read_metadata
from parsers.schema import METADATA_PREFIX, check_schema
from parsers.synthetic.render import RenderOptions, as_rendered
from tests.helpers.cli import invoke, run_ok

SAMPLES = Path(__file__).resolve().parents[2] / "sample_traces"


def _run(*args: str) -> str:
    """``pagereplay synth ARGS --emitter standin``: these tests are of the stand-in path (the engine
    emitter's are in tests/synth/test_engine_emit.py)."""
    return run_ok("synth", *args, "--emitter", "standin")


def test_same_seed_byte_identical_parquet(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    _run("churn", "-o", str(a), "--events", "5000", "--seed", "3", "--cpus", "3")
    _run("churn", "-o", str(b), "--events", "5000", "--seed", "3", "--cpus", "3")
    _run("churn", "-o", str(c), "--events", "5000", "--seed", "4", "--cpus", "3")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    md = read_metadata(a)
    assert md[METADATA_PREFIX + "synthetic.workload"] == "churn"
    assert md[METADATA_PREFIX + "synthetic.seed"] == "3"
    params = json.loads(md[METADATA_PREFIX + "synthetic.parameters"])
    assert params["machine"]["cpus"] == 3 and params["params"]["rate_per_cpu"] > 0
    assert md[METADATA_PREFIX + "tool_version"] and md[METADATA_PREFIX + "schema_version"]
    t = pq.read_table(a)
    assert check_schema(t.schema) == []
    assert int(md[METADATA_PREFIX + "synthetic.events"]) == t.num_rows


@pytest.mark.parametrize("fmt,era", [("ftrace", "D"), ("trace-cmd", "C"), ("perf", "B"), ("ftrace", "A")])
def test_text_parses_back(tmp_path: Path, fmt: str, era: str) -> None:
    out, txt = tmp_path / "t.parquet", tmp_path / "t.txt"
    _run("page-cache", "-o", str(out), "--events", "3000", "--param", "window=8", "--text", str(txt),
         "--format", fmt, "--kernel-era", era)  # fmt: skip
    table = pq.read_table(out)
    parsed = parse_files([txt], strict=True).table
    want = as_rendered(table, RenderOptions(fmt=fmt, era=era))
    for name in want.column_names:
        if name not in ("source_file", "line"):
            assert parsed.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_workload_params_config_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text('workload = "fault-in"\nmemory = "2G"\n[params]\ngib = 0.0625\nthp = 0.0\n')
    out = tmp_path / "f.parquet"
    _run("--config", str(cfg), "-o", str(out))
    df = pl.read_parquet(out).filter(pl.col("event") == "mm_page_alloc")
    assert int((2 ** df["order"].cast(pl.Int64)).sum()) * 4096 == 1 << 26
    r = invoke("synth", "churn", "-o", out, "--param", "nope=1")
    assert r.exit_code == 1 and "unknown key 'nope'" in r.output and "[params]" in r.output
    r = invoke("synth", "churn", "-o", out, "--kernel-era", "E")
    assert r.exit_code == 1 and "--kernel-era" in r.output


def test_compare_to_real_sample(tmp_path: Path) -> None:
    out, csv, html = tmp_path / "s.parquet", tmp_path / "cmp.csv", tmp_path / "cmp.html"
    text = _run("churn", "-o", str(out), "--events", "5000", "--compare-to",
                str(SAMPLES / "debian12-6.1-boot-head3k.txt"), "--compare-out", str(csv), "--compare-chart", str(html))  # fmt: skip
    assert html.stat().st_size > 10_000 and "log2_ratio" in html.read_text()
    assert "distance" in text and "free-only share" in text
    cmp = pl.read_csv(csv)
    assert {"group", "statistic", "synthetic", "real", "ratio"} <= set(cmp.columns)


def test_cli_constants_match_the_modules():
    """replay.cli.synth and replay.synth keep light copies of these so `pagereplay` starts fast."""
    from parsers.synthetic import render, workloads
    from replay import synth
    from replay.cli import synth as cli
    from replay.synth import emit

    assert cli.FORMATS == render.FORMATS
    assert cli.ERAS == render.ERAS
    assert set(cli.WORKLOAD_NAMES) == set(workloads.WORKLOADS)
    assert synth.engine_emitter.DESCRIPTION == emit.DESCRIPTION
