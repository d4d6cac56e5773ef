"""A results folder as a whole: the tables it holds, what may replace it, and whether it is whole.

Light on purpose (no NumPy or numba): ``pagereplay replay`` checks its ``-o`` before loading
anything, and ``report``/``chart``/``results``/``compare`` check their folder before reading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the tables of a results folder (docs/results.md), in the order they are written
POLICY_RESULT_FILES = ("events", "lock_sections", "firmware_calls", "irqs_off", "attribution_cpu",
                       "attribution_process", "timeseries", "anomalies", "summary")
#: what a results folder may hold besides its tables: the README ``pagereplay results`` writes
RESULTS_FOLDER_EXTRAS = ("README.txt",)
#: the suffix of a table being written (renamed away when whole; removed by the next write)
PARTIAL_SUFFIX = ".partial"


def check_results_output(folder: str | Path, inputs: list[Any]) -> None:
    """Refuse a results folder that is (or holds, or lies inside) one of ``inputs``, is a file, or
    holds files a results folder does not: a replay replaces only an earlier replay's tables."""
    from parsers.errors import refuse_clobber
    from replay.errors import OutputClobberError

    d = Path(folder)
    refuse_clobber(d, inputs)
    if d.exists() and not d.is_dir():
        raise OutputClobberError(f"{d}: -o exists and is not a folder (a results folder is one)")
    if d.is_dir():
        mine = {f"{n}.parquet" for n in POLICY_RESULT_FILES} | set(RESULTS_FOLDER_EXTRAS)
        foreign = sorted(p.name for p in d.iterdir() if p.name not in mine and not p.name.endswith(PARTIAL_SUFFIX))
        if foreign:
            raise OutputClobberError(f"{d}: -o holds files no replay wrote ({', '.join(foreign[:4])}"
                                     f"{', ...' if len(foreign) > 4 else ''}); give a new or empty folder")


def check_results_folder(folder: str | Path) -> None:
    """Raise :class:`replay.errors.ResultsFolderError` naming the file unless ``folder`` is a whole
    results folder: ``summary.parquet`` present (written last) when any table is, and every table present readable
    as Parquet (its footer) and marked with its own ``pagereplay.table`` name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from replay.errors import ResultsFolderError

    d = Path(folder)
    if not d.is_dir():
        raise ResultsFolderError(f"{d}: no such results folder (write one with `pagereplay replay TRACE -o {d}`)")
    tables = [d / f"{n}.parquet" for n in POLICY_RESULT_FILES if (d / f"{n}.parquet").exists()]
    if not tables and not any(d.glob(f".*{PARTIAL_SUFFIX}")):
        return  # no table at all: each reader names the one it needs
    if not (d / "summary.parquet").is_file():
        partial = any(d.glob(f".*{PARTIAL_SUFFIX}"))
        raise ResultsFolderError(f"{d / 'summary.parquet'}: missing: " + (
            "the replay that wrote this folder did not finish" if partial else "not a results folder"))
    for p in tables:
        name = p.stem
        try:
            md = pq.read_metadata(p).metadata or {}
        except (OSError, pa.ArrowException) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ResultsFolderError(f"{p}: unreadable Parquet file (cut short or damaged): {first}") from None
        table = md.get(b"pagereplay.table", b"").decode()
        if table != name:
            raise ResultsFolderError(f"{p}: not a pagereplay results table (pagereplay.table is "
                                     f"{table or 'absent'!s}, expected {name})")
