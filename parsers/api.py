"""Text traces -> the canonical event table (in memory or streamed to Parquet).

``TraceParser`` reads each input in blocks of whole lines, scans blocks on a
small thread pool (the compiled scanner releases the GIL), and turns each
block's arrays into an Arrow record batch sorted by (ts_ns, cpu, seq).  Every
line is accounted for (``parsers.accounting``).  ``parse_to_parquet`` streams
batches into a Parquet file with bounded memory; if the batches are not in
global time order (per-CPU dumps concatenated, perf's occasional step back),
a k-way merge of the sorted runs rewrites the file in order.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import binary as _binary
from . import scan as _scan
from .accounting import Accounting, FileAccounting
from .arrow_columns import _bool_column, _column, _GfpInterner, _Interner, _nulls
from .errors import SchemaMismatchError, StrictModeError, TraceFormatError, TraceInputError
from .formats import FORMAT_CODE, FORMATS, classify_unrecognised, detect_format
from .inputs import DEFAULT_BLOCK, LineBlocks, RawHasher, start_hashers
from .scan.result import Strings
from .schema import (
    ALL_EVENT_NAMES,
    COLUMNS,
    EVENT_NAMES,
    METADATA_PREFIX,
    OPTIONAL_COLUMNS,
    SCHEMA_VERSION,
    SORT_KEYS,
    Event,
    arrow_schema,
    check_schema,
    event_dictionary,
)

try:
    from importlib.metadata import version as _dist_version

    TOOL_VERSION = _dist_version("pagereplay")
except Exception:  # pragma: no cover - running from a source tree
    TOOL_VERSION = "0+src"

Source = str | os.PathLike[str] | bytes
ProgressFn = Callable[[int], None]


@dataclass
class ParseResult:
    table: pa.Table
    accounting: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)


def _warm_up() -> None:
    """Load (or compile once) the scanner kernels before the worker threads use them."""
    _scan.warm_up()


_EVENT_DICT = event_dictionary()
_EVENT_DICT_ALL = event_dictionary(len(ALL_EVENT_NAMES))  # a block with lock contention / untraced rows
#: the columns of schema 1 (the kmem events'), which parsers/binary still builds its batches with
_SCHEMA_1 = arrow_schema()


class _Schema1View:
    """The parser as ``parsers.binary`` sees it until it builds the schema-2 columns itself: ``schema``
    is the schema-1 one; every other attribute is the parser's (read and written through)."""

    schema = _SCHEMA_1

    def __init__(self, parser: TraceParser) -> None:
        object.__setattr__(self, "_parser", parser)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._parser, name, value)


