"""The sweep folder as datasets: polars, pyarrow and duckdb read the same partitions and rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.dataset as ds
import pytest

from replay.sweep.dataset import read_table
from replay.sweep.execute import run_sweep
from replay.sweep.spec import spec_from_cli


@pytest.fixture(scope="module")
def sweep_dir(tiny_traces: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    spec = spec_from_cli([str(t) for t in tiny_traces], policies=["none,list-promo,post-alloc"],
                         costs=["tdx-4k"], axes=["unit=2M,4M"])
    run_sweep(spec, out, jobs=1, progress=False)
    return out


@pytest.mark.parametrize("table", ["timeseries", "attribution_cpu", "firmware_calls"])
def test_every_reader_sees_the_same_rows(sweep_dir: Path, table: str) -> None:
    ref = read_table(sweep_dir, table)
    assert {"point", "trace", "policy", "costs"} <= set(ref.column_names)
    lf = pl.scan_parquet(sweep_dir / table, hive_partitioning=True).collect()
    pa_ds = ds.dataset(sweep_dir / table, partitioning="hive").to_table()
    assert len(lf) == pa_ds.num_rows == ref.num_rows > 0

    def key(t: pl.DataFrame) -> list[tuple]:
        return sorted(t.select("trace", "policy", "costs", "point").unique().rows())

    assert key(lf) == key(pl.from_arrow(pa_ds)) == key(pl.from_arrow(ref))


def test_duckdb_reads_the_partitions(sweep_dir: Path) -> None:
    import duckdb  # (in the test extra)

    rows = duckdb.sql(f"select trace, policy, count(distinct point) from read_parquet("
                      f"'{sweep_dir}/timeseries/*/*/*/*.parquet', hive_partitioning = true) group by all "
                      "order by all").fetchall()
    assert rows == [(t, p, 2) for t in ("alpha", "beta") for p in ("list-promo", "none", "post-alloc")]


def test_the_summary_is_the_points_in_grid_order(sweep_dir: Path) -> None:
    s = pl.read_parquet(sweep_dir / "summary.parquet")
    ts = pl.from_arrow(read_table(sweep_dir, "timeseries"))
    assert sorted(s["point"]) == sorted(ts["point"].unique()) and len(s) == 12
    assert s.select("trace", "policy").rows()[:4] == [("alpha", "none")] * 2 + [("alpha", "list-promo")] * 2
    assert s["unit_bytes"].to_list()[:2] == [2 << 20, 4 << 20]
