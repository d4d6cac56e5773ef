"""The sweep spec: traces, policies, cost presets and the axes of the design space (docs/sweep.md).

A spec comes from a TOML file (``--spec sweep.toml``), from the command line, or both (a value
given on the command line replaces the file's value of the same key: the traces, the policies,
the cost presets, each axis).  ``load_spec`` / ``spec_from_cli`` return a validated
:class:`SweepSpec`; :mod:`replay.sweep.grid` turns it into points.

TOML::

    traces = ["../shared/traces/debian12-6.1-small", "captures/*-small", "events.parquet"]
    policies = ["none", "kernel-eager", "list-promo"]   # presets, or names from policies_file
    policies_file = "my-policies.toml"                  # optional ([policy.NAME] tables)
    costs = ["tdx-4k", "snp-2m"]                        # presets, names from costs_file, or .toml files
    mode = "exact"                                      # or "simulate"
    tables = ["timeseries", "attribution_cpu", "firmware_calls"]
    timeseries_buckets = 200                            # time-series rows per point (0: all 2,000)

    [axes]                                              # the grid is their product ...
    unit = ["2M", "4M"]
    guest_size = { from = "16G", to = "256G", factor = 2 }
    vcpus = [1, 4, 16]
    background_budget = { from = 0.1, to = 0.5, step = 0.2 }

    # ... or an explicit list of points instead of [axes]
    [[point]]
    guest_size = "64G"
    vcpus = 8

Command line: ``--axis NAME=V1,V2,...`` with ranges ``A..B`` (integers, step 1), ``A..B+S``
(step ``S``) and ``A..B*F`` (factor ``F``), e.g. ``--axis guest_size=16G..256G*2``.

Every problem is a one-line :class:`SweepSpecError` naming the file (or the option), the key and
what is allowed, with a suggestion for a misspelt key.
"""

from __future__ import annotations

import difflib
import glob
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parsers.errors import PagereplayError
from parsers.units import parse_size

__all__ = [
    "AXES",
    "AXIS_ALIASES",
    "DEFAULT_TABLES",
    "POINT_TABLES",
    "AxisDef",
    "SweepSpec",
    "SweepSpecError",
    "TraceSource",
    "load_spec",
    "parse_axis_option",
    "spec_from_cli",
]

#: the per-point tables a sweep can keep (docs/results.md; ``policy`` is a partition, not a column)
POINT_TABLES = ("events", "lock_sections", "firmware_calls", "irqs_off", "attribution_cpu", "attribution_process",
                "timeseries")
DEFAULT_TABLES = ("timeseries", "attribution_cpu", "firmware_calls")
#: consecutive points of a partition written as one file per table (and committed together): a
#: Parquet file's fixed cost (~0.3 ms a table) and a file's creation are near a small point's whole
#: replay (~4 ms on a 25k-event trace); 16 keeps them a few per cent of it
DEFAULT_POINTS_PER_FILE = 16
#: time-series rows kept per point (the replay's buckets, every k-th and the last): a sweep of
#: thousands of points needs the shape of each curve, not the replay's 2,000 buckets
DEFAULT_TIMESERIES_BUCKETS = 200
MODES = ("exact", "simulate")
#: most values one axis may expand to (a range with a tiny step is a mistake, not a sweep)
MAX_AXIS_VALUES = 10_000
#: names used as partition values: letters, digits, '.', '_', '+', '-' (and no leading '.' or '_',
#: which dataset readers skip)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
GUEST_TRACED = "traced"


class SweepSpecError(PagereplayError, ValueError):
    """A sweep spec (TOML file or command-line option) is invalid; one line naming key and allowed values."""


# ------------------------------------------------------------------ the axes
@dataclass(frozen=True)
class AxisDef:
    """One axis of the design space: what its values are and which field of which object they set.

    ``target``: ``policy`` (a field of ``AcceptancePolicy``), ``costs`` (a field of ``CostPreset``)
    or ``guest`` (the guest shape and the firmware's pre-accepted memory, ``replay.sweep.grid``)."""

    name: str
    kind: str  # "size", "size0" (>= 0), "count" (>= 1), "count0" (>= 0), "fraction", "rate", "choice"
    target: str
    field: str
    doc: str
    choices: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.kind != "choice"


def _calls_models() -> tuple[str, ...]:
    from replay.acceptance.policies import CALLS_MODELS

    return tuple(CALLS_MODELS)


