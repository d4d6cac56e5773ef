"""Cost presets for memory acceptance: firmware-call costs per kind, each figure with its source.

A :class:`CostPreset` prices what ``arch_accept_memory(start, end)`` does on one platform and
host backing (kernel-notes §2.5-2.7):

* **TDX** (``tdx_accept_memory()``, arch/x86/coco/tdx/tdx-shared.c): per 2 MiB-aligned piece
  one ``TDG.MEM.PAGE.ACCEPT`` at 2M; on a 4K-backed host that call fails and 512 4K calls
  follow.  Each successful call on pending memory is a TD exit with ``TDH.MEM.PAGE.AUG`` on the
  host, and the TDX module initialises (zeroes) the page.  1G attempts only happen for 1G-aligned
  runs of at least 1 GiB (never at runtime: the page allocator asks for <= 6 MiB).
* **SEV-SNP** (``snp_accept_memory()`` -> ``set_pages_state()``, arch/x86/coco/sev/core.c):
  PSC descriptors of up to ``VMGEXIT_PSC_MAX_ENTRY`` = 64 entries (2M where aligned, else 4K),
  one VMGEXIT per descriptor, host work per page, then ``pval_pages()``: PVALIDATE 2M, or 512
  PVALIDATE 4K after a size mismatch on a 4K-backed RMP; since 7b306dfa326f (6.16, stable 6.12)
  ``sev_evict_cache()`` reads two cache lines per validated 4K page.

Every numeric figure has an entry in ``sources``: a kernel-notes §3 citation, "fitted: ..." (with
the published number it was fitted to; the fit is done by the functions below so the arithmetic
is visible), or "estimate".

TOML overrides (``--costs FILE.toml`` / ``pagereplay costs --file``)::

    [costs.my-tdx]
    base = "tdx-4k"            # required for a new name; a preset name overrides that preset
    cpu_ghz = 2.6
    [costs.my-tdx.sources]     # optional: where your figures come from
    cpu_ghz = "lscpu on host X"
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parsers.errors import PagereplayError
from replay.acceptance.policies import CALLS_MODELS, CallsModel
from replay.acceptance.tomlconf import check_number, read_named_tables, unknown_key
from replay.jit import kernel

__all__ = [
    "CostPreset", "CostConfigError", "COST_PRESETS", "CALL_KIND_NAMES", "CallKind", "NR_CALL_KINDS",
    "NR_FIRMWARE_CALL_KINDS", "RangeCost", "accept_range_cost", "unit_accept_cost", "cost_vector",
    "arch_accept_cost", "parallel_accept_ns", "load_costs", "all_costs", "get_costs",
    "fit_tdx_exit_4k_ns", "fit_snp_host_4k_ns", "PUBLISHED",
]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4096
PMD = 2 * MiB
PUD = 1 * GiB


class CostConfigError(PagereplayError, ValueError):
    """A cost preset or cost TOML file is invalid; the message names file, key and allowed values."""


# ------------------------------------------------------------------ published numbers (kernel-notes §3)
PUBLISHED: dict[str, dict[str, Any]] = {
    "tdx_eager_90g": {
        "bytes": 90 * GiB, "seconds_1cpu": 60.0, "seconds_4cpu": 40.0,
        "text": "On single vCPU it takes about a minute to accept 90GiB of memory. [...] It is 40 "
                "seconds with 4 vCPU, but it doesn't scale past that in my setup.",
        "source": "Kirill Shutemov, 24 Oct 2024, ihzvi5pwn5hrn4ky2ehjqztjxoixaiaby4igmeihqfehy2vrii"
                  "@tsg6j5qvmyrm (host maps private memory at 4K only)",
    },
    "snp_eager_128g": {
        "guest_bytes": 128 * GiB, "accepted_bytes": 124 * GiB, "lazy_s": 22.0, "eager_s": 227.0,
        "delta_s": 205.0,
        "text": "128 GB guest: 22 s with accept_memory=lazy; 3 min 47 s with accept_memory=eager",
        "source": "Ashish Kalra (AMD), Feb 2025, kexec thread root 20241021034553.18824-1-yan.y.zhao"
                  "@intel.com; '~124 GB' accepted per kernel-notes §3 derived row",
    },
    "hansen_2021": {
        "calls_per_2m": 512, "cycles_per_call": 1000, "cycles_per_2m": 500_000,
        "text": "You have to make at least 512 calls into the SEAM module. Assuming they're "
                "syscall-ish, so ~1,000 cycles each, that's ~500,000 cycles",
        "source": "Dave Hansen, f7667988-4d6c-461e-901d-a6c3612b2f0f@intel.com (10 Aug 2021)",
    },
    "kirill_2021": {
        "calls_per_2m": 2, "calls_per_4m": 3,
        "text": "I hope to get away with 2 calls per 2M: one MapGPA and one TDACCEPTPAGE (or 3 for "
                "MAXORDER -- 4M -- pages)",
        "source": "Kirill Shutemov, 20210812210846.bfalflrvn4bfpyyh@box.shutemov.name",
    },
    "dstack_2026": {
        "td_exits_per_block": 1024,
        "text": "1024 TD exits plus TDH.MEM.PAGE.AUG per allocation",
        "source": "https://github.com/Dstack-TEE/dstack/pull/1220",
    },
    "zeroing_2020": {
        "erms_ms_per_gib": 261.0, "movnti_ms_per_gib": 67.0,
        "source": "Cannon Matthews, 20200307010353.172991-1-cannonmatthews@google.com",
    },
}

SRC_MOVNTI = ("kernel-notes §3: movnti 67 ms/GiB (~15 GiB/s) single thread, Cannon Matthews "
              "20200307010353.172991-1-cannonmatthews@google.com; assumes the TDX module's "
              "MOVDIR64B page init runs at non-temporal-store speed")
SRC_ERMS = ("kernel-notes §3: clear_page_erms 261 ms/GiB (~3.8 GiB/s) single thread, Cannon Matthews "
            "20200307010353.172991-1-cannonmatthews@google.com; the host clears each guest_memfd "
            "page with clear_page()")
SRC_HANSEN = ("estimate: Dave Hansen 2021 'syscall-ish, so ~1,000 cycles each' "
              "(f7667988-4d6c-461e-901d-a6c3612b2f0f@intel.com)")


@dataclass(frozen=True)
class CostPreset:
    """Costs of the firmware calls behind ``arch_accept_memory()`` on one platform / host backing.

    Times in ns unless the name says cycles (converted with ``cpu_ghz``); bandwidths in GiB/s.
    ``sources[field]`` says where each figure comes from.
    """

    name: str
    platform: str  # "tdx" | "snp"
    host_backing: str  # "4K" | "2M": page size the host maps private memory with
    description: str = ""
    cpu_ghz: float = 2.0
    zero_gib_s: float = 15.0  # page initialisation (zeroing) bandwidth of one CPU
    accept_ceiling_gib_s: float = 2.25  # aggregate ceiling of parallel acceptance (all CPUs)
    # TDX
    tdcall_cycles: float = 0.0  # bare TDCALL into the TDX module (guest side)
    tdx_exit_4k_ns: float = 0.0  # TD exit + host TDH.MEM.PAGE.AUG per successful 4K accept
    tdx_exit_2m_ns: float = 0.0  # the same for a 2M accept (2M-backed host)
    tdx_fail_cycles: float = 0.0  # TDG.MEM.PAGE.ACCEPT at a larger size that fails (size mismatch)
    mapgpa_ns: float = 0.0  # TDVMCALL MapGPA round trip (only the 2021 "mapgpa+accept" plan)
    # SNP
    psc_vmgexit_ns: float = 0.0  # one GHCB page-state-change VMGEXIT round trip
    psc_max_entries: int = 64  # VMGEXIT_PSC_MAX_ENTRY (kernel; the GHCB allows 253)
    psc_host_4k_ns: float = 0.0  # host work per 4K page of a PSC (RMPUPDATE, guest_memfd), no zeroing
    psc_host_2m_ns: float = 0.0  # host work per 2M entry on a 2M-backed host, no zeroing
    pvalidate_4k_cycles: float = 0.0
    pvalidate_2m_cycles: float = 0.0
    pvalidate_fail_cycles: float = 0.0  # PVALIDATE 2M that fails with PVALIDATE_FAIL_SIZEMISMATCH
    evict_cache: bool = False  # sev_evict_cache() after validation (7b306dfa326f)
    evict_4k_ns: float = 0.0  # two cache-line reads per validated 4K page
    # bookkeeping around the call (both platforms)
    list_op_ns: float = 100.0  # zone->lock section: list_del + account_freepages + NR_UNACCEPTED
    bitmap_op_ns: float = 50.0  # unaccepted_memory_lock section: accepting_list scan, bitmap_clear
    sources: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    source: str = "preset"

    def __post_init__(self) -> None:
        where = f"{self.source}: [costs.{self.name}]"
        if self.platform not in ("tdx", "snp"):
            raise CostConfigError(f"{where} key 'platform': {self.platform!r}; allowed: tdx, snp")
        if self.host_backing not in ("4K", "2M"):
            raise CostConfigError(f"{where} key 'host_backing': {self.host_backing!r}; allowed: 4K, 2M")
        for f in dataclasses.fields(self):
            if f.name in _NUMERIC:
                v = getattr(self, f.name)
                # at most 1e12 (ns, cycles): a unit's derived cost stays an int64 of ns
                check_number(where, f.name, v, CostConfigError, maximum=1e12)
        for k in ("cpu_ghz", "zero_gib_s", "accept_ceiling_gib_s"):  # divisors: 1e-3 GHz, 1 MiB/s at least
            check_number(where, k, getattr(self, k), CostConfigError, minimum=1e-3, maximum=1e12)
        if not isinstance(self.psc_max_entries, int) or not 1 <= self.psc_max_entries <= 253:
            raise CostConfigError(f"{where} key 'psc_max_entries': {self.psc_max_entries!r}; allowed: "
                                  "1..253 (VMGEXIT_PSC_MAX_COUNT)")

    # ------------------------------------------------------------- derived per-call costs (ns)
    def cycles_ns(self, cycles: float) -> float:
        return cycles / self.cpu_ghz

    def zero_ns(self, nbytes: int) -> float:
        return nbytes * 1e9 / (self.zero_gib_s * GiB)

    @property
    def tdx_accept_4k_ns(self) -> float:
        """One successful 4K TDG.MEM.PAGE.ACCEPT: call + exit/AUG + page init."""
        return self.cycles_ns(self.tdcall_cycles) + self.tdx_exit_4k_ns + self.zero_ns(PAGE)

    def figures(self) -> dict[str, Any]:
        """Every field except ``sources`` (for tables and JSON)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sources"}

    def as_dict(self) -> dict[str, Any]:
        d = self.figures()
        d["sources"] = dict(self.sources)
        d["derived"] = {"unit_2m_ns": unit_accept_cost(self).ns,
                        "unit_2m_calls": unit_accept_cost(self).firmware_calls,
                        "single_stream_gib_s": PMD / unit_accept_cost(self).ns * 1e9 / GiB}
        return d


