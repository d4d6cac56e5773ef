"""Memory-acceptance policies as data: named points in one small design space.

A policy says *when* unaccepted memory is accepted (``trigger``), *how much* at a time
(``unit_bytes``, ``block_order``, ``guard_unit``, ``accept_target``), *what is held* while the
firmware call runs (``held_during_call``) and *how the bitmap is locked* (``bitmap_locking``).
The acceptance model (:mod:`replay.acceptance.page_alloc`, :mod:`replay.acceptance.unaccepted_memory`)
reads these fields; it never switches on the policy name, so a user-defined policy from TOML runs
through exactly the same code.  Each field with a fixed set of values is a :class:`Choice`: one
declaration gives the label TOML and the tables spell and the int the policy vector carries.

The ten presets follow spec §6 and kernel-notes §1.5 (P0..P6).  Each carries the kernel
function it models, the version and the mailing-list / commit reference.

TOML (``--file policies.toml``)::

    [policy.my-promo-4x]          # table name = policy name
    base = "list-promo"           # optional: start from a preset, override some keys
    description = "promo, but 8 MiB units"
    unit_bytes = "8M"             # int bytes or "4K"/"2M"/"1G"
    held_during_call = ["irqs_off"]

Errors (:class:`PolicyConfigError`) name the file, the policy table, the key and the allowed
values.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from parsers.errors import PagereplayError
from parsers.units import parse_size
from replay.acceptance.tomlconf import check_number, read_named_tables, unknown_key

__all__ = [
    "ACCEPT_SCOPES", "ACCEPT_TARGETS", "BITMAP_LOCKING", "CALLS_MODELS", "COLLISIONS", "HELD_KINDS",
    "PRESETS", "PRESET_ORDER", "TRIGGERS", "AcceptScope", "AcceptTarget", "AcceptancePolicy",
    "BitmapLocking", "CallsModel", "Choice", "Collision", "PolicyConfigError", "Trigger", "all_policies",
    "load_policies", "policy_vector",
]

MiB = 1 << 20
GiB = 1 << 30


class PolicyConfigError(PagereplayError, ValueError):
    """A policy definition (preset override or TOML file) is invalid; names file, key, allowed values."""


# ------------------------------------------------------------------ the design space (allowed values)
class Choice(enum.IntEnum):
    """One allowed value of a policy field: the int the policy vector carries (compiled code
    compares with the member itself) and the ``label`` TOML files, tables and messages spell."""

    label: str

    def __new__(cls, value: int, label: str) -> Self:
        member = int.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    @classmethod
    def labels(cls) -> tuple[str, ...]:
        return tuple(m.label for m in cls)

    @classmethod
    def of(cls, label: str) -> Any:
        """The member spelled ``label`` (``KeyError`` for a label that is not allowed)."""
        for m in cls:
            if m.label == label:
                return m
        raise KeyError(label)


class Trigger(Choice):
    """When acceptance runs (see :class:`AcceptancePolicy`)."""

    NONE = 0, "none"
    FIRMWARE_BOOT = 1, "firmware_boot"
    KERNEL_BOOT = 2, "kernel_boot"
    ON_BUDDY_ALLOC = 3, "on_buddy_alloc"
    POST_ALLOC = 4, "post_alloc"
    WATERMARK_FAIL = 5, "watermark_fail"
    EVERY_ZONE_VISIT = 6, "every_zone_visit"
    BACKGROUND = 7, "background"

    @property
    def lists_blocks(self) -> bool:
        """Boot puts unaccepted MAX_PAGE_ORDER blocks on ``zone->unaccepted_pages`` (the
        ``lazy_accept`` list triggers), and acceptance takes whole blocks off it."""
        return self in (Trigger.WATERMARK_FAIL, Trigger.EVERY_ZONE_VISIT, Trigger.BACKGROUND)

    @property
    def acts_at_runtime(self) -> bool:
        """Acceptance can run while the trace runs (every trigger but the boot-time ones)."""
        return self not in (Trigger.NONE, Trigger.FIRMWARE_BOOT, Trigger.KERNEL_BOOT)


class BitmapLocking(Choice):
    """How ``accept_memory()`` serialises on the bitmap (see :class:`AcceptancePolicy`)."""

    GLOBAL_SPINLOCK = 0, "global_spinlock"
    ATOMIC_BITS = 1, "atomic_bits"
    LOCKLESS_TEST = 2, "lockless_test"


class AcceptTarget(Choice):
    """The watermark list policies fill accepted free memory up to."""

    NONE = 0, "none"
    HIGH = 1, "high"
    PROMO = 2, "promo"


class Collision(Choice):
    """accepting_list collision handling: ``none`` = no accepting_list (the global lock, held
    across the call, serialises everything: 6.5); ``spin_retry`` = 6.6+ drop-lock-and-retry busy
    wait."""

    NONE = 0, "none"
    SPIN_RETRY = 1, "spin_retry"


class CallsModel(Choice):
    """Firmware calls per unit: ``merged`` = what the merged arch code issues (TDX: try 2M then 4K
    TDG.MEM.PAGE.ACCEPT; SNP: PSC VMGEXIT + PVALIDATE 2M, 4K on size mismatch); ``mapgpa+accept``
    = Kirill's 2021 plan ("one MapGPA and one TDACCEPTPAGE" per 2M run); ``per-4k`` = Dave
    Hansen's 2021 review estimate (512 4K calls per 2 MiB, whatever the host backing)."""

    MERGED = 0, "merged"
    MAPGPA_ACCEPT = 1, "mapgpa+accept"
    PER_4K = 2, "per-4k"