AXES: dict[str, AxisDef] = {a.name: a for a in [
    AxisDef("unit", "size", "policy", "unit_bytes", "acceptance unit: the EFI bitmap unit_size (power of two >= 4K)"),
    AxisDef("host_backing", "choice", "costs", "host_backing", "page size the host backs private memory with",
            ("4K", "2M")),
    AxisDef("calls_model", "choice", "policy", "calls_model",
            "firmware calls per unit: merged code, 2021 MapGPA + accept plan, 512 4K calls", _calls_models()),
    AxisDef("background_budget", "fraction", "policy", "background_cpu_budget",
            "background acceptor's CPU budget (fraction of one CPU, 0..1)"),
    AxisDef("background_rate", "rate", "policy", "background_rate_bytes_s",
            "background acceptor's rate (bytes/s, e.g. 1G)"),
    AxisDef("init_threads", "count0", "policy", "init_threads",
            "boot acceptance threads of the eager policies (0: one per vCPU)"),
    AxisDef("guest_size", "size", "guest", "guest_bytes",
            "guest RAM: the traced memory plus untouched, unaccepted memory ('traced': no extra)"),
    AxisDef("vcpus", "count", "guest", "vcpus", "vCPUs of the guest (boot: deferred-init threads)"),
    AxisDef("firmware_accepted", "size0", "guest", "firmware_accepted_bytes",
            "RAM the firmware accepts before the kernel starts (TDVF/OVMF: 4G; 512M)"),
]}
#: the issue's words for two axes
AXIS_ALIASES = {"calls_per_unit": "calls_model", "acceptance_unit": "unit"}


def _suggest(word: str, known: Iterable[str]) -> str:
    """``did you mean 'x'? `` for the known word closest to ``word`` (case aside), or nothing."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean {by_lower[close[0]]!r}? " if close else ""


def axis_def(name: str, where: str) -> AxisDef:
    """The axis called ``name`` (or one of its aliases)."""
    key = AXIS_ALIASES.get(name, name)
    if key not in AXES:
        raise SweepSpecError(f"{where}: unknown axis {name!r}; {_suggest(name, [*AXES, *AXIS_ALIASES])}"
                             f"axes: {', '.join(AXES)}")
    return AXES[key]


# ------------------------------------------------------------------ one value of an axis
def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def axis_value(ax: AxisDef, v: Any, where: str) -> Any:
    """``v`` checked and normalised for axis ``ax``: sizes and counts as int bytes / numbers,
    fractions and rates as float, choices as their label; ``guest_size`` may be 'traced' (None)."""
    w = f"{where} axis {ax.name}"
    if ax.kind == "choice":
        if not isinstance(v, str) or v not in ax.choices:
            sug = _suggest(str(v), ax.choices) if isinstance(v, str) else ""
            raise SweepSpecError(f"{w}: {v!r} is not allowed; {sug}allowed: {', '.join(ax.choices)}")
        return v
    if ax.name == "guest_size" and v == GUEST_TRACED:
        return None
    if ax.kind in ("size", "size0"):
        n = parse_size(v, where=w, error=SweepSpecError)
        if n < (1 if ax.kind == "size" else 0):
            raise SweepSpecError(f"{w}: {v!r}; allowed: a size {'> 0' if ax.kind == 'size' else '>= 0'} "
                                 "(bytes or e.g. \"2M\", \"16G\")")
        return n
    if ax.kind in ("count", "count0"):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if ax.kind == "count" else 0):
            raise SweepSpecError(f"{w}: {v!r}; allowed: an integer {'>= 1' if ax.kind == 'count' else '>= 0'}")
        return int(v)
    if ax.kind == "rate" and isinstance(v, str):
        v = parse_size(v, where=w, error=SweepSpecError)
    if not _finite(v) or v < 0 or (ax.kind == "fraction" and v > 1):
        allowed = "a number from 0 to 1" if ax.kind == "fraction" else "a finite number >= 0 (bytes/s, or e.g. \"1G\")"
        raise SweepSpecError(f"{w}: {v!r}; allowed: {allowed}")
    return float(v)


# ------------------------------------------------------------------ lists and ranges of values
def _range_values(ax: AxisDef, start: Any, stop: Any, step: Any, factor: Any, where: str) -> list[Any]:
    """``start`` .. ``stop`` (inclusive) by ``step`` or times ``factor``, checked as the axis' values."""
    w = f"{where} axis {ax.name}"
    if not ax.numeric:
        raise SweepSpecError(f"{w}: a range needs a numeric axis; list the values: {', '.join(ax.choices)}")
    if ax.name == "guest_size" and GUEST_TRACED in (start, stop):
        raise SweepSpecError(f"{w}: a range cannot start or end at 'traced'; list it as a value")
    lo, hi = axis_value(ax, start, where), axis_value(ax, stop, where)
    if lo > hi:
        raise SweepSpecError(f"{w}: range from {start!r} to {stop!r} runs backwards; allowed: from <= to")
    if (step is None) == (factor is None):
        raise SweepSpecError(f"{w}: a range needs exactly one of 'step' or 'factor'")
    integral = ax.kind in ("size", "size0", "count", "count0")
    out: list[Any] = []
    if factor is not None:
        if not _finite(factor) or factor <= 1:
            raise SweepSpecError(f"{w}: factor {factor!r}; allowed: a number > 1")
        if lo <= 0:
            raise SweepSpecError(f"{w}: a range with a factor must start above 0")
        x = lo
        while x <= hi * (1 + 1e-12) and len(out) <= MAX_AXIS_VALUES:
            out.append(round(x) if integral else float(x))
            x = x * factor
    else:
        d = parse_size(step, where=f"{w} step", error=SweepSpecError) if ax.kind.startswith("size") else step
        if not _finite(d) or d <= 0 or (integral and int(d) != d):
            raise SweepSpecError(f"{w}: step {step!r}; allowed: a {'whole ' if integral else ''}number > 0")
        n = math.floor((hi - lo) / d + 1e-9) + 1
        if n > MAX_AXIS_VALUES:
            raise SweepSpecError(f"{w}: the range has {n:,} values; allowed: at most {MAX_AXIS_VALUES:,}")
        out = [int(lo + i * d) if integral else round(lo + i * d, 12) for i in range(n)]
    if len(out) > MAX_AXIS_VALUES:
        raise SweepSpecError(f"{w}: the range has more than {MAX_AXIS_VALUES:,} values")
    return [axis_value(ax, v, where) for v in out]