_NUMERIC = {f.name for f in dataclasses.fields(CostPreset)
            if f.type in ("float", float, "int", int)}

# ------------------------------------------------------------------ call kinds and the cost vector
class CallKind(enum.IntEnum):
    """What ``arch_accept_memory()`` issues, counted per kind (index into a ``calls`` array; the
    tables name each kind by its lower-case name, :data:`CALL_KIND_NAMES`)."""

    TDX_ACCEPT_4K = 0
    TDX_ACCEPT_2M = 1
    TDX_ACCEPT_FAIL = 2  # failed larger-size attempt (2M on a 4K host; 1G)
    TDX_MAPGPA = 3
    SNP_PSC_VMGEXIT = 4
    SNP_PVALIDATE_4K = 5
    SNP_PVALIDATE_2M = 6
    SNP_PVALIDATE_FAIL = 7
    SNP_EVICT_4K = 8  # not a call: pages whose first/last cache line is read


NR_CALL_KINDS = len(CallKind)
NR_FIRMWARE_CALL_KINDS = int(CallKind.SNP_EVICT_4K)  # the kinds before it are firmware/hypervisor calls or instructions
CALL_KIND_NAMES = tuple(k.name.lower() for k in CallKind)

CV_PLATFORM = 0  # 0 tdx, 1 snp
CV_BACKING_2M = 1
CV_ACCEPT_4K = 2  # ns, TDX: call + exit, without zeroing
CV_ACCEPT_2M = 3
CV_FAIL = 4
CV_MAPGPA = 5
CV_VMGEXIT = 6
CV_PSC_MAX = 7
CV_HOST_4K = 8
CV_HOST_2M = 9
CV_PVAL_4K = 10
CV_PVAL_2M = 11
CV_PVAL_FAIL = 12
CV_EVICT = 13  # ns per 4K page, 0 when evict_cache is off
CV_ZERO_NS_PER_BYTE = 14
CV_LIST_OP = 15
CV_BITMAP_OP = 16
CV_CEILING_BYTES_PER_NS = 17
CV_LEN = 18