def _with_optional_columns(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A schema-1 batch (binary inputs: kmem events only) with the schema-2 columns, all null."""
    if batch.num_columns == len(schema):
        return batch
    cols = [*batch.columns, *(_nulls(batch.num_rows, schema.field(n).type) for n in OPTIONAL_COLUMNS)]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _extra_columns(res: _scan.ScanResult, s: _Reorder) -> dict[str, pa.Array]:
    """``lock_addr``, ``lock_flags``, ``ret``, ``nr_pages`` of a block: null but on its lock contention
    and untraced kprobe rows (``parsers.scan.probes``)."""
    x = res.extras
    n = s.n
    if x.n == 0:
        return {name: _nulls(n, typ) for name, typ in (("lock_addr", pa.uint64()), ("lock_flags", pa.uint32()),
                                                        ("ret", pa.int64()), ("nr_pages", pa.int64()))}
    from .scan.probes import HAVE_FLAGS, HAVE_LOCK, HAVE_NR, HAVE_RET

    rows, have = x.row[: x.n], x.have[: x.n]
    out = {}
    for name, bit, vals, typ in (("lock_addr", HAVE_LOCK, x.lock_addr, pa.uint64()),
                                 ("lock_flags", HAVE_FLAGS, x.lock_flags, pa.uint32()),
                                 ("ret", HAVE_RET, x.ret, pa.int64()), ("nr_pages", HAVE_NR, x.nr_pages, pa.int64())):
        full = np.zeros(n, np.int64)
        valid = np.zeros(n, bool)
        full[rows] = vals[: x.n]
        valid[rows] = (have & bit) != 0
        a, v = s(full), s(valid)
        a = a.view(np.uint64) if typ == pa.uint64() else a.astype(np.uint32) if typ == pa.uint32() else a
        out[name] = _column(a, typ, ~v) if v.any() else _nulls(n, typ)
    return out


@dataclass
class _Sorted:
    """The worker-thread part of a scanned block: its numeric Arrow columns in (ts, cpu) order, and
    what the caller maps to global ids and sequence numbers in input order."""

    perm: np.ndarray | None  # the input row of each sorted row (None: already in order)
    arrays: dict[str, pa.Array]  # the columns that need no global state, sorted
    comm_local: np.ndarray  # ids in the block's comm table, sorted
    gfp_local: np.ndarray  # ids in the block's gfp table (-1: none), sorted
    line_rel: np.ndarray  # line numbers in the block, sorted
    ev_counts: np.ndarray  # events per ``Event`` code
    failed: int  # failed allocations
    frag_fixed: int  # extfrag events whose fragmenting= was recomputed


class _Reorder:
    """Columns of a block in (ts, cpu) order; a column that is all null is not reordered."""

    def __init__(self, perm: np.ndarray | None, n: int) -> None:
        self.perm = perm
        self.n = n

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return a if self.perm is None else a.take(self.perm)  # (take: ~40% faster than a[perm])

    def ints(self, a0: np.ndarray, typ: pa.DataType) -> pa.Array:
        """-1 is null."""
        mask = a0 == -1
        if mask.all():
            return _nulls(self.n, typ)
        a = self(a0)
        return _column(a, typ, a == -1 if mask.any() else None)

    def bools(self, a0: np.ndarray) -> pa.Array:
        """1 is true, -1 null."""
        mask = a0 == -1
        if mask.all():
            return _nulls(self.n, pa.bool_())
        a = self(a0)
        return _bool_column(a == 1, a == -1 if mask.any() else None)


def _time_order(ts: np.ndarray, cpu: np.ndarray) -> np.ndarray | None:
    """The stable permutation that sorts a block's events by (ts, cpu); None when they are in order."""
    n = len(ts)
    perm = np.empty(n, np.int64)
    state = _scan.sort_order(ts, cpu, perm)
    if state == 0:
        return None
    if state == 2:  # far from sorted: the insertion sort gave up
        perm = np.lexsort((np.arange(n), cpu, ts))
    return perm


def _fragmenting(forder: np.ndarray, pborder: np.ndarray, frag: np.ndarray) -> tuple[np.ndarray, int]:
    """``fragmenting`` as the kernel defines it, fallback_order < pageblock_order, and how many
    events printed another value: libtraceevent (trace-cmd report, perf script) cannot evaluate
    pageblock_order and prints the fallback order instead."""
    known = (forder >= 0) & (pborder >= 0)
    if not known.any():
        return frag, 0
    want = np.where(known, (forder < pborder).astype(np.int8), frag)
    return want, int(np.count_nonzero((want != frag) & known))


def _scan_and_prepare(arr: np.ndarray, nbytes: int, fmt_code: int) -> tuple[_scan.ScanResult, _Sorted | None]:
    """Worker-thread part of a block: scan, sort by (ts, cpu), build the numeric Arrow columns.

    Everything here depends on the block alone; what needs global state (string
    ids, seq numbers, per-CPU order across blocks) is done in order by the caller.
    """
    res = _scan.scan_block(arr, nbytes, fmt_code)
    ne = res.n_events
    if ne == 0:
        return res, None
    c = res.events._make(a[:ne] for a in res.events)
    s = _Reorder(_time_order(c.ts, c.cpu), ne)
    # element-wise work is done before reordering
    failed = (c.event == Event.MM_PAGE_ALLOC) & (c.pfn <= 0)
    nfailed = int(np.count_nonzero(failed))
    pfn = np.where(failed, -1, c.pfn) if nfailed else c.pfn
    frag, nfrag_fixed = _fragmenting(c.fallback_order, c.pageblock_order, c.fragmenting)
    arrays = {
        "ts_ns": pa.array(s(c.ts), pa.int64()),
        "cpu": pa.array(s(c.cpu), pa.int32()),
        "pid": pa.array(s(c.pid), pa.int32()),
        "tgid": s.ints(c.tgid, pa.int32()),
        "event": pa.DictionaryArray.from_arrays(pa.array(s(c.event), pa.int8()),
                                                _EVENT_DICT_ALL if res.extras.n else _EVENT_DICT, safe=False),
        "pfn": s.ints(pfn, pa.int64()),
        "order": pa.array(s(c.order), pa.int8()),
        "migratetype": s.ints(c.migratetype, pa.int8()),
        "percpu_refill": s.bools(c.percpu_refill),
        "failed": _bool_column(s(failed)),
        "fallback_order": s.ints(c.fallback_order, pa.int8()),
        "pageblock_order": s.ints(c.pageblock_order, pa.int8()),
        "fallback_migratetype": s.ints(c.fallback_migratetype, pa.int8()),
        "fragmenting": s.bools(frag),
        "change_ownership": s.bools(c.change_ownership),
        "cold": s.bools(c.cold),
        **_extra_columns(res, s),
    }
    ev_counts = np.bincount(c.event, minlength=len(EVENT_NAMES))
    return res, _Sorted(s.perm, arrays, s(c.comm), s(c.gfp), s(c.line), ev_counts, nfailed, nfrag_fixed)


def _account_lines(fa: FileAccounting, res: _scan.ScanResult, block: bytearray, line0: int, ends_nl: bool) -> list[tuple[int, int, int]]:
    """Account a block's lines into ``fa``: the scanner's counters, other events, the lines it
    handed back (classified here) and the malformed ones; returns the LOST markers as (line, cpu,
    events lost)."""
    fa.add_counts(res.counts, res.lines)
    x = res.others
    for i in range(x.n):
        nm = block[x.start[i] : x.start[i] + x.length[i]].decode("utf-8", "backslashreplace")
        fa.other_events[nm] = fa.other_events.get(nm, 0) + int(x.count[i])
    last = res.lines - 1  # a last line without its newline was cut short
    lost_lines: list[tuple[int, int, int]] = []
    u = res.unrecognised
    for i in range(u.n):
        text = block[u.start[i] : u.end[i]]
        lineno = line0 + int(u.line[i])
        lc = classify_unrecognised(text)
        if lc.kind == "lost":
            fa.lines_lost_marker += 1
            lost_lines.append((lineno, lc.lost_cpu, lc.lost_count))
        elif lc.kind == "header":
            fa.lines_header += 1
        elif lc.kind == "other":
            fa.other_events[lc.detail] = fa.other_events.get(lc.detail, 0) + 1
        else:
            fa.malformed("truncated line" if not ends_nl and u.line[i] == last else lc.detail, lineno, text)
    m = res.malformed
    for i in range(m.n):
        reason = _scan.MALFORMED_REASONS[int(m.reason[i])]
        if not ends_nl and m.line[i] == last:
            reason = "truncated line"
        fa.malformed(reason, line0 + int(m.line[i]), block[m.start[i] : m.end[i]])
    return lost_lines


def _check_cpu_order(fa: FileAccounting, cpu: np.ndarray, ts: np.ndarray, lines: np.ndarray, last_ts: np.ndarray) -> np.ndarray:
    """Count into ``fa`` the events (in input order) that go back in time on their CPU; returns
    ``last_ts`` (each CPU's last timestamp so far), grown if a CPU is beyond it."""
    mx = int(cpu.max())
    if mx >= last_ts.shape[0]:
        grown = np.full(max(mx + 1, 2 * last_ts.shape[0]), np.iinfo(np.int64).min, np.int64)
        grown[: last_ts.shape[0]] = last_ts
        last_ts = grown
    bad = np.empty(fa.max_examples, np.int64)
    nbad = _scan.per_cpu_order_check(cpu, ts, last_ts, bad)
    if nbad:
        fa.out_of_order(nbad, [(int(lines[j]), int(cpu[j])) for j in bad[: min(nbad, fa.max_examples)]])
    return last_ts


def _take_runs(t: pa.Table, order: np.ndarray) -> list[pa.Table]:
    """``t`` reordered by ``order``, as slices of runs of consecutive rows.

    For the tie merge: two sorted runs interleave by CPU, so a handful of
    slices do; this avoids ``Table.take``/``sort_by``, whose first use imports
    ``pyarrow.compute`` (~0.1 s of start-up).
    """
    if len(order) == 0:
        return [t.slice(0, 0)]
    cuts = np.flatnonzero(np.diff(order) != 1) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(order)]))
    return [t.slice(int(order[a]), int(b - a)) for a, b in zip(starts, ends)]


