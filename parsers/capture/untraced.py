"""kprobes on the kernel paths that move pages with no kmem tracepoint (``record --untraced``).

The six kmem events miss page movements that do not go through ``__alloc_pages``/``free_pages``:
compaction's free scanner and free page reporting take free blocks straight off the buddy lists
(``__isolate_free_page``), page reporting and memory isolation put them back
(``__putback_isolated_page``), memory-failure takes single pages off (``take_page_off_buddy``)
and puts them back (``put_page_back_buddy``), ``alloc_contig_range`` splits free blocks at
pageblock boundaries (``split_free_page``, 6.0-6.9), lazy acceptance parks MAX_ORDER blocks on
``zone->unaccepted_pages`` instead of the buddy (``__free_unaccepted``, 6.5+; usually inlined),
TDX/SNP guests accept ranges (``tdx_accept_memory``/``snp_accept_memory``, 6.5+) and blocks
(``__accept_page``, 6.12+), memory hot-unplug removes isolated ranges (``__offline_isolated_pages``),
hot-add frees memory in (``__free_pages_core``), ``split_page`` turns one allocation into 2^n,
6.9+ ``compaction_free`` keeps a page that had an ``mm_page_free``, 6.10+ ``split_large_buddy``
inserts every buddy-direct free, 7.x ``free_prepared_contig_range`` frees prepared runs.  Call sites
read in ``mm/page_alloc.c``, ``mm/compaction.c``, ``mm/page_reporting.c``, ``mm/page_isolation.c``,
``mm/memory-failure.c`` of Debian's 6.1.192 and 6.12.117 sources, and checked against
``docs/kernel-profiles.md`` section 4 (which lists the per-version symbols and DWARF registers;
its ``vmb=`` is this module's ``vmemmap=``, both accepted by the reader).

Each probe is an x86-64 kprobe event in the fixed group ``pagereplay``; arguments are read from
the entry registers (``%di``, ``%si``, ``%dx``: the first three integer arguments of the SysV
ABI, valid at offset 0 of a function), and ``@vmemmap_base`` (the value of the kernel variable:
the virtual address of ``struct page`` for pfn 0 with CONFIG_SPARSEMEM_VMEMMAP), so that
``pfn = (page - vmemmap) / sizeof(struct page)`` (64 bytes on x86-64).  Where the kernel can
refuse (``__isolate_free_page`` checks the watermark and returns 0), a return probe
``<name>_ret`` records the outcome; the callers hold ``zone->lock`` with interrupts off, so the
entry and its return are consecutive events on the same CPU.

Line format (tracefs ``trace`` text, as the Debian 6.1 kernel of the e2e test printed it; the
context columns are those of every event)::

    sh-375 [000] d..1.  18.353096: isolate_free_page: (__isolate_free_page+0x0/0x2b0) page=0xff9e89f540133800 order=5 vmemmap=0xff9e89f540000000
    sh-375 [000] d..1.  18.353096: isolate_free_page_ret: (isolate_freepages_block+0x261/0x410 <- __isolate_free_page) ret=32

i.e. ``NAME: (SYMBOL+OFF/SIZE) key=value ...`` for an entry probe (OFF is 0x0, or 0x4 after the
``endbr64`` of an IBT kernel: 6.12 prints ``(__isolate_free_page+0x4/0x200)``) and ``NAME_ret: (CALLER+OFF/SIZE
<- SYMBOL) ret=VALUE`` for a return probe.  ``x64`` values print as ``0x`` hex, ``u32``/``s32``/``u8``
as decimal.  ``parse_untraced`` turns such a payload into ``(name, pfn, order)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

GROUP = "pagereplay"
STRUCT_PAGE_SIZE = 64          # sizeof(struct page) on x86-64 (no KMSAN / page debugging fields)
PAGE_SHIFT = 12
#: VMEMMAP_START without CONFIG_DYNAMIC_MEMORY_LAYOUT (4-level paging); with KASLR the probes read
#: the real value from ``vmemmap_base`` in every event
VMEMMAP_START_DEFAULT = 0xFFFFEA0000000000


@dataclass(frozen=True)
class ProbeSpec:
    """One kprobe event.  ``kind``: ``p`` (entry) or ``r`` (return).  ``pfn_from``: how the record's
    pfn is computed: ``page`` (struct page pointer + vmemmap), ``phys`` (physical start/end),
    ``pfn`` (start_pfn/end_pfn), ``ret`` (a return probe: outcome only)."""

    event: str
    symbol: str
    kind: str
    args: tuple[tuple[str, str], ...]
    pfn_from: str
    fixed_order: int | None = None     # the order when the function has no order argument
    kernels: str = "all"
    why: str = ""

    @property
    def full_name(self) -> str:
        return f"{GROUP}/{self.event}"

    def definition(self) -> str:
        """The line written to ``kprobe_events``."""
        args = " ".join(f"{n}={a}" for n, a in self.args)
        return f"{self.kind}:{GROUP}/{self.event} {self.symbol}" + (f" {args}" if args else "")


_VM = ("vmemmap", "@vmemmap_base:x64")
_PAGE = ("page", "%di:x64")

PROBES: tuple[ProbeSpec, ...] = (
    ProbeSpec("isolate_free_page", "__isolate_free_page", "p", (_PAGE, ("order", "%si:u32"), _VM), "page",
              why="compaction's free scanner, page reporting, alloc_contig_range and isolation take a free "
                  "block off the buddy lists (del_page_from_free_list), no kmem event"),
    ProbeSpec("isolate_free_page_ret", "__isolate_free_page", "r", (("ret", "$retval:s32"),), "ret",
              why="0 when the watermark check refused (nothing was taken), else 1<<order"),
    ProbeSpec("putback_isolated_page", "__putback_isolated_page", "p",
              (_PAGE, ("order", "%si:u32"), ("mt", "%dx:s32"), _VM), "page",
              why="page reporting and unset_migratetype_isolate give an isolated block back to the buddy "
                  "(__free_one_page, merging), no kmem event"),
    ProbeSpec("take_page_off_buddy", "take_page_off_buddy", "p", (_PAGE, _VM), "page", fixed_order=0,
              why="memory-failure removes one free page (splitting its buddy block), no kmem event"),
    ProbeSpec("take_page_off_buddy_ret", "take_page_off_buddy", "r", (("ret", "$retval:u8"),), "ret",
              why="false when the page was not free"),
    ProbeSpec("put_page_back_buddy", "put_page_back_buddy", "p", (_PAGE, _VM), "page", fixed_order=0,
              why="memory-failure unpoison puts the page back into the buddy, no kmem event"),
    ProbeSpec("put_page_back_buddy_ret", "put_page_back_buddy", "r", (("ret", "$retval:u8"),), "ret"),
    ProbeSpec("split_free_page", "split_free_page", "p",
              (_PAGE, ("order", "%si:u32"), ("split", "%dx:u64"), _VM), "page", kernels="6.0-6.9",
              why="alloc_contig_range splits a free block at a pageblock boundary (re-freed in pieces)"),
    ProbeSpec("split_free_page_ret", "split_free_page", "r", (("ret", "$retval:s32"),), "ret", kernels="6.0-6.9",
              why="-ENOENT when the block had changed (nothing done)"),
    ProbeSpec("free_unaccepted", "__free_unaccepted", "p", (_PAGE, _VM), "page", fixed_order=10, kernels="6.5+",
              why="lazy acceptance puts a MAX_ORDER block on zone->unaccepted_pages, not the buddy "
                  "(static, usually inlined into __free_pages_core)"),
    ProbeSpec("free_unaccepted_ret", "__free_unaccepted", "r", (("ret", "$retval:u8"),), "ret", kernels="6.5+",
              why="false when lazy acceptance is off (the block goes to the buddy, traced)"),
    ProbeSpec("tdx_accept_memory", "tdx_accept_memory", "p", (("start", "%di:x64"), ("end", "%si:x64")), "phys",
              kernels="6.5+ (TDX guests)", why="the TDX module accepts [start, end) (the cost the policies model)"),
    ProbeSpec("snp_accept_memory", "snp_accept_memory", "p", (("start", "%di:x64"), ("end", "%si:x64")), "phys",
              kernels="6.5+ (SEV-SNP guests)", why="the SNP guest validates [start, end)"),
    ProbeSpec("offline_isolated_pages", "__offline_isolated_pages", "p",
              (("start_pfn", "%di:u64"), ("end_pfn", "%si:u64")), "pfn",
              why="memory hot-unplug removes the free pages of an isolated range from the buddy"),
    ProbeSpec("split_page", "split_page", "p", (_PAGE, ("order", "%si:u32"), _VM), "page",
              why="an allocated order-n block becomes 2^n order-0 allocations (6.1 compaction's "
                  "split_map_pages, alloc_pages_exact)"),
    ProbeSpec("free_pages_core", "__free_pages_core", "p", (_PAGE, ("order", "%si:u32"), _VM), "page",
              why="memory hot-add (and boot) hands memory to the buddy; unaccepted order-10 blocks then "
                  "stay silent (6.5+ __free_unaccepted, inlined)"),
    ProbeSpec("accept_page", "__accept_page", "p", (("page", "%dx:x64"), _VM), "page", fixed_order=10,
              kernels="6.12+ (static)",
              why="an unaccepted MAX_ORDER block leaves zone->unaccepted_pages to be accepted (its "
                  "mm_page_free order=10 follows, after the firmware call)"),
    ProbeSpec("compaction_free", "compaction_free", "p", (("folio", "%di:x64"), _VM), "page", kernels="all (static)",
              why="a migration target goes back on the compactor's list; from 6.9 after an mm_page_free "
                  "that returned nothing to the allocator (order not fetched: -1)"),
    ProbeSpec("split_large_buddy", "split_large_buddy", "p",
              (("page", "%si:x64"), ("order", "%cx:s32"), _VM), "page", kernels="6.10+ (static)",
              why="every buddy-direct free is inserted here (split at pageblock granularity), incl. the "
                  "6.18+ deferred trylock frees"),
    ProbeSpec("free_prepared_contig_range", "free_prepared_contig_range", "p",
              (_PAGE, ("nr", "%si:u64"), _VM), "page", kernels="7.x (static)",
              why="vfree/free_contig_range free a prepared run as blocks after per-page mm_page_free"),
)

PROBE_BY_EVENT = {p.event: p for p in PROBES}
#: the symbols to look for, in order of first use
SYMBOLS: tuple[str, ...] = tuple(dict.fromkeys(p.symbol for p in PROBES))
#: the probe every --untraced capture should have where the kernel has it
REQUIRED_SYMBOL = "__isolate_free_page"
DATA_SYMBOL = "vmemmap_base"


def kallsyms_names(text: str) -> dict[str, str]:
    """``/proc/kallsyms`` -> {name: type letter}, first occurrence kept (modules' ``[mod]`` dropped).

    Only exact names count: a ``.isra.0``/``.constprop.0`` clone has another calling convention.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3 and f[2] not in out:
            out[f[2]] = f[1]
    return out


def filter_function_names(text: str) -> set[str]:
    """``available_filter_functions`` -> the function names (``name [module]`` lines, 6.5+ may add addresses)."""
    out = set()
    for line in text.splitlines():
        f = line.split()
        if f:
            out.add(f[0] if not re.fullmatch(r"[0-9a-f]{8,}", f[0]) or len(f) < 2 else f[1])
    return out


def plan_probes(kallsyms: dict[str, str] | None, filter_functions: set[str] | None = None,
                *, machine: str = "x86_64") -> tuple[list[ProbeSpec], list[str]]:
    """The probes to define on this kernel, and one-line notes for those skipped.

    A symbol counts as present when kallsyms lists it as text (``t``/``T``), or, without kallsyms,
    when ``available_filter_functions`` does.  ``@vmemmap_base`` must exist for the page probes
    (kernels without CONFIG_DYNAMIC_MEMORY_LAYOUT have the constant VMEMMAP_START instead: the page
    probes then go without ``vmemmap=`` and the reader uses ``0xffffea0000000000``).
    """
    notes: list[str] = []
    if machine != "x86_64":
        return [], [f"--untraced: the kprobe arguments are written for x86-64 registers; this machine is {machine}: no kprobes"]
    if kallsyms is None and filter_functions is None:
        return [], ["--untraced: neither /proc/kallsyms nor available_filter_functions is readable: no kprobes"]

    def present(sym: str) -> bool:
        if kallsyms is not None and sym in kallsyms:
            return kallsyms[sym].lower() == "t"
        return filter_functions is not None and sym in filter_functions

    have_vmemmap = kallsyms is None or DATA_SYMBOL in kallsyms
    chosen: list[ProbeSpec] = []
    missing_syms: list[str] = []
    for p in PROBES:
        if not present(p.symbol):
            if p.symbol not in missing_syms:
                missing_syms.append(p.symbol)
            continue
        if p.pfn_from == "page" and not have_vmemmap:
            p = _with_fixed_vmemmap(p)
        chosen.append(p)
    for s in missing_syms:
        spec = next(p for p in PROBES if p.symbol == s)
        notes.append(f"--untraced: {s} not in this kernel's symbols (not built, inlined or renamed; exists on: "
                     f"{spec.kernels}): not probed")
    if not have_vmemmap and any(p.pfn_from == "page" for p in chosen):
        notes.append(f"--untraced: no {DATA_SYMBOL} symbol: page probes go without vmemmap= (readers assume "
                     f"VMEMMAP_START {VMEMMAP_START_DEFAULT:#x})")
    return chosen, notes


def _with_fixed_vmemmap(p: ProbeSpec) -> ProbeSpec:
    """The probe without the ``vmemmap`` argument (the reader then uses ``VMEMMAP_START_DEFAULT``)."""
    args = tuple((n, a) for n, a in p.args if n != "vmemmap")
    return ProbeSpec(p.event, p.symbol, p.kind, args, p.pfn_from, p.fixed_order, p.kernels, p.why)


def read_symbols(proc_root: Path, tracefs_root: Path | None) -> tuple[dict[str, str] | None, set[str] | None]:
    """Read kallsyms (only the lines we need) and available_filter_functions when present."""
    want = set(SYMBOLS) | {DATA_SYMBOL}
    ks: dict[str, str] | None = None
    try:
        ks = {}
        with open(proc_root / "kallsyms", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in want and parts[2] not in ks:
                    ks[parts[2]] = parts[1]
    except OSError:
        ks = None
    ff: set[str] | None = None
    if tracefs_root is not None:
        try:
            ff = filter_function_names((tracefs_root / "available_filter_functions").read_text(errors="replace")) & want
        except OSError:
            ff = None
    return ks, ff


# ---------------------------------------------------------------------- reading the lines back
class UntracedRecord(NamedTuple):
    """One kprobe line: ``name`` (the event, without the group), ``pfn``, ``order``.

    - entry probes on a page: ``pfn = (page - vmemmap) // 64``; ``order`` from the ``order=``
      argument, or the fixed order of the function (``take_page_off_buddy``: 0,
      ``free_unaccepted``: 10);
    - range probes (``tdx_accept_memory``, ``snp_accept_memory``: physical ``[start, end)``;
      ``offline_isolated_pages``: ``[start_pfn, end_pfn)``): ``pfn`` = first pfn, ``order`` =
      log2 of the page count when it is a power of two, else -1 (``parse_fields`` gives the ends);
    - return probes (``*_ret``): ``pfn = -1``; ``order`` carries the outcome: ``0`` = done, ``-1`` =
      refused/nothing done (``isolate_free_page_ret``: ret 0; ``*_buddy_ret``/``free_unaccepted_ret``:
      false; ``split_free_page_ret``: non-zero).  Pair it with the previous entry record of the
      same function on the same CPU.
    """

    name: str
    pfn: int
    order: int


_HEAD = re.compile(r"^\s*(?:(?P<grp>\w+)[:/])?(?P<name>\w+):\s+\((?P<where>[^)]*)\)\s*(?P<args>.*)$")
_ARG = re.compile(r"(\w+)=(\S+)")
# the context columns of an ftrace / trace-cmd / perf line, up to "<ts>: " (to find a whole line's payload)
_CTX = re.compile(r"^.*?\[\d+\]\s+(?:[^\s:]+\s+)?\d+(?:\.\d+)?:\s+")


def _int(v: str) -> int:
    v = v.strip()
    neg = v.startswith("-")
    v = v.lstrip("-")
    n = int(v, 16) if v.lower().startswith("0x") else int(v)
    return -n if neg else n


def parse_fields(payload: str | bytes) -> tuple[str, str, dict[str, int]] | None:
    """``'isolate_free_page: (__isolate_free_page+0x0/0x1e0) page=0x.. order=3 vmemmap=0x..'`` ->
    (``'isolate_free_page'``, ``'__isolate_free_page+0x0/0x1e0'``, ``{'page': .., 'order': 3, 'vmemmap': ..}``).

    Accepts the payload with or without the leading event name, or a whole ftrace line.  Returns
    ``None`` when the text is not a kprobe payload of ours (unknown event name or no ``(...)``).
    """
    s = payload.decode(errors="replace") if isinstance(payload, (bytes, bytearray)) else payload
    s = s.rstrip("\n")
    c = _CTX.match(s)
    if c is not None:
        s = s[c.end():]
    m = _HEAD.match(s)
    if m is None or m.group("name") not in PROBE_BY_EVENT:
        return None
    if m.group("grp") not in (None, GROUP):
        return None
    name, where = m.group("name"), m.group("where")
    fields: dict[str, int] = {}
    for k, v in _ARG.findall(m.group("args")):
        try:
            fields[k] = _int(v)
        except ValueError:
            continue
    return name, where, fields


def _log2_exact(n: int) -> int:
    return n.bit_length() - 1 if n > 0 and n & (n - 1) == 0 else -1


def parse_untraced(payload: str | bytes, *, struct_page_size: int = STRUCT_PAGE_SIZE) -> UntracedRecord | None:
    """One kprobe line (payload or whole line) -> ``UntracedRecord(name, pfn, order)``, or ``None``.

    The reference for the compiled scanner; see ``UntracedRecord`` for the meaning of each case.
    A line of ours with a missing argument gives ``pfn = -1``.
    """
    got = parse_fields(payload)
    if got is None:
        return None
    name, _where, f = got
    spec = PROBE_BY_EVENT[name]
    if spec.pfn_from == "ret":
        ret = f.get("ret")
        if ret is None:
            return UntracedRecord(name, -1, -1)
        ok = (ret == 0) if spec.symbol == "split_free_page" else (ret != 0)
        return UntracedRecord(name, -1, 0 if ok else -1)
    if spec.pfn_from == "page":
        page = f.get("page", f.get("folio"))
        vm = f.get("vmemmap", f.get("vmb", VMEMMAP_START_DEFAULT))
        if "order" in f:
            order = f["order"]
        elif "nr" in f:
            order = _log2_exact(f["nr"])
        else:
            order = spec.fixed_order if spec.fixed_order is not None else -1
        if page is None or page < vm:
            return UntracedRecord(name, -1, order)
        return UntracedRecord(name, (page - vm) // struct_page_size, order)
    if spec.pfn_from == "phys":
        start, end = f.get("start"), f.get("end")
        if start is None:
            return UntracedRecord(name, -1, -1)
        n = ((end - start) >> PAGE_SHIFT) if end is not None else 0
        return UntracedRecord(name, start >> PAGE_SHIFT, _log2_exact(n))
    if spec.pfn_from == "pfn":
        start, end = f.get("start_pfn"), f.get("end_pfn")
        if start is None:
            return UntracedRecord(name, -1, -1)
        return UntracedRecord(name, start, _log2_exact((end - start) if end is not None else 0))
    return None  # pragma: no cover - every spec has one of the kinds above


__all__ = [
    "GROUP",
    "PROBES",
    "PROBE_BY_EVENT",
    "STRUCT_PAGE_SIZE",
    "ProbeSpec",
    "UntracedRecord",
    "kallsyms_names",
    "parse_fields",
    "parse_untraced",
    "plan_probes",
    "read_symbols",
]
