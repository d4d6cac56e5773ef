"""A replay's inputs: the events, their metadata, the memory layout and the snapshots."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ReplayInputs:
    """What ``load_inputs`` read."""

    table: Any  # the canonical table (for a Parquet input: the columns the results read)
    events: Any  # its ``EventArrays`` when read from Parquet straight into columns, else None
    metadata: dict[str, str]
    layout: Any  # replay.model.layout.MemoryLayout
    snapshot: Any  # the start snapshot's layout, or None
    end_snapshot: Any  # the end snapshot's layout, or None
    #: the trace's rows that are not kmem events (lock contention, untraced kprobes), by event name:
    #: kept out of the model (``split_other_kinds``)
    other_kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the kernel profile (replay/model/profiles.py) and where it came from (``pick_profile``)
    profile: Any = None
    profile_source: str = ""


def _parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def _has_other_kinds(md: dict[str, str]) -> bool:
    """The parse's accounting lists events beyond the six kmem ones (lock contention, untraced)."""
    import json

    from parsers.schema import EVENT_NAMES

    try:
        events = json.loads(md.get("pagereplay.accounting", "{}")).get("events", {})
    except ValueError:
        return False
    return any(v for k, v in events.items() if k not in EVENT_NAMES)


def split_other_kinds(table: Any) -> tuple[Any, dict[str, int]]:
    """The table's kmem rows, and the count by name of the others (lock contention, untraced
    kprobes): the model replays the kmem events; the others pass it by (counted in the summary)."""
    import numpy as np
    import pyarrow as pa

    from replay.events.arrays import event_codes

    codes = event_codes(table)
    other = codes < 0
    if not other.any():
        return table, {}
    names = table.column("event").combine_chunks()
    if pa.types.is_dictionary(names.type):
        names = names.dictionary_decode()
    vals, counts = np.unique(np.asarray(names.filter(pa.array(other)).to_pylist(), dtype=object), return_counts=True)
    return table.filter(pa.array(~other)), {str(v): int(c) for v, c in zip(vals, counts)}


def load_events(trace: Path, mode: str = "simulate") -> tuple[Any, dict[str, str], Any, Any]:
    """The canonical table, its metadata, and for a Parquet file its ``EventArrays`` and pfn
    range (``replay.events.columns.read_event_columns``: the table then holds only the columns the
    results read; exact mode never reads the gfp mask: the trace places every page)."""
    import pyarrow.parquet as pq

    from parsers.api import is_parquet, read_metadata
    from parsers.api import load_events as parse_events
    from parsers.errors import SchemaMismatchError
    from parsers.schema import check_schema
    from replay.events.columns import event_table, read_event_columns

    if not is_parquet(trace):
        table, md = parse_events(trace)
        return table, md, None, None
    import pyarrow as pa

    with_gfp = mode != "exact"
    try:
        problems = check_schema(pq.read_schema(trace))
        if problems:
            raise SchemaMismatchError(f"{trace}: not a pagereplay event table: {'; '.join(problems)}")
        # no numba needed to read: the columns fill while it loads on the other threads
        md = read_metadata(trace)
        if _has_other_kinds(md):  # rows to split off first (rare: --contention / --untraced captures)
            return pq.read_table(trace), md, None, None
        cols, names = read_event_columns(trace, with_gfp=with_gfp)
    except (pa.ArrowException, OSError) as e:  # cut short, damaged pages...: say which file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{trace}: unreadable Parquet file: {msg}") from None
    from replay.events.arrays import event_arrays_from_columns

    table = event_table(cols, names)
    ea, bounds = event_arrays_from_columns(cols, table, with_gfp=with_gfp)
    return table, md, ea, bounds


def _pfn_range(table: Any, ea: Any, bounds: Any) -> tuple[int | None, int | None, int]:
    """(lowest pfn above 0, highest pfn, CPU count) of the trace."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if bounds is not None:
        lo, hi = bounds
        return lo, hi, int(ea.cpu.max()) + 1
    col = table.column("pfn")
    if pa.types.is_integer(col.type):  # Arrow kernels: no NumPy copies of a column of millions
        lo, hi = pc.min(pc.filter(col, pc.greater(col, 0))).as_py(), pc.max(col).as_py()
    else:  # a hand-made table (float pfns, NaN for none)
        pfn = np.asarray(col.to_numpy(zero_copy_only=False), np.float64)
        pfn = pfn[~np.isnan(pfn) & (pfn > 0)].astype(np.int64)
        lo, hi = (int(pfn.min()), int(pfn.max())) if len(pfn) else (None, None)
    return lo, hi, int(pc.max(table.column("cpu")).as_py()) + 1


def load_inputs(trace: Path, snapshot: Path | None, end_snapshot: Path | None, guest_size: str | None,
                cpus: int | None, mode: str = "simulate", kernel: str | None = None) -> ReplayInputs:
    """Events (and their ``EventArrays`` when read from Parquet), their metadata, the layout (the
    start snapshot's, else the end snapshot's, else inferred from the pfn range), the snapshots,
    and the kernel profile (``kernel``: ``--kernel``, else ``profiles.pick_profile``)."""
    from replay.model.layout import load_snapshot
    from replay.model.layout_x86 import infer_layout

    table, md, ea, bounds = load_events(trace, mode)
    other: dict[str, int] = {}
    if ea is None:
        table, other = split_other_kinds(table)
    if table.num_rows == 0:
        raise ValueError(f"{trace}: no page-allocator events")
    snap = load_snapshot(snapshot) if snapshot else None
    end = load_snapshot(end_snapshot) if end_snapshot else None
    if snap is not None:
        layout = snap
    elif end is not None:
        layout = end
    else:
        lo, hi, cpu_max = _pfn_range(table, ea, bounds)
        if lo is None:
            raise ValueError(f"{trace}: no pfns to infer a memory layout from (give --snapshot)")
        layout = infer_layout(int(lo), int(hi), guest_bytes=_parse_size(guest_size) if guest_size else None,
                              nr_cpus=cpus or cpu_max)
    if cpus:
        layout = dataclasses.replace(layout, nr_cpus=cpus)
    from replay.errors import ReplayInputError
    from replay.model.profiles import pick_profile

    try:
        profile, source = pick_profile(kernel, md, table)
    except ValueError as e:
        raise ReplayInputError(str(e)) from None
    return ReplayInputs(table=table, events=ea, metadata=md, layout=layout, snapshot=snap, end_snapshot=end,
                        other_kinds=other, profile=profile, profile_source=source)


def resolve_policies(names: list[str] | None, all_presets: bool, policies_file: Path | None) -> list[Any]:
    """The policies to run, ``none`` first (added when missing: every delta is against it)."""
    from replay.acceptance.policies import PRESET_ORDER, all_policies

    known = all_policies([policies_file] if policies_file else [])
    if all_presets:
        wanted = list(PRESET_ORDER) + [n for n in known if n not in PRESET_ORDER]
    else:
        wanted = list(dict.fromkeys(names or ["none"]))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; known: {', '.join(known)}")
    if "none" in wanted:
        wanted.remove("none")
    return [known["none"], *(known[n] for n in wanted)]