def axis_values(name: str, raw: Any, where: str) -> tuple[str, tuple[Any, ...]]:
    """(axis name, its values) from a TOML value: one value, a list, or a range table
    ``{from, to, step|factor}``."""
    ax = axis_def(name, where)
    if isinstance(raw, Mapping):
        unknown = [k for k in raw if k not in ("from", "to", "step", "factor")]
        if unknown:
            raise SweepSpecError(f"{where} axis {ax.name}: unknown range key {unknown[0]!r}; "
                                 f"{_suggest(unknown[0], ['from', 'to', 'step', 'factor'])}allowed: from, to, step, factor")
        if "from" not in raw or "to" not in raw:
            raise SweepSpecError(f"{where} axis {ax.name}: a range needs 'from' and 'to'")
        vals = _range_values(ax, raw["from"], raw["to"], raw.get("step"), raw.get("factor"), where)
    elif isinstance(raw, list):
        if not raw:
            raise SweepSpecError(f"{where} axis {ax.name}: no values")
        vals = [axis_value(ax, v, where) for v in raw]
    else:
        vals = [axis_value(ax, raw, where)]
    return ax.name, _unique(ax, vals, where)


def _unique(ax: AxisDef, vals: list[Any], where: str) -> tuple[Any, ...]:
    if len(set(vals)) != len(vals):
        dup = next(v for i, v in enumerate(vals) if v in vals[:i])
        raise SweepSpecError(f"{where} axis {ax.name}: the value {GUEST_TRACED if dup is None else dup!r} "
                             "is listed twice")
    return tuple(vals)


_CLI_RANGE = re.compile(r"^(?P<a>.+?)\.\.(?P<b>[^+*]+?)(?:(?P<op>[+*])(?P<s>[^+*]+))?$")


def _cli_scalar(ax: AxisDef, text: str) -> Any:
    """A command-line word as the value TOML would give for axis ``ax``."""
    t = text.strip()
    if ax.kind in ("count", "count0"):
        return int(t) if re.fullmatch(r"-?\d+", t) else t
    if ax.kind in ("fraction", "rate"):
        try:
            return float(t)
        except ValueError:
            return t
    if ax.kind in ("size", "size0") and re.fullmatch(r"\d+", t):
        return int(t)
    return t


