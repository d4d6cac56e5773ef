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


def test_every_table_holds_each_points_own_rows(sample_capture: Path, tmp_path: Path) -> None:
    """Each point's rows in every table are the rows its replay made (the time series thinned to
    the kept buckets), whatever chunk they were encoded in; duckdb reads the same values."""
    import dataclasses

    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    from replay.sweep.dataset import _thin_rows
    from replay.sweep.grid import expand_grid, trace_fingerprint
    from replay.sweep.point import prepare_trace, run_point
    from replay.sweep.spec import POINT_TABLES

    spec = spec_from_cli([str(sample_capture)], policies=["none,kernel-eager,list-promo,background"],
                         costs=["tdx-4k,snp-2m"], axes=["guest_size=traced,16G"])
    spec = dataclasses.replace(spec, tables=POINT_TABLES, points_per_file=3)  # chunks of 2 or 3 points
    assert run_sweep(spec, tmp_path, jobs=1, progress=False).failed == 0
    src = spec.traces[0]
    pt = prepare_trace(src, trace_fingerprint(src), [p.name for p in spec.policies], spec.mode)
    own = {p.id: run_point(pt, p).tables for p in expand_grid(spec)}
    for name in POINT_TABLES:
        got = read_table(tmp_path, name)
        for pid, tables in own.items():
            t = tables[name].drop_columns(["policy"])
            if name == "timeseries":
                t = t.take(pa.array(_thin_rows(t.num_rows, spec.timeseries_buckets)))
            mine = got.filter(pc.equal(got["point"], pid)).drop_columns(["point", "trace", "policy", "costs"])
            assert pl.from_arrow(mine).equals(pl.from_arrow(t)), (name, pid)
        ints = [f.name for f in got.schema if pa.types.is_integer(f.type)]
        cols = ", ".join(f'sum("{c}")' for c in ints)  # (quoted: ``order`` is a column)
        sums = duckdb.sql(f"select {cols} from read_parquet("
                          f"'{tmp_path}/{name}/*/*/*/*.parquet', hive_partitioning = true)").fetchone()
        assert sums == tuple(pc.sum(got[c]).as_py() for c in ints), name


def test_the_summary_from_the_rows_written_now_equals_the_one_from_the_files(tiny_traces: list[Path],
                                                                             tmp_path: Path) -> None:
    """``write_summary`` takes the rows this run committed from memory and the others from their
    files: a fresh ``SweepDir`` (every row from its file) writes the same bytes."""
    from replay.sweep.dataset import SweepDir
    from replay.sweep.grid import chunk_grid, expand_grid

    spec = spec_from_cli([str(tiny_traces[0])], policies=["none,list-promo"], axes=["guest_size=1G,traced,8G"])
    run_sweep(spec, tmp_path, jobs=1, progress=False)  # (a failed point's row among them)
    ours = tmp_path / "summary.parquet"
    before = ours.read_bytes()
    ours.unlink()
    assert SweepDir(tmp_path).write_summary(chunk_grid(expand_grid(spec), spec.points_per_file)) == ours
    assert ours.read_bytes() == before


def test_the_point_column_of_ids_of_any_length() -> None:
    import pyarrow as pa

    from replay.sweep.dataset import _point_column

    fixed = _point_column(["p01", "p02", "p03"], [2, 0, 3])
    assert fixed.to_pylist() == ["p01", "p01", "p03", "p03", "p03"] and fixed.type == pa.string()
    mixed = _point_column(["a", "bbb"], [1, 2])
    assert mixed.to_pylist() == ["a", "bbb", "bbb"]
    assert _point_column([], []).to_pylist() == []
