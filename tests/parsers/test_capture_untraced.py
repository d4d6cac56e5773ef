"""The --untraced kprobe specs and the reference parser of the lines they print."""

from __future__ import annotations

import re

import pytest

from parsers.capture.untraced import (
    GROUP,
    PROBES,
    UntracedRecord,
    filter_function_names,
    kallsyms_names,
    parse_fields,
    parse_untraced,
    plan_probes,
)

VM = 0xFFFFD4D540000000  # a KASLR vmemmap_base


def _page(pfn: int, vm: int = VM) -> str:
    return f"{vm + 64 * pfn:#x}"


def test_definitions_are_kprobe_syntax_in_one_group():
    pat = re.compile(r"^[pr]:pagereplay/\w+ \w+( \w+=(%[a-z]{2}|\$retval|@vmemmap_base):(x64|u64|u32|s32|u8))*$")
    for p in PROBES:
        assert pat.match(p.definition()), p.definition()
        assert p.full_name == f"{GROUP}/{p.event}"
    assert len({p.event for p in PROBES}) == len(PROBES)
    assert any(p.symbol == "__isolate_free_page" and p.kind == "p" for p in PROBES)
    accept = next(p for p in PROBES if p.event == "accept_page")
    assert "page=%dx:x64" in accept.definition()  # __accept_page(zone, flags, page)


@pytest.mark.parametrize("line, want", [
    (f"isolate_free_page: (__isolate_free_page+0x0/0x1e0) page={_page(0x12345)} order=3 vmemmap={VM:#x}",
     UntracedRecord("isolate_free_page", 0x12345, 3)),
    (f"            init-1       [001] d..2.   7.900000: isolate_free_page: (__isolate_free_page+0x0/0x1e0) "
     f"page={_page(0x40000)} order=9 vmemmap={VM:#x}", UntracedRecord("isolate_free_page", 0x40000, 9)),
    (f" (udev-worker)-90  [000] d..2.  3.1: putback_isolated_page: (__putback_isolated_page+0x0/0x30) "
     f"page={_page(512)} order=9 mt=1 vmemmap={VM:#x}", UntracedRecord("putback_isolated_page", 512, 9)),
    (f"take_page_off_buddy: (take_page_off_buddy+0x0/0x120) page={_page(77)} vmemmap={VM:#x}",
     UntracedRecord("take_page_off_buddy", 77, 0)),
    ("free_unaccepted: (__free_unaccepted+0x0/0x90) page=0xffffea0000040000 vmemmap=0xffffea0000000000",
     UntracedRecord("free_unaccepted", 0x1000, 10)),
    # no vmemmap= (kernels without the symbol): VMEMMAP_START is assumed
    ("isolate_free_page: (__isolate_free_page+0x0/0x1e0) page=0xffffea0000000080 order=0",
     UntracedRecord("isolate_free_page", 2, 0)),
    # return probes: outcome only (0 done, -1 refused)
    ("isolate_free_page_ret: (isolate_freepages_block+0x2b4/0x5a0 <- __isolate_free_page) ret=8",
     UntracedRecord("isolate_free_page_ret", -1, 0)),
    ("isolate_free_page_ret: (isolate_freepages_block+0x2b4/0x5a0 <- __isolate_free_page) ret=0",
     UntracedRecord("isolate_free_page_ret", -1, -1)),
    ("split_free_page_ret: (isolate_single_pageblock+0x1/0x2 <- split_free_page) ret=0",
     UntracedRecord("split_free_page_ret", -1, 0)),
    ("split_free_page_ret: (isolate_single_pageblock+0x1/0x2 <- split_free_page) ret=-2",
     UntracedRecord("split_free_page_ret", -1, -1)),
    ("take_page_off_buddy_ret: (memory_failure+0x1/0x2 <- take_page_off_buddy) ret=0",
     UntracedRecord("take_page_off_buddy_ret", -1, -1)),
    # ranges: physical [start, end) and [start_pfn, end_pfn)
    ("tdx_accept_memory: (tdx_accept_memory+0x0/0x10) start=0x100000000 end=0x100400000",
     UntracedRecord("tdx_accept_memory", 0x100000, 10)),
    ("snp_accept_memory: (snp_accept_memory+0x0/0x10) start=0x200000 end=0x203000",
     UntracedRecord("snp_accept_memory", 0x200, -1)),
    ("offline_isolated_pages: (__offline_isolated_pages+0x0/0x1) start_pfn=32768 end_pfn=65536",
     UntracedRecord("offline_isolated_pages", 32768, 15)),
    # 6.12+: the folio of compaction_free (order not fetched), __accept_page's page (order 10), nr= runs, vmb=
    ("compaction_free: (compaction_free+0x4/0x90) folio=0xffffea0000000400 vmemmap=0xffffea0000000000",
     UntracedRecord("compaction_free", 16, -1)),
    ("accept_page: (__accept_page+0x4/0x90) page=0xffffea0000100000 vmemmap=0xffffea0000000000",
     UntracedRecord("accept_page", 0x4000, 10)),
    ("free_prepared_contig_range: (free_prepared_contig_range+0x4/0x9) page=0xffffea0000000400 nr=16 vmb=0xffffea0000000000",
     UntracedRecord("free_prepared_contig_range", 16, 4)),
    ("split_large_buddy: (split_large_buddy+0x4/0x1c0) page=0xffffea0000008000 order=9 vmemmap=0xffffea0000000000",
     UntracedRecord("split_large_buddy", 0x200, 9)),
    # perf script prints group:event, right-aligned
    (f"sh  12 [001]  5.100000:   pagereplay:isolate_free_page: (__isolate_free_page+0x0/0x1e0) "
     f"page={_page(5)} order=1 vmemmap={VM:#x}", UntracedRecord("isolate_free_page", 5, 1)),
])
def test_parse_untraced(line, want):
    assert parse_untraced(line) == want
    assert parse_untraced(line.encode()) == want
    name, pfn, order = parse_untraced(line)  # a plain (name, pfn, order) triple
    assert (name, pfn, order) == tuple(want)


