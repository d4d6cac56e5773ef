"""Kernel profiles: the page allocator's switches and parameters per kernel release, as data.

A profile is a named release range (6.1, 6.12, 6.18, 7.3) whose fields say what the model's
functions do where the kernels differ; each field cites the source it was read in
(``file:function@version``, ``docs/kernel-profiles.md`` section numbers) and the release or
commit where it changes.  The numba kernels get a profile as a small int64 array
(``KernelProfile.params()``, indexed by the ``KP_*`` constants) held in the model state
(``ModelState.kp``), never as copies of the engine.

Which profile a replay uses (``pick_profile``): ``--kernel`` / ``--kernel-version`` first, then
the parsed table's metadata (``pagereplay.kernel_release``: a capture folder's ``uname.txt``;
``pagereplay.kernel_version``: ``pagereplay parse --kernel-version`` or a binary trace's uname),
then a trace heuristic (``heuristic_profile``), else 6.1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from parsers.gfp import release_version

FALLBACK_V61 = 0  # __rmqueue_fallback + steal_suitable_fallback (6.1; 6.12.0-6.12.28)
FALLBACK_CLAIM_STEAL = 1  # __rmqueue_claim / __rmqueue_steal (6.12.29+, v6.15)

FREE_PAGE_LIST = 0  # free_unref_page_list: order-0 pages only (6.1)
FREE_FOLIOS = 1  # free_unref_folios: orders 0-3 and 9 (v6.10)


@dataclass(frozen=True)
class KernelProfile:
    """One kernel profile's switches (docs/kernel-profiles.md section 1, per field)."""

    name: str
    first: tuple[int, int, int]  # the first release it covers
    #: include/linux/mmzone.h@6.1.192 NR_PCP_LISTS: 14 (12 + 2 THP) from 6.1.97 (bf14ed81f571,
    #: v6.10), 13 before
    nr_pcp_lists: int = 14
    #: include/linux/mmzone.h:enum migratetype: ISOLATE 4, or 5 with CONFIG_CMA=y (Debian 7.3)
    migrate_isolate: int = 4
    #: mm/page_alloc.c:free_pcppages_bulk: 6.1 takes the migratetype cached at free time
    #: (get_pcppage_migratetype); from v6.10 (17edeb5d3f76) the pageblock's type at drain time
    drain_mt_from_pageblock: bool = False
    #: mm/page_alloc.c:free_unref_page_commit@6.1.192 nr_pcp_free: batch << free_factor capped at
    #: high - batch from 6.1.104 (52166607ecc9); 6.12+: clamp(free_count, batch, high - batch)
    pcp_free_count: bool = False
    #: mm/page_alloc.c:decay_pcp_high (v6.7): pcp->high decays on the vmstat tick; drains in
    #: batch chunks since 6.12.67
    pcp_decay: bool = False
    #: mm/page_alloc.c: the fallback variant (FALLBACK_*): claim/steal from 6.12.29
    #: (c2f6ea38fc1b, 90abee6d7895, v6.15)
    fallback: int = FALLBACK_V61
    #: mm/page_alloc.c: the batch free API (FREE_*): what mm_page_free_batched records
    free_batch: int = FREE_PAGE_LIST
    #: mm/page_alloc.c:__free_one_page (v6.10 freelist hygiene): a free block is always on
    #: free_list[pageblock mt]; merges of mergeable types at order >= 9 retype the buddy
    freelist_by_pageblock: bool = False
    #: mm/page_alloc.c:free_one_page@6.12.117 -> split_large_buddy: direct buddy frees in
    #: pageblock pieces, each on its own pageblock's list
    split_large_buddy: bool = False
    #: mm/compaction.c:compaction_free (v6.9): mm_page_free of a page the compactor keeps
    compaction_free_event: bool = False
    #: 6.18: free_high threshold batch + high_min/2 (docs/kernel-profiles.md 2.3); 7.x chunked
    free_high_half_high_min: bool = False
    #: mm/page_alloc.c:free_pages_bulk / __free_contig_range (7.x): coalesced vfree frees
    coalesced_contig_free: bool = False
    #: include/linux/trace_events.h: flags bit 0x02 is NEED_RESCHED_LAZY from v6.13
    lazy_preempt_flag: bool = False
    #: mm/page_alloc.c:__isolate_free_page: a block of >= pageblock_order - 1 makes its pageblocks
    #: MOVABLE with set_pageblock_migratetype (6.1.192); from v6.10's freelist hygiene
    #: (6.12.118) with move_freepages_block, which moves the pageblock's other free blocks too
    isolate_moves_freepages: bool = False
    #: the gfp bit table of parsers/gfp.py
    gfp_table: str = "linux-6.1"

    def params(self) -> np.ndarray:
        """The switches as the int64 array the model kernels read (``KP_*`` indices)."""
        return np.array([int(getattr(self, f)) if f != "name_id" else PROFILE_IDS[self.name] for f in KP_FIELDS],
                        np.int64)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["first"] = ".".join(map(str, self.first))
        return d


#: the ``params()`` layout: index -> field (``name_id``: the profile's id in ``PROFILE_IDS``)
KP_FIELDS = ("name_id", "nr_pcp_lists", "migrate_isolate", "drain_mt_from_pageblock", "pcp_free_count",
             "pcp_decay", "fallback", "free_batch", "freelist_by_pageblock", "split_large_buddy",
             "compaction_free_event", "free_high_half_high_min", "coalesced_contig_free",
             "isolate_moves_freepages")  # fmt: skip
