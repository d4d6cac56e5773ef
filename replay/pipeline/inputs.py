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


#: the model state per page of the modelled span: pg_next, pg_prev (int32), pg_state, pg_order,
#: pg_mt (int8), pg_cpu (int16): replay/model/state.py; the replay's private copies and the
#: per-event arrays come on top, so this is the least a layout needs
MODEL_BYTES_PER_PAGE = 13


def guest_size_bytes(text: str) -> int:
    """``--guest-size`` in bytes (``parsers.units.parse_size``: ``4G``, ``4096M``, ``4GiB``)."""
    from parsers.units import parse_size
    from replay.errors import ReplayInputError

    n = parse_size(text, where="--guest-size", error=ReplayInputError)
    if n < 64 << 20:
        raise ReplayInputError(f"--guest-size: {text!r} is below the 64 MiB an x86-64 guest needs")
    return n


def _check_fits(trace: Path, layout: Any, hi: int | None) -> None:
    """Refuse an inferred layout whose model state would not fit in this machine's memory: the
    state costs bytes per page of the span (``replay.model.state``: 13), however few pages the
    trace touches."""
    from replay.errors import ReplayInputError

    span = layout.nodes[-1].end_pfn - layout.nodes[0].start_pfn
    need = span * MODEL_BYTES_PER_PAGE
    avail = _memory_available()
    if span >= 1 << 31 or (avail is not None and need > avail):
        where = f"its highest pfn {hi:#x}" if hi is not None else (
            "its zones" if trace.is_dir() else "--guest-size")  # (a snapshot folder: its zoneinfo)
        raise ReplayInputError(
            f"{trace}: {where} implies a guest of {span * layout.page_size / (1 << 30):,.0f} GiB, whose model needs "
            f"{need / (1 << 30):,.1f} GiB" + (f" (this machine has {avail / (1 << 30):,.1f} GiB available)" if avail else "")
            + ("; the model keeps int32 page indices" if trace.is_dir() else
               "; give --snapshot or a smaller --guest-size (pfns past it are counted as pfn_out_of_range anomalies)"))


def _memory_available() -> int | None:
    """MemAvailable + SwapFree of this machine, bytes (None off Linux)."""
    try:
        kv = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return sum(int(kv[k].split()[0]) << 10 for k in ("MemAvailable", "SwapFree") if k in kv)
    except (OSError, ValueError):
        return None


def _has_other_kinds(md: dict[str, str]) -> bool:
    """The parse's accounting lists events beyond the six kmem ones (lock contention, untraced)."""
    import json

    from parsers.schema import EVENT_NAMES

    try:
        events = json.loads(md.get("pagereplay.accounting", "{}")).get("events", {})
    except ValueError:
        return False
    return any(v for k, v in events.items() if k not in EVENT_NAMES)


def split_other_kinds(table: Any, keep: tuple[str, ...] = ()) -> tuple[Any, dict[str, int]]:
    """The table's kmem rows (and those of the events named in ``keep``: exact mode applies the
    untraced kprobe rows, ``replay.model.untraced``), and the count by name of the others (lock
    contention; the kprobes in simulate mode): they pass the model by (counted in the summary).

    NumPy and Arrow only: this runs on the reader thread while the main thread imports numba
    (an import of a numba-compiled module here could deadlock on numba's module locks)."""
    import numpy as np
    import pyarrow as pa

    from parsers.schema import EVENT_NAMES

    kmem = set(EVENT_NAMES) | set(keep)
    masks: list[np.ndarray] = []
    other: dict[str, int] = {}
    for chunk in table.column("event").chunks:
        if pa.types.is_dictionary(chunk.type):
            names = chunk.dictionary.to_pylist()
            idx = np.asarray(chunk.indices.fill_null(0))
            ok = np.array([n in kmem for n in names], bool)[idx] if len(names) else np.zeros(len(chunk), bool)
            counts = np.bincount(idx[~ok], minlength=len(names)) if len(names) else []
            for n, c in zip(names, counts):
                if c:
                    other[n] = other.get(n, 0) + int(c)
        else:
            vals = chunk.to_pylist()
            ok = np.array([v in kmem for v in vals], bool)
            for v in (v for v, k in zip(vals, ok) if not k):
                other[v] = other.get(v, 0) + 1
        masks.append(ok)
    if not other:
        return table, {}
    keep = np.concatenate(masks) if masks else np.zeros(0, bool)
    return table.filter(pa.array(keep)), dict(sorted(other.items()))


