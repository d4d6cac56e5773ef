"""Named anomaly kinds of an exact replay, as data.

An anomaly is an event that contradicts the model state.  It is counted (and
the model repaired so that it follows the trace), never raised.  Each kind
says whether the kernel (6.1) explains it, and by which path: an untraced
path that moves pages between states is an explanation; a model bug is not.
The measured rates per trace are in docs/replay-fidelity.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnomalyKind:
    code: int
    name: str
    event: str
    description: str
    explained: bool
    kernel_path: str


ANOMALY_KINDS: tuple[AnomalyKind, ...] = (
    AnomalyKind(
        1, "pfn_out_of_range", "any",
        "pfn (or its block) outside every modelled zone", False,
        "",
    ),
    AnomalyKind(
        2, "zone_locked_on_pcp", "mm_page_alloc_zone_locked",
        "the buddy gave out a block the model holds on a per-CPU list", False,
        "",
    ),
    AnomalyKind(
        3, "zone_locked_on_allocated", "mm_page_alloc_zone_locked",
        "the buddy gave out a block the model holds as allocated", False,
        "",
    ),
    AnomalyKind(
        4, "zone_locked_unknown", "mm_page_alloc_zone_locked",
        "the buddy gave out pages the model never saw (hole / not present)", False,
        "",
    ),
    AnomalyKind(
        5, "zone_locked_inside_free_block", "mm_page_alloc_zone_locked",
        "the block is free in the model but not the head of a free block "
        "(__rmqueue_smallest always takes a free block's head)", False,
        "",
    ),
    AnomalyKind(
        6, "alloc_from_buddy", "mm_page_alloc",
        "an allocation returned a block the model holds free in the buddy, with no "
        "mm_page_alloc_zone_locked", True,
        "compaction_capture() in __free_one_page() hands a freed block straight to the direct "
        "compactor (__alloc_pages_direct_compact), bypassing __rmqueue_smallest",
    ),
    AnomalyKind(
        7, "alloc_from_remote_pcp", "mm_page_alloc",
        "the block came off another CPU's per-CPU list", True,
        "trace_mm_page_alloc() runs at the end of __alloc_pages() with preemption enabled, "
        "after rmqueue_pcplist() dropped the pcp lock: the task migrated in between",
    ),
    AnomalyKind(
        8, "double_alloc", "mm_page_alloc",
        "an allocation returned a block the model holds as allocated", False,
        "",
    ),
    AnomalyKind(
        9, "alloc_order_mismatch", "mm_page_alloc",
        "the block on the per-CPU list has another order than the allocation", False,
        "",
    ),
    AnomalyKind(
        10, "alloc_unknown", "mm_page_alloc",
        "an allocation returned pages the model never saw (hole / not present)", False,
        "",
    ),
    AnomalyKind(
        11, "free_of_free", "mm_page_free",
        "a free of a block the model holds free in the buddy", True,
        "compaction's isolate_freepages_block() / split_free_page() (and alloc_contig_range) "
        "take free pages out of the buddy through __isolate_free_page(), which has no "
        "tracepoint; the migration targets are later freed with mm_page_free",
    ),
    AnomalyKind(
        12, "free_of_pcp", "mm_page_free",
        "a free of a block the model holds on a per-CPU list", True,
        "__alloc_pages_bulk() (vmalloc's vm_area_alloc_pages, e.g. fork's thread stacks) takes "
        "pages with __rmqueue_pcplist() and emits no mm_page_alloc",
    ),
    AnomalyKind(
        13, "free_inside_allocation", "mm_page_free",
        "a free of part of a larger allocated block", True,
        "split_page() (alloc_pages_exact, vmalloc huge mappings) turns a non-compound "
        "high-order page into order-0 pages freed one by one; __free_pages() of a "
        "non-compound page with an elevated refcount frees its tail halves",
    ),
    AnomalyKind(
        14, "free_spans_blocks", "mm_page_free",
        "a free covering several blocks the model holds separately", False,
        "",
    ),
    AnomalyKind(
        15, "double_free", "mm_page_free",
        "a free of a block already being freed", False,
        "",
    ),
    AnomalyKind(
        16, "free_unknown", "mm_page_free",
        "a free of pages the model never saw (hole / not present)", False,
        "",
    ),
    AnomalyKind(
        17, "batched_without_free", "mm_page_free_batched",
        "mm_page_free_batched with no mm_page_free of the page before it (6.1 always "
        "traces free_pages_prepare() first)", False,
        "",
    ),
    AnomalyKind(
        18, "drain_of_free", "mm_page_pcpu_drain",
        "a drain of a block the model holds free in the buddy", False,
        "",
    ),
    AnomalyKind(
        19, "drain_of_allocated", "mm_page_pcpu_drain",
        "a drain of a block the model holds as allocated", False,
        "",
    ),
    AnomalyKind(
        20, "drain_unknown", "mm_page_pcpu_drain",
        "a drain of pages the model never saw", False,
        "",
    ),
    AnomalyKind(
        21, "drain_order_mismatch", "mm_page_pcpu_drain",
        "the drained block has another order on the per-CPU list", False,
        "",
    ),
    AnomalyKind(
        22, "extfrag_not_free", "mm_page_alloc_extfrag",
        "the block stolen by __rmqueue_fallback is not a free block in the model", False,
        "",
    ),
    AnomalyKind(
        23, "lost_events", "any",
        "events across a [LOST N EVENTS] gap", True,
        "ring-buffer overrun (the trace itself says events are missing)",
    ),
    AnomalyKind(
        25, "zone_locked_pretrace_split", "mm_page_alloc_zone_locked",
        "the first event on these pages takes them out of a free block the initial-state "
        "inference merged larger than the kernel had it", True,
        "tracing never starts at the beginning: the buddy's block structure around pages the "
        "trace has not touched yet is inferred (maximal merging of pages not known to be "
        "allocated); the kernel's free block there was smaller (its buddy was allocated before "
        "the trace)",
    ),
    AnomalyKind(
        24, "simulate_alloc_failed", "mm_page_alloc",
        "simulate mode only: the model had no block for a request the kernel served", False,
        "",
    ),
)

ANOMALY_KINDS = tuple(sorted(ANOMALY_KINDS, key=lambda k: k.code))
KIND_BY_CODE: dict[int, AnomalyKind] = {k.code: k for k in ANOMALY_KINDS}
KIND_BY_NAME: dict[str, AnomalyKind] = {k.name: k for k in ANOMALY_KINDS}
N_KINDS = max(KIND_BY_CODE) + 1

# Codes as module constants for the compiled loop (numba reads module globals as constants).
A_PFN_OUT_OF_RANGE = 1
A_ZL_ON_PCP = 2
A_ZL_ON_ALLOC = 3
A_ZL_UNKNOWN = 4
A_ZL_INSIDE_FREE = 5
A_ALLOC_FROM_BUDDY = 6
A_ALLOC_REMOTE_PCP = 7
A_DOUBLE_ALLOC = 8
A_ALLOC_ORDER = 9
A_ALLOC_UNKNOWN = 10
A_FREE_OF_FREE = 11
A_FREE_OF_PCP = 12
A_FREE_INSIDE = 13
A_FREE_SPANS = 14
A_DOUBLE_FREE = 15
A_FREE_UNKNOWN = 16
A_BATCHED_NO_FREE = 17
A_DRAIN_OF_FREE = 18
A_DRAIN_OF_ALLOC = 19
A_DRAIN_UNKNOWN = 20
A_DRAIN_ORDER = 21
A_EXTFRAG_NOT_FREE = 22
A_LOST = 23
A_SIM_ALLOC_FAILED = 24
A_ZL_PRETRACE = 25

for _name, _code in list(globals().items()):
    if _name.startswith("A_") and isinstance(_code, int):
        assert _code in KIND_BY_CODE, _name


def explained_codes() -> list[int]:
    return [k.code for k in ANOMALY_KINDS if k.explained]


def counts_by_name(counts: "list[int] | object") -> dict[str, int]:
    """``{kind name: count}`` for the non-zero entries of a per-code count array."""
    out: dict[str, int] = {}
    for code, n in enumerate(list(counts)):  # type: ignore[call-overload]
        if n and code in KIND_BY_CODE:
            out[KIND_BY_CODE[code].name] = int(n)
    return out
