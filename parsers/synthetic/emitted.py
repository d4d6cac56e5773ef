"""What the compiled loops of both emitters share: the request kinds they serve, the columns of an
emitted event and the function that writes one.

The stand-in (``parsers.synthetic.emit``) and the engine (``replay.synth.emit``) each extend
:data:`EVENT_COLUMNS` with columns of their own (their ``Emitted`` namedtuples) and write a row
with :func:`put_event` followed by those.  The replay's kernels compile this module's code and
constants into their own, so ``replay.jit.cache_key`` covers this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: the request kinds (``requests.REQUEST_SCHEMA`` ``kind``): an allocation; a free through
#: ``free_unref_page()``; through ``free_unref_page_list()``; ``__free_pages_core()``
KIND_ALLOC, KIND_FREE, KIND_FREE_BATCHED, KIND_FREE_CORE = 0, 1, 2, 3

#: the columns of every emitted event, in order, and their dtypes (comm and gfp: dictionary
#: indices of the request batch, gfp -1 none; ev: ``parsers.schema.Event``)
EVENT_COLUMNS = {
    "ts_ns": np.int64, "cpu": np.int32, "pid": np.int32, "comm": np.int32, "ev": np.int8, "pfn": np.int64,
    "order": np.int8, "mt": np.int8, "gfp": np.int32,
}  # fmt: skip


@njit(cache=True, nogil=True, _nrt=False)
def put_event(out, ne, t, c, pid, comm, ev, pfn, order, mt, gfp):  # type: ignore[no-untyped-def]
    """Write the :data:`EVENT_COLUMNS` of row ``ne`` of ``out`` (at its microsecond, as ftrace
    prints it)."""
    out.ts_ns[ne] = (t // 1000) * 1000
    out.cpu[ne] = c
    out.pid[ne] = pid
    out.comm[ne] = comm
    out.ev[ne] = ev
    out.pfn[ne] = pfn
    out.order[ne] = order
    out.mt[ne] = mt
    out.gfp[ne] = gfp


__all__ = ["EVENT_COLUMNS", "KIND_ALLOC", "KIND_FREE", "KIND_FREE_BATCHED", "KIND_FREE_CORE", "put_event"]