class TraceParser:
    """Parse one or more text traces into canonical record batches.

    Parameters
    ----------
    fmt:
        ``None`` to auto-detect per file, or one of ``FORMATS`` to enforce a line grammar.
    block_size:
        bytes of text per scanned block.
    workers:
        threads scanning blocks in parallel.
    on_raw_bytes:
        progress callback, called with the number of raw (on-disk) bytes read.
    """

    def __init__(
        self,
        fmt: str | None = None,
        *,
        block_size: int = DEFAULT_BLOCK,
        workers: int = 2,
        on_raw_bytes: ProgressFn | None = None,
        max_examples: int = 5,
        hashers: dict[str, RawHasher] | None = None,
    ) -> None:
        if fmt is not None and fmt not in FORMATS:
            raise TraceFormatError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        self.fmt = fmt
        self.block_size = block_size
        self.workers = max(1, workers)
        self.on_raw_bytes = on_raw_bytes
        self.accounting = Accounting(max_examples=max_examples)
        self.comms = _Interner()
        self.gfps = _GfpInterner()
        self.files = _Interner()
        self._seq = 0
        self.in_order = True
        self._last_key: tuple[int, int, int] | None = None
        self.run_starts: list[int] = [0]
        self._npieces = 0
        self.schema = arrow_schema(extra=True)
        # sha256 of each regular input file, computed on side threads (see ``inputs.RawHasher``)
        self.hashers: dict[str, RawHasher] = dict(hashers or {})
        self.kernel_versions: list[str] = []  # uname -r recorded by binary inputs (trace.dat, perf.data)
        self.capture_folders: list[Any] = []  # the capture folders the inputs came from (``_expand_folders``)

    def use_kernel(self, kernel_version: str | None, folders: Iterable[Any] = ()) -> None:
        """Decode gfp texts with the bit table of ``kernel_version``, else of the capture ``folders``'
        kernel (``parsers.gfp``; the 6.1 table when neither is known)."""
        from .gfp import table_for_release

        rel = kernel_version or next((f.kernel_release for f in folders if f.kernel_release), None)
        self.gfps.table = table_for_release(rel)

    # ------------------------------------------------------------------ batches
    def batches(self, sources: Iterable[Source], names: Iterable[str | None] | None = None) -> Iterator[pa.Table]:
        """Sorted pieces of the canonical table, in input order.

        Each piece is sorted by (ts_ns, cpu, seq).  Rows sharing the last
        timestamp of a piece are held back and merged with the next piece, so
        ties printed with the same microsecond on different CPUs never count
        as disorder.  ``run_starts`` lists the pieces that begin a new sorted
        run (a piece starting below the previous one's last key); when it
        holds more than the first piece the pieces must be merged.
        """
        srcs = list(sources)
        nms = list(names) if names is not None else [None] * len(srcs)
        # start hashing the files before loading the scanner (another core can hash meanwhile)
        self.hashers.update(start_hashers(s for s in srcs if not self._hasher_for(s)))
        try:
            _warm_up()
            held: pa.Table | None = None
            with cf.ThreadPoolExecutor(self.workers) as pool:
                for src, nm in zip(srcs, nms, strict=True):
                    for batch in self._file_batches(src, nm, pool):
                        pieces, held = self._hold_back_ties(held, pa.Table.from_batches([batch]))
                        for piece in pieces:
                            yield self._track(piece)
            if held is not None and len(held):
                yield self._track(held)
        finally:
            for h in self.hashers.values():  # no-op for those already finished
                h.cancel()

    def _hasher_for(self, src: Source) -> RawHasher | None:
        if isinstance(src, (bytes, bytearray, memoryview)):
            return None
        return self.hashers.get(os.fspath(src))

    def _hold_back_ties(self, held: pa.Table | None, t: pa.Table) -> tuple[list[pa.Table], pa.Table]:
        """Pieces ready to emit, and the rows to hold back (those tied with the last timestamp)."""
        out: list[pa.Table] = []
        ts = t.column("ts_ns").to_numpy()
        if held is not None and len(held):
            tie = int(held.column("ts_ns")[0].as_py())
            if ts[0] == tie:
                # merge the held rows with this piece's rows of the same timestamp (a small sort)
                n = int(np.searchsorted(ts, tie, side="right"))
                head = pa.concat_tables([held, t.slice(0, n)]).unify_dictionaries()
                cpu = head.column("cpu").to_numpy()
                seq = head.column("seq").to_numpy()
                t = pa.concat_tables([*_take_runs(head, np.lexsort((seq, cpu))), t.slice(n)]).unify_dictionaries()
            elif ts[0] > tie:
                t = pa.concat_tables([held, t]).unify_dictionaries()
            else:  # real disorder: the held rows end their run
                out.append(held)
            ts = t.column("ts_ns").to_numpy()
        k = int(np.searchsorted(ts, ts[-1], side="left"))
        if k == 0 and len(t) < 1_000_000:
            return out, t
        if k == 0:
            k = len(t)  # a huge run of one timestamp: emit it rather than hold it all
        out.append(t.slice(0, k))
        return out, t.slice(k)

    def _track(self, piece: pa.Table) -> pa.Table:
        first = tuple(int(piece.column(c)[0].as_py()) for c in SORT_KEYS)
        if self._last_key is not None and first < self._last_key:  # type: ignore[operator]
            self.in_order = False
            self.run_starts.append(self._npieces)
        self._last_key = tuple(int(piece.column(c)[len(piece) - 1].as_py()) for c in SORT_KEYS)  # type: ignore[assignment]
        self._npieces += 1
        return piece

    def _file_batches(self, src: Source, name: str | None, pool: cf.ThreadPoolExecutor) -> Iterator[pa.RecordBatch]:
        if _binary.sniff(src):  # trace.dat / perf.data (by magic, also inside gzip/zstd): the binary reader
            for b in _binary.file_batches(_Schema1View(self), src, name):
                yield _with_optional_columns(b, self.schema)
            return
        reader = LineBlocks(
            src, name=name, block_size=self.block_size, on_raw_bytes=self.on_raw_bytes, hasher=self._hasher_for(src)
        )
        fa = FileAccounting(name=reader.info.name, max_examples=self.accounting.max_examples)
        self.accounting.files.append(fa)
        file_id = self.files.remap(reader.info.name.encode(), 1, np.array([0]), np.array([len(reader.info.name.encode())]))[0]
        fmt_code = FORMAT_CODE[self.fmt]
        fa.format = self.fmt
        last_ts = np.full(64, np.iinfo(np.int64).min, np.int64)
        pending: collections.deque[tuple[cf.Future, bytearray, int, bool]] = collections.deque()
        blocks = reader.blocks()
        first = True
        next_line = 1
        try:
            while True:
                while len(pending) <= self.workers:
                    try:
                        block, nb = next(blocks)  # block[:nb] holds the lines (the buffer is reused)
                    except StopIteration:
                        break
                    if first:
                        self._reject_binary(block[: min(nb, 4096)], reader.info.name)
                        first = False
                    arr = np.frombuffer(block, np.uint8)
                    fut = pool.submit(_scan_and_prepare, arr, nb, fmt_code)
                    pending.append((fut, block, nb, block[nb - 1] == 10))
                if not pending:
                    break
                fut, block, nb, ends_nl = pending.popleft()
                line0 = next_line
                res = fut.result()
                if fa.format is None:
                    fa.format = detect_format(res[0].counts, bytes(block[: min(nb, 65536)])) or None
                next_line += int(res[0].lines)
                batch, last_ts = self._to_batch(res, block, nb, line0, ends_nl, fa, file_id, last_ts)
                reader.release(block)  # nothing refers to its bytes any more
                if batch is not None:
                    yield batch
        finally:
            for fut, *_ in pending:
                fut.cancel()
            reader.close()
        info = reader.info
        fa.compression = info.compression
        fa.sha256 = info.sha256
        fa.raw_bytes = info.raw_bytes
        fa.text_bytes = info.text_bytes
        if info.truncated:
            fa.warnings.append(f"{info.name}: {info.truncated}; lines before the cut were parsed")
            fa.truncated = True
        if info.no_final_newline:
            fa.warnings.append(f"{info.name}:{fa.lines_total}: last line has no newline (file cut short?)")
        if fa.format is None:
            fa.format = "unknown"

    @staticmethod
    def _reject_binary(block: bytes, name: str) -> None:
        head = np.frombuffer(bytes(block[:4096]), np.uint8)
        control = ((head < 32) & (head != 9) & (head != 10) & (head != 13)) | (head == 127)
        if head.size and control.mean() > 0.05:
            raise TraceFormatError(
                f"{name}: binary data, not a text trace (tried formats: {', '.join(FORMATS)}); "
                "for trace.dat run `trace-cmd report`, for perf.data run `perf script`"
            )

    def _to_batch(self, scanned: tuple[_scan.ScanResult, _Sorted | None], block: bytearray, nb: int, line0: int,
                  ends_nl: bool, fa: FileAccounting, file_id: int, last_ts: np.ndarray) -> tuple[pa.RecordBatch | None, np.ndarray]:  # fmt: skip
        """The canonical record batch of a scanned block (None without events), with every line
        accounted into ``fa``; global ids and sequence numbers are given here, in input order."""
        res, srt = scanned
        lost_lines = _account_lines(fa, res, block, line0, ends_nl)
        ne = res.n_events
        if ne == 0 and not lost_lines:
            return None, last_ts
        seq0 = self._seq
        self._seq += ne
        lines = res.events.line[:ne] + line0
        for lineno, lcpu, lcount in lost_lines:
            nxt = int(np.searchsorted(lines, lineno))
            fa.lost_markers.append(
                {"line": lineno, "cpu": lcpu, "events": lcount, "next_seq": seq0 + nxt if nxt < ne else self._seq}
            )
        if srt is None:
            return None, last_ts
        last_ts = _check_cpu_order(fa, res.events.cpu[:ne], res.events.ts[:ne], lines, last_ts)
        for code, n in enumerate(srt.ev_counts):
            if n or code < len(EVENT_NAMES):  # (the other kinds only where the trace has them)
                fa.events[ALL_EVENT_NAMES[code]] = fa.events.get(ALL_EVENT_NAMES[code], 0) + int(n)
        fa.failed_allocs += srt.failed
        fa.fragmenting_recomputed += srt.frag_fixed
        comm_ids = self.comms.remap(block, *res.comms).take(srt.comm_local)
        cols = {
            **srt.arrays,
            "comm": pa.DictionaryArray.from_arrays(pa.array(comm_ids, pa.int32()), self.comms.dictionary(), safe=False),
            **self._gfp_columns(block, res.gfps, srt.gfp_local),
            "source_file": pa.DictionaryArray.from_arrays(
                pa.array(np.full(ne, file_id, np.int16), pa.int16()), self.files.dictionary(), safe=False
            ),
            "line": pa.array(srt.line_rel + line0, pa.int64()),
            "seq": pa.array(seq0 + (srt.perm if srt.perm is not None else np.arange(ne, dtype=np.int64)), pa.int64()),
        }
        return pa.RecordBatch.from_arrays([cols[f.name] for f in self.schema], schema=self.schema), last_ts

    def _gfp_columns(self, block: bytearray, table: Strings, gfp_local: np.ndarray) -> dict[str, pa.Array]:
        """``gfp_flags`` (global ids of the block's gfp table ``table``) and the ``gfp_mask`` decoded from it."""
        gmap = self.gfps.remap(block, *table)
        has_gfp = gfp_local >= 0
        gsafe = gmap[np.where(has_gfp, gfp_local, 0)]
        gfp_ids = np.where(has_gfp, gsafe, -1).astype(np.int32)
        masks = np.array(self.gfps.masks, np.uint64) if self.gfps.masks else np.zeros(1, np.uint64)
        known = np.array(self.gfps.known, bool) if self.gfps.known else np.zeros(1, bool)
        gvalid = has_gfp & known[gsafe]
        return {
            "gfp_flags": pa.DictionaryArray.from_arrays(_column(gfp_ids, pa.int32(), ~has_gfp), self.gfps.dictionary(), safe=False),
            "gfp_mask": _column(masks.take(gsafe), pa.uint64(), ~gvalid),
        }

    # ------------------------------------------------------------------ finish
    def check(self, *, strict: bool = False) -> None:
        """Raise the errors a finished parse calls for.

        Empty inputs and inputs without a single page-allocator event are
        errors (each named); ``strict`` also makes any malformed line one.
        """
        acc = self.accounting
        tried = self.fmt if self.fmt else ", ".join(FORMATS)
        for f in acc.files:
            if f.lines_total == 0:
                raise TraceFormatError(f"{f.name}: cut short: the compressed data ends before its first line"
                                       if f.truncated else f"{f.name}: empty trace (no lines)")
        if acc.lines_parsed == 0:
            for f in acc.files:
                if f.lines_parsed:
                    continue
                payload_bad = sum(v for k, v in f.malformed_reasons.items() if k in _scan.MALFORMED_REASONS.values())
                if payload_bad:
                    raise TraceFormatError(
                        f"{f.name}: no valid page-allocator event: {payload_bad} kmem line(s) malformed; "
                        f"first at line {f.first_malformed_line()}"
                    )
                seen = f.seen_summary()
                if seen:
                    raise TraceFormatError(f"{f.name}: no page-allocator (kmem mm_page_*) events; saw {seen}")
                if f.lines_lost_marker and f.lines_malformed == 0:
                    raise TraceFormatError(
                        f"{f.name}: no events, only {f.lines_lost_marker} [LOST N EVENTS] marker(s) "
                        f"({sum(m['events'] for m in f.lost_markers)} events lost)"
                    )
                if f.lines_malformed:
                    raise TraceFormatError(
                        f"{f.name}: unknown format: no line matched the format(s) tried ({tried}); "
                        f"first line {f.first_malformed_line()}"
                    )
                raise TraceFormatError(f"{f.name}: only comment/header lines ({f.lines_total}), no events")
        if strict and acc.lines_malformed:
            ex = acc.malformed_examples()[0]
            raise StrictModeError(
                f"--strict: {acc.lines_malformed} malformed line(s); first at {ex['file']}:{ex['line']} ({ex['reason']})"
            )

    def metadata(self, *, kernel_version: str | None = None) -> dict[str, str]:
        acc = self.accounting
        fmts = sorted({f.format for f in acc.files if f.format})
        md = {
            "schema_version": SCHEMA_VERSION,
            "tool_version": TOOL_VERSION,
            "sorted_by": ",".join(SORT_KEYS),
            "inputs": json.dumps(
                [
                    {"name": f.name, "sha256": f.sha256, "compression": f.compression, "format": f.format, "bytes": f.raw_bytes}
                    for f in acc.files
                ]
            ),
            "format": fmts[0] if len(fmts) == 1 else ",".join(fmts),
            "kernel_version": kernel_version or ",".join(self.kernel_versions) or ",".join(
                dict.fromkeys(f.kernel_release for f in self.capture_folders if f.kernel_release)),
            "kmem_era": acc.kmem_era(),
            "timestamp_unit": acc.timestamp_unit(),
            "gfp_bit_table": _binary.gfp_bit_table([f.format for f in acc.files], self.gfps.table),
            "accounting": json.dumps(acc.as_dict(), sort_keys=True),
            "lost_events": json.dumps(acc.lost_markers()),
        }
        if self.capture_folders:  # (only then: a plain trace's metadata is as before)
            from .capture.folder import folder_metadata

            md.update(folder_metadata(self.capture_folders))
        return {METADATA_PREFIX + k: v for k, v in md.items()}