def parse_axis_option(text: str) -> tuple[str, tuple[Any, ...]]:
    """``--axis NAME=V1,V2,...`` (each value a value or a range ``A..B``, ``A..B+S``, ``A..B*F``)."""
    where = f"--axis {text!r}"
    if "=" not in text:
        raise SweepSpecError(f"{where}: expected NAME=V1,V2,... (axes: {', '.join(AXES)})")
    name, _, rest = text.partition("=")
    ax = axis_def(name.strip(), where)
    vals: list[Any] = []
    for word in (w for w in rest.split(",") if w.strip()):
        m = _CLI_RANGE.match(word.strip())
        if m and ax.numeric:
            a, b, op, s = m.group("a"), m.group("b"), m.group("op"), m.group("s")
            step = factor = None
            if op == "*":
                factor = float(s)
            elif op == "+":
                step = _cli_scalar(ax, s)
            else:
                step = 1 if ax.kind in ("count", "count0") else None
                if step is None:
                    raise SweepSpecError(f"{where}: range {word!r} needs +STEP or *FACTOR")
            vals.extend(_range_values(ax, _cli_scalar(ax, a), _cli_scalar(ax, b), step, factor, where))
        else:
            vals.append(axis_value(ax, _cli_scalar(ax, word), where))
    if not vals:
        raise SweepSpecError(f"{where}: no values")
    return ax.name, _unique(ax, vals, where)


# ------------------------------------------------------------------ traces
@dataclass(frozen=True)
class TraceSource:
    """One trace of the sweep: its name (the ``trace=`` partition), the trace file and its snapshots."""

    name: str
    path: Path
    snapshot: Path | None = None  # proc_before/: layout and initial free blocks
    end_snapshot: Path | None = None  # proc_after(_boot)/: the layout when there is no snapshot

    def files(self) -> list[Path]:
        """Every file the replay reads (what the trace's fingerprint covers)."""
        out = [self.path]
        for d in (self.snapshot, self.end_snapshot):
            if d is not None:
                out.extend(sorted(p for p in d.iterdir() if p.is_file()))
        return out


_COMPRESSION = (".zst", ".gz", ".xz")
_TRACE_SUFFIXES = (".txt", ".parquet", ".dat", ".data", ".trace")


def _default_name(path: Path) -> str:
    name = path.name
    for suf in _COMPRESSION:
        name = name.removesuffix(suf)
    for suf in _TRACE_SUFFIXES:
        name = name.removesuffix(suf)
    return name


def _capture(path: Path, where: str) -> TraceSource:
    from parsers.capture.errors import CaptureFolderError
    from parsers.capture.folder import read_capture_folder

    try:
        cap = read_capture_folder(path)
    except CaptureFolderError as e:
        raise SweepSpecError(f"{where}: {e}") from None
    if cap.binary:
        raise SweepSpecError(f"{where}: {cap.trace} is a binary trace; the sweep reads text or Parquet traces "
                             "(convert it with trace-cmd report / perf script)")
    before = cap.proc_before
    return TraceSource(name=path.name, path=cap.trace, snapshot=before,
                       end_snapshot=cap.proc_after if before is None else None)


def _is_capture_trace(path: Path) -> bool:
    """``path`` is the trace file its folder's capture description picks."""
    from parsers.capture.errors import CaptureFolderError
    from parsers.capture.folder import is_capture_folder, read_capture_folder

    if not is_capture_folder(path.parent):
        return False
    try:
        return read_capture_folder(path.parent).trace == path.resolve()
    except CaptureFolderError:
        return False


