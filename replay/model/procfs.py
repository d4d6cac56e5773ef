"""Parsers of the /proc text a snapshot holds: zoneinfo, buddyinfo, pagetypeinfo, meminfo, iomem, vmstat.

Each returns plain Python data (``replay.model.layout`` assembles a ``MemoryLayout`` from it) and raises
``LayoutError`` with the file name and line number on text it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parsers.errors import PagereplayError

PAGE_SIZE = 4096


class LayoutError(PagereplayError, ValueError):
    """A snapshot file is missing, unreadable or inconsistent; message names file and line."""


def snapshot_error(name: str, lineno: int | None, msg: str) -> LayoutError:
    """A :class:`LayoutError` whose message is ``"<name>:<line>: <msg>"`` (no line: ``"<name>: <msg>"``)."""
    return LayoutError(f"{name}:{lineno}: {msg}" if lineno else f"{name}: {msg}")


NODE_ZONE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+?),?(?:\s+(.*))?$")
_KV = re.compile(r"^\s*([A-Za-z_][\w()]*)\s*(:?)\s+(-?\d+)\s*$")
_PROT = re.compile(r"^\s*protection:\s*\(\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\)\s*$")
_CPU = re.compile(r"^\s*cpu:\s*(\d+)\s*$")
_THRESH = re.compile(r"^\s*vm stats threshold:\s*(-?\d+)\s*$")
_ZONE_FIELDS = {"min", "low", "high", "promo", "boost", "spanned", "present", "managed", "cma",
                "scanned"}


def parse_zoneinfo(text: str, name: str = "zoneinfo") -> list[dict[str, Any]]:
    """Parse /proc/zoneinfo (``zoneinfo_show_print``) into one raw dict per zone.

    Accepts the 4.x-6.x variants: with or without ``per-node stats`` (4.8+), ``boost`` (5.0+),
    ``cma`` and ``promo`` lines, several nodes, unpopulated zones (which print no counters,
    pagesets or start_pfn).  Unknown ``key value`` counters are kept in ``stats``; a line of any
    other shape raises :class:`LayoutError` naming ``name:line``.
    """
    zones: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    section = "zone"  # "node" (per-node stats), "zone", "pcp"
    pcp: dict[str, int] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        m = NODE_ZONE.match(line)
        if m and not (m.group(3) or "").strip():
            if any(z["node"] == int(m.group(1)) and z["name"] == m.group(2) for z in zones):
                raise snapshot_error(name, lineno, f"zone {m.group(2)} of node {m.group(1)} appears twice")
            cur = {"node": int(m.group(1)), "name": m.group(2), "line": lineno, "fields": {},
                   "stats": {}, "node_stats": {}, "pcp": [], "protection": None,
                   "start_pfn": None}
            zones.append(cur)
            section, pcp = "zone", None
            continue
        if cur is None:
            raise snapshot_error(name, lineno, f"expected 'Node N, zone NAME' header, got {line.strip()!r}")
        s = line.strip()
        if s == "per-node stats":
            section = "node"
            continue
        if s == "pagesets":
            section = "pcp"
            continue
        if s.startswith("pages free"):
            v = s[len("pages free"):].strip()
            if not re.fullmatch(r"\d+", v):
                raise snapshot_error(name, lineno, f"bad 'pages free' value {v!r}")
            cur["fields"]["free"] = int(v)
            section = "zone"
            continue
        m = _PROT.match(line)
        if m:
            cur["protection"] = tuple(int(x) for x in m.group(1).split(","))
            continue
        m = _CPU.match(line)
        if m:
            if section != "pcp":
                raise snapshot_error(name, lineno, "'cpu:' line outside 'pagesets'")
            pcp = {"cpu": int(m.group(1)), "line": lineno}
            cur["pcp"].append(pcp)
            continue
        m = _THRESH.match(line)
        if m:
            if pcp is not None:
                pcp["stat_threshold"] = int(m.group(1))
            continue
        m = _KV.match(line)
        if not m:
            raise snapshot_error(name, lineno, f"unrecognised zoneinfo line {s!r}")
        key, colon, val = m.group(1), m.group(2), int(m.group(3))
        if key == "start_pfn":
            cur["start_pfn"] = val
        elif key in ("node_unreclaimable", "all_unreclaimable", "inactive_ratio"):
            cur["stats"][key] = val
        elif section == "pcp" and colon and key in ("count", "high", "batch"):
            if pcp is None:
                raise snapshot_error(name, lineno, f"'{key}:' before any 'cpu:' line")
            pcp[key] = val
        elif section == "node":
            cur["node_stats"][key] = val
        elif key in _ZONE_FIELDS and not colon and section == "zone":
            cur["fields"][key] = val
        else:
            cur["stats"][key] = val
    if not zones:
        raise snapshot_error(name, None, "no 'Node N, zone NAME' section found")
    for z in zones:
        for need in ("spanned", "present"):
            if need not in z["fields"]:
                raise snapshot_error(name, z["line"], f"zone {z['name']} of node {z['node']} has no "
                           f"'{need}' line")
        for p in z["pcp"]:
            missing = [k for k in ("count", "high", "batch") if k not in p]
            if missing:
                raise snapshot_error(name, p["line"], f"zone {z['name']}: cpu {p['cpu']} pageset lacks "
                           f"{', '.join(missing)}")
        _check_zone_values(z, name)
    return zones


def _check_zone_values(z: dict[str, Any], name: str) -> None:
    """The counters ``zoneinfo_show_print`` prints unsigned (``%lu``) are >= 0, ``present`` fits in
    ``spanned`` and ``managed`` in ``present`` (``calculate_node_totalpages``, ``memblock_free_all``),
    and the zone ends below x86-64's 52-bit physical address space."""
    from parsers.ranges import PFN_LIMIT

    f, where = z["fields"], f"zone {z['name']} of node {z['node']}"
    for k, v in sorted(f.items()):
        if v < 0:
            raise snapshot_error(name, z["line"], f"{where}: {k} {v} is negative (the kernel prints it unsigned)")
    for p in z["pcp"]:
        for k in ("count", "high", "batch"):
            if p[k] < 0:
                raise snapshot_error(name, p["line"], f"{where}: cpu {p['cpu']} pageset {k} {p[k]} is negative")
    if f["present"] > f["spanned"]:
        raise snapshot_error(name, z["line"], f"{where}: present {f['present']} exceeds spanned {f['spanned']}")
    if f.get("managed", 0) > f["present"]:
        raise snapshot_error(name, z["line"], f"{where}: managed {f['managed']} exceeds present {f['present']}")
    start = z["start_pfn"] or 0
    if start < 0 or start + f["spanned"] > PFN_LIMIT:
        raise snapshot_error(name, z["line"], f"{where}: pfns [{start:#x}, {start + f['spanned']:#x}) lie outside "
                             f"x86-64's 52-bit physical address space (pfn < {PFN_LIMIT:#x})")


