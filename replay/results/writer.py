"""Writing a results folder: the tables that grow with the trace streamed as each policy finishes.

A replay of ``P`` policies makes ``P`` parts of ``events``, ``lock_sections``, ``irqs_off`` and
``firmware_calls``; holding them all until the end cost ~0.45 GB per policy on a 5M-event
anomaly-heavy trace (6 GB for the ten presets).  :class:`ResultsWriter` takes each part as its
policy finishes (:meth:`ResultsWriter.offer`, from any thread, in any order), writes them in
policy order (``none`` first) in row groups of :data:`ROW_GROUP` rows, and keeps at most one row
group per table besides the parts still waiting for an earlier policy.  The row groups are the
same as writing the concatenated table at once, so the files are byte-identical to that.

Every file is written under a hidden ``.NAME.parquet.partial`` name and renamed when whole;
an earlier ``summary.parquet`` is removed first and the new one lands last, so a run cut short
leaves a folder every reader refuses (``replay.results.folder.check_results_folder``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Self

from replay.results.folder import PARTIAL_SUFFIX, POLICY_RESULT_FILES

#: rows per Parquet row group of every results table
ROW_GROUP = 1 << 20
#: the tables with rows per event or per lock section (the others have a few rows per policy)
STREAMED = ("events", "lock_sections", "irqs_off", "firmware_calls")


def dictionary_columns(schema: Any) -> list[str]:
    """The columns Parquet dictionary-encodes: all but the 64-bit numbers (times, pfns, ns and
    byte counts: mostly distinct values, whose dictionary Arrow would build and then drop)."""
    import pyarrow as pa

    return [f.name for f in schema
            if not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)) or f.type.bit_width < 64]


class _Stream:
    """One streamed table: its Parquet writer (opened with the first part) and the rows not yet
    written (less than a row group)."""

    def __init__(self, path: Path, metadata: dict[str, str]) -> None:
        self.path, self.metadata = path, metadata
        self.writer: Any = None
        self.pending: list[Any] = []
        self.rows = 0  # pending
        self.written = 0

    def add(self, t: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        t = t.replace_schema_metadata(self.metadata)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, t.schema, compression="zstd",
                                           use_dictionary=dictionary_columns(t.schema), write_statistics=True,
                                           store_schema=True)
        self.pending.append(t)
        self.rows += t.num_rows
        if self.rows >= ROW_GROUP:
            whole = pa.concat_tables(self.pending)
            cut = self.rows // ROW_GROUP * ROW_GROUP
            self.writer.write_table(whole.slice(0, cut), row_group_size=ROW_GROUP)
            self.written += cut
            rest = whole.slice(cut)
            self.pending, self.rows = [rest], rest.num_rows

    def close(self) -> None:
        import pyarrow as pa

        if self.writer is None:
            return
        # what is left is under a row group; an empty table is one empty row group (as write_table makes)
        if self.rows or self.written == 0:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROW_GROUP)
        self.writer.close()
        self.pending = []


class ResultsWriter:
    """The results folder ``folder`` of the policies ``names`` (in their order), with the
    ``pagereplay.*`` file ``metadata``; a context manager that removes its partial files when
    the replay fails."""

    def __init__(self, folder: str | Path, names: list[str], metadata: dict[str, str]) -> None:
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(f".*{PARTIAL_SUFFIX}"):
            stale.unlink()
        (self.dir / "summary.parquet").unlink(missing_ok=True)  # not a results folder until the new one lands
        self.md = {f"pagereplay.{k}": str(v) for k, v in sorted(metadata.items())}
        self.index = {n: i for i, n in enumerate(names)}
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._waiting: dict[int, dict[str, Any]] = {}
        self._offered: set[int] = set()
        self._next = 0
        self._streams = {n: _Stream(self._partial(n), {**self.md, "pagereplay.table": n}) for n in STREAMED}
        self._written: set[str] = set()  # the tables written ahead (write_now)

    def _partial(self, name: str) -> Path:
        return self.dir / f".{name}.parquet{PARTIAL_SUFFIX}"

    def offer(self, name: str, tables: dict[str, Any]) -> dict[str, Any]:
        """Take policy ``name``'s streamed tables (written once the policies before it are); return
        ``tables`` with those replaced by empty tables of their schema.  In a forked worker it
        returns ``tables`` whole: the parent offers them again (:meth:`finish`)."""
        if os.getpid() != self.pid:
            return tables
        mine = {n: tables[n] for n in STREAMED if n in tables}
        with self._lock:
            self._offered.add(self.index[name])
            self._waiting[self.index[name]] = mine
            while self._next in self._waiting:
                self._add(self._waiting.pop(self._next))
                self._next += 1
        return {n: (t.schema.empty_table() if n in mine else t) for n, t in tables.items()}

    def _add(self, part: dict[str, Any]) -> None:
        """One policy's streamed tables into their files; large ones side by side (Arrow encodes
        without the GIL; each file is written as it would be alone)."""
        big = sum(t.num_rows for t in part.values()) >= ROW_GROUP
        if not big:
            for n, t in part.items():
                self._streams[n].add(t)
            return
        from concurrent.futures import ThreadPoolExecutor

        # the events table is about as much work as the others together
        groups = [[n for n in part if n == "events"], [n for n in part if n != "events"]]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda names: [self._streams[n].add(part[n]) for n in names], groups))

    def _write(self, name: str, t: Any) -> None:
        import pyarrow.parquet as pq

        pq.write_table(t.replace_schema_metadata({**self.md, "pagereplay.table": name}), self._partial(name),
                       compression="zstd", use_dictionary=dictionary_columns(t.schema), write_statistics=True,
                       row_group_size=ROW_GROUP, store_schema=True)

    def write_now(self, name: str, t: Any) -> None:
        """Write the (policy-independent) table ``name`` now, as ``finish`` would, so that the caller
        can drop it (``anomalies``: ~250 MB on a 5M-event anomaly-heavy trace); ``finish`` then
        takes no table of that name."""
        self._write(name, t)
        self._written.add(name)

    def finish(self, parts: list[tuple[dict[str, Any], dict[str, Any]]], others: dict[str, Any]) -> list[Path]:
        """Write what is left: the streamed tables of ``parts`` (``(tables, summary row)`` per policy,
        in order) not offered yet, then ``others`` (the small tables, summary among them; those
        written with ``write_now`` are not looked at); rename every file, ``summary.parquet`` last.
        Returns the final paths."""
        for tables, row in parts:  # the parts built in forked workers
            if self.index[row["policy"]] not in self._offered:
                self.offer(row["policy"], tables)
        if self._next != len(self.index):
            raise RuntimeError(f"results of {len(self.index) - self._next} policies never offered")
        for s in self._streams.values():
            s.close()

        from concurrent.futures import ThreadPoolExecutor

        rest = [n for n in POLICY_RESULT_FILES if n not in STREAMED] + sorted(set(others) - set(POLICY_RESULT_FILES))
        with ThreadPoolExecutor(2) as pool:  # Arrow encodes without the GIL: the files side by side
            list(pool.map(lambda n: self._write(n, others[n]), [n for n in rest if n not in self._written]))
        order = [n for n in (*STREAMED, *rest) if n != "summary"] + ["summary"]
        for n in order:  # summary.parquet last: its presence says the folder is whole
            os.replace(self._partial(n), self.dir / f"{n}.parquet")
        return [self.dir / f"{n}.parquet" for n in order]

    def abort(self) -> None:
        """Close the open writers and remove every partial file."""
        for s in self._streams.values():
            if s.writer is not None:
                with contextlib.suppress(Exception):  # already failing: the files go anyway
                    s.writer.close()
        for p in self.dir.glob(f".*{PARTIAL_SUFFIX}"):
            p.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self.abort()
