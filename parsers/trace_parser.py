"""Text and binary traces -> sorted pieces of the canonical event table (``TraceParser``).

``TraceParser.batches`` routes each input: binary traces (trace.dat, perf.data, by magic, also
inside gzip/zstd) to ``parsers.binary``, text to blocks of whole lines (``parsers.inputs``)
scanned on a small thread pool (``parsers.sorted_block``).  Here, in input order, each block
gets what needs global state: string ids, sequence numbers, the per-CPU time order across
blocks and the accounting of every line (``parsers.accounting``).  Rows tied with a piece's last
timestamp are held back and merged into the next piece; ``run_starts`` records where the pieces
stop being in global order, for the writer's merge (``parsers.parquet``).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from . import binary as _binary
from . import scan as _scan
from .accounting import Accounting, FileAccounting
from .arrow_columns import _column, _GfpInterner, _Interner, _nulls
from .errors import StrictModeError, TraceFormatError
from .formats import FORMAT_CODE, FORMATS, classify_unrecognised, detect_format
from .inputs import DEFAULT_BLOCK, LineBlocks, RawHasher, start_hashers
from .scan.result import Strings
from .schema import (
    ALL_EVENT_NAMES,
    EVENT_NAMES,
    METADATA_PREFIX,
    OPTIONAL_COLUMNS,
    SCHEMA_VERSION,
    SORT_KEYS,
    arrow_schema,
)
from .sorted_block import SortedBlock, scan_and_prepare
from .version import TOOL_VERSION

Source = str | os.PathLike[str] | bytes
ProgressFn = Callable[[int], None]

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
            _scan.warm_up()  # load (or compile once) the scanner kernels before the threads use them
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
                    fut = pool.submit(scan_and_prepare, arr, nb, fmt_code)
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

    def _to_batch(self, scanned: tuple[_scan.ScanResult, SortedBlock | None], block: bytearray, nb: int, line0: int,
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


__all__ = ["ProgressFn", "Source", "TraceParser"]
