"""The sweep's output folder: a hive-partitioned Parquet dataset per table, the summary, resume.

Layout (docs/sweep.md)::

    DIR/sweep.json                     the spec and the grid (every point's id and axis values)
    DIR/summary.parquet                one row per point of the grid, in grid order
    DIR/<table>/trace=T/policy=P/costs=C/<chunk>.parquet      the chunk's rows of <table> (timeseries, ...)
    DIR/points/trace=T/policy=P/costs=C/<chunk>.jsonl         its points' summary rows: it is done
    DIR/timings.json                   wall-clock seconds of each run (never in a data file)

A chunk is up to ``points_per_file`` consecutive points of one partition (``grid.chunk_grid``):
a Parquet file costs about a millisecond whatever it holds, as much as a small point's replay,
so the points of a chunk share one file per table.  Each table folder is one dataset:
``pyarrow.dataset.dataset(DIR/timeseries, partitioning="hive")``,
``polars.scan_parquet(DIR/timeseries, hive_partitioning=True)``, duckdb
``read_parquet('DIR/timeseries/*/*/*/*.parquet', hive_partitioning = true)``.  Every row has a
``point`` column (join on it with ``summary.parquet``); ``trace``, ``policy`` and ``costs`` are the
partitions.

Commit protocol: every file is written under a hidden name (``.<chunk>.parquet.tmp``, which the
readers skip) and renamed into place, the table files first and the rows last: a chunk is done
exactly when its rows exist, so an interrupted sweep never leaves a point that looks done, and a
rerun redoes (byte for byte) any chunk whose rows are missing.  A failed point has a row with
``status = "error"`` and its error, and no table rows; a rerun tries its chunk again.
``summary.parquet`` is every row as one table, written at the end of every run (an interrupted
one included).  A folder holds one grid: chunks of another grid (a changed spec) are removed
when a run starts (``SweepDir.remove_stale``).

Every byte written depends only on the chunk (fixed writer options, rows in grid order, no
wall-clock value): the same sweep gives the same files from any worker, in any order.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.results.writer import dictionary_columns
from replay.sweep.grid import Chunk, Point
from replay.sweep.spec import POINT_TABLES, Output

__all__ = ["POINTS", "SUMMARY_COLUMNS", "ChunkRecord", "PointResult", "SweepDir", "chunk_record", "encode_table",
           "error_text", "read_table"]

POINTS = "points"
SUMMARY = "summary.parquet"
STATUS_OK, STATUS_ERROR = "ok", "error"

_I, _F, _S, _B = pa.int64(), pa.float64(), pa.string(), pa.bool_()
#: the point's identity and its axes (``trace``, ``policy`` and ``costs`` are partitions in the
#: dataset and columns in summary.parquet)
IDENTITY_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("point", _S), ("platform", _S), ("mode", _S), ("trace_sha256", _S),
    ("unit_bytes", _I), ("host_backing", _S), ("calls_model", _S), ("background_cpu_budget", _F),
    ("background_rate_bytes_s", _F), ("init_threads", _I), ("firmware_accepted_bytes", _I),
    ("guest_size_bytes", _I), ("guest_present_bytes", _I), ("vcpus", _I),
    ("status", _S), ("error", _S),
)
#: what a replayed point measured: the replay's summary row (docs/results.md) and the guest shape's
METRIC_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("events_replayed", _I), ("anomalies", _I), ("anomaly_rate", _F), ("unexplained_anomaly_rate", _F),
    ("invariants_ok", _B), ("forced_allocations", _I), ("firmware_calls", _I), ("firmware_ns", _I),
    ("accepted_bytes", _I), ("boot_accept_ns", _I), ("boot_cpu_ns", _I), ("boot_accepted_bytes", _I),
    ("boot_threads", _I), ("boot_bound", _S), ("extra_bytes", _I), ("extra_unaccepted_bytes", _I),
    ("unaccepted_bytes_end", _I), ("added_ns", _I),
    ("zone_lock_hold_ns", _I), ("zone_lock_hold_max_ns", _I), ("zone_lock_wait_ns", _I),
    ("zone_lock_wait_max_ns", _I), ("accept_lock_hold_ns", _I), ("accept_lock_wait_ns", _I),
    ("accept_lock_wait_max_ns", _I), ("irqs_off_max_ns", _I), ("irqs_off_over_1ms", _I),
    ("irqs_off_over_20s", _I), ("alloc_added_p50_ns", _I), ("alloc_added_p90_ns", _I),
    ("alloc_added_p99_ns", _I), ("alloc_added_p999_ns", _I), ("alloc_added_max_ns", _I),
)
POINT_SCHEMA = pa.schema([pa.field(n, t) for n, t in (*IDENTITY_COLUMNS, *METRIC_COLUMNS)])
PARTITION_COLUMNS = ("trace", "policy", "costs")
#: summary.parquet: the partitions first, then every column of a point's row
SUMMARY_COLUMNS = ("point", *PARTITION_COLUMNS, *(n for n, _ in (*IDENTITY_COLUMNS, *METRIC_COLUMNS)
                                                  if n != "point"))
#: the columns of a point's row, in ``POINT_SCHEMA`` order (iterating a schema builds its fields anew)
_POINT_NAMES = tuple(POINT_SCHEMA.names)


# ------------------------------------------------------------------ encoding
def encode_table(t: pa.Table) -> bytes:
    """``t`` as Parquet bytes, with fixed writer options (the same table gives the same bytes).

    Strings, booleans and narrow integers are dictionary-encoded as in the results folder
    (``replay.results.writer.dictionary_columns``); the 64-bit integers (times, bytes, pages:
    slowly varying) are delta-encoded; then snappy:
    a sixth of the size of snappy alone at the same speed; zstd took twice as long, which on a
    chunk's small tables is a noticeable share of its points' replay."""
    dictionary, delta = _encodings(t.schema)
    sink = pa.BufferOutputStream()  # (Arrow's own buffer: no Python file object between the writer and the bytes)
    pq.write_table(t.replace_schema_metadata(None), sink, compression="snappy", use_dictionary=dictionary,
                   column_encoding=delta, write_statistics=True, row_group_size=1 << 20, store_schema=True)
    return sink.getvalue().to_pybytes()


_ENCODINGS: dict[Any, tuple[list[str], dict[str, str] | None]] = {}


def _encodings(schema: pa.Schema) -> tuple[list[str], dict[str, str] | None]:
    """``encode_table``'s dictionary and delta columns of ``schema`` (a sweep writes a few schemas
    thousands of times)."""
    key = tuple(zip(schema.names, map(str, schema.types)))
    hit = _ENCODINGS.get(key)
    if hit is None:
        dictionary = dictionary_columns(schema)
        delta = {f.name: "DELTA_BINARY_PACKED" for f in schema if f.name not in dictionary and f.type == pa.int64()}
        hit = _ENCODINGS[key] = (dictionary, delta or None)
    return hit


def _row_json(values: dict[str, Any]) -> str:
    """A point's row as one JSON line: the ``POINT_SCHEMA`` columns, in its order."""
    return json.dumps({name: values.get(name) for name in _POINT_NAMES})


