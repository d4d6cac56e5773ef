"""perf.data's numbers and structures: record types, sample_type / read_format / feature bits, the
``perf_event_attr`` fields the reader keeps (``Attr``), the file as read (``PerfData``), and the
integer reads the header, walk and sample modules share (``read_uint``, ``header_fields``).

From ``include/uapi/linux/perf_event.h`` and ``tools/perf/util/header.h`` (see ``perfdata``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import aot
from .tpformat import TracingMeta

MAGIC = b"PERFILE2"
MAGIC_SWAPPED = b"2ELIFREP"

# record types
R_MMAP, R_LOST, R_COMM, R_EXIT, R_THROTTLE, R_UNTHROTTLE, R_FORK, R_READ, R_SAMPLE = 1, 2, 3, 4, 5, 6, 7, 8, 9
R_LOST_SAMPLES = 13
R_HEADER_ATTR, R_HEADER_EVENT_TYPE, R_HEADER_TRACING_DATA, R_HEADER_BUILD_ID = 64, 65, 66, 67
R_FINISHED_ROUND, R_AUXTRACE, R_HEADER_FEATURE, R_COMPRESSED, R_FINISHED_INIT, R_COMPRESSED2 = 68, 71, 80, 81, 82, 83
RECORD_NAMES = {
    1: "MMAP", 2: "LOST", 3: "COMM", 4: "EXIT", 5: "THROTTLE", 6: "UNTHROTTLE", 7: "FORK", 8: "READ", 9: "SAMPLE",
    10: "MMAP2", 11: "AUX", 12: "ITRACE_START", 13: "LOST_SAMPLES", 14: "SWITCH", 15: "SWITCH_CPU_WIDE",
    16: "NAMESPACES", 17: "KSYMBOL", 18: "BPF_EVENT", 19: "CGROUP", 20: "TEXT_POKE", 21: "AUX_OUTPUT_HW_ID",
    64: "HEADER_ATTR", 65: "HEADER_EVENT_TYPE", 66: "HEADER_TRACING_DATA", 67: "HEADER_BUILD_ID",
    68: "FINISHED_ROUND", 69: "ID_INDEX", 70: "AUXTRACE_INFO", 71: "AUXTRACE", 72: "AUXTRACE_ERROR",
    73: "THREAD_MAP", 74: "CPU_MAP", 75: "STAT_CONFIG", 76: "STAT", 77: "STAT_ROUND", 78: "EVENT_UPDATE",
    79: "TIME_CONV", 80: "HEADER_FEATURE", 81: "COMPRESSED", 82: "FINISHED_INIT", 83: "COMPRESSED2",
}

# sample_type bits
S_IP, S_TID, S_TIME, S_ADDR, S_READ, S_CALLCHAIN, S_ID, S_CPU = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
S_PERIOD, S_STREAM_ID, S_RAW, S_IDENTIFIER = 1 << 8, 1 << 9, 1 << 10, 1 << 16
# read_format bits
F_ENABLED, F_RUNNING, F_ID, F_GROUP, F_LOST = 1, 2, 4, 8, 16
# feature bits
FEAT_TRACING_DATA, FEAT_HOSTNAME, FEAT_OSRELEASE, FEAT_VERSION, FEAT_ARCH, FEAT_NRCPUS = 1, 3, 4, 5, 6, 7
FEAT_CMDLINE, FEAT_EVENT_DESC, FEAT_CLOCKID, FEAT_COMPRESSED = 11, 12, 23, 27
ATTR_FLAG_SAMPLE_ID_ALL = 1 << 18
ATTR_FLAG_USE_CLOCKID = 1 << 25

MAX_FEATURE = 64 << 20  # a feature section claiming more is corrupt (TRACING_DATA is tens of KiB)


@dataclass
class Attr:
    type: int
    config: int
    sample_type: int
    read_format: int
    flags: int
    clockid: int
    ids: list[int]
    name: str = ""

    @property
    def sample_id_all(self) -> bool:
        return bool(self.flags & ATTR_FLAG_SAMPLE_ID_ALL)


@dataclass
class PerfData:
    name: str
    le: bool
    pipe: bool
    attrs: list[Attr]
    meta: TracingMeta | None
    features: dict[int, Any]
    buf: np.ndarray  # the record stream (the data section, or the decompressed stream)
    rec_off: np.ndarray  # int64 offsets of every record in ``buf``, in file order
    rec_type: np.ndarray
    rec_size: np.ndarray
    stream_base: int  # file offset of buf[0] (for messages; -1 when buf is decompressed data)
    walked: bool = False  # rec_* hold the records of the final (decompressed) stream
    kernel_version: str = ""
    record_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    compressed_records: int = 0


def read_uint(buf: np.ndarray, pos: np.ndarray, size: int, le: bool, compiled: bool = True) -> np.ndarray:
    """Unsigned ``size``-byte integers at byte offsets ``pos`` of ``buf``, as int64 (the compiled
    gather; else a typed view when every offset is aligned, byte by byte otherwise)."""
    k = aot.get() if compiled and len(pos) > 64 else None
    if k is not None:
        if int(pos.min()) < 0 or int(pos.max()) + size > len(buf):
            raise IndexError("field outside the buffer")
        return k.gather(aot.ro(buf), aot.ro(pos, np.int64), size, False, le)
    if size in (4, 8) and len(pos) and not np.any(pos & (size - 1)):
        n = len(buf) // size
        v = np.frombuffer(buf.data if buf.flags.c_contiguous else np.ascontiguousarray(buf).data,
                          dtype=("<u" if le else ">u") + str(size), count=n)
        return v[pos // size].astype(np.int64) if size == 4 else v[pos // size].astype(np.uint64).view(np.int64)
    out = np.zeros(pos.shape, np.uint64)
    for i in range(size):
        out |= buf[pos + i].astype(np.uint64) << np.uint64(8 * i if le else 8 * (size - 1 - i))
    return out.view(np.int64)


def header_fields(hv: np.ndarray, le: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(type, misc, size) of header words (u64 values of ``{u32 type, u16 misc, u16 size}``)."""
    if le:
        return ((hv & np.uint64(0xFFFFFFFF)).astype(np.int64), ((hv >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int64),
                (hv >> np.uint64(48)).astype(np.int64))
    return ((hv >> np.uint64(32)).astype(np.int64), ((hv >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.int64),
            (hv & np.uint64(0xFFFF)).astype(np.int64))


def id_pos(st: int) -> int | None:
    """Byte offset (after the header) of the sample id, as perf computes it."""
    if st & S_IDENTIFIER:
        return 0
    if not st & S_ID:
        return None
    pos = 0
    for bit in (S_IP, S_TID, S_TIME, S_ADDR):
        if st & bit:
            pos += 8
    return pos
