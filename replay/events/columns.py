"""Flat NumPy columns of the Arrow event table, without Python work per event.

The replay driver (``replay.model.engine.event_arrays``) needs each column as a writable NumPy array
with nulls replaced by a sentinel.  ``fill_null`` + ``to_numpy(zero_copy_only=False)`` +
``np.array`` made three passes and two copies per column (0.9 s on 14.7M events); here the
Arrow value buffer is viewed zero-copy and cast/copied once, bit-packed booleans and validity
bitmaps are unpacked with ``np.unpackbits``, and the null slots (whose values Arrow leaves
undefined) are overwritten with the sentinel.  Dictionary columns (``event``, ``comm``) are
mapped through a per-chunk lookup table on the indices.

A Parquet event table is read straight into the flat columns, a few row groups at a time
(``read_parquet_columns``).  Nothing here imports numba: the replay starts reading its trace
while numba and the replay kernels load on other threads.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pyarrow as pa


def _bits(buf: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """``n`` bits of an Arrow bitmap from bit ``offset`` as a bool array (LSB first)."""
    raw = np.frombuffer(buf, np.uint8, count=(offset + n + 7) // 8)
    return np.unpackbits(raw, bitorder="little", count=offset + n)[offset:].view(bool)


def _chunk_values(arr: pa.Array, dtype: Any, null: int, writable: bool = True) -> np.ndarray | None:
    """One chunk as a ``dtype`` array (nulls -> ``null``); None if not a plain int/bool array.

    ``writable=False``: a column without nulls already of type ``dtype`` is a zero-copy view of
    the Arrow buffer (no page faults for a copy: on the shared VM first-touch faults cost up to
    ~2 s per GB, more than the copy itself).  The view shares the table's memory (it is
    writable when Arrow allocated the buffer itself): callers must treat it as read-only.
    """
    n = len(arr)
    if (not writable and n and arr.null_count == 0 and pa.types.is_integer(arr.type)
            and np.dtype(arr.type.to_pandas_dtype()) == np.dtype(dtype)):
        return np.frombuffer(arr.buffers()[1], np.dtype(dtype), count=arr.offset + n)[arr.offset:]
    out = np.empty(n, dtype)
    return out if _chunk_into(arr, out, null) else None


def _chunk_view(arr: pa.Array, dtype: Any, null: int) -> np.ndarray:
    """One chunk as a read-only ``dtype`` array: a view of the Arrow buffer where possible
    (``_chunk_values(writable=False)``), else converted."""
    v = _chunk_values(arr, dtype, null, writable=False)
    return v if v is not None else _generic(arr, dtype, null)


def column_values(table: pa.Table, name: str, dtype: Any, null: int, *, writable: bool = True) -> np.ndarray:
    """Column ``name`` as a ``dtype`` array, nulls as ``null`` (any chunking).

    ``writable=False`` allows a read-only zero-copy view (see ``_chunk_values``).
    """
    col = table.column(name)
    if col.num_chunks == 0:
        return np.zeros(0, dtype)
    if col.num_chunks == 1:
        v = _chunk_values(col.chunks[0], dtype, null, writable=writable)
        return v if v is not None else _generic(col.chunks[0], dtype, null)
    # several chunks (one per Parquet row group): each goes straight into its slice of the
    # result, one copy (not a cast per chunk and then a concatenation)
    out = np.empty(len(col), dtype)
    column_values_into(col, out, null)
    return out


def column_values_into(col: pa.ChunkedArray, out: np.ndarray, null: int) -> None:
    """Each chunk of ``col`` written into its slice of ``out`` (nulls -> ``null``)."""
    pos = 0
    for ch in col.chunks:
        n = len(ch)
        if not _chunk_into(ch, out[pos:pos + n], null):
            out[pos:pos + n] = _generic(ch, out.dtype, null)
        pos += n


def _generic(ch: pa.Array, dtype: Any, null: int) -> np.ndarray:
    """An unusual type (float pfns from a hand-made table...): Arrow's own conversion."""
    if pa.types.is_unsigned_integer(ch.type):
        ch = ch.cast(pa.int64())
    return np.array(ch.fill_null(null).to_numpy(zero_copy_only=False), dtype=dtype)