class AcceptScope(Choice):
    """What a trigger accepts: whole MAX_PAGE_ORDER blocks taken off ``zone->unaccepted_pages``
    (``block``), the bitmap units covering the block the buddy is handling (``covering_units``),
    everything at boot (``all``), nothing (``nothing``)."""

    NOTHING = 0, "nothing"
    ALL = 1, "all"
    BLOCK = 2, "block"
    COVERING_UNITS = 3, "covering_units"


TRIGGERS = Trigger.labels()
BITMAP_LOCKING = BitmapLocking.labels()
ACCEPT_TARGETS = AcceptTarget.labels()
COLLISIONS = Collision.labels()
CALLS_MODELS = CallsModel.labels()
ACCEPT_SCOPES = AcceptScope.labels()
#: what ``held_during_call`` may name, and its bit in ``pv[PV_HELD]``
HELD_ZONE_LOCK = 1
HELD_GLOBAL_LOCK = 2
HELD_IRQS_OFF = 4
_HELD_BITS = {"zone_lock": HELD_ZONE_LOCK, "global_lock": HELD_GLOBAL_LOCK, "irqs_off": HELD_IRQS_OFF}
HELD_KINDS = tuple(_HELD_BITS)


@dataclass(frozen=True)
class AcceptancePolicy:
    """One acceptance policy (a point in the design space of spec §6).

    Fields
    ------
    trigger
        When acceptance runs: ``none`` (plain VM), ``firmware_boot`` (OVMF/TDVF accepts all before
        ExitBootServices), ``kernel_boot`` (``accept_memory=eager``: ``__free_pages_core`` accepts
        each block as memblock / deferred init frees it), ``on_buddy_alloc`` (v1:
        ``del_page_from_free_list``), ``post_alloc`` (v2-v7: ``post_alloc_hook``),
        ``watermark_fail`` (6.5-6.10 ``try_to_accept_memory`` after a failed watermark check or
        rmqueue), ``every_zone_visit`` (6.11+ ``cond_accept_memory`` at each zone iteration of
        ``get_page_from_freelist``), ``background`` (P6: every_zone_visit plus a kthread).
    unit_bytes
        EFI bitmap ``unit_size`` (x86: ``PMD_SIZE`` = 2 MiB).
    block_order
        Order of the blocks on ``zone->unaccepted_pages`` (``MAX_PAGE_ORDER`` = 10: 4 MiB).
    guard_unit
        ``accept_memory()`` / ``range_contains_unaccepted_memory()`` extend a unit-aligned end
        by one unit (load_unaligned_zeropad fix, v6.5).  v1..v7 had no guard.
    held_during_call
        What is held while ``arch_accept_memory()`` runs: any of ``zone_lock``, ``global_lock``
        (``unaccepted_memory_lock``), ``irqs_off``.
    bitmap_locking
        ``global_spinlock`` (test and clear under the global lock), ``atomic_bits`` (Kirill's v1
        review reply: atomic ``clear_bit()`` loop, no global lock), ``lockless_test`` (Dave's
        ``maybe_accept_page()``: test without a lock, lock only when a bit is set).
    accept_target
        Watermark that list policies fill accepted free memory up to: ``high`` (6.5) or
        ``promo`` (6.12).
    one_block_when_wmark_zero
        800f1059c99e: accept one block per call while watermarks are still 0 (early boot).
    unaccepted_unusable
        6.5-6.10 ``__zone_watermark_unusable_free()`` counts NR_UNACCEPTED as unusable.
    collision
        accepting_list handling (see :class:`Collision`).
    accept_scope
        What one trigger accepts (see :class:`AcceptScope`).
    background_rate_bytes_s, background_cpu_budget, background_start_ns
        P6 only: bytes/s the acceptor may accept, fraction of one CPU it may use, and when it
        starts (after the scheduler is up).
    init_threads
        Threads accepting at boot for ``kernel_boot`` / ``firmware_boot`` (0 = one per vCPU of
        the node, as ``deferred_page_init_max_threads()``).
    calls_model
        Firmware calls per unit (see :class:`CallsModel`).
    kernel_ref, kernel_version, history_ref
        The modelled kernel function / commit / thread, the version range, and the
        kernel-notes §1.5 id.
    """

    name: str
    description: str
    trigger: str
    unit_bytes: int = 2 * MiB
    block_order: int = 10
    guard_unit: bool = True
    held_during_call: tuple[str, ...] = ("irqs_off",)
    bitmap_locking: str = "global_spinlock"
    accept_target: str = "none"
    one_block_when_wmark_zero: bool = False
    unaccepted_unusable: bool = False
    collision: str = "spin_retry"
    accept_scope: str = "block"
    background_rate_bytes_s: float = 0.0
    background_cpu_budget: float = 0.0
    background_start_ns: int = 0
    init_threads: int = 0
    calls_model: str = "merged"
    kernel_ref: str = ""
    kernel_version: str = ""
    history_ref: str = ""
    source: str = "preset"

    def __post_init__(self) -> None:
        where = f"{self.source}: [policy.{self.name}]"
        object.__setattr__(self, "held_during_call", tuple(self.held_during_call))
        _check_choice(where, "trigger", self.trigger, TRIGGERS)
        _check_choice(where, "bitmap_locking", self.bitmap_locking, BITMAP_LOCKING)
        _check_choice(where, "accept_target", self.accept_target, ACCEPT_TARGETS)
        _check_choice(where, "collision", self.collision, COLLISIONS)
        _check_choice(where, "calls_model", self.calls_model, CALLS_MODELS)
        _check_choice(where, "accept_scope", self.accept_scope, ACCEPT_SCOPES)
        for h in self.held_during_call:
            _check_choice(where, "held_during_call", h, HELD_KINDS)
        if len(set(self.held_during_call)) != len(self.held_during_call):
            raise PolicyConfigError(f"{where} key 'held_during_call': duplicate entries "
                                    f"{list(self.held_during_call)}")
        u = self.unit_bytes
        if not isinstance(u, int) or u < 4096 or u & (u - 1):
            raise PolicyConfigError(f"{where} key 'unit_bytes': {u!r} is not a power of two >= 4096 "
                                    "(allowed: 4K .. e.g. 2M (x86 PMD_SIZE), 128M)")
        if not isinstance(self.block_order, int) or not 0 <= self.block_order <= 20:
            raise PolicyConfigError(f"{where} key 'block_order': {self.block_order!r}; allowed 0..20 "
                                    "(MAX_PAGE_ORDER, 10 on x86-64)")
        # finite, and a rate the int64 policy vector holds (policy_vector)
        check_number(where, "background_rate_bytes_s", self.background_rate_bytes_s, PolicyConfigError,
                     maximum=float(1 << 62))
        check_number(where, "background_cpu_budget", self.background_cpu_budget, PolicyConfigError)
        if self.background_cpu_budget > 1.0:
            raise PolicyConfigError(f"{where} key 'background_cpu_budget': {self.background_cpu_budget!r}; "
                                    "allowed: 0 .. 1 (fraction of one CPU)")
        for k in ("background_start_ns", "init_threads"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise PolicyConfigError(f"{where} key '{k}': {v!r}; allowed: an integer >= 0")
        # combinations the kernel code cannot produce
        trigger = Trigger.of(self.trigger)
        if trigger.lists_blocks:
            if self.accept_scope != "block":
                raise PolicyConfigError(f"{where} key 'accept_scope': list triggers accept whole "
                                        f"blocks; allowed with trigger={self.trigger!r}: 'block'")
            if self.accept_target == "none":
                raise PolicyConfigError(f"{where} key 'accept_target': trigger {self.trigger!r} needs "
                                        "a watermark; allowed: 'high', 'promo'")
        if trigger is Trigger.BACKGROUND and self.background_rate_bytes_s <= 0 \
                and self.background_cpu_budget <= 0:
            raise PolicyConfigError(f"{where} keys 'background_rate_bytes_s'/'background_cpu_budget': "
                                    "a background policy needs a rate or a CPU budget > 0")
        if trigger in (Trigger.ON_BUDDY_ALLOC, Trigger.POST_ALLOC) and self.accept_scope != "covering_units":
            raise PolicyConfigError(f"{where} key 'accept_scope': trigger {self.trigger!r} accepts the "
                                    "units covering the block; allowed: 'covering_units'")
        if trigger is Trigger.NONE and self.accept_scope != "nothing":
            raise PolicyConfigError(f"{where} key 'accept_scope': trigger 'none' accepts nothing; "
                                    "allowed: 'nothing'")
        if trigger in (Trigger.FIRMWARE_BOOT, Trigger.KERNEL_BOOT) and self.accept_scope != "all":
            raise PolicyConfigError(f"{where} key 'accept_scope': boot triggers accept everything; "
                                    "allowed: 'all'")
        if "zone_lock" in self.held_during_call and trigger is not Trigger.ON_BUDDY_ALLOC:
            raise PolicyConfigError(f"{where} key 'held_during_call': zone_lock can only be held "
                                    "around the call by trigger 'on_buddy_alloc' (v1)")

    # -------------------------------------------------------------- derived
    @property
    def trigger_id(self) -> Trigger:
        """``trigger`` as its :class:`Trigger` member (the int of ``pv[PV_TRIGGER]``)."""
        return Trigger.of(self.trigger)

    @property
    def lists_blocks(self) -> bool:
        """Blocks go on ``zone->unaccepted_pages`` at boot (``lazy_accept`` and a list trigger)."""
        return self.trigger_id.lists_blocks

    @property
    def acts_at_runtime(self) -> bool:
        """The policy can accept memory while the trace runs (not ``none`` or a boot trigger)."""
        return self.trigger_id.acts_at_runtime

    @property
    def has_unaccepted_table(self) -> bool:
        """The kernel sees an EFI unaccepted-memory table (False: plain VM or firmware-eager)."""
        return self.trigger_id not in (Trigger.NONE, Trigger.FIRMWARE_BOOT)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["held_during_call"] = list(self.held_during_call)
        return d

    def replace(self, **changes: Any) -> "AcceptancePolicy":
        return dataclasses.replace(self, **changes)


def _check_choice(where: str, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise PolicyConfigError(f"{where} key '{key}': {value!r} is not allowed; "
                                f"allowed: {', '.join(allowed)}")


# ------------------------------------------------------------------ presets (spec §6, kernel-notes §1.5)
_L = "kernel-notes §1.5"
PRESETS: dict[str, AcceptancePolicy] = {p.name: p for p in [
    AcceptancePolicy(
        name="none", description="everything accepted (plain VM): the baseline of every delta",
        trigger="none", accept_scope="nothing", held_during_call=(), collision="none",
        kernel_ref="no unaccepted table (efi_get_unaccepted_table() == NULL)",
        kernel_version="any", history_ref="baseline"),
    AcceptancePolicy(
        name="firmware-eager",
        description="OVMF/TDVF accepts all memory before ExitBootServices (no lazy accept)",
        trigger="firmware_boot", accept_scope="all", held_during_call=(), collision="none",
        init_threads=1,
        kernel_ref="firmware AcceptAllMemory(); kernel without unaccepted-memory support or "
                   "firmware without the memory-acceptance protocol (x86/efi: Safely enable "
                   "unaccepted memory in UEFI)",
        kernel_version="pre-6.5 / any", history_ref=f"P0 ({_L})"),
    AcceptancePolicy(
        name="kernel-eager",
        description="accept_memory=eager: __free_pages_core accepts each block as memblock / "
                    "deferred-init threads free it",
        trigger="kernel_boot", accept_scope="all", held_during_call=("irqs_off",),
        collision="spin_retry", init_threads=0,
        kernel_ref="mm/page_alloc.c __free_pages_core() with lazy_accept=false; "
                   "mm/mm_init.c deferred_init_memmap() padata threads",
        kernel_version="6.5+", history_ref=f"P1 ({_L}); v9 20230330114956.20342-1-"),
    AcceptancePolicy(
        name="v1-buddy-global-lock",
        description="2021 v1: accept in del_page_from_free_list() under zone->lock plus the global "
                    "bitmap spinlock",
        trigger="on_buddy_alloc", accept_scope="covering_units", guard_unit=False,
        held_during_call=("zone_lock", "global_lock", "irqs_off"), bitmap_locking="global_spinlock",
        collision="none",
        kernel_ref="del_page_from_free_list() -> clear_page_offline() (v1 patch 1)",
        kernel_version="RFC v1 (Aug 2021), rejected",
        history_ref=f"P2 ({_L}); 20210810062626.1012-1-kirill.shutemov@linux.intel.com"),
    AcceptancePolicy(
        name="v1-buddy-atomic-bitmap",
        description="v1 with the global lock replaced by atomic per-bit clears (review reply)",
        trigger="on_buddy_alloc", accept_scope="covering_units", guard_unit=False,
        held_during_call=("zone_lock", "irqs_off"), bitmap_locking="atomic_bits", collision="none",
        kernel_ref="del_page_from_free_list() -> clear_page_offline() with clear_bit() loop",
        kernel_version="proposed in the v1 review (Aug 2021)",
        history_ref=f"P2 variant ({_L}); 20210812210846.bfalflrvn4bfpyyh@box.shutemov.name"),
    AcceptancePolicy(
        name="post-alloc",
        description="v2-v7 / review counter-proposal: accept the allocated block's units after "
                    "zone->lock is dropped; lockless bitmap test first, global lock around the call",
        trigger="post_alloc", accept_scope="covering_units", guard_unit=False,
        held_during_call=("global_lock", "irqs_off"), bitmap_locking="lockless_test",
        collision="none",
        kernel_ref="post_alloc_hook() -> accept_page(page, order) (v3); maybe_accept_page() "
                   "(25312492-5d67-e5b0-1a51-b6880f45a550@intel.com)",
        kernel_version="RFC v2-v7 (2022)",
        history_ref=f"P3 ({_L}); 20220111113314.27173-1-"),
    AcceptancePolicy(
        name="list-6.5",
        description="per-zone unaccepted_pages list of 4 MiB blocks accepted on watermark failure "
                    "up to high; global lock held across the firmware call",
        trigger="watermark_fail", accept_scope="block", accept_target="high",
        unaccepted_unusable=True, held_during_call=("global_lock", "irqs_off"),
        bitmap_locking="global_spinlock", collision="none",
        kernel_ref="mm/page_alloc.c try_to_accept_memory(); drivers/firmware/efi/"
                   "unaccepted_memory.c accept_memory() @ 2053bc57f367",
        kernel_version="6.5", history_ref=f"P4 ({_L}); dcdfdd40fa82"),
    AcceptancePolicy(
        name="list-6.6",
        description="list-6.5 with accepting_list: global lock dropped during the call, IRQs off",
        trigger="watermark_fail", accept_scope="block", accept_target="high",
        unaccepted_unusable=True, held_during_call=("irqs_off",),
        bitmap_locking="global_spinlock", collision="spin_retry",
        kernel_ref="efi/unaccepted: Fix soft lockups caused by parallel memory acceptance "
                   "(50e782a86c98)",
        kernel_version="6.6-6.10", history_ref=f"P4 ({_L}); 20231016163122.12855-1-"),
    AcceptancePolicy(
        name="list-promo",
        description="current upstream: cond_accept_memory() at every zone visit up to the promo "
                    "watermark; one block per call while watermarks are zero",
        trigger="every_zone_visit", accept_scope="block", accept_target="promo",
        one_block_when_wmark_zero=True, held_during_call=("irqs_off",),
        bitmap_locking="global_spinlock", collision="spin_retry",
        kernel_ref="mm/page_alloc.c cond_accept_memory(), try_to_accept_memory_one(), "
                   "__accept_page() (6.12); 800f1059c99e (watermarks zero)",
        kernel_version="6.12+", history_ref=f"P5 ({_L}); 20240809114854.3745464-1-"),
    AcceptancePolicy(
        name="background",
        description="list-promo plus a background acceptor thread with a rate / CPU budget "
                    "(proposed only)",
        trigger="background", accept_scope="block", accept_target="promo",
        one_block_when_wmark_zero=True, held_during_call=("irqs_off",),
        bitmap_locking="global_spinlock", collision="spin_retry",
        background_rate_bytes_s=float(1 * GiB), background_cpu_budget=0.5,
        background_start_ns=1_000_000_000,
        kernel_ref="strategy #3 of dcdfdd40fa82's commit message (never merged)",
        kernel_version="proposed only", history_ref=f"P6 ({_L})"),
]}
PRESET_ORDER = tuple(PRESETS)

_FIELDS = {f.name: f for f in dataclasses.fields(AcceptancePolicy)}
_BOOL_KEYS = {k for k, f in _FIELDS.items() if f.type in ("bool", bool)}
_INT_KEYS = {"block_order", "background_start_ns", "init_threads"}
_FLOAT_KEYS = {"background_rate_bytes_s", "background_cpu_budget"}
_STR_KEYS = {"description", "trigger", "bitmap_locking", "accept_target", "collision",
             "calls_model", "accept_scope", "kernel_ref", "kernel_version", "history_ref"}


def _from_table(name: str, table: Mapping[str, Any], source: str) -> AcceptancePolicy:
    where = f"{source}: [policy.{name}]"
    if not isinstance(table, Mapping):
        raise PolicyConfigError(f"{where}: expected a table of keys, got {type(table).__name__}")
    base_name = table.get("base")
    if base_name is not None:
        if base_name not in PRESETS:
            raise PolicyConfigError(f"{where} key 'base': {base_name!r} is not a preset; "
                                    f"allowed: {', '.join(PRESET_ORDER)}")
        values = PRESETS[base_name].as_dict()
    else:
        if "trigger" not in table:
            raise PolicyConfigError(f"{where}: key 'trigger' is required without 'base'; "
                                    f"allowed: {', '.join(TRIGGERS)}")
        values = {"description": ""}
    allowed_keys = sorted(set(_FIELDS) - {"name", "source"}) + ["base"]
    for key, v in table.items():
        if key == "base":
            continue
        if key not in _FIELDS or key in ("name", "source"):
            raise unknown_key(where, key, allowed_keys, PolicyConfigError)
        kw = f"{where} key '{key}'"
        if key == "unit_bytes":
            v = parse_size(v, where=kw, error=PolicyConfigError)
        elif key == "held_during_call":
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise PolicyConfigError(f"{kw}: expected a list of strings; allowed items: "
                                        f"{', '.join(HELD_KINDS)}")
            v = tuple(v)
        elif key in _BOOL_KEYS:
            if not isinstance(v, bool):
                raise PolicyConfigError(f"{kw}: expected true or false, got {v!r}")
        elif key in _INT_KEYS:
            if not isinstance(v, int) or isinstance(v, bool):
                raise PolicyConfigError(f"{kw}: expected an integer, got {v!r}")
        elif key in _FLOAT_KEYS:
            if key == "background_rate_bytes_s" and isinstance(v, str):
                v = float(parse_size(v, where=kw, error=PolicyConfigError))
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise PolicyConfigError(f"{kw}: expected a number, got {v!r}")
            v = float(v)
        elif key in _STR_KEYS:
            if not isinstance(v, str):
                raise PolicyConfigError(f"{kw}: expected a string, got {v!r}")
        values[key] = v
    values["name"] = name
    values["source"] = source
    if base_name is not None and "history_ref" not in table:
        values["history_ref"] = f"user policy based on {base_name}: {values.get('history_ref', '')}"
    return AcceptancePolicy(**values)


def load_policies(path: str | Path) -> dict[str, AcceptancePolicy]:
    """User policies from a TOML file: one ``[policy.NAME]`` table each (see module doc)."""
    p, tables = read_named_tables(path, "policy", PolicyConfigError, file_kind="policy", item="policy")
    out: dict[str, AcceptancePolicy] = {}
    for name, table in tables.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
            raise PolicyConfigError(f"{p}: [policy.{name}]: policy names use letters, digits, '-', "
                                    "'_', '.', '+'")
        out[name] = _from_table(name, table, str(p))
    return out


def all_policies(files: Iterable[str | Path] = ()) -> dict[str, AcceptancePolicy]:
    """Presets followed by the policies of ``files`` (a user policy may shadow a preset name)."""
    out = dict(PRESETS)
    for f in files:
        out.update(load_policies(f))
    return out


# ------------------------------------------------------------------ flat vector for compiled loops
# Indices into the int64 policy vector the compiled acceptance functions read.
PV_TRIGGER = 0
PV_UNIT_PAGES = 1
PV_BLOCK_ORDER = 2
PV_GUARD = 3
PV_HELD = 4  # HELD_* bits
PV_BITMAP_LOCKING = 5
PV_TARGET = 6
PV_ONE_BLOCK_ZERO = 7
PV_UNUSABLE = 8
PV_COLLISION = 9
PV_SCOPE = 10
PV_CALLS_MODEL = 11
PV_LAZY = 12
PV_BG_RATE = 13  # bytes per second
PV_BG_BUDGET_PPM = 14  # CPU budget in millionths of one CPU
PV_BG_START_NS = 15
PV_LEN = 16


def policy_vector(policy: AcceptancePolicy, page_size: int = 4096) -> np.ndarray:
    """The policy as an int64 array (indices ``PV_*``) for numba-style hot functions."""
    v = np.zeros(PV_LEN, dtype=np.int64)
    v[PV_TRIGGER] = policy.trigger_id
    v[PV_UNIT_PAGES] = max(1, policy.unit_bytes // page_size)
    v[PV_BLOCK_ORDER] = policy.block_order
    v[PV_GUARD] = int(policy.guard_unit)
    held = 0
    for h in policy.held_during_call:
        held |= _HELD_BITS[h]
    v[PV_HELD] = held
    v[PV_BITMAP_LOCKING] = BitmapLocking.of(policy.bitmap_locking)
    v[PV_TARGET] = AcceptTarget.of(policy.accept_target)
    v[PV_ONE_BLOCK_ZERO] = int(policy.one_block_when_wmark_zero)
    v[PV_UNUSABLE] = int(policy.unaccepted_unusable)
    v[PV_COLLISION] = Collision.of(policy.collision)
    v[PV_SCOPE] = AcceptScope.of(policy.accept_scope)
    v[PV_CALLS_MODEL] = CallsModel.of(policy.calls_model)
    v[PV_LAZY] = int(policy.lists_blocks)
    v[PV_BG_RATE] = int(policy.background_rate_bytes_s)
    v[PV_BG_BUDGET_PPM] = int(round(policy.background_cpu_budget * 1_000_000))
    v[PV_BG_START_NS] = policy.background_start_ns
    return v