@pytest.mark.parametrize("line", [
    "mm_page_alloc: page=0x1 pfn=0x1 order=0 migratetype=1 gfp_flags=GFP_KERNEL",
    "    sh-1  [000] .....  1.0: mm_page_free: page=000000001 pfn=0x1234 order=0",
    "myprobe: (do_sys_open+0x0/0xd6) dfd=3",
    "otherGroup:isolate_free_page: (__isolate_free_page+0x0/0x1e0) page=0x1 order=0",
    "",
])
def test_not_ours(line):
    assert parse_untraced(line) is None


def test_struct_page_size_and_fields():
    line = "isolate_free_page: (__isolate_free_page+0x0/0x1e0) page=0xffffea0000000500 order=2 vmemmap=0xffffea0000000000"
    assert parse_untraced(line, struct_page_size=80).pfn == 0x500 // 80
    name, where, f = parse_fields(line)
    assert name == "isolate_free_page" and where == "__isolate_free_page+0x0/0x1e0"
    assert f == {"page": 0xFFFFEA0000000500, "order": 2, "vmemmap": 0xFFFFEA0000000000}


def test_plan_probes_symbols():
    ks = kallsyms_names("ffffffff81200000 T __isolate_free_page\nffffffff81200100 t take_page_off_buddy\n"
                        "ffffffff81200200 t __putback_isolated_page.isra.0\nffffffff82000000 D vmemmap_base\n"
                        "ffffffffc0000000 t split_free_page\t[somemod]\n")
    probes, notes = plan_probes(ks)
    syms = {p.symbol for p in probes}
    assert syms == {"__isolate_free_page", "take_page_off_buddy", "split_free_page"}
    assert any("__putback_isolated_page not in this kernel" in n for n in notes)  # a clone does not count
    assert all("vmemmap=@vmemmap_base" in p.definition() for p in probes if p.pfn_from == "page")
    probes, notes = plan_probes({"__isolate_free_page": "T"})
    assert probes and all("vmemmap" not in p.definition() for p in probes)
    assert any("no vmemmap_base" in n for n in notes)
    assert plan_probes(ks, machine="aarch64")[0] == []
    assert plan_probes(None, None)[0] == []
    probes, _ = plan_probes(None, filter_function_names("__isolate_free_page\ntake_page_off_buddy [mod]\n"))
    assert {p.symbol for p in probes} == {"__isolate_free_page", "take_page_off_buddy"}