def _chunk_into(arr: pa.Array, dst: np.ndarray, null: int) -> bool:
    """``_chunk_values`` written into ``dst``; False if not a plain int/bool array."""
    t = arr.type
    n = len(arr)
    if n == 0:
        return True
    bufs = arr.buffers()
    off = arr.offset
    if pa.types.is_boolean(t):
        np.copyto(dst, _bits(bufs[1], off, n), casting="unsafe")
    elif pa.types.is_integer(t):
        np.copyto(dst, np.frombuffer(bufs[1], np.dtype(t.to_pandas_dtype()), count=off + n)[off:], casting="unsafe")
    else:
        return False
    if arr.null_count and bufs[0] is not None:
        np.putmask(dst, ~_bits(bufs[0], off, n), null)
    return True


class ChunkedColumn:
    """An integer column left in its Arrow chunks (one per Parquet row group) and read only at the
    rows asked for: for a column the compiled loops never read (``seq``: the results tables want
    it at a few thousand rows), a contiguous copy would cost its size in fresh pages."""

    def __init__(self, col: pa.ChunkedArray, dtype: Any, null: int) -> None:
        # zero-copy views of the Arrow buffers where the chunk has no nulls
        self._chunks: list[np.ndarray] = [_chunk_view(ch, dtype, null) for ch in col.chunks]
        self._ends = np.cumsum([len(c) for c in self._chunks], dtype=np.int64)
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, idx: Any) -> np.ndarray:
        idx = np.asarray(idx, np.int64).reshape(-1)
        order = np.argsort(idx, kind="stable")  # (rows usually come sorted: cheap)
        sidx = idx[order]
        got = np.empty(len(idx), self.dtype)
        cuts = np.searchsorted(sidx, self._ends, side="left")  # the rows of each chunk: one slice
        lo, start = 0, 0
        for c, hi in enumerate(cuts.tolist()):
            if hi > lo:
                got[lo:hi] = self._chunks[c][sidx[lo:hi] - start]
            lo, start = hi, int(self._ends[c])
        out = np.empty(len(idx), self.dtype)
        out[order] = got
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = np.concatenate(self._chunks) if self._chunks else np.zeros(0, self.dtype)
        return whole if dtype is None else whole.astype(dtype)


