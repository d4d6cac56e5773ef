"""Parquet files of the canonical event table: writing them, checking them, reading them back.

``write_pieces`` streams sorted pieces into a file (one row group each, encoded on a thread of
its own) and, when the pieces were not in global time order, rewrites it by a k-way merge of
its sorted runs (``merge_runs``, bounded memory); the file appears under its name only when
whole.  ``writer_options`` are the encodings every pagereplay Parquet file uses (parsed and
synthetic alike).  ``read_metadata``, ``is_parquet``, ``check_parquet_output`` and
``read_events`` are the reading side.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SchemaMismatchError, TraceInputError
from .schema import COLUMNS, EVENT_NAMES, METADATA_PREFIX, SORT_KEYS, check_schema


def write_overlapped(write: Callable[[Any], Any], items: Iterable[Any], depth: int = 2) -> None:
    """``write(item)`` for each of ``items`` in order, on a thread of its own, at most ``depth``
    writes behind: Parquet encoding (pyarrow releases the GIL) overlaps with producing the next
    items.  A write still running when ``items`` raises is waited for before the error goes on."""
    with cf.ThreadPoolExecutor(1) as pool:
        inflight: collections.deque[cf.Future] = collections.deque()
        try:
            for x in items:
                inflight.append(pool.submit(write, x))
                while len(inflight) > depth:
                    inflight.popleft().result()
            while inflight:
                inflight.popleft().result()
        finally:
            # a write already running cannot be cancelled: wait for it before the writer is closed
            for f in inflight:
                f.cancel()
            cf.wait(inflight)


def write_pieces(out: Path, schema: pa.Schema, pieces: Iterable[pa.Table],
                 finish: Callable[[], tuple[dict[str, str], bool, list[int]]], compression: str) -> None:  # fmt: skip
    """Write ``pieces`` (each sorted by ``SORT_KEYS``) to ``out``, one row group each.

    ``finish()`` is called after the last piece, before the file is closed: it returns the
    key-value metadata, whether the pieces were in global order, and the first piece of each
    sorted run.  Out of order, the file is rewritten by :func:`merge_runs` into a second
    temporary file; ``out`` appears (atomically) only when whole.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=".pagereplay-", suffix=".parquet", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with pq.ParquetWriter(tmp, schema, **writer_options(compression)) as writer:
            # one row group per piece: row groups are then the units of the sorted runs
            write_overlapped(lambda piece: writer.write_table(piece, len(piece)), pieces)
            md, in_order, run_starts = finish()
            if in_order:
                writer.add_key_value_metadata(md)
        if not in_order:
            merged = tmp.with_name(tmp.name + ".merged")
            try:
                merge_runs(tmp, merged, md, compression, run_starts)
                os.replace(merged, out)
            finally:
                merged.unlink(missing_ok=True)
            tmp.unlink()
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def writer_options(compression: str) -> dict[str, Any]:
    # dictionary-encode the string columns only and keep statistics on the keys people filter on:
    # the defaults (dictionary + stats on every column) cost 3x the encoding time for a larger file.
    # (Not on event: the min/max names of a row group could only skip it if it lacked the events at
    # both ends of the alphabet, and real traces interleave all six; they cost 7% of the encoding.)
    return {
        "compression": compression,
        "use_dictionary": [c.name for c in COLUMNS if pa.types.is_dictionary(c.type)],
        "write_statistics": ["ts_ns", "cpu", "pfn", "seq"],
        # near-monotonic integers: delta encoding is both cheaper to write and 4x smaller than plain
        "column_encoding": {c: "DELTA_BINARY_PACKED" for c in ("ts_ns", "seq", "line", "pfn")},
    }


