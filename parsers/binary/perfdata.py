"""perf ``perf.data`` (``PERFILE2``, file or pipe mode) -> tracepoint samples.

Layout (from ``tools/perf/Documentation/perf.data-file-format.txt`` and
``include/uapi/linux/perf_event.h``; all numbers in the writer's byte order, a byte-swapped magic
meaning the other one):

* file mode: a 104-byte header ``{magic, u64 size=104, u64 attr_size, attrs {offset, size},
  data {offset, size}, event_types {offset, size}, u64 features[4]}``; attrs are
  ``attr_size - 16`` bytes of ``perf_event_attr`` then ``{u64 ids_offset, u64 ids_size}``; the
  feature sections ``{u64 offset, u64 size}`` (one per set feature bit, in bit order) follow the
  data.  Feature 1, TRACING_DATA, holds a v6-style trace.dat header with the event formats.
* pipe mode: a 16-byte header, then records only: HEADER_ATTR (64), HEADER_TRACING_DATA (66,
  whose ``u32 size`` payload follows the 12-byte record), HEADER_FEATURE (80)...
* records ``{u32 type, u16 misc, u16 size}``; SAMPLE (9) fields in ``sample_type`` bit order
  (IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD, READ, CALLCHAIN, RAW...);
  COMM (3), FORK (7), EXIT (4), LOST (2), LOST_SAMPLES (13) end with a ``sample_id`` trailer
  when ``sample_id_all`` is set; COMPRESSED (81) / COMPRESSED2 (83) carry pieces of one zstd
  stream of further records.

The reader in modules: ``perfformat`` (the numbers and structures), ``perfheader`` (file mode's
header, attrs and feature sections), ``perfwalk`` (finding the records), ``perfpipe`` (pipe mode
and COMPRESSED records), ``perfsamples`` (the sample fields and raw payloads), ``perfcomm``
(COMM / FORK / LOST and each sample's comm).  This module reads a file (``read_perfdata``) and
its samples (``scan``).
"""

from __future__ import annotations

import numpy as np

from . import aot
from .cursor import Cursor, fail
from .perfcomm import SideBand, resolve_comms, side_band
from .perfformat import (
    FEAT_ARCH,
    FEAT_CMDLINE,
    FEAT_HOSTNAME,
    FEAT_OSRELEASE,
    FEAT_VERSION,
    MAGIC,
    MAGIC_SWAPPED,
    R_COMPRESSED,
    R_COMPRESSED2,
    Attr,
    PerfData,
)
from .perfheader import read_file_mode
from .perfpipe import decompress_stream, read_pipe, walk_all
from .perfsamples import Samples, check_attrs, samples, scan_compiled

__all__ = ["FEAT_ARCH", "FEAT_CMDLINE", "FEAT_HOSTNAME", "FEAT_OSRELEASE", "FEAT_VERSION", "Attr", "PerfData",
           "Samples", "SideBand", "read_perfdata", "resolve_comms", "samples", "scan", "side_band"]


def read_perfdata(data, name: str) -> PerfData:
    """The header, attrs and event formats of a perf.data (file or pipe mode); ``scan`` reads the records."""
    head = bytes(data[:8])
    if head == MAGIC:
        le = True
    elif head == MAGIC_SWAPPED:
        le = False
    elif head == b"PERFFILE":
        fail(name, 0, "perf.data version 1 (PERFFILE) is not supported")
    else:
        fail(name, 0, "not a perf.data file (bad magic)")
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    c = Cursor(data, name, pos=8, le=le, what="perf.data header")
    hsize = c.u64("header size")
    if hsize == 16:
        return read_pipe(data, buf, name, le)
    return read_file_mode(data, buf, name, le, c, hsize)


def scan(pd: PerfData, plan, compiled: bool = True) -> Samples:
    """Walk the records and decode the samples (and their raw tracepoint payloads, along ``plan``)."""
    check_attrs(pd)
    k = aot.get() if compiled else None
    if k is None:
        if not pd.walked:
            walk_all(pd, False)
        s = samples(pd, compiled=False)
        from .table import decode_numpy

        s.decoded = decode_numpy(pd.buf, s.pos, s.length, pd.le, plan)
        return s
    if not pd.walked:
        s = scan_compiled(k, pd, plan)
        if not np.any((pd.rec_type == R_COMPRESSED) | (pd.rec_type == R_COMPRESSED2)):
            pd.walked = True
            return s
        decompress_stream(pd, True)
        pd.walked = True
    return scan_compiled(k, pd, plan)