class AffineRuns:
    """An integer column stored as runs of consecutive values (``value[k] = first + k - start``
    within a run): ``seq``, which a parser numbers in row order, is one run per file (or per
    tile) instead of 8 bytes per event, and is read only at the rows the results keep.  Same
    interface as ``ChunkedColumn``."""

    def __init__(self, starts: np.ndarray, firsts: np.ndarray, n: int, dtype: Any) -> None:
        self.starts = starts  # row where each run begins (ascending, starts[0] == 0)
        self.firsts = firsts  # its value there
        self.n = n
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: Any) -> np.ndarray:
        idx = np.asarray(idx, np.int64).reshape(-1)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            raise IndexError(f"index out of range for a column of {self.n} rows")
        r = np.searchsorted(self.starts, idx, side="right") - 1
        return (self.firsts[r] + (idx - self.starts[r])).astype(self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        lengths = np.diff(np.append(self.starts, self.n))
        whole = (np.repeat(self.firsts - self.starts, lengths) + np.arange(self.n, dtype=np.int64)).astype(self.dtype)
        return whole if dtype is None else whole.astype(dtype)


class _RunsBuilder:
    """``read_parquet_columns``' builder of one ``AffineRuns`` column, chunk by chunk; dense
    (a plain array) once the column has more than a few runs per row group."""

    def __init__(self, n: int, dtype: Any, null: int) -> None:
        self.n, self.dtype, self.null = n, np.dtype(dtype), null
        self.starts: list[np.ndarray] = []
        self.firsts: list[np.ndarray] = []
        self.runs = 0
        self.last: int | None = None  # the previous chunk's last value
        self.dense: np.ndarray | None = None

    def add(self, col: pa.ChunkedArray, pos: int) -> None:
        for ch in col.chunks:
            m = len(ch)
            if m == 0:
                continue
            v = _chunk_view(ch, self.dtype, self.null)
            if self.dense is None:
                cuts = np.flatnonzero(v[1:] != v[:-1] + 1) + 1
                new_run_here = self.last is None or int(v[0]) != self.last + 1
                starts = np.concatenate([[0], cuts]) if new_run_here else cuts
                self.runs += len(starts)
                if self.runs > max(64, self.n >> 8):  # no longer runs: plain values
                    self._densify(pos)
                else:
                    self.starts.append(starts.astype(np.int64) + pos)
                    self.firsts.append(v[starts].astype(np.int64))
                    self.last = int(v[-1])
            if self.dense is not None:
                self.dense[pos:pos + m] = v
            pos += m

    def _densify(self, pos: int) -> None:
        self.dense = np.empty(self.n, self.dtype)
        if pos:
            self.dense[:pos] = np.asarray(self._runs(pos))

    def _runs(self, n: int) -> AffineRuns:
        starts = np.concatenate(self.starts) if self.starts else np.zeros(1, np.int64)
        firsts = np.concatenate(self.firsts) if self.firsts else np.zeros(1, np.int64)
        return AffineRuns(starts, firsts, n, self.dtype)

    def result(self) -> Any:
        return self.dense if self.dense is not None else self._runs(self.n)


def dictionary_map(table: pa.Table, name: str, fn: Callable[[Any], Any], dtype: Any, null_value: Any,
                   out: np.ndarray | None = None) -> np.ndarray:
    """``fn(value)`` per row of a (dictionary or plain) string column, through a per-chunk lookup
    table (written into ``out`` when given)."""
    col = table.column(name)
    if out is None:
        out = np.empty(len(col), dtype)  # each chunk written into its slice (no concatenation)
    pos = 0
    luts: dict[tuple[int, ...], np.ndarray] = {}  # row groups of one Parquet file often share a dictionary
    encoded: list[pa.Array] = []
    for ch in col.chunks:
        n = len(ch)
        dst = out[pos:pos + n]
        pos += n
        if pa.types.is_string(ch.type) or pa.types.is_large_string(ch.type):
            # plain strings: Arrow encodes them (first-seen order, as combine + dictionary_encode
            # would); kept alive so that no later dictionary reuses its buffers' addresses
            ch = ch.dictionary_encode()
            encoded.append(ch)
        if pa.types.is_dictionary(ch.type):
            d = ch.dictionary
            # the same dictionary buffers (alive as long as the table) -> the same lookup table
            key = (len(d), d.offset, *(b.address if b is not None else 0 for b in d.buffers()))
            lut = luts.get(key)
            if lut is None:
                lut = luts[key] = np.array([fn(v) for v in d.to_pylist()] + [null_value], dtype)
            if np.all(lut == null_value):
                dst.fill(null_value)  # no dictionary entry matters: no gather
                continue
            ity = np.dtype(ch.indices.type.to_pandas_dtype())
            idx = _chunk_values(ch.indices, ity, len(lut) - 1, writable=False)  # zero-copy without nulls
            if idx is None:
                idx = np.asarray(ch.indices.fill_null(len(lut) - 1).to_numpy(zero_copy_only=False), np.int64)
            # (every index is in range: "clip" writes straight into ``dst``; the default "raise"
            # goes through a temporary, whose pages cost a TLB-flushing fault each)
            np.take(lut, idx, out=dst, mode="clip")
        else:
            dst[:] = np.array([null_value if v is None else fn(v) for v in ch.to_pylist()], dtype)
    return out


#: rows per read of ``read_parquet_columns`` (whole row groups, at least one)
SLICE_ROWS = 1 << 19


def read_parquet_columns(path: Any, flat: dict[str, tuple[Any, int]],
                         mapped: dict[str, tuple[Callable[[Any], Any], Any, Any]],
                         runs: dict[str, tuple[Any, int]] | None = None) -> dict[str, Any]:
    """Columns of a Parquet file as flat arrays, read straight into them a few row groups at a
    time.

    ``flat``: name -> (dtype, null) (``column_values``); ``mapped``: a string column through
    ``dictionary_map``, name -> (fn, dtype, null); ``runs``: name -> (dtype, null), an
    ``AffineRuns`` when the column is runs of consecutive values (else a flat array: see
    ``_RunsBuilder``).  Reading the whole table first and copying
    it afterwards costs a table-sized allocation of fresh pages (on the shared VM a first-touch
    fault costs more than the copy); here one read's Arrow buffers are freed before the read
    after next, so the allocator hands the same memory back, and decoding the next row groups
    (Arrow's threads, no GIL) overlaps the copies of the last ones.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    meta = pf.metadata
    n = meta.num_rows
    out: dict[str, Any] = {c: np.empty(n, dt) for c, (dt, _) in flat.items()}
    out.update({c: np.empty(n, dt) for c, (_, dt, _) in mapped.items()})
    builders = {c: _RunsBuilder(n, dt, null) for c, (dt, null) in (runs or {}).items()}
    cols = [*flat, *mapped, *builders]
    slices: list[list[int]] = []
    g = 0
    while g < meta.num_row_groups:
        h, rows = g + 1, meta.row_group(g).num_rows
        while h < meta.num_row_groups and rows + meta.row_group(h).num_rows <= SLICE_ROWS:
            rows += meta.row_group(h).num_rows
            h += 1
        slices.append(list(range(g, h)))
        g = h
    pos = 0
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(pf.read_row_groups, slices[0], columns=cols) if slices else None
        for i in range(len(slices)):
            assert nxt is not None
            t = nxt.result()
            nxt = pool.submit(pf.read_row_groups, slices[i + 1], columns=cols) if i + 1 < len(slices) else None
            m = t.num_rows
            for c, (_, null) in flat.items():
                column_values_into(t.column(c), out[c][pos:pos + m], null)
            for c, (fn, dt, null) in mapped.items():
                dictionary_map(t, c, fn, dt, null, out=out[c][pos:pos + m])
            for c, b in builders.items():
                b.add(t.column(c), pos)
            pos += m
            del t
    if pos != n:
        raise ValueError(f"{path}: {pos} rows read, the file's footer says {n}")
    out.update({c: b.result() for c, b in builders.items()})
    return out


#: ``read_event_columns``: the flat columns of the canonical table the replay reads (name ->
#: (dtype, null)): ``replay.model.engine.EventArrays``' own, ``failed`` (to clear the pfns of failed
#: allocations) and ``pid`` for the results tables (``seq``: ``EVENT_RUN_COLUMNS``)
EVENT_COLUMNS: dict[str, tuple[Any, int]] = {
    "ts_ns": (np.int64, 0), "cpu": (np.int32, 0), "pfn": (np.int64, -1), "order": (np.int8, 0),
    "migratetype": (np.int8, -1), "percpu_refill": (np.int8, -1), "fallback_order": (np.int8, -1),
    "fallback_migratetype": (np.int8, -1), "change_ownership": (np.int8, -1), "failed": (np.int8, 0),
    "pid": (np.int32, -1)}
#: ``read_event_columns``' columns kept as ``AffineRuns`` when they are runs (``seq``: parsers
#: number the events in row order; the results read it at a few rows)
EVENT_RUN_COLUMNS: dict[str, tuple[Any, int]] = {"seq": (np.int64, 0)}
#: the columns ``event_table`` gives the results tables as Arrow (they group by them once;
#: ``seq`` goes to ``EventArrays.seq`` as it is)
TABLE_COLUMNS = ("comm", "pid")


def event_code(name: Any) -> int:
    """``parsers.schema.Event`` code of a tracepoint name (-1: not a page-allocator event)."""
    from parsers.schema import EVENT_BY_NAME

    return int(EVENT_BY_NAME[name]) if name in EVENT_BY_NAME else -1


def read_event_columns(path: Any, *, with_gfp: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The ``EVENT_COLUMNS`` of a Parquet event table as flat arrays, with ``event`` as
    ``parsers.schema.Event`` codes, ``comm`` as codes into the returned names, ``gfp_mask``
    when asked and present, and ``seq`` (``EVENT_RUN_COLUMNS``) as ``AffineRuns`` when it is runs.

    The names are in the order Arrow's dictionary unification gives them (each row group's
    dictionary in turn, new names appended), so that ``event_table`` is the ``comm`` column a
    whole-table read and ``combine_chunks`` would give.  No numba here (NumPy and Arrow only):
    ``replay.model.engine.event_arrays_from_columns`` finishes the columns."""
    import pyarrow.parquet as pq

    flat = dict(EVENT_COLUMNS)
    if with_gfp and "gfp_mask" in pq.read_schema(path).names:
        flat["gfp_mask"] = (np.int64, -1)
    names: dict[str, int] = {}

    def intern(name: Any) -> int:
        return names.setdefault(str(name), len(names))

    cols = read_parquet_columns(path, flat, {"event": (event_code, np.int8, -1), "comm": (intern, np.int32, -1)},
                                EVENT_RUN_COLUMNS)
    return cols, list(names)


def event_table(cols: dict[str, Any], comm_names: list[str]) -> pa.Table:
    """``TABLE_COLUMNS`` of ``read_event_columns``' columns as a one-chunk Arrow table (zero-copy)."""
    n = len(cols["comm"])
    codes = cols["comm"]
    missing = codes < 0
    comm = pa.DictionaryArray.from_arrays(
        pa.Array.from_buffers(pa.int32(), n, [pa.py_buffer(np.packbits(~missing, bitorder="little"))
                                              if missing.any() else None, pa.py_buffer(codes)]),
        pa.array(comm_names, pa.string()))
    return pa.table({"comm": comm, "pid": pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(cols["pid"])])})