def _trace_entry(entry: Any, base: Path, where: str) -> list[TraceSource]:
    """The traces of one ``traces`` entry: a file, a capture folder, a glob, or a table
    ``{path, name, snapshot}``."""
    name = snapshot = None
    if isinstance(entry, Mapping):
        unknown = [k for k in entry if k not in ("path", "name", "snapshot")]
        if unknown:
            raise SweepSpecError(f"{where} traces: unknown key {unknown[0]!r}; "
                                 f"{_suggest(unknown[0], ['path', 'name', 'snapshot'])}allowed: path, name, snapshot")
        if not isinstance(entry.get("path"), str):
            raise SweepSpecError(f"{where} traces: a trace table needs 'path' (a string)")
        name, snapshot, entry = entry.get("name"), entry.get("snapshot"), entry["path"]
    if not isinstance(entry, str) or not entry:
        raise SweepSpecError(f"{where} traces: {entry!r}; expected a path, a glob or a table {{path = ...}}")
    pattern = entry if Path(entry).is_absolute() else str(base / entry)
    matches = sorted(glob.glob(pattern)) if glob.has_magic(entry) else [pattern]
    if not matches:
        raise SweepSpecError(f"{where} traces: {entry!r} matches no file")
    out = []
    for m in matches:
        p = Path(m)
        if not p.exists():
            raise SweepSpecError(f"{where} traces: {entry}: no such file or folder")
        if p.is_dir():
            src = _capture(p, f"{where} traces: {entry}")
        elif _is_capture_trace(p):  # a capture folder's own trace file: its snapshots, the folder's name
            src = _capture(p.parent, f"{where} traces: {entry}")
        else:
            src = TraceSource(name=_default_name(p), path=p)
        if snapshot is not None:
            snap = Path(snapshot) if Path(snapshot).is_absolute() else base / snapshot
            if not snap.is_dir():
                raise SweepSpecError(f"{where} traces: snapshot {snapshot!r} is not a folder")
            src = TraceSource(src.name, src.path, snap, None)
        if name is not None:
            if len(matches) > 1:
                raise SweepSpecError(f"{where} traces: 'name' names one trace, but {entry!r} matches {len(matches)}")
            src = TraceSource(str(name), src.path, src.snapshot, src.end_snapshot)
        out.append(src)
    return out


def resolve_traces(entries: Sequence[Any], base: Path, where: str) -> tuple[TraceSource, ...]:
    """Every trace of ``entries``, each name once and usable as a partition value."""
    out: list[TraceSource] = []
    for e in entries:
        out.extend(_trace_entry(e, base, where))
    if not out:
        raise SweepSpecError(f"{where}: no traces (give TRACE... or traces = [...] in the spec)")
    seen: dict[str, Path] = {}
    for t in out:
        check_name(t.name, "trace", where)
        if t.name in seen:
            raise SweepSpecError(f"{where} traces: two traces are named {t.name!r} ({seen[t.name]} and {t.path}); "
                                 "name them with {path = ..., name = ...} tables")
        seen[t.name] = t.path
    return tuple(out)