def check_snapshot_text(text: str, name: str) -> None:
    """A /proc file read whole ends in a newline (seq_file prints whole lines): an empty file or a
    last line without one is a copy cut short, whose last number may be cut too."""
    if not text.strip():
        raise snapshot_error(name, None, "empty file (a /proc snapshot file always has lines)")
    if not text.endswith("\n"):
        raise snapshot_error(name, text.count("\n") + 1, "cut short: the last line has no newline")


def _int_row(values: Sequence[str], name: str, lineno: int) -> tuple[list[int], bool]:
    out, overflow = [], False
    for v in values:
        if v.startswith(">"):  # pagetypeinfo_showfree_print's capped count
            overflow, v = True, v[1:]
        if not v.isdigit():
            raise snapshot_error(name, lineno, f"expected a count, got {v!r}")
        out.append(int(v))
    return out, overflow


def parse_buddyinfo(text: str, name: str = "buddyinfo") -> dict[tuple[int, str], list[int]]:
    """Parse /proc/buddyinfo (``frag_show_print``): (node, zone) -> nr_free per order."""
    out: dict[tuple[int, str], list[int]] = {}
    width = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = NODE_ZONE.match(raw.strip())
        if not m or not m.group(3):
            raise snapshot_error(name, lineno, f"expected 'Node N, zone NAME counts...', got {raw.strip()!r}")
        counts, _ = _int_row(m.group(3).split(), name, lineno)
        if width is not None and len(counts) != width:
            raise snapshot_error(name, lineno, f"{len(counts)} orders, earlier lines had {width}")
        width = len(counts)
        key = (int(m.group(1)), m.group(2))
        if key in out:
            raise snapshot_error(name, lineno, f"zone {key[1]} of node {key[0]} appears twice")
        out[key] = counts
    if not out:
        raise snapshot_error(name, None, "no 'Node N, zone NAME counts...' line")
    return out