def cost_vector(c: CostPreset) -> np.ndarray:
    """The preset as a float64 array (indices ``CV_*``) for the hot functions."""
    v = np.zeros(CV_LEN, dtype=np.float64)
    v[CV_PLATFORM] = 0.0 if c.platform == "tdx" else 1.0
    v[CV_BACKING_2M] = 1.0 if c.host_backing == "2M" else 0.0
    v[CV_ACCEPT_4K] = c.cycles_ns(c.tdcall_cycles) + c.tdx_exit_4k_ns
    v[CV_ACCEPT_2M] = c.cycles_ns(c.tdcall_cycles) + c.tdx_exit_2m_ns
    v[CV_FAIL] = c.cycles_ns(c.tdx_fail_cycles)
    v[CV_MAPGPA] = c.mapgpa_ns
    v[CV_VMGEXIT] = c.psc_vmgexit_ns
    v[CV_PSC_MAX] = float(c.psc_max_entries)
    v[CV_HOST_4K] = c.psc_host_4k_ns
    v[CV_HOST_2M] = c.psc_host_2m_ns
    v[CV_PVAL_4K] = c.cycles_ns(c.pvalidate_4k_cycles)
    v[CV_PVAL_2M] = c.cycles_ns(c.pvalidate_2m_cycles)
    v[CV_PVAL_FAIL] = c.cycles_ns(c.pvalidate_fail_cycles)
    v[CV_EVICT] = c.evict_4k_ns if c.evict_cache else 0.0
    v[CV_ZERO_NS_PER_BYTE] = 1e9 / (c.zero_gib_s * GiB)
    v[CV_LIST_OP] = c.list_op_ns
    v[CV_BITMAP_OP] = c.bitmap_op_ns
    v[CV_CEILING_BYTES_PER_NS] = c.accept_ceiling_gib_s * GiB / 1e9
    return v