# ---------------------------------------------------------------------- entry points
def _as_list(paths: Source | Iterable[Source]) -> list[Source]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        return [paths]
    return list(paths)


def _expand_folders(sources: list[Source]) -> tuple[list[Source], list[Any]]:
    """Capture folders (``pagereplay record`` output, the shared reference folders) replaced by
    their trace file; returns the sources and the folders (``parsers.capture.folder``)."""
    out: list[Source] = []
    folders: list[Any] = []
    for src in sources:
        if isinstance(src, (str, os.PathLike)) and str(src) != "-" and Path(src).is_dir():
            from .capture.folder import is_capture_folder, read_capture_folder

            if is_capture_folder(src):
                f = read_capture_folder(src)
                folders.append(f)
                out.append(str(f.trace))
                continue
        out.append(src)
    return out, folders


def _sorted_table(pieces: list[pa.Table], parser: TraceParser) -> pa.Table:
    schema = parser.schema
    if not pieces:
        return schema.empty_table()
    t = pa.concat_tables(pieces)
    # rebuild dictionary columns on the final dictionaries (ids are global and append-only)
    t = t.unify_dictionaries()
    if not parser.in_order:
        t = t.sort_by([(k, "ascending") for k in SORT_KEYS])
    return t.combine_chunks()


def _precheck(sources: list[Source]) -> None:
    """Fail fast, before any parsing, on inputs that cannot be opened."""
    for src in sources:
        if isinstance(src, (bytes, bytearray, memoryview)) or str(src) == "-":
            continue
        p = Path(src)
        if not p.exists():
            raise TraceInputError(f"{p}: no such file")
        if p.is_dir():
            raise TraceInputError(f"{p}: is a directory, not a trace file")
        if not os.access(p, os.R_OK):
            raise TraceInputError(f"{p}: not readable (permission denied)")


