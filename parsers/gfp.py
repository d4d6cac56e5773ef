"""gfp_t bit layouts per kernel version, and the decoder of ``show_gfp_flags()`` text.

``mm_page_alloc`` prints ``gfp_flags`` as names (``include/trace/events/mmflags.h``:
``__print_flags`` over a table of composites first, then single bits, leftovers as ``0x...``).
The names are the same in every version but some masks are not, so the text path decodes with
the table of the traced kernel when its release is known (``--kernel-version``, a capture
folder's ``uname.txt``) and with the 6.1 table otherwise; the binary readers record the raw
``gfp_t`` and need none.  Values are those of ``include/linux/gfp_types.h`` for x86-64 builds
(no ``CONFIG_KASAN_HW_TAGS``: an arm64 MTE option, so ``__GFP_SKIP_KASAN*`` are 0 and not part
of ``GFP_HIGHUSER_MOVABLE``; no ``CONFIG_LOCKDEP``), checked against the raw masks of the
trace.dat / perf.data captures of 6.1.192 and 6.12.117 (``docs/kernel-profiles.md`` §5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

#: include/linux/gfp_types.h@6.1.192: ``#define ___GFP_*`` values
_BITS_6_1: dict[str, int] = {
    "__GFP_DMA": 0x01,
    "__GFP_HIGHMEM": 0x02,
    "__GFP_DMA32": 0x04,
    "__GFP_MOVABLE": 0x08,
    "__GFP_RECLAIMABLE": 0x10,
    "__GFP_HIGH": 0x20,
    "__GFP_IO": 0x40,
    "__GFP_FS": 0x80,
    "__GFP_ZERO": 0x100,
    "__GFP_ATOMIC": 0x200,  # removed in v6.4 ("mm: discard __GFP_ATOMIC"): bit 9 unused after
    "__GFP_DIRECT_RECLAIM": 0x400,
    "__GFP_KSWAPD_RECLAIM": 0x800,
    "__GFP_WRITE": 0x1000,
    "__GFP_NOWARN": 0x2000,
    "__GFP_RETRY_MAYFAIL": 0x4000,
    "__GFP_NOFAIL": 0x8000,
    "__GFP_NORETRY": 0x10000,
    "__GFP_MEMALLOC": 0x20000,
    "__GFP_COMP": 0x40000,
    "__GFP_NOMEMALLOC": 0x80000,
    "__GFP_HARDWALL": 0x100000,
    "__GFP_THISNODE": 0x200000,
    "__GFP_ACCOUNT": 0x400000,
    "__GFP_ZEROTAGS": 0x800000,
    # printed only by CONFIG_KASAN_HW_TAGS / CONFIG_LOCKDEP builds, which then have these bits
    "__GFP_SKIP_ZERO": 0x1000000,
    "__GFP_SKIP_KASAN_UNPOISON": 0x2000000,
    "__GFP_SKIP_KASAN_POISON": 0x4000000,
    "__GFP_NOLOCKDEP": 0x8000000,
}

#: include/linux/gfp_types.h@6.12.117: the ``___GFP_*_BIT`` enum; bit 9 unused; with
#: CONFIG_SLAB_OBJ_EXT=y (Debian) and no KASAN_HW_TAGS / LOCKDEP, ``__GFP_NO_OBJ_EXT`` is bit 24
#: (6.12 prints it as ``0x1000000``; 6.18 by name: ``TRACE_GFP_FLAGS`` in mmflags.h@6.18.15)
_BITS_6_12: dict[str, int] = {k: v for k, v in _BITS_6_1.items() if v <= 0x800000 and k != "__GFP_ATOMIC"}
_BITS_6_12["__GFP_NO_OBJ_EXT"] = 0x1000000

#: include/linux/gfp_types.h@7.3.4: ``__GFP_NO_OBJ_EXT`` removed
_BITS_7_3: dict[str, int] = {k: v for k, v in _BITS_6_12.items() if k != "__GFP_NO_OBJ_EXT"}


def _names(b: Mapping[str, int], *, atomic: int, nowait: int) -> dict[str, int]:
    """Every name ``show_gfp_flags()`` can print, with its mask (gfp_types.h composites)."""
    reclaim = b["__GFP_DIRECT_RECLAIM"] | b["__GFP_KSWAPD_RECLAIM"]
    kernel = reclaim | b["__GFP_IO"] | b["__GFP_FS"]
    user = kernel | b["__GFP_HARDWALL"]
    highuser = user | b["__GFP_HIGHMEM"]
    highuser_movable = highuser | b["__GFP_MOVABLE"]  # | __GFP_SKIP_KASAN*: 0 on x86-64
    thp_light = (highuser_movable | b["__GFP_COMP"] | b["__GFP_NOMEMALLOC"] | b["__GFP_NOWARN"]) & ~reclaim
    return {
        **b,
        "__GFP_RECLAIM": reclaim,
        "GFP_ATOMIC": atomic,
        "GFP_KERNEL": kernel,
        "GFP_KERNEL_ACCOUNT": kernel | b["__GFP_ACCOUNT"],
        "GFP_NOWAIT": nowait,
        "GFP_NOIO": reclaim,
        "GFP_NOFS": reclaim | b["__GFP_IO"],
        "GFP_USER": user,
        "GFP_DMA": b["__GFP_DMA"],
        "GFP_DMA32": b["__GFP_DMA32"],
        "GFP_HIGHUSER": highuser,
        "GFP_HIGHUSER_MOVABLE": highuser_movable,
        "GFP_TRANSHUGE_LIGHT": thp_light,
        "GFP_TRANSHUGE": thp_light | b["__GFP_DIRECT_RECLAIM"],
        "__GFP_WAIT": b["__GFP_DIRECT_RECLAIM"],  # pre-4.4 name, kept so old traces decode
        "none": 0,
    }


_B61, _B612 = _BITS_6_1, _BITS_6_12
#: table name -> (name -> mask); the name goes into the parsed table's ``gfp_bit_table`` metadata
GFP_TABLES: Mapping[str, Mapping[str, int]] = MappingProxyType({
    # GFP_ATOMIC = __GFP_HIGH|__GFP_ATOMIC|__GFP_KSWAPD_RECLAIM; GFP_NOWAIT = __GFP_KSWAPD_RECLAIM
    "linux-6.1": MappingProxyType(_names(_B61, atomic=0xA20, nowait=0x800)),
    # GFP_ATOMIC = __GFP_HIGH|__GFP_KSWAPD_RECLAIM; GFP_NOWAIT gains __GFP_NOWARN (0x2800 in the
    # 6.12.117 perf.data / trace.dat raw masks)
    "linux-6.12": MappingProxyType(_names(_B612, atomic=0x820, nowait=0x2800)),
    "linux-7.3": MappingProxyType(_names(_BITS_7_3, atomic=0x820, nowait=0x2800)),
})  # fmt: skip
DEFAULT_TABLE = "linux-6.1"

_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def release_version(release: str | None) -> tuple[int, int, int] | None:
    """``uname -r`` text (``6.12.117+deb12-amd64``, ``6.1.0-56-amd64``) -> (major, minor, patch), or
    ``None`` when it holds no version.  (Debian's ``6.1.0-56`` ABI name gives patch 0: the upstream
    patch level is in ``/proc/version``, see ``parsers.capture.folder.upstream_version``.)"""
    if not release:
        return None
    m = _RELEASE.search(release)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def table_for_release(release: str | None) -> str:
    """The gfp table of a kernel release (``DEFAULT_TABLE`` when unknown)."""
    v = release_version(release)
    if v is None:
        return DEFAULT_TABLE
    if v >= (7, 0, 0):
        return "linux-7.3"
    if v >= (6, 4, 0):  # __GFP_ATOMIC gone (v6.4); bit 24 is __GFP_NO_OBJ_EXT from v6.10
        return "linux-6.12"
    return "linux-6.1"


def decode_gfp(text: str, table: str = DEFAULT_TABLE) -> int | None:
    """Decode a ``show_gfp_flags()`` string to a mask with ``table``; ``None`` if a token is unknown.

    >>> hex(decode_gfp("GFP_KERNEL|__GFP_ZERO"))
    '0xcc0'
    >>> hex(decode_gfp("GFP_NOWAIT", "linux-6.12"))
    '0x2800'
    """
    names = GFP_TABLES[table]
    mask = 0
    for tok in text.split("|"):
        tok = tok.strip()
        if not tok:
            continue
        m = names.get(tok)
        if m is not None:
            mask |= m
        elif tok.startswith("0x"):
            try:
                mask |= int(tok, 16)
            except ValueError:
                return None
        else:
            return None
    return mask