@kernel(nrt=True)
def arch_accept_cost(cv: np.ndarray, calls_model: int, start: int, end: int,
                     calls: np.ndarray) -> float:
    """ns of one ``arch_accept_memory(start, end)`` (physical bytes); adds call counts to ``calls``.

    Models ``tdx_accept_memory()`` (try 1G, 2M, then 4K per step) and ``snp_accept_memory()``
    (``__set_pages_state()`` batches of ``psc_max`` entries, ``pval_pages()`` with the 4K
    fallback, ``sev_evict_cache()``).  Plain arithmetic on ints and floats (numba-compatible).
    """
    n = end - start
    if n <= 0:
        return 0.0
    n1g = end // PUD - (start + PUD - 1) // PUD
    if n1g < 0:
        n1g = 0
    m2 = end // PMD - (start + PMD - 1) // PMD
    if m2 < 0:
        m2 = 0
    r4 = (n - m2 * PMD) // PAGE
    if calls_model == CallsModel.PER_4K:  # Hansen 2021: every page its own call
        r4 += m2 * 512
        m2 = 0
        n1g = 0
    ns = n * cv[CV_ZERO_NS_PER_BYTE]
    backing_2m = cv[CV_BACKING_2M] > 0.5
    if cv[CV_PLATFORM] < 0.5:  # TDX
        calls[CallKind.TDX_ACCEPT_FAIL] += n1g
        ns += n1g * cv[CV_FAIL]
        if backing_2m:
            calls[CallKind.TDX_ACCEPT_2M] += m2
            ns += m2 * cv[CV_ACCEPT_2M]
            n4 = r4
        else:
            calls[CallKind.TDX_ACCEPT_FAIL] += m2
            ns += m2 * cv[CV_FAIL]
            n4 = r4 + m2 * 512
        calls[CallKind.TDX_ACCEPT_4K] += n4
        ns += n4 * cv[CV_ACCEPT_4K]
        if calls_model == CallsModel.MAPGPA_ACCEPT:
            calls[CallKind.TDX_MAPGPA] += 1
            ns += cv[CV_MAPGPA]
    else:  # SEV-SNP; "mapgpa+accept" is what the PSC already is
        entries = m2 + r4
        psc_max = int(cv[CV_PSC_MAX])
        exits = (entries + psc_max - 1) // psc_max
        calls[CallKind.SNP_PSC_VMGEXIT] += exits
        ns += exits * cv[CV_VMGEXIT]
        if backing_2m:
            ns += m2 * cv[CV_HOST_2M] + r4 * cv[CV_HOST_4K]
            calls[CallKind.SNP_PVALIDATE_2M] += m2
            ns += m2 * cv[CV_PVAL_2M]
            n4 = r4
        else:
            ns += (m2 * 512 + r4) * cv[CV_HOST_4K]
            calls[CallKind.SNP_PVALIDATE_FAIL] += m2
            ns += m2 * cv[CV_PVAL_FAIL]
            n4 = r4 + m2 * 512
        calls[CallKind.SNP_PVALIDATE_4K] += n4
        ns += n4 * cv[CV_PVAL_4K]
        if cv[CV_EVICT] > 0.0:
            pages = n // PAGE
            calls[CallKind.SNP_EVICT_4K] += pages
            ns += pages * cv[CV_EVICT]
    return ns


