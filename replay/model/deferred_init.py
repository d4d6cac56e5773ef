"""Boot-time ``__free_pages_core()`` frees of deferred struct-page init, found in a boot trace.

``deferred_init_memmap()`` hands never-used memory to the buddy with ``__free_pages_core()`` ->
``__free_pages_ok(.., FPI_TO_TAIL)``: traced by ``mm_page_free``, never through the per-CPU
lists.  Whole aligned chunks go as one block (``mm/mm_init.c:deferred_free_range@6.1.192``:
``pageblock_order``; ``deferred_free_pages@6.12.117`` / ``@6.18.15``: ``MAX_PAGE_ORDER``), and
the pages of a partial chunk one by one at order 0.  ``replay.events.arrays.boot_free_core_mask``
marks the block frees (first event on the pfn, order >= pageblock) and ``pgdatinit%d``'s own
frees; the order-0 frees of the padata helpers (``padata_do_multithreaded`` kworkers, which do
most of the work from v6.10's larger chunks) are found here: a first-event free by a thread that
made block frees, inside the window between the first and last block free (page_alloc_init_late
waits for every helper before init runs, so no other free of those threads falls in it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.events.arrays import EV_FREE, FL_FREE_CORE


def deferred_init_order0_mask(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray, pid: np.ndarray,
                              core: np.ndarray, pageblock_order: int) -> np.ndarray:
    """FL_FREE_CORE for the order-0 (below pageblock) frees of deferred init (module docstring),
    given ``core``: the block frees' marks (``boot_free_core_mask``)."""
    out = np.zeros(len(ev), np.int8)
    blocks = np.nonzero(((core & FL_FREE_CORE) != 0) & (order >= pageblock_order))[0]
    valid = np.nonzero(pfn >= 0)[0]
    if len(blocks) == 0 or len(valid) == 0:
        return out
    lo, hi = int(blocks[0]), int(blocks[-1])
    _, first = np.unique(pfn[valid], return_index=True)
    k = valid[first]
    k = k[(k >= lo) & (k <= hi)]
    hit = k[(ev[k] == EV_FREE) & (order[k] < pageblock_order) & np.isin(pid[k], np.unique(pid[blocks]))]
    out[hit] = FL_FREE_CORE
    return out


def pid_column(table: Any, n: int) -> np.ndarray | None:
    """The table's ``pid`` column as int64 (None when the table does not carry it)."""
    if table is None or "pid" not in table.column_names or table.num_rows != n:
        return None
    return np.asarray(table.column("pid").to_numpy(zero_copy_only=False), np.int64)
