"""Guest shape: the traced memory as the first part of a larger guest whose rest is never touched.

A trace covers the memory of the guest it was captured on (a 4 GiB qemu guest, say).  A guest
shape puts that memory into a larger guest of ``guest_bytes`` with ``vcpus`` vCPUs:

* The extra memory is one more NUMA node (``GuestShape.layout``): a single Normal zone that
  starts at the first GiB boundary above the traced RAM (and not below 4 GiB, where the
  firmware accepts everything), ``guest_bytes`` minus the traced RAM, rounded down to whole
  MAX_PAGE_ORDER blocks.  Its memmap (64 bytes of ``struct page`` per 4 KiB page) is a memblock
  reservation at the top of the zone, accepted at boot like any memblock allocation.  The zone
  has no watermarks: no traced allocation ever reaches it, so no policy accepts any of it at run
  time.
* The replay of the traced events is the traced guest's, unchanged (same layout, same initial
  state, same zone watermarks).  The extra memory enters through the boot-time acceptance cost
  (``boot_accept_cost`` of the whole guest: eager policies accept it at boot, on ``init_threads``
  threads or one per vCPU) and through the unaccepted bytes it leaves (list and v1-v7 policies
  leave all of it but its memmap unaccepted; the time series' ``unaccepted_bytes`` include it).
* The fill of each traced zone up to its watermark at its first allocation (``boot_accept_cost``'s
  ``fill`` part) is the traced guest's: the extra zone takes no part in it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from replay.acceptance.boot import BootCost, boot_accept_cost
from replay.model.layout import MemoryLayout, ZoneLayout, assemble_layout

#: sizeof(struct page) on x86-64: the memmap of the extra memory, reserved by memblock
STRUCT_PAGE_BYTES = 64
GiB = 1 << 30
#: zone_idx of ZONE_NORMAL on x86-64 (enum zone_type)
ZONE_NORMAL_IDX = 2


class GuestShapeError(ValueError):
    """A guest shape that cannot hold the traced memory (recorded as that point's error)."""


@dataclass(frozen=True)
class GuestShape:
    """The guest a sweep point replays the trace in: its layout and what the trace does not cover."""

    layout: MemoryLayout  # the whole guest (the traced layout plus the extra node), nr_cpus = vcpus
    traced: MemoryLayout  # the traced guest's layout (what the events replay on)
    extra_pages: int  # pages of the extra node (0: the traced guest itself)
    memmap_pages: int  # the extra node's memmap (memblock, accepted at boot)
    vcpus: int

    @property
    def page_size(self) -> int:
        return int(self.traced.page_size)

    @property
    def extra_bytes(self) -> int:
        return self.extra_pages * self.page_size

    @property
    def present_bytes(self) -> int:
        """RAM of the whole guest (what the time series' accepted + unaccepted bytes add up to)."""
        return int(self.layout.total_present()) * self.page_size

    @property
    def is_traced(self) -> bool:
        """The traced guest itself (no extra memory, the traced vCPU count)."""
        return self.extra_pages == 0 and self.vcpus == int(self.traced.nr_cpus)


def traced_bytes(layout: MemoryLayout) -> int:
    """RAM of the traced guest (present pages)."""
    return int(layout.total_present()) * int(layout.page_size)


def guest_shape(traced: MemoryLayout, guest_bytes: int | None, vcpus: int | None) -> GuestShape:
    """The guest of ``guest_bytes`` (None: the traced guest's RAM) and ``vcpus`` (None: the traced
    count) around the traced layout."""
    ps = int(traced.page_size)
    ncpu = int(vcpus) if vcpus else int(traced.nr_cpus)
    have = traced_bytes(traced)
    want = have if guest_bytes is None else int(guest_bytes)
    if want < have:
        raise GuestShapeError(f"guest_size {_gib(want)} is smaller than the traced guest's RAM ({_gib(have)})")
    block = 1 << int(traced.max_page_order)
    extra = (want - have) // ps // block * block
    if extra == 0:
        lay = dataclasses.replace(traced, nr_cpus=ncpu) if ncpu != int(traced.nr_cpus) else traced
        return GuestShape(layout=lay, traced=traced, extra_pages=0, memmap_pages=0, vcpus=ncpu)
    memmap = -(-extra * STRUCT_PAGE_BYTES // ps)
    top = max(z.zone_end_pfn for z in traced.zones if z.populated)
    gib_pages = GiB // ps
    start = max(-(-top // gib_pages) * gib_pages, 4 * gib_pages)
    node = max(n.node for n in traced.nodes) + 1
    zone = ZoneLayout(node=node, name="Normal", zone_idx=ZONE_NORMAL_IDX, zone_start_pfn=start, spanned=extra,
                      present=extra, managed=extra - memmap)
    ram = tuple(traced.ram_ranges) + ((start, start + extra),) if traced.ram_ranges else ()
    lay = assemble_layout(list(traced.zones) + [zone], {}, max_page_order=traced.max_page_order,
                          pageblock_order=traced.pageblock_order, nr_cpus=ncpu, cpu_ids=tuple(range(ncpu)),
                          page_size=ps, migratetype_names=traced.migratetype_names, ram_ranges=ram,
                          source=f"{traced.source} + node {node}: {_gib(extra * ps)} untouched (sweep guest shape)",
                          notes=tuple(traced.notes))
    return GuestShape(layout=lay, traced=traced, extra_pages=extra, memmap_pages=memmap, vcpus=ncpu)


def _gib(n: int) -> str:
    return f"{n / GiB:.4g} GiB"


@dataclass(frozen=True)
class GuestBoot:
    """The boot-time acceptance of a policy in a guest shape, and the memory it leaves unaccepted
    beyond the trace."""

    boot: dict[str, Any]  # ``BootCost.as_dict()`` of the whole guest (``PolicyRun.boot``)
    extra_unaccepted_bytes: int  # bytes of the extra node still unaccepted when the trace starts


def _combine(guest: BootCost, with_fill: BootCost, without_fill: BootCost) -> dict[str, Any]:
    """``guest`` (computed without the fill) plus the traced zones' fill (``with_fill`` minus
    ``without_fill``: a serial part of the boot, so the difference is exactly that part)."""
    d = guest.as_dict()
    fill_wall = with_fill.wall_ns - without_fill.wall_ns
    d["boot_accept_ns"] = guest.wall_ns + fill_wall
    d["cpu_ns"] = guest.cpu_ns + (with_fill.cpu_ns - without_fill.cpu_ns)
    d["accepted_bytes"] = guest.accepted_bytes + (with_fill.accepted_bytes - without_fill.accepted_bytes)
    parts = dict(d["parts_ns"])
    if "fill" in with_fill.parts_ns:
        parts["fill"] = with_fill.parts_ns["fill"]
    d["parts_ns"] = parts
    calls = dict(guest.calls)
    for k, v in with_fill.calls.items():
        calls[k] = calls.get(k, 0) + v - without_fill.calls.get(k, 0)
    d["calls"] = {k: v for k, v in sorted(calls.items()) if v}
    return d


def guest_boot(shape: GuestShape, policy: Any, costs: Any, firmware_accepted_bytes: int) -> GuestBoot:
    """The boot-time acceptance cost of ``policy`` in the whole guest and the extra memory it leaves
    unaccepted (both through ``boot_accept_cost``, the cost model every replay uses)."""
    def cost(layout: MemoryLayout, fill: bool) -> BootCost:
        return _boot_cost(policy, costs, layout, shape.vcpus, firmware_accepted_bytes, fill)

    traced_fill, traced_nofill = cost(shape.traced, True), cost(shape.traced, False)
    whole = cost(shape.layout, False)
    if not policy.has_unaccepted_table:  # plain VM or firmware-eager: nothing is ever unaccepted
        extra_unaccepted = 0
    else:
        extra_unaccepted = shape.extra_bytes - (whole.accepted_bytes - traced_nofill.accepted_bytes)
    return GuestBoot(boot=_combine(whole, traced_fill, traced_nofill), extra_unaccepted_bytes=int(extra_unaccepted))


@lru_cache(maxsize=256)
def _boot_cost(policy: Any, costs: Any, layout: MemoryLayout, vcpus: int, firmware_accepted_bytes: int,
               fill: bool) -> BootCost:
    """``boot_accept_cost`` as a replay calls it (``replay.policy.run``), cached: the traced guest's
    costs recur at every point of a trace."""
    present = int(layout.total_present()) * int(layout.page_size)
    return boot_accept_cost(policy, costs, present, vcpus, layout=layout, firmware_accepted_bytes=firmware_accepted_bytes,
                            fill_to_watermark=fill)