def _rows_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Points' rows (``_row_json``'s, parsed) as one table of ``POINT_SCHEMA``."""
    try:  # every row has every column (``_row_json``): the columns at once
        columns = list(zip(*map(itemgetter(*_POINT_NAMES), rows))) if rows else [()] * len(_POINT_NAMES)
    except KeyError:  # a row without some column (not one of ours): null there
        columns = [[r.get(name) for r in rows] for name in _POINT_NAMES]
    return pa.table([pa.array(c, f.type) for c, f in zip(columns, POINT_SCHEMA)], schema=POINT_SCHEMA)


def _identity(point: Point, fingerprint: str) -> dict[str, Any]:
    return {"point": point.id, "platform": point.costs.platform, "mode": point.mode, "trace_sha256": fingerprint,
            **point.axis_columns(), "vcpus": point.vcpus}


def _point_column(ids: Sequence[str], counts: Sequence[int]) -> pa.Array:
    """``ids[i]`` repeated ``counts[i]`` times, as one string array."""
    n = np.asarray(counts, np.int64)
    raw = [i.encode() for i in ids]
    width = len(raw[0]) if raw else 0
    if width and all(len(r) == width for r in raw):  # point ids (``p`` + 20 hex digits): the buffers at once
        total = int(n.sum())
        offsets = np.arange(0, (total + 1) * width, width, dtype=np.int32)
        data = np.repeat(np.array(raw, dtype=f"S{width}"), n)
        return pa.StringArray.from_buffers(total, pa.py_buffer(offsets), pa.py_buffer(data))
    return pa.array(ids, pa.string()).take(pa.array(np.repeat(np.arange(len(ids), dtype=np.int32), n)))


def _with_points(t: pa.Table, ids: Sequence[str], counts: Sequence[int]) -> pa.Table:
    """The concatenated tables of a chunk's points as dataset rows: ``point`` first (``ids[i]``
    on the ``counts[i]`` rows of the i-th point)."""
    return t.add_column(0, "point", _point_column(ids, counts))


@dataclass
class PointResult:
    """One point of a chunk as it came out of ``run_point``: its tables and row, or its error."""

    point: Point
    tables: dict[str, pa.Table] | None
    row: dict[str, Any] | None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class ChunkRecord:
    """What the sweep writes for one chunk: encoded files by table (``points`` among them)."""

    chunk_id: str
    partition: tuple[tuple[str, str], ...]
    files: dict[str, bytes]
    statuses: dict[str, str]  # point id -> "ok" | "error"
    errors: dict[str, str] = field(default_factory=dict)  # point id -> error
    seconds: dict[str, float] = field(default_factory=dict)  # point id -> where it ran (timings.json only)
    encode_seconds: float = 0.0


def _thin_rows(n: int, buckets: int) -> np.ndarray:
    """The time-series rows kept of ``n``: every k-th and the last, at most about ``buckets``
    (0: all); each kept row is the state at its bucket's start, so the rows kept are the curve
    at a coarser step."""
    if buckets <= 0 or n <= buckets:
        return np.arange(n, dtype=np.int64)
    idx = np.arange(0, n, -(-n // buckets), dtype=np.int64)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _chunk_table(name: str, done: Sequence[PointResult], output: Output) -> pa.Table:
    """Table ``name`` of a chunk's replayed points (in grid order), each point's rows marked."""
    tables = [r.tables[name] for r in done]  # type: ignore[index]
    # no ``policy`` column (a partition), dropped before the rows are gathered
    t = pa.concat_tables(tables)
    if "policy" in t.column_names:
        t = t.drop_columns(["policy"])
    counts = [x.num_rows for x in tables]
    if name == "timeseries":
        keep = [_thin_rows(n, output.timeseries_buckets) for n in counts]
        if sum(map(len, keep)) < t.num_rows:
            offsets = np.cumsum([0, *counts[:-1]])
            t = t.take(pa.array(np.concatenate([k + o for k, o in zip(keep, offsets)])))
            counts = [len(k) for k in keep]
    return _with_points(t, [r.point.id for r in done], counts)


def chunk_record(chunk: Chunk, fingerprint: str, results: Sequence[PointResult], output: Output) -> ChunkRecord:
    """The files of a chunk: each kept table's rows of its replayed points (in grid order), and
    one row per point."""
    rows = []
    for r in results:
        values = _identity(r.point, fingerprint)
        if r.error is None:
            assert r.tables is not None and r.row is not None
            values.update(r.row, status=STATUS_OK, error=None)
        else:
            values.update(status=STATUS_ERROR, error=r.error)
        rows.append(_row_json(values))
    done = [r for r in results if r.error is None]
    files = {name: encode_table(_chunk_table(name, done, output)) for name in output.tables} if done else {}
    files[POINTS] = ("\n".join(rows) + "\n").encode()
    return ChunkRecord(chunk.id, chunk.partition, files,
                       statuses={r.point.id: STATUS_OK if r.error is None else STATUS_ERROR for r in results},
                       errors={r.point.id: r.error for r in results if r.error is not None},
                       seconds={r.point.id: r.seconds for r in results})


def error_text(exc: BaseException) -> str:
    """An exception as the one line a failed point records (no addresses, no traceback)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