@dataclass(frozen=True)
class RangeCost:
    """Cost of accepting one range: ns and calls by kind (``CALL_KIND_NAMES``)."""

    ns: float
    calls: dict[str, int]

    @property
    def firmware_calls(self) -> int:
        return sum(v for k, v in self.calls.items() if k != "snp_evict_4k")

    def cycles(self, ghz: float) -> float:
        return self.ns * ghz


def _calls_model_index(calls_model: str) -> int:
    if calls_model not in CALLS_MODELS:
        raise CostConfigError(f"calls_model {calls_model!r}; allowed: {', '.join(CALLS_MODELS)}")
    return int(CallsModel.of(calls_model))


def accept_range_cost(costs: CostPreset, start: int, size: int, calls_model: str = "merged") -> RangeCost:
    """Cost of one ``arch_accept_memory(start, start + size)`` call (no bitmap, no guard)."""
    calls = np.zeros(NR_CALL_KINDS, dtype=np.int64)
    ns = arch_accept_cost(cost_vector(costs), _calls_model_index(calls_model), start, start + size, calls)
    return RangeCost(float(ns), {k: int(v) for k, v in zip(CALL_KIND_NAMES, calls) if v})


def unit_accept_cost(costs: CostPreset, unit_bytes: int = PMD, calls_model: str = "merged") -> RangeCost:
    """Cost of accepting one aligned unit (default one 2 MiB bitmap unit)."""
    return accept_range_cost(costs, 4 * GiB, unit_bytes, calls_model)


def parallel_accept_ns(cpu_ns: float, nbytes: int, threads: int, costs: CostPreset) -> tuple[float, str]:
    """Wall time of accepting ``nbytes`` whose single-thread work is ``cpu_ns`` on ``threads``.

    A roofline: ``max(cpu_ns / threads, nbytes / accept_ceiling)``.  The merged commit message:
    acceptance "can be parallelized [...] but it tends to saturate memory bandwidth and does not
    scale beyond the point".  Returns (ns, "cpu" | "ceiling").
    """
    threads = max(1, int(threads))
    t_cpu = cpu_ns / threads
    t_bw = nbytes / (costs.accept_ceiling_gib_s * GiB) * 1e9
    return (t_cpu, "cpu") if t_cpu >= t_bw else (t_bw, "ceiling")


# ------------------------------------------------------------------ fits (the arithmetic behind "fitted")
def fit_tdx_exit_4k_ns(cpu_ghz: float, tdcall_cycles: float, fail_cycles: float, zero_gib_s: float) -> float:
    """``tdx_exit_4k_ns`` such that one vCPU accepts 90 GiB in 60 s on a 4K-backed host.

    Per 2 MiB unit the merged code issues one failed 2M call and 512 4K accepts, so
    ``60 s / (90 GiB / 2 MiB) = 512 * (tdcall + exit + zero(4K)) + fail``.
    """
    p = PUBLISHED["tdx_eager_90g"]
    per_unit = p["seconds_1cpu"] * 1e9 / (p["bytes"] / PMD)
    per_4k = (per_unit - fail_cycles / cpu_ghz) / 512
    return per_4k - tdcall_cycles / cpu_ghz - PAGE * 1e9 / (zero_gib_s * GiB)