def check_name(name: str, what: str, where: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise SweepSpecError(f"{where}: {what} name {name!r} cannot name a partition; use letters, digits, "
                             "'.', '_', '+', '-' (starting with a letter or digit)")


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class Output:
    """What a sweep writes per point: the tables kept, the time-series rows kept (0: all)."""

    tables: tuple[str, ...] = DEFAULT_TABLES
    timeseries_buckets: int = DEFAULT_TIMESERIES_BUCKETS


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: what to replay and the design space to cover (``replay.sweep.grid``)."""

    traces: tuple[TraceSource, ...]
    policies: tuple[Any, ...]  # AcceptancePolicy, in the spec's order
    costs: tuple[Any, ...]  # CostPreset
    axes: tuple[tuple[str, tuple[Any, ...]], ...]  # (axis, values): the grid is their product
    points: tuple[tuple[tuple[str, Any], ...], ...] | None = None  # or explicit points (axis settings)
    mode: str = "exact"
    tables: tuple[str, ...] = DEFAULT_TABLES
    points_per_file: int = DEFAULT_POINTS_PER_FILE
    timeseries_buckets: int = DEFAULT_TIMESERIES_BUCKETS
    source: str = "command line"

    @property
    def output(self) -> Output:
        return Output(self.tables, self.timeseries_buckets)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (``DIR/sweep.json``)."""
        return {
            "source": self.source, "mode": self.mode, "tables": list(self.tables),
            "points_per_file": self.points_per_file, "timeseries_buckets": self.timeseries_buckets,
            "traces": [{"name": t.name, "path": str(t.path), "snapshot": str(t.snapshot or ""),
                        "end_snapshot": str(t.end_snapshot or "")} for t in self.traces],
            "policies": [p.name for p in self.policies], "costs": [c.name for c in self.costs],
            "axes": {name: list(vals) for name, vals in self.axes},
            "points": [dict(p) for p in self.points] if self.points is not None else None,
        }


_TOP_KEYS = ("traces", "policies", "policies_file", "costs", "costs_file", "mode", "tables", "points_per_file",
             "timeseries_buckets", "axes", "point")


def _str_list(v: Any, key: str, where: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise SweepSpecError(f"{where} key {key!r}: expected a string or a list of strings, got {v!r}")
    return list(v)


def _split_commas(values: Sequence[str] | None) -> list[str]:
    """``--policy a,b --policy c`` -> [a, b, c]."""
    return [w.strip() for v in values or [] for w in v.split(",") if w.strip()]


def _resolve_policies(names: Sequence[str], files: Sequence[Path], where: str) -> tuple[Any, ...]:
    from replay.acceptance.policies import PRESET_ORDER, all_policies

    known = all_policies(files)
    wanted = list(dict.fromkeys(names)) if names else list(PRESET_ORDER)
    if "all" in wanted:
        i = wanted.index("all")
        wanted[i:i + 1] = [n for n in known if n not in wanted]
    out = []
    for n in dict.fromkeys(wanted):
        if n not in known:
            raise SweepSpecError(f"{where}: unknown policy {n!r}; {_suggest(n, known)}known: {', '.join(known)}")
        check_name(n, "policy", where)
        out.append(known[n])
    return tuple(out)


def _resolve_costs(names: Sequence[str], files: Sequence[Path], base: Path, where: str) -> tuple[Any, ...]:
    from replay.acceptance.costs import all_costs, load_costs

    known = all_costs(files)
    out: dict[str, Any] = {}
    for n in names or ["tdx-4k"]:
        if n.endswith(".toml"):
            p = Path(n) if Path(n).is_absolute() else base / n
            for c in load_costs(p, known).values():
                out.setdefault(c.name, c)
            continue
        if n not in known:
            raise SweepSpecError(f"{where}: unknown cost preset {n!r}; {_suggest(n, known)}known: {', '.join(known)} "
                                 "or a .toml file")
        out.setdefault(n, known[n])
    for n in out:
        check_name(n, "cost preset", where)
    return tuple(out.values())


def _point_settings(raw: Any, i: int, where: str) -> tuple[tuple[str, Any], ...]:
    w = f"{where} [[point]] #{i + 1}"
    if not isinstance(raw, Mapping):
        raise SweepSpecError(f"{w}: expected a table of axis = value")
    out = {}
    for k, v in raw.items():
        ax = axis_def(k, w)
        if isinstance(v, (list, Mapping)):
            raise SweepSpecError(f"{w} axis {ax.name}: a point takes one value (lists and ranges go in [axes])")
        out[ax.name] = axis_value(ax, v, w)
    return tuple((name, out[name]) for name in AXES if name in out)


def _read_toml(path: Path) -> dict[str, Any]:
    from replay.acceptance.tomlconf import read_toml

    return read_toml(path, SweepSpecError, file_kind="sweep spec")


def _check_keys(raw: Mapping[str, Any], where: str) -> None:
    for k in raw:
        if k not in _TOP_KEYS:
            raise SweepSpecError(f"{where}: unknown key {k!r}; {_suggest(k, _TOP_KEYS)}allowed: {', '.join(_TOP_KEYS)}")


def build_spec(raw: Mapping[str, Any], *, base: Path, where: str, cli: Mapping[str, Any] | None = None) -> SweepSpec:
    """A validated spec from the TOML mapping ``raw`` (paths relative to ``base``) with the
    command-line values ``cli`` (traces, policies, costs, axes) replacing the file's."""
    _check_keys(raw, where)
    cli = dict(cli or {})
    cwd = Path.cwd()
    trace_entries = cli.get("traces") or raw.get("traces") or []
    trace_base = cwd if cli.get("traces") else base
    if not isinstance(trace_entries, list):
        trace_entries = [trace_entries]
    traces = resolve_traces(trace_entries, trace_base, where)
    pfiles = [Path(p) if Path(p).is_absolute() else base / p
              for p in _str_list(raw.get("policies_file", []), "policies_file", where)]
    cfiles = [Path(p) if Path(p).is_absolute() else base / p
              for p in _str_list(raw.get("costs_file", []), "costs_file", where)]
    pnames = cli.get("policies") or _str_list(raw.get("policies", []), "policies", where)
    cnames = cli.get("costs") or _str_list(raw.get("costs", []), "costs", where)
    policies = _resolve_policies(pnames, pfiles, where)
    costs = _resolve_costs(cnames, cfiles, cwd if cli.get("costs") else base, where)
    mode = raw.get("mode", "exact")
    if mode not in MODES:
        raise SweepSpecError(f"{where} key 'mode': {mode!r}; allowed: {', '.join(MODES)}")
    tables = _str_list(raw.get("tables", list(DEFAULT_TABLES)), "tables", where) if "tables" in raw else list(DEFAULT_TABLES)
    for t in tables:
        if t not in POINT_TABLES:
            raise SweepSpecError(f"{where} key 'tables': unknown table {t!r}; {_suggest(t, POINT_TABLES)}"
                                 f"allowed: {', '.join(POINT_TABLES)}")
    ppf = raw.get("points_per_file", DEFAULT_POINTS_PER_FILE)
    if isinstance(ppf, bool) or not isinstance(ppf, int) or not 1 <= ppf <= 10_000:
        raise SweepSpecError(f"{where} key 'points_per_file': {ppf!r}; allowed: an integer from 1 to 10000")
    tsb = raw.get("timeseries_buckets", DEFAULT_TIMESERIES_BUCKETS)
    if isinstance(tsb, bool) or not isinstance(tsb, int) or tsb < 0:
        raise SweepSpecError(f"{where} key 'timeseries_buckets': {tsb!r}; allowed: an integer >= 0 (0: all)")
    axes_raw = raw.get("axes", {})
    if not isinstance(axes_raw, Mapping):
        raise SweepSpecError(f"{where} key 'axes': expected a table of NAME = values")
    axes = dict(axis_values(k, v, f"{where} [axes]") for k, v in axes_raw.items())
    axes.update(cli.get("axes") or {})
    points_raw = raw.get("point")
    points = None
    if points_raw is not None:
        if not isinstance(points_raw, list) or not points_raw:
            raise SweepSpecError(f"{where} key 'point': write each point as a [[point]] table")
        if axes:
            raise SweepSpecError(f"{where}: give [axes] (a product) or [[point]] tables (a list), not both")
        points = tuple(_point_settings(p, i, where) for i, p in enumerate(points_raw))
        if len(set(points)) != len(points):
            raise SweepSpecError(f"{where}: two [[point]] tables are the same point")
    ordered = tuple((name, axes[name]) for name in AXES if name in axes)
    return SweepSpec(traces=traces, policies=policies, costs=costs, axes=ordered, points=points, mode=mode,
                     tables=tuple(dict.fromkeys(tables)), points_per_file=ppf, timeseries_buckets=tsb,
                     source=where)


def load_spec(path: str | Path, cli: Mapping[str, Any] | None = None) -> SweepSpec:
    """The spec of the TOML file ``path`` (with command-line values ``cli`` replacing its own)."""
    p = Path(path)
    return build_spec(_read_toml(p), base=p.parent, where=str(p), cli=cli)


def spec_from_cli(traces: Sequence[str] | None, *, policies: Sequence[str] | None = None,
                  costs: Sequence[str] | None = None, axes: Sequence[str] | None = None,
                  spec_file: str | Path | None = None, mode: str | None = None) -> SweepSpec:
    """The spec the command line describes: ``--spec`` file (if any) with the positional traces,
    ``--policy``, ``--costs`` (comma-separated lists too) and ``--axis`` options replacing its values."""
    parsed_axes: dict[str, tuple[Any, ...]] = {}
    for a in axes or []:
        name, vals = parse_axis_option(a)
        if name in parsed_axes:
            raise SweepSpecError(f"--axis {a!r}: axis {name!r} given twice")
        parsed_axes[name] = vals
    cli: dict[str, Any] = {"traces": list(traces or []), "policies": _split_commas(policies),
                           "costs": _split_commas(costs), "axes": parsed_axes}
    if spec_file is not None:
        p = Path(spec_file)
        raw = _read_toml(p)
        if mode is not None:
            raw = {**raw, "mode": mode}
        return build_spec(raw, base=p.parent, where=str(p), cli=cli)
    return build_spec({"mode": mode or "exact"}, base=Path.cwd(), where="command line", cli=cli)


def describe_axes() -> list[tuple[str, str, str]]:
    """(axis, what it sets, meaning) for help texts and docs."""
    return [(a.name, f"{a.target}.{a.field}", a.doc) for a in AXES.values()]