def load_events(trace: Path, mode: str = "simulate") -> tuple[Any, dict[str, str], Any, Any]:
    """The canonical table, its metadata, and for a Parquet file its ``EventArrays`` and pfn
    range (``replay.events.columns.read_event_columns``: the table then holds only the columns the
    results read; exact mode never reads the gfp mask: the trace places every page)."""
    import pyarrow.parquet as pq

    from parsers.api import is_parquet, read_metadata
    from parsers.api import load_events as parse_events
    from parsers.errors import SchemaMismatchError
    from parsers.ranges import check_parquet
    from parsers.schema import EVENT_NAMES, check_schema
    from replay.errors import ReplayInputError
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
        check_parquet(trace, SchemaMismatchError, EVENT_NAMES)  # every value in its field's range
        # no numba needed to read: the columns fill while it loads on the other threads
        md = read_metadata(trace)
        if _has_other_kinds(md):  # rows to split off first (rare: --contention / --untraced captures)
            return pq.read_table(trace), md, None, None
        cols, names = read_event_columns(trace, with_gfp=with_gfp)
    except (pa.ArrowException, OSError) as e:  # cut short, damaged pages...: say which file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ReplayInputError(f"{trace}: unreadable Parquet file: {msg}") from None
    from replay.events.arrays import event_arrays_from_columns

    table = event_table(cols, names)
    ea, bounds = event_arrays_from_columns(cols, table, with_gfp=with_gfp)
    return table, md, ea, bounds


def _pfn_range(table: Any, ea: Any, bounds: Any) -> tuple[int | None, int | None, int]:
    """(lowest pfn above 0, highest pfn, CPU count) of the trace, over the pfns a machine can
    have (below ``parsers.ranges.PFN_LIMIT``): the others are anomalies, not a guest's size."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from parsers.ranges import PFN_LIMIT

    if bounds is not None:
        lo, hi = bounds
        if hi is not None and hi >= PFN_LIMIT:  # rare: one more pass, over the possible pfns
            pfn = np.asarray(ea.pfn)
            ok = pfn[(pfn > 0) & (pfn < PFN_LIMIT)]
            lo, hi = (int(ok.min()), int(ok.max())) if len(ok) else (None, None)
        return lo, hi, int(ea.cpu.max()) + 1
    col = table.column("pfn")
    if pa.types.is_integer(col.type):  # Arrow kernels: no NumPy copies of a column of millions
        possible = pc.filter(col, pc.and_(pc.greater(col, 0), pc.less(col, PFN_LIMIT)))
        lo, hi = pc.min(possible).as_py(), pc.max(possible).as_py()
    else:  # a hand-made table (float pfns, NaN for none)
        pfn = np.asarray(col.to_numpy(zero_copy_only=False), np.float64)
        pfn = pfn[~np.isnan(pfn) & (pfn > 0) & (pfn < PFN_LIMIT)].astype(np.int64)
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
        from parsers.schema import UntracedEvent

        table, other = split_other_kinds(table, tuple(e.tracepoint for e in UntracedEvent) if mode == "exact" else ())
    from replay.errors import ReplayInputError

    if cpus is not None and cpus < 1:
        raise ReplayInputError(f"--cpus: {cpus}; allowed: an integer >= 1")
    if table.num_rows == 0:
        raise ReplayInputError(f"{trace}: no page-allocator events")
    snap = load_snapshot(snapshot) if snapshot else None
    end = load_snapshot(end_snapshot) if end_snapshot else None
    if snap is not None:
        layout = snap
        _check_fits(snapshot, layout, None)
    elif end is not None:
        layout = end
        _check_fits(end_snapshot, layout, None)
    else:
        lo, hi, cpu_max = _pfn_range(table, ea, bounds)
        if lo is None:
            raise ReplayInputError(f"{trace}: no pfns to infer a memory layout from (give --snapshot)")
        layout = infer_layout(int(lo), int(hi), guest_bytes=guest_size_bytes(guest_size) if guest_size else None,
                              nr_cpus=cpus or cpu_max)
        _check_fits(trace, layout, None if guest_size else int(hi))
    if cpus:
        layout = dataclasses.replace(layout, nr_cpus=cpus)
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
        from replay.errors import ReplayInputError

        raise ReplayInputError(f"--policy: unknown policy {unknown[0]!r}; known: {', '.join(known)}")
    if "none" in wanted:
        wanted.remove("none")
    return [known["none"], *(known[n] for n in wanted)]