def parse_pagetypeinfo(text: str, name: str = "pagetypeinfo") -> dict[str, Any]:
    """Parse /proc/pagetypeinfo (``pagetypeinfo_show``).

    Returns ``{"pageblock_order", "migratetype_names", "nr_orders", "free": {(node, zone):
    {mt: [counts]}}, "overflow": set((node, zone)), "blocks": {(node, zone): {mt: n}}}``.  The
    migratetype column set is taken from the headers, so CONFIG_CMA (a "CMA" column) and
    CONFIG_MEMORY_ISOLATION variants both parse; "Number of mixed blocks" (CONFIG_PAGE_OWNER)
    is skipped.
    """
    res: dict[str, Any] = {"pageblock_order": None, "migratetype_names": None, "nr_orders": None,
                           "free": {}, "overflow": set(), "blocks": {}}
    section = None
    names: list[str] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s:
            continue
        if s.startswith("Page block order:"):
            v = s.split(":", 1)[1].strip()
            if not v.isdigit():
                raise snapshot_error(name, lineno, f"bad page block order {v!r}")
            res["pageblock_order"] = int(v)
            continue
        if s.startswith("Pages per block:"):
            continue
        if s.startswith("Free pages count per migrate type at order"):
            orders = s[len("Free pages count per migrate type at order"):].split()
            if orders != [str(i) for i in range(len(orders))] or not orders:
                raise snapshot_error(name, lineno, "bad order header")
            res["nr_orders"] = len(orders)
            section = "free"
            continue
        if s.startswith("Number of blocks type"):
            names = s[len("Number of blocks type"):].split()
            if res["migratetype_names"] not in (None, tuple(names)):
                raise snapshot_error(name, lineno, "migratetype columns differ between nodes")
            res["migratetype_names"] = tuple(names)
            section = "blocks"
            continue
        if s.startswith("Number of mixed blocks"):
            section = "mixed"
            continue
        m = NODE_ZONE.match(s)
        if not m or not m.group(3):
            raise snapshot_error(name, lineno, f"unrecognised pagetypeinfo line {s!r}")
        key = (int(m.group(1)), m.group(2))
        rest = m.group(3)
        if section == "free":
            t = re.match(r"^type\s+(\S+)\s+(.*)$", rest)
            if not t:
                raise snapshot_error(name, lineno, f"expected 'type NAME counts...', got {rest!r}")
            counts, ovf = _int_row(t.group(2).split(), name, lineno)
            if len(counts) != res["nr_orders"]:
                raise snapshot_error(name, lineno, f"{len(counts)} counts for {res['nr_orders']} orders")
            res["free"].setdefault(key, {})[t.group(1)] = counts
            if ovf:
                res["overflow"].add(key)
        elif section == "blocks":
            counts, _ = _int_row(rest.split(), name, lineno)
            if names is None or len(counts) != len(names):
                raise snapshot_error(name, lineno, "block counts do not match the migratetype header")
            res["blocks"][key] = dict(zip(names, counts))
        elif section == "mixed":
            continue
        else:
            raise snapshot_error(name, lineno, "zone line before any section header")
    if not res["free"]:
        raise snapshot_error(name, None, "no 'Free pages count per migrate type' rows")
    return res


def parse_meminfo(text: str, name: str = "meminfo") -> dict[str, int]:
    """Parse /proc/meminfo: key -> value (kB for sized fields, a count for HugePages_*)."""
    out: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = re.match(r"^([\w()]+):\s+(\d+)(?:\s+kB)?\s*$", raw.strip())
        if not m:
            raise snapshot_error(name, lineno, f"unrecognised meminfo line {raw.strip()!r}")
        out[m.group(1)] = int(m.group(2))
    if "MemTotal" not in out:
        raise snapshot_error(name, None, "no MemTotal line (meminfo_proc_show prints it first)")
    return out


def parse_iomem(text: str, name: str = "iomem",
                page_size: int = PAGE_SIZE) -> tuple[tuple[int, int], ...]:
    """System RAM ranges of /proc/iomem as merged [start_pfn, end_pfn) (whole pages only).

    A file read without CAP_SYS_ADMIN shows all-zero addresses; it then yields ().
    """
    ranges = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = re.match(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+)\s*:\s*(.*?)\s*$", raw)
        if not m:
            raise snapshot_error(name, lineno, f"unrecognised iomem line {raw.strip()!r}")
        if m.group(3) != "System RAM":
            continue
        start, end = int(m.group(1), 16), int(m.group(2), 16) + 1
        if end <= start + 1 and start == 0:
            continue  # zeroed addresses (unprivileged read)
        s_pfn, e_pfn = -(-start // page_size), end // page_size
        if e_pfn > s_pfn:
            ranges.append((s_pfn, e_pfn))
    merged: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return tuple(merged)


def parse_vmstat(text: str, name: str = "vmstat") -> dict[str, int]:
    """/proc/vmstat (``vmstat_show``): counter -> value; a line that is not ``name value`` raises
    :class:`LayoutError` naming ``name:line``."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not re.fullmatch(r"[a-z_0-9]+", parts[0]) or not re.fullmatch(r"-?\d+", parts[1]):
            raise snapshot_error(name, lineno, f"expected 'counter value', got {line.strip()[:80]!r}")
        out[parts[0]] = int(parts[1])
    return out


def read_vmstat(folder: str | Path | None) -> dict[str, int]:
    """The ``vmstat`` file of a snapshot folder (:func:`parse_vmstat`; empty when absent)."""
    if folder is None:
        return {}
    p = Path(folder) / "vmstat"
    if not p.is_file():
        return {}
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LayoutError(f"{p}: cannot read: {e}") from None
    check_snapshot_text(text, str(p))
    return parse_vmstat(text, str(p))