def fit_tdx_ceiling_gib_s() -> float:
    """Aggregate ceiling from "40 seconds with 4 vCPU" (90 GiB / 40 s = 2.25 GiB/s)."""
    p = PUBLISHED["tdx_eager_90g"]
    return p["bytes"] / GiB / p["seconds_4cpu"]


def fit_snp_host_4k_ns(cpu_ghz: float, vmgexit_ns: float, pval_4k_cycles: float,
                       pval_fail_cycles: float, zero_gib_s: float) -> float:
    """``psc_host_4k_ns`` such that one stream accepts ~124 GiB in 205 s (eager - lazy, 128 GB).

    Steady-state eager acceptance of a 4 MiB block (its first unit was the previous block's
    guard) is one ``accept_memory`` run of 2 units: 1 PSC VMGEXIT, 2 failed PVALIDATE 2M,
    1024 x (host page + PVALIDATE 4K + zeroing).  No eviction: the measurement (Feb 2025)
    predates 7b306dfa326f.  The vCPU count was not published: one stream is assumed.
    """
    p = PUBLISHED["snp_eager_128g"]
    per_4k = p["delta_s"] * 1e9 / (p["accepted_bytes"] / PAGE)
    overhead = (vmgexit_ns + 2 * pval_fail_cycles / cpu_ghz) / 1024
    return per_4k - overhead - pval_4k_cycles / cpu_ghz - PAGE * 1e9 / (zero_gib_s * GiB)


# ------------------------------------------------------------------ presets
_TDX_GHZ, _TDCALL, _TDFAIL = 2.0, 1000.0, 1000.0
_TDX_ZERO = 1000.0 / PUBLISHED["zeroing_2020"]["movnti_ms_per_gib"]  # GiB/s
_SNP_GHZ, _VMGEXIT, _PV4K, _PVFAIL = 2.4, 2000.0, 1500.0, 1000.0
_SNP_ZERO = 1000.0 / PUBLISHED["zeroing_2020"]["erms_ms_per_gib"]
_TDX_EXIT = round(fit_tdx_exit_4k_ns(_TDX_GHZ, _TDCALL, _TDFAIL, _TDX_ZERO), 1)
_SNP_HOST = round(fit_snp_host_4k_ns(_SNP_GHZ, _VMGEXIT, _PV4K, _PVFAIL, _SNP_ZERO), 1)
_CEIL = fit_tdx_ceiling_gib_s()

_FIT_TDX = ("fitted: Kirill 2024, 90 GiB eager in ~60 s on 1 vCPU, 4K host "
            "(ihzvi5pwn5hrn4ky2ehjqztjxoixaiaby4igmeihqfehy2vrii@tsg6j5qvmyrm); fit_tdx_exit_4k_ns()")
_FIT_CEIL = ("fitted: Kirill 2024, 90 GiB in 40 s with 4 vCPU, 'doesn't scale past that' "
             "(ihzvi5pwn5hrn4ky2ehjqztjxoixaiaby4igmeihqfehy2vrii@tsg6j5qvmyrm); fit_tdx_ceiling_gib_s()")
_FIT_SNP = ("fitted: Ashish Kalra (AMD) Feb 2025, 128 GB guest eager 227 s vs lazy 22 s -> 205 s for "
            "~124 GB, one stream assumed; fit_snp_host_4k_ns()")
_COMMON_SRC = {
    "list_op_ns": "estimate: list_del + two counter updates under zone->lock",
    "bitmap_op_ns": "estimate: accepting_list scan + bitmap_clear under unaccepted_memory_lock",
}
_TDX_SRC = {
    "cpu_ghz": "estimate (Sapphire/Emerald Rapids class TDX host)",
    "zero_gib_s": SRC_MOVNTI,
    "tdcall_cycles": SRC_HANSEN,
    "tdx_fail_cycles": "estimate: a TDCALL returning size mismatch, no TD exit; " + SRC_HANSEN,
    "mapgpa_ns": "estimate: TDVMCALL exit round trip (only used by calls_model 'mapgpa+accept')",
    **_COMMON_SRC,
}
_SNP_SRC = {
    "cpu_ghz": "estimate (Genoa class SNP host)",
    "zero_gib_s": SRC_ERMS,
    "psc_vmgexit_ns": "estimate: one GHCB VMGEXIT round trip",
    "psc_max_entries": "kernel: VMGEXIT_PSC_MAX_ENTRY = 64 (arch/x86/include/asm/sev-common.h; "
                       "reduced from 253, cover.1684513813.git.thomas.lendacky@amd.com)",
    "pvalidate_4k_cycles": "estimate",
    "pvalidate_fail_cycles": "estimate: PVALIDATE_FAIL_SIZEMISMATCH returns early",
    "evict_4k_ns": "estimate: two cache-line reads per 4K page (sev_evict_cache, 7b306dfa326f)",
    "evict_cache": "kernel: on since 7b306dfa326f (v6.16; stable 6.12/6.6/6.1)",
    **_COMMON_SRC,
}