# ------------------------------------------------------------------ the folder
def _partition_dir(partition: Iterable[tuple[str, str]]) -> str:
    return "/".join(f"{k}={v}" for k, v in partition)


class SweepDir:
    """The output folder of a sweep (module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._rows: dict[str, bytes] = {}  # chunk id -> the rows this object committed (the summary's)
        self._tables: set[str] | None = None  # table folders that may hold files (None: not looked yet)

    def path(self, table: str, partition: Iterable[tuple[str, str]], chunk_id: str) -> Path:
        return Path(self._file(table, partition, chunk_id))

    def _file(self, table: str, partition: Iterable[tuple[str, str]], chunk_id: str) -> str:
        # (a string: pathlib's joins were a third of a chunk's commit)
        suffix = ".jsonl" if table == POINTS else ".parquet"
        return os.path.join(self.root, table, _partition_dir(partition), chunk_id + suffix)

    def prepare(self) -> None:
        """Create the folder; remove the hidden files an interrupted run left behind."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"{self.root}: exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob("*/*/*/*/.*.tmp"):
            tmp.unlink(missing_ok=True)
        self._tables = {p.name for p in self.root.iterdir() if p.is_dir()}

    def _data_files(self) -> list[Path]:
        return [*self.root.glob(f"{POINTS}/*/*/*/*.jsonl"), *self.root.glob("*/*/*/*/*.parquet")]

    def remove_stale(self, chunks: Sequence[Chunk]) -> int:
        """Remove the files of chunks not in ``chunks`` (another grid's); returns how many chunks."""
        keep = {(_partition_dir(c.partition), c.id) for c in chunks}
        stale = set()
        for f in self._data_files():
            key = ("/".join(f.parent.parts[-3:]), f.name.split(".", 1)[0])
            if key not in keep:
                stale.add(key)
                f.unlink()
        return len(stale)

    def done(self) -> dict[str, dict[str, str]]:
        """Chunk id -> {point id: status} of every chunk with rows."""
        out: dict[str, dict[str, str]] = {}
        for p in self.root.glob(f"{POINTS}/*/*/*/*.jsonl"):
            try:
                out[p.name.split(".", 1)[0]] = {r["point"]: str(r["status"])
                                                for r in map(json.loads, p.read_text().splitlines())}
            except (OSError, ValueError, KeyError, TypeError):  # not one of ours: not done
                continue
        return out

    @staticmethod
    def _write(path: str | Path, data: bytes) -> None:
        folder, name = os.path.split(os.fspath(path))
        tmp = os.path.join(folder, f".{name}.tmp")
        try:
            f = open(tmp, "wb")  # noqa: SIM115 - (closed below; the retry needs the error)
        except FileNotFoundError:  # its folder's first file (a mkdir per file cost ~0.5 ms on some file systems)
            os.makedirs(folder, exist_ok=True)
            f = open(tmp, "wb")  # noqa: SIM115
        with f:
            f.write(data)
        os.replace(tmp, path)

    def commit(self, rec: ChunkRecord) -> None:
        """Write a chunk's files, its rows last (the commit protocol of the module docstring)."""
        for name in POINT_TABLES:  # a table this run writes no rows of (all its points failed, or not kept)
            if name not in rec.files and (self._tables is None or name in self._tables):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file(name, rec.partition, rec.chunk_id))
        for name in sorted(rec.files):
            if name != POINTS:
                self._write(self._file(name, rec.partition, rec.chunk_id), rec.files[name])
                if self._tables is not None:
                    self._tables.add(name)
        self._write(self._file(POINTS, rec.partition, rec.chunk_id), rec.files[POINTS])
        self._rows[rec.chunk_id] = rec.files[POINTS]

    def write_json(self, name: str, obj: Any) -> None:
        self._write(self.root / name, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())

    def write_summary(self, chunks: Sequence[Chunk]) -> Path:
        """``summary.parquet``: the rows of every chunk of ``chunks`` that has them, in grid order."""
        rows, parts = [], []
        for c in chunks:
            text = self._rows.get(c.id)
            if text is None:  # done by an earlier run
                f = self.path(POINTS, c.partition, c.id)
                text = f.read_bytes() if f.is_file() else None
            if text is not None:
                got = {r["point"]: r for r in map(json.loads, text.splitlines())}
                for p in c.points:
                    if p.id in got:
                        rows.append(got[p.id])
                        parts.append(dict(p.partition))
        t = _rows_table(rows)
        for col in reversed(PARTITION_COLUMNS):
            t = t.add_column(1, col, pa.array([q[col] for q in parts], _S))
        out = self.root / SUMMARY
        self._write(out, encode_table(t))
        return out

    def append_timings(self, run: dict[str, Any]) -> None:
        """Add one run's wall-clock figures to ``timings.json`` (not data: never compared)."""
        p = self.root / "timings.json"
        try:
            runs = json.loads(p.read_text()).get("runs", [])
        except (OSError, ValueError):
            runs = []
        self.write_json("timings.json", {"runs": [*runs, run]})


def read_table(root: str | Path, table: str) -> pa.Table:
    """One table of a sweep folder with its partition columns (pyarrow), in file order; ``points``
    is summary.parquet."""
    if table == POINTS:
        return pq.read_table(Path(root) / SUMMARY)
    import pyarrow.dataset as ds

    base = Path(root) / table
    files = sorted(str(p) for p in base.glob("*/*/*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{base}: no files (the sweep kept: {', '.join(_tables(Path(root)))})")
    part = ds.partitioning(pa.schema([pa.field(c, _S) for c in PARTITION_COLUMNS]), flavor="hive")
    return ds.dataset(files, format="parquet", partitioning=part, partition_base_dir=str(base)).to_table()


def _tables(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
