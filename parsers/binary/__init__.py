"""Binary traces: trace-cmd ``trace.dat`` (v6, v7) and perf ``perf.data``, read directly.

No trace-cmd or perf is needed: the formats are decoded here (``tracedat``, ``perfdata``, the
ring-buffer pages in ``ringbuf``), the kmem events through the event formats the file carries
(``tpformat``), into the same canonical table the text parsers produce (``table``).

``parsers.api`` routes an input here when ``sniff`` recognises it (by magic bytes, also inside
a gzip or zstd wrapper); ``file_batches`` then plays the part of ``TraceParser._file_batches``
for that file: same interners, same ``seq`` counter, same accounting list, so binary and text
inputs mix in one parse.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import PagereplayError, TraceFormatError
from .detect import BinaryInput, kind_of, load, sniff
from .table import BinaryFileAccounting, Plan, Records, build, decode_numpy

__all__ = ["BinaryInput", "file_batches", "gfp_bit_table", "kind_of", "load", "read_records", "sniff"]


def _tracedat_records(inp: BinaryInput, compiled: bool = True) -> Records:
    from . import tracedat

    td = tracedat.read_tracedat(inp.data, inp.name)
    plan = Plan(td.formats, td.headers.long_size)
    ps = tracedat.scan(td, plan, compiled)
    n = len(ps.pos)
    evid, cpid, st, vals = ps.decoded if ps.decoded is not None else decode_numpy(td.buf, ps.pos, ps.length, td.le, plan)
    cpu = td.page_cpu[ps.page] if n else np.zeros(0, np.int32)  # type: ignore[index]
    ts = tracedat.ns_timestamps(td, ps.ts)
    lost: list[tuple[int, int, int]] = []
    unknown_lost = 0
    lost_per_cpu: dict[int, int] = {}
    for pg in np.flatnonzero(ps.page_lost != -1).tolist():
        cnt = int(ps.page_lost[pg])
        c = int(td.page_cpu[pg])  # type: ignore[index]
        if cnt == -2:
            unknown_lost += 1
            cnt = 0
        lost.append((int(ps.page_first[pg]), c, cnt))
        lost_per_cpu[c] = lost_per_cpu.get(c, 0) + cnt
    malformed = []
    from .ringbuf import bad_reason

    for pg, code, off in ps.bad_pages:
        why = bad_reason(code, off)
        nxt = int(ps.page_first[pg]) + 1 if pg < len(ps.page_first) else n + 1
        fo = int(td.page_file_offset[pg]) if td.page_file_offset is not None and pg < len(td.page_file_offset) else -1
        where = "compressed chunk at" if td.compression != "none" and td.version == 7 else "page at"
        malformed.append((min(nxt, n + 1), "corrupt ring-buffer page", f"cpu {int(td.page_cpu[pg])}: {where} byte {fo:#x}: {why}"))  # type: ignore[index]
    stats = td.options.get("cpustat", {})
    cpu_stats = {str(k): v for k, v in sorted(stats.items())}
    stat_lost = {k: int(v.get("overrun", 0) or 0) + int(v.get("dropped_events", 0) or 0) for k, v in stats.items()}
    warnings = list(td.warnings)
    for c, sl in sorted(stat_lost.items()):
        if sl > lost_per_cpu.get(c, 0):
            warnings.append(
                f"{inp.name}: cpu {c}: the ring buffer's stats report {sl} events overrun or dropped, "
                f"{lost_per_cpu.get(c, 0)} of them at known places in the data"
            )
    info = {
        "file_version": td.version,
        "compression": td.compression,
        "trace_clock": td.clock,
        "page_size": td.page_size,
        "cpus": sorted({cd.cpu for cd in td.cpus}),
        "instances": sorted({cd.instance for cd in td.cpus}),
        "ring_buffer": ps.counts,
        "lost_events_per_cpu": {str(k): v for k, v in sorted(lost_per_cpu.items())},
        "lost_markers_count_unknown": unknown_lost,
        "cpu_stats": cpu_stats,
        "kernel_version": td.kernel_version,
        "uname": td.options.get("uname", ""),
        "tracecmd_version": td.options.get("tracecmd_version", ""),
        "ts_offset_ns": td.ts_offset,
        "formats_offset": td.meta.formats_offset,
        "warnings": warnings,
    }
    if td.tsc2nsec is not None:
        info["tsc2nsec"] = list(td.tsc2nsec)
    return Records(
        kind="trace.dat", buf=td.buf, pos=ps.pos, length=ps.length, ts=ts, cpu=cpu.astype(np.int32),  # type: ignore[arg-type]
        ordinal=np.arange(1, n + 1, dtype=np.int64), plan=plan, evid=evid, cpid=cpid, st=st, vals=vals,
        long_size=td.headers.long_size, cmdlines=td.meta.cmdlines, lost=lost, malformed=malformed, timestamp_unit=td.timestamp_unit, info=info,
    )


def _perfdata_records(inp: BinaryInput, compiled: bool = True) -> Records:
    from . import perfdata as P

    pd = P.read_perfdata(inp.data, inp.name)
    assert pd.meta is not None
    plan = Plan(pd.meta.formats, pd.meta.headers.long_size)
    s = P.scan(pd, plan, compiled)
    evid, cpid, st, vals = s.decoded  # type: ignore[misc]
    sb = P.side_band(pd, s.ts)
    comm_ids, names = P.resolve_comms(sb, s.ts, s.rec, s.tid, compiled)
    # samples of events without raw tracepoint data (a cycles event recorded alongside) have
    # pos -2: other events, by name
    other = dict(s.no_raw_names)
    lost = []
    lost_total = 0
    for ri, cpu, cnt in sb.lost:
        lost.append((int(np.searchsorted(s.rec, ri)), int(cpu), int(cnt)))
        lost_total += int(cnt)
    malformed = []
    feats = pd.features
    info: dict[str, Any] = {
        "pipe_mode": pd.pipe,
        "records": pd.record_counts,
        "records_total": len(pd.rec_off),
        "compressed_records": pd.compressed_records,
        "events": [a.name or f"type {a.type} config {a.config}" for a in pd.attrs],
        "lost_events": lost_total,
        "kernel_version": pd.kernel_version,
        "hostname": feats.get(P.FEAT_HOSTNAME, ""),
        "perf_version": feats.get(P.FEAT_VERSION, ""),
        "arch": feats.get(P.FEAT_ARCH, ""),
        "cmdline": feats.get(P.FEAT_CMDLINE, ""),
        "comm_records": sum(1 for e in sb.comm_events if e[2] == 0),
        "fork_records": sum(1 for e in sb.comm_events if e[2] == 1),
        "formats_offset": pd.meta.formats_offset if pd.meta else None,
        "other_events": other,
        "short_reason": "sample without complete raw data",
        "warnings": list(pd.warnings),
    }
    for i, why in s.bad:
        info["warnings"].append(f"{inp.name}: sample {i + 1}: {why}")
    return Records(
        kind="perf.data", buf=pd.buf, pos=s.pos, length=s.length, ts=s.ts, cpu=s.cpu, ordinal=s.ordinal,
        plan=plan, evid=evid, cpid=cpid, st=st, vals=vals, long_size=pd.meta.headers.long_size, pid=s.tid, tgid=s.pid,
        comm_ids=comm_ids, comm_names=names, lost=lost, malformed=malformed, timestamp_unit="ns", info=info,
    )


COMPILED = True  # False: the numpy implementations only (tests compare both)
_CORRUPT = (IndexError, ValueError, KeyError, TypeError, OverflowError, ZeroDivisionError, struct.error, UnicodeError,
            RecursionError)


def read_records(inp: BinaryInput, compiled: bool | None = None) -> Records:
    """The decoded records of a loaded input (``compiled=False``: the numpy implementations only).

    The readers check every size they read; should some corruption still trip an internal
    error, it becomes a one-line ``TraceFormatError`` naming the file.
    """
    c = COMPILED if compiled is None else compiled
    hint = "`trace-cmd report -i FILE`" if inp.kind == "trace.dat" else "`perf script -i FILE`"
    try:
        return _tracedat_records(inp, c) if inp.kind == "trace.dat" else _perfdata_records(inp, c)
    except TraceFormatError as e:  # unreadable structure: the tool that wrote it may still print it
        raise TraceFormatError(f"{e} (if the tool that wrote it reads it, its text can be parsed: {hint})") from None
    except PagereplayError:
        raise
    except _CORRUPT as e:
        raise TraceFormatError(f"{inp.name}: corrupt {inp.kind} ({type(e).__name__}: {e}) (if the tool that wrote "
                               f"it reads it, its text can be parsed: {hint})") from None


def file_batches(parser: Any, src: Any, name: str | None) -> Iterator[Any]:
    """The record batches of one binary input, for ``TraceParser`` (see the module docstring)."""
    hasher = parser._hasher_for(src)
    inp = load(src, name, hasher)
    if parser.on_raw_bytes is not None:
        parser.on_raw_bytes(inp.raw_bytes)
    fa = BinaryFileAccounting(name=inp.name, max_examples=parser.accounting.max_examples)
    fa.format = inp.kind
    fa.compression = inp.compression
    fa.raw_bytes = inp.raw_bytes
    fa.text_bytes = len(inp.data)
    recs = read_records(inp)
    parser.accounting.files.append(fa)
    nb = inp.name.encode()
    file_id = int(parser.files.remap(nb, 1, np.array([0]), np.array([len(nb)]))[0])
    info = dict(recs.info)
    warnings = info.pop("warnings", [])
    info.pop("short_reason", None)
    info.pop("other_events", None)
    fa.binary = info
    fa.warnings.extend(warnings)
    kv = info.get("kernel_version") or ""
    if kv:
        kvs = getattr(parser, "kernel_versions", None)
        if isinstance(kvs, list) and kv not in kvs:
            kvs.append(kv)
    try:
        yield from build(parser, recs, fa, file_id, inp.name)
    except PagereplayError:
        raise
    except _CORRUPT as e:
        raise TraceFormatError(f"{inp.name}: corrupt {inp.kind} ({type(e).__name__}: {e})") from None
    fa.sha256 = inp.sha256  # (the hashing thread ran meanwhile)


def gfp_bit_table(formats: list[str | None], default: str) -> str:
    """The ``gfp_bit_table`` metadata value: binaries record the raw gfp_t of the traced kernel."""
    binary = [f in ("trace.dat", "perf.data") for f in formats]
    if binary and all(binary):
        return "raw (as recorded by the traced kernel)"
    if any(binary):
        return f"mixed ({default} for text inputs, raw for binary inputs)"
    return default