COST_PRESETS: dict[str, CostPreset] = {c.name: c for c in [
    CostPreset(
        name="tdx-4k", platform="tdx", host_backing="4K",
        description="TDX, host maps private memory at 4K: every 2 MiB unit = failed 2M TDCALL + 512 4K",
        cpu_ghz=_TDX_GHZ, zero_gib_s=_TDX_ZERO, accept_ceiling_gib_s=_CEIL,
        tdcall_cycles=_TDCALL, tdx_exit_4k_ns=_TDX_EXIT, tdx_exit_2m_ns=_TDX_EXIT,
        tdx_fail_cycles=_TDFAIL, mapgpa_ns=3000.0,
        sources={**_TDX_SRC, "tdx_exit_4k_ns": _FIT_TDX, "accept_ceiling_gib_s": _FIT_CEIL,
                 "tdx_exit_2m_ns": "estimate: same TD exit + one AUG as the 4K case (unused on 4K host)"}),
    CostPreset(
        name="tdx-2m", platform="tdx", host_backing="2M",
        description="TDX, host maps private memory at 2M: one TDG.MEM.PAGE.ACCEPT per 2 MiB unit",
        cpu_ghz=_TDX_GHZ, zero_gib_s=_TDX_ZERO, accept_ceiling_gib_s=20.0,
        tdcall_cycles=_TDCALL, tdx_exit_4k_ns=_TDX_EXIT, tdx_exit_2m_ns=_TDX_EXIT,
        tdx_fail_cycles=_TDFAIL, mapgpa_ns=3000.0,
        sources={**_TDX_SRC, "tdx_exit_4k_ns": "from tdx-4k: " + _FIT_TDX,
                 "tdx_exit_2m_ns": "estimate: one TD exit + one 2M AUG, taken equal to the fitted 4K "
                                   "exit (zeroing of 2 MiB is added separately)",
                 "accept_ceiling_gib_s": "estimate: memory-bandwidth share for page init (the 2.25 GiB/s "
                                         "4K ceiling is per-4K host work, not bytes)"}),
    CostPreset(
        name="snp-4k", platform="snp", host_backing="4K",
        description="SEV-SNP, 4K RMP entries: PVALIDATE 2M mismatch then 512 PVALIDATE 4K per unit",
        cpu_ghz=_SNP_GHZ, zero_gib_s=_SNP_ZERO, accept_ceiling_gib_s=_CEIL,
        psc_vmgexit_ns=_VMGEXIT, psc_max_entries=64, psc_host_4k_ns=_SNP_HOST,
        psc_host_2m_ns=20_000.0, pvalidate_4k_cycles=_PV4K, pvalidate_2m_cycles=5000.0,
        pvalidate_fail_cycles=_PVFAIL, evict_cache=True, evict_4k_ns=200.0,
        sources={**_SNP_SRC, "psc_host_4k_ns": _FIT_SNP,
                 "psc_host_2m_ns": "estimate (unused on a 4K host)",
                 "pvalidate_2m_cycles": "estimate (unused on a 4K host)",
                 "accept_ceiling_gib_s": "estimate: taken from tdx-4k's fitted ceiling (same per-4K "
                                         "host fault path)"}),
    CostPreset(
        name="snp-2m", platform="snp", host_backing="2M",
        description="SEV-SNP, 2M RMP entries: one PSC entry and one PVALIDATE 2M per unit",
        cpu_ghz=_SNP_GHZ, zero_gib_s=_SNP_ZERO, accept_ceiling_gib_s=20.0,
        psc_vmgexit_ns=_VMGEXIT, psc_max_entries=64, psc_host_4k_ns=_SNP_HOST,
        psc_host_2m_ns=20_000.0, pvalidate_4k_cycles=_PV4K, pvalidate_2m_cycles=5000.0,
        pvalidate_fail_cycles=_PVFAIL, evict_cache=True, evict_4k_ns=200.0,
        sources={**_SNP_SRC, "psc_host_4k_ns": "from snp-4k (4K remainders only): " + _FIT_SNP,
                 "psc_host_2m_ns": "estimate: RMPUPDATE of a 2M entry + 2M guest_memfd folio",
                 "pvalidate_2m_cycles": "estimate",
                 "accept_ceiling_gib_s": "estimate: memory-bandwidth share for page clearing"}),
]}