def parse_files(
    paths: Source | Iterable[Source],
    fmt: str | None = None,
    *,
    strict: bool = False,
    names: Iterable[str | None] | None = None,
    kernel_version: str | None = None,
    block_size: int = DEFAULT_BLOCK,
    workers: int = 2,
) -> ParseResult:
    """Parse text traces (or capture folders) into one in-memory canonical table (sorted by ts_ns, cpu, seq)."""
    sources, folders = _expand_folders(_as_list(paths))
    _precheck(sources)
    parser = TraceParser(fmt, block_size=block_size, workers=workers)
    parser.capture_folders = folders
    parser.use_kernel(kernel_version, folders)
    batches = list(parser.batches(sources, names))
    parser.check(strict=strict)
    md = parser.metadata(kernel_version=kernel_version)
    table = _sorted_table(batches, parser)
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in md.items()})
    return ParseResult(table, parser.accounting.as_dict(), md)


def parse_text(text: str | bytes, fmt: str | None = None, *, name: str = "<string>", strict: bool = False) -> ParseResult:
    """Parse a trace given as a string (tests, notebooks)."""
    data = text.encode() if isinstance(text, str) else text
    return parse_files([data], fmt, strict=strict, names=[name])


def parse_to_parquet(
    paths: Source | Iterable[Source],
    out: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    strict: bool = False,
    kernel_version: str | None = None,
    block_size: int = DEFAULT_BLOCK,
    workers: int = 2,
    on_raw_bytes: ProgressFn | None = None,
    compression: str = "lz4",  # 25% less encoding CPU than zstd for a 30% larger file
    hashers: dict[str, RawHasher] | None = None,
) -> dict[str, Any]:
    """Stream text traces into a Parquet file of the canonical table; return the accounting.

    Memory stays bounded: blocks are written as they are parsed; only when
    they turn out not to be in global time order is the file rewritten by a
    k-way merge of its (individually sorted) row groups.  ``hashers`` (from
    ``inputs.start_hashers``) lets a caller start hashing the inputs earlier.
    """
    out = Path(out)
    sources, folders = _expand_folders(_as_list(paths))
    _precheck(sources)
    if out.is_dir():
        raise TraceInputError(f"{out}: is a directory; give a file name for the Parquet output")
    check_parquet_output(out, [s for s in sources if isinstance(s, (str, os.PathLike))])
    out.parent.mkdir(parents=True, exist_ok=True)
    parser = TraceParser(fmt, block_size=block_size, workers=workers, on_raw_bytes=on_raw_bytes, hashers=hashers)
    parser.capture_folders = folders
    parser.use_kernel(kernel_version, folders)
    fd, tmp_name = tempfile.mkstemp(prefix=".pagereplay-", suffix=".parquet", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = pq.ParquetWriter(tmp, parser.schema, **_writer_options(compression))
        # Parquet encoding runs in its own thread (pyarrow releases the GIL) while blocks are scanned
        with cf.ThreadPoolExecutor(1) as wpool:
            inflight: collections.deque[cf.Future] = collections.deque()
            try:
                for piece in parser.batches(sources):
                    # one row group per piece: row groups are then the units of the sorted runs
                    inflight.append(wpool.submit(writer.write_table, piece, len(piece)))
                    while len(inflight) > 2:
                        inflight.popleft().result()
                while inflight:
                    inflight.popleft().result()
                parser.check(strict=strict)
                md = parser.metadata(kernel_version=kernel_version)
                if parser.in_order:
                    writer.add_key_value_metadata(md)
            finally:
                # a write already running cannot be cancelled: wait for it before closing the writer
                for f in inflight:
                    f.cancel()
                cf.wait(inflight)
                writer.close()
        if not parser.in_order:  # merged into a second temporary file: ``out`` appears only when whole
            merged = tmp.with_name(tmp.name + ".merged")
            try:
                _merge_runs(tmp, merged, md, compression, parser.run_starts)
                os.replace(merged, out)
            finally:
                merged.unlink(missing_ok=True)
            tmp.unlink()
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return parser.accounting.as_dict()


def _writer_options(compression: str) -> dict[str, Any]:
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


def _merge_runs(src: Path, out: Path, md: dict[str, str], compression: str, run_starts: list[int], budget_rows: int = 2_000_000) -> None:
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
    with pq.ParquetWriter(out, schema, **_writer_options(compression)) as w:
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


def load_events(path: str | os.PathLike[str], fmt: str | None = None) -> tuple[pa.Table, dict[str, str]]:
    """The canonical table from a Parquet file written by ``pagereplay parse`` or from any text trace."""
    if is_parquet(path):
        from .ranges import check_parquet

        try:
            problems = check_schema(pq.read_schema(path))
            if problems:
                raise SchemaMismatchError(f"{path}: not a pagereplay event table: {'; '.join(problems)}")
            check_parquet(path, SchemaMismatchError)
            table = pq.read_table(path)
            md = read_metadata(path)
        except (pa.ArrowException, OSError) as e:  # cut short, damaged pages: say which file
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise TraceInputError(f"{path}: unreadable Parquet file: {msg}") from None
        return table, md
    res = parse_files([path], fmt)
    return res.table, res.metadata


__all__ = [
    "COLUMNS",
    "EVENT_NAMES",
    "ParseResult",
    "TraceParser",
    "load_events",
    "parse_files",
    "parse_text",
    "parse_to_parquet",
    "read_metadata",
]