(KP_ID, KP_NR_PCP_LISTS, KP_MIGRATE_ISOLATE, KP_DRAIN_MT_FROM_PAGEBLOCK, KP_PCP_FREE_COUNT, KP_PCP_DECAY,
 KP_FALLBACK, KP_FREE_BATCH, KP_FREELIST_BY_PAGEBLOCK, KP_SPLIT_LARGE_BUDDY, KP_COMPACTION_FREE_EVENT,
 KP_FREE_HIGH_HALF_HIGH_MIN, KP_COALESCED_CONTIG_FREE, KP_ISOLATE_MOVES_FREEPAGES) = range(len(KP_FIELDS))  # fmt: skip
N_KP = len(KP_FIELDS)

_V6_12: dict[str, Any] = {"drain_mt_from_pageblock": True, "pcp_free_count": True, "pcp_decay": True,
                          "fallback": FALLBACK_CLAIM_STEAL, "free_batch": FREE_FOLIOS, "freelist_by_pageblock": True,
                          "split_large_buddy": True, "compaction_free_event": True, "isolate_moves_freepages": True,
                          "gfp_table": "linux-6.12"}
PROFILES: Mapping[str, KernelProfile] = {
    # Linux 6.1.192 (Debian 12): docs/kernel-profiles.md section 1, column 6.1
    "6.1": KernelProfile("6.1", (6, 1, 0)),
    # Linux 6.12.117 (Debian 12 backports)
    "6.12": KernelProfile("6.12", (6, 12, 0), **_V6_12),
    # Linux 6.18.15 (Debian 13 backports): PREEMPT_LAZY, free_high threshold
    "6.18": KernelProfile("6.18", (6, 18, 0), **_V6_12, free_high_half_high_min=True, lazy_preempt_flag=True),
    # Linux 7.3.4 (Debian 13 backports): CONFIG_CMA=y shifts ISOLATE to 5; coalesced contig frees
    "7.3": KernelProfile("7.3", (7, 0, 0), **{**_V6_12, "gfp_table": "linux-7.3"}, migrate_isolate=5,
                         free_high_half_high_min=True, coalesced_contig_free=True, lazy_preempt_flag=True),
}  # fmt: skip
PROFILE_IDS = {name: i for i, name in enumerate(PROFILES)}
DEFAULT_PROFILE = "6.1"


def profile_name(kp: np.ndarray) -> str:
    """The profile whose ``params()`` is ``kp``."""
    return list(PROFILES)[int(kp[KP_ID])]


def profile_for_release(release: str) -> KernelProfile | None:
    """The profile covering a release (``6.12.117+deb12-amd64``, ``6.12``), or None when the text
    holds no version.  Releases before 6.1 get 6.1 (the oldest modelled); 6.2-6.11 get 6.1 as
    well (their switches are a mix; the 6.1 model is the nearer for most fields)."""
    v = release_version(release)
    if v is None:
        return None
    best = PROFILES[DEFAULT_PROFILE]
    for p in PROFILES.values():
        if v >= p.first:
            best = p
    return best


def profile_option(text: str) -> KernelProfile:
    """``--kernel`` / ``--kernel-version`` text -> a profile; ValueError naming the choices."""
    if text in PROFILES:
        return PROFILES[text]
    p = profile_for_release(text)
    if p is None:
        raise ValueError(f"--kernel: {text!r} is not a kernel release; profiles: {', '.join(PROFILES)}")
    return p


def heuristic_profile(gfp_texts: list[str], batched_orders: list[int]) -> str | None:
    """A profile told from the trace alone, or None: ``__GFP_NO_OBJ_EXT`` is printed by name from
    6.18 on (mmflags.h TRACE_GFP_FLAGS) and ``0x1000000`` in 6.12; ``__GFP_ATOMIC`` exists only
    before v6.4; an ``mm_page_free_batched`` of order > 0 comes from free_unref_folios (v6.10+)."""
    joined = "|".join(gfp_texts)
    toks = set(joined.split("|"))
    if "__GFP_NO_OBJ_EXT" in toks:
        return "6.18"
    if "__GFP_ATOMIC" in toks:
        return "6.1"
    if "0x1000000" in toks or any(o > 0 for o in batched_orders):
        return "6.12"
    return None


def pick_profile(option: str | None, metadata: Mapping[str, str], table: Any = None) -> tuple[KernelProfile, str]:
    """(the profile, where it came from) for a replay; see the module docstring for the order."""
    if option:
        return profile_option(option), "option"
    for key in ("pagereplay.kernel_release", "pagereplay.kernel_version"):
        for rel in (metadata.get(key) or "").split(","):
            p = profile_for_release(rel.strip())
            if p is not None:
                return p, key.removeprefix("pagereplay.")
    if table is not None:
        name = _table_heuristic(table)
        if name is not None:
            return PROFILES[name], "trace heuristic"
    return PROFILES[DEFAULT_PROFILE], "default"


def _table_heuristic(table: Any) -> str | None:
    import pyarrow.compute as pc

    names = table.column_names
    gfps: list[str] = []
    if "gfp_flags" in names:
        col = table.column("gfp_flags")
        gfps = [s for s in pc.unique(col.cast("string") if not hasattr(col.type, "value_type") else
                                     pc.cast(col, "string")).to_pylist() if s]  # fmt: skip
    orders: list[int] = []
    if "event" in names and "order" in names:
        ev = pc.cast(table.column("event"), "string")
        sel = pc.filter(table.column("order"), pc.equal(ev, "mm_page_free_batched"))
        mx = pc.max(sel).as_py() if len(sel) else None
        orders = [int(mx)] if mx is not None else []
    return heuristic_profile(gfps, orders)