# ------------------------------------------------------------------ TOML
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(CostPreset)}


def _from_table(name: str, table: Mapping[str, Any], source: str,
                known: Mapping[str, CostPreset]) -> CostPreset:
    where = f"{source}: [costs.{name}]"
    if not isinstance(table, Mapping):
        raise CostConfigError(f"{where}: expected a table, got {type(table).__name__}")
    base_name = table.get("base", name if name in known else None)
    if base_name is None:
        raise CostConfigError(f"{where}: key 'base' is required for a new preset name; allowed: "
                              f"{', '.join(known)}")
    if base_name not in known:
        raise CostConfigError(f"{where} key 'base': {base_name!r} is not a cost preset; allowed: "
                              f"{', '.join(known)}")
    base = known[base_name]
    values = base.figures()
    sources = dict(base.sources)
    allowed = sorted(k for k in _FIELD_TYPES if k not in ("name", "sources", "source")) + ["base", "sources"]
    for key, v in table.items():
        if key == "base":
            continue
        if key == "sources":
            if not isinstance(v, Mapping) or not all(isinstance(x, str) for x in v.values()):
                raise CostConfigError(f"{where} key 'sources': expected a table of strings")
            for sk in v:
                if sk not in _FIELD_TYPES or sk in ("name", "sources", "source"):
                    raise CostConfigError(f"{where} key 'sources.{sk}': not a cost figure; allowed: "
                                          f"{', '.join(a for a in allowed if a not in ('base', 'sources'))}")
            continue
        if key not in _FIELD_TYPES or key in ("name", "source"):
            raise unknown_key(where, key, allowed, CostConfigError)
        t = _FIELD_TYPES[key]
        kw = f"{where} key '{key}'"
        if t in ("float", float):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise CostConfigError(f"{kw}: expected a number, got {v!r}")
            v = float(v)
        elif t in ("int", int):
            if not isinstance(v, int) or isinstance(v, bool):
                raise CostConfigError(f"{kw}: expected an integer, got {v!r}")
        elif t in ("bool", bool):
            if not isinstance(v, bool):
                raise CostConfigError(f"{kw}: expected true or false, got {v!r}")
        elif not isinstance(v, str):
            raise CostConfigError(f"{kw}: expected a string, got {v!r}")
        values[key] = v
        if key in _NUMERIC or key == "evict_cache":
            sources[key] = f"override from {source}"
    for sk, sv in (table.get("sources") or {}).items():
        sources[sk] = sv
    values.update(name=name, source=source)
    return CostPreset(**values, sources=sources)


def load_costs(path: str | Path, known: Mapping[str, CostPreset] | None = None) -> dict[str, CostPreset]:
    """Cost presets from a TOML file of ``[costs.NAME]`` tables (see module doc)."""
    p, tables = read_named_tables(path, "costs", CostConfigError, file_kind="cost", item="preset")
    known = dict(known if known is not None else COST_PRESETS)
    out: dict[str, CostPreset] = {}
    for name, table in tables.items():
        out[name] = known[name] = _from_table(name, table, str(p), known)
    return out


def all_costs(files: Iterable[str | Path] = ()) -> dict[str, CostPreset]:
    out = dict(COST_PRESETS)
    for f in files:
        out.update(load_costs(f, out))
    return out


def get_costs(name_or_file: str | Path) -> CostPreset:
    """A preset by name, or the only/first preset of a TOML file (``--costs PRESET|FILE.toml``)."""
    s = str(name_or_file)
    if s in COST_PRESETS:
        return COST_PRESETS[s]
    if s.endswith(".toml") or Path(s).is_file():
        loaded = load_costs(s)
        return next(iter(loaded.values()))
    raise CostConfigError(f"unknown cost preset {s!r}; allowed: {', '.join(COST_PRESETS)} or a .toml file")