def merge_runs(src: Path, out: Path, md: dict[str, str], compression: str, run_starts: list[int], budget_rows: int = 2_000_000) -> None:
    """K-way merge of the sorted runs of ``src`` into ``out`` (bounded memory).

    A run is a range of consecutive row groups that are in order among
    themselves (``run_starts`` gives the first row group of each).
    """
    pf = pq.ParquetFile(src)
    bounds = list(run_starts) + [pf.num_row_groups]
    runs = [list(range(bounds[i], bounds[i + 1])) for i in range(len(run_starts)) if bounds[i] < bounds[i + 1]]
    nrg = len(runs)
    batch_rows = max(4096, budget_rows // max(nrg, 1))
    iters = [pf.iter_batches(batch_size=batch_rows, row_groups=r) for r in runs]
    bufs: list[pa.Table | None] = [None] * nrg
    keys: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * nrg

    def refill(i: int) -> None:
        while bufs[i] is None or len(bufs[i]) == 0:  # type: ignore[arg-type]
            try:
                b = next(iters[i])
            except StopIteration:
                bufs[i] = None
                keys[i] = None
                return
            bufs[i] = pa.Table.from_batches([b])
        t = bufs[i]
        keys[i] = tuple(t.column(k).to_numpy() for k in SORT_KEYS)  # type: ignore[assignment,union-attr]

    for i in range(nrg):
        refill(i)
    schema = pf.schema_arrow.remove_metadata()
    with pq.ParquetWriter(out, schema, **writer_options(compression)) as w:
        while True:
            live = [i for i in range(nrg) if bufs[i] is not None]
            if not live:
                break
            # everything up to the smallest "last key" among buffers can be emitted
            bound = min((int(keys[i][0][-1]), int(keys[i][1][-1]), int(keys[i][2][-1])) for i in live)  # type: ignore[index]
            parts = []
            for i in live:
                ts, cpu, seq = keys[i]  # type: ignore[misc]
                le = (ts < bound[0]) | ((ts == bound[0]) & ((cpu < bound[1]) | ((cpu == bound[1]) & (seq <= bound[2]))))
                n = int(le.sum())  # a sorted run: the rows <= bound are a prefix
                if n:
                    parts.append(bufs[i].slice(0, n))  # type: ignore[union-attr]
                    bufs[i] = bufs[i].slice(n)  # type: ignore[union-attr]
                    if len(bufs[i]) == 0:  # type: ignore[arg-type]
                        refill(i)
                    else:
                        keys[i] = (ts[n:], cpu[n:], seq[n:])
            merged = pa.concat_tables(parts).unify_dictionaries().combine_chunks()
            order = np.lexsort(tuple(merged.column(k).to_numpy() for k in reversed(SORT_KEYS)))
            w.write_table(merged.take(pa.array(order)))
        w.add_key_value_metadata(md)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``pagereplay.*`` key-value metadata of a Parquet file."""
    raw = pq.read_metadata(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k.decode().startswith(METADATA_PREFIX)}


def check_parquet_output(out: str | os.PathLike[str], inputs: list[Any]) -> None:
    """Refuse a Parquet output that is one of ``inputs`` or an existing file pagereplay did not
    write (a Parquet file without ``pagereplay.*`` metadata, or anything else)."""
    from .errors import refuse_clobber, refuse_foreign

    refuse_clobber(out, inputs)
    ours = False
    if is_parquet(out):
        try:
            ours = bool(read_metadata(out))
        except (OSError, pa.ArrowException):
            ours = False
    refuse_foreign(out, ours, "a Parquet file")


def is_parquet(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    if str(path) == "-" or not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(4) == b"PAR1"


def read_events(path: str | os.PathLike[str]) -> tuple[pa.Table, dict[str, str]]:
    """The canonical table and its ``pagereplay.*`` metadata from a Parquet file pagereplay wrote;
    a file of another schema, or one cut short or damaged, is a one-line error naming it."""
    from .ranges import check_parquet

    try:
        problems = check_schema(pq.read_schema(path))
        if problems:
            raise SchemaMismatchError(f"{path}: not a pagereplay event table: {'; '.join(problems)}")
        check_parquet(path, SchemaMismatchError, EVENT_NAMES)
        table = pq.read_table(path)
        md = read_metadata(path)
    except (pa.ArrowException, OSError) as e:  # cut short, damaged pages: say which file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TraceInputError(f"{path}: unreadable Parquet file: {msg}") from None
    return table, md


__all__ = ["check_parquet_output", "is_parquet", "merge_runs", "read_events", "read_metadata", "write_overlapped",
           "write_pieces", "writer_options"]
