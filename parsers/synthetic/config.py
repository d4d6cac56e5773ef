"""Synthetic-trace configuration: TOML files and ``--param k=v`` overrides -> a :class:`SynthConfig`.

A TOML file (every key optional; command-line options win over it)::

    workload = "churn"          # boot | churn | fault-in | fork-storm | page-cache | mix | custom
    seed = 1
    cpus = 8
    memory = "16G"              # bytes, or a number with K/M/G/T
    events = 2_000_000          # primary requests (see Machine)
    duration_s = 30.0

    [params]                    # fields of the workload's parameter dataclass
    rate_per_cpu = 4000

    [emit]                      # fields of EmitParams (the stand-in emitter)
    batch = 63

    [[mix]]                     # workload = "mix": weighted components
    workload = "churn"
    weight = 0.7
    params = { lifetime_median_us = 5000 }

    [[phase]]                   # workload = "custom": phases of streams, every field of Phase
    name = "steady"
    rate_per_cpu = 2000
    [[phase.stream]]            # every field of Stream; orders as { "0" = 0.9, "9" = 0.1 }
    name = "anon"
    orders = { "0" = 0.9, "9" = 0.1 }
    lifetime = { median_us = 5000, sigma = 2.0 }

Every error names the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from ..errors import PagereplayError
from .emit import EmitParams
from .workloads import WORKLOADS, Lifetime, Machine, Phase, Stream, Workload, build, mix


class SynthConfigError(PagereplayError):
    """A synthetic-workload configuration (TOML file or --param) is wrong; the message names file and key."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.I)
_MULT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(v: str | int, where: str = "memory") -> int:
    """``4G``, ``512M``, ``1T``, ``4GiB`` or a byte count -> bytes."""
    if isinstance(v, bool):
        raise SynthConfigError(f"{where}: expected a size like 4G, got {v!r}")
    if isinstance(v, int):
        return v
    m = _SIZE.match(str(v))
    if not m:
        raise SynthConfigError(f"{where}: expected a size like 4G or 512M, got {v!r}")
    return int(float(m.group(1)) * _MULT[m.group(2).upper()])


@dataclass(frozen=True)
class SynthConfig:
    """Everything ``pagereplay synth`` needs; ``parameters()`` is what goes into the metadata."""

    workload: str = "churn"
    machine: Machine = Machine()
    params: Any = None
    emit: EmitParams = EmitParams()
    mix: tuple[tuple[str, float, Any], ...] = ()
    phases: tuple[Phase, ...] = ()
    source: str = "<defaults>"

    def build(self) -> Workload:
        if self.workload == "mix":
            return mix(list(self.mix), self.machine)
        if self.workload == "custom":
            if not self.phases:
                raise SynthConfigError(f"{self.source}: workload 'custom' needs [[phase]] tables")
            return Workload("custom", self.phases, "phases from " + self.source)
        return build(self.workload, self.params, self.machine)

    def parameters(self) -> dict[str, Any]:
        def plain(x: Any) -> Any:
            if dataclasses.is_dataclass(x) and not isinstance(x, type):
                return {f.name: plain(getattr(x, f.name)) for f in fields(x)}
            if isinstance(x, dict):
                return {str(k): plain(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            return x

        out: dict[str, Any] = {"workload": self.workload, "machine": plain(self.machine), "emit": plain(self.emit)}
        if self.workload == "mix":
            out["mix"] = [{"workload": n, "weight": w, "params": plain(p)} for n, w, p in self.mix]
        elif self.workload == "custom":
            out["phases"] = plain(self.phases)
        else:
            cls = WORKLOADS[self.workload][0]
            out["params"] = plain(self.params if self.params is not None else cls())
        return out


# ----------------------------------------------------------------------------- dataclass from mapping
def _coerce(value: Any, typ: Any, where: str) -> Any:
    t = str(typ)
    if typ is bool or t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise SynthConfigError(f"{where}: expected true/false, got {value!r}")
    if typ is int or t == "int":
        if isinstance(value, bool):
            raise SynthConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.replace("_", ""), 0)
        except ValueError:
            raise SynthConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float or t == "float":
        if isinstance(value, bool):
            raise SynthConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SynthConfigError(f"{where}: expected a number, got {value!r}") from None
    if "int | None" in t or "float | None" in t:
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(value, int if "int" in t.split("|")[0] else float, where)
    if "dict[int, float]" in t:
        if not isinstance(value, dict):
            raise SynthConfigError(f"{where}: expected a table like {{ \"0\" = 0.9, \"9\" = 0.1 }}, got {value!r}")
        out = {}
        for k, v in value.items():
            try:
                out[int(k)] = float(v)
            except (TypeError, ValueError):
                raise SynthConfigError(f"{where}.{k}: expected order = probability, got {v!r}") from None
        return out
    if "tuple[int, ...]" in t:
        if not isinstance(value, (list, tuple)):
            raise SynthConfigError(f"{where}: expected a list of CPU numbers, got {value!r}")
        return tuple(_coerce(v, int, f"{where}[{i}]") for i, v in enumerate(value))
    if typ is Lifetime or t.endswith("Lifetime"):
        if isinstance(value, Lifetime):
            return value
        if not isinstance(value, dict):
            raise SynthConfigError(f"{where}: expected a table of Lifetime fields, got {value!r}")
        return from_mapping(Lifetime, value, where)
    if typ is str or t == "str":
        if not isinstance(value, str):
            raise SynthConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_mapping(cls: type, data: dict[str, Any], where: str, base: Any = None) -> Any:
    """Build dataclass ``cls`` from ``data`` (over ``base`` or the defaults); unknown keys are errors."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kw = {}
    for k, v in data.items():
        if k not in names:
            raise SynthConfigError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(names))})")
        kw[k] = _coerce(v, hints[k], f"{where}.{k}")
    try:
        return replace(base, **kw) if base is not None else cls(**kw)
    except TypeError as e:
        raise SynthConfigError(f"{where}: {e}") from None
    except ValueError as e:
        raise SynthConfigError(f"{where}: {e}") from None


def parse_param_overrides(items: list[str], where: str = "--param") -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values are parsed as TOML scalars when they can be."""
    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise SynthConfigError(f"{where} {it!r}: expected key=value")
        k, v = it.split("=", 1)
        k = k.strip()
        try:
            out[k] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k] = v.strip()
    return out


_TOP = {"workload", "seed", "cpus", "memory", "events", "duration_s", "start_s", "chunk", "params", "emit", "mix", "phase"}


def load_config(path: str | Path | None = None, *, workload: str | None = None, overrides: dict[str, Any] | None = None,
                machine: dict[str, Any] | None = None) -> SynthConfig:  # fmt: skip
    """Read a TOML file (optional), then apply the command line: ``workload``, machine fields, ``--param``s."""
    data: dict[str, Any] = {}
    src = "<command line>"
    if path is not None:
        src = str(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise SynthConfigError(f"{src}: no such file") from None
        except tomllib.TOMLDecodeError as e:
            raise SynthConfigError(f"{src}: not valid TOML: {e}") from None
    for k in data:
        if k not in _TOP:
            raise SynthConfigError(f"{src}: unknown key {k!r} (known: {', '.join(sorted(_TOP))})")
    wl = workload or data.get("workload", "churn")
    if wl not in WORKLOADS and wl not in ("mix", "custom"):
        raise SynthConfigError(f"{src}: workload {wl!r} unknown (known: {', '.join(WORKLOADS)}, mix, custom)")
    mdata = {k: data[k] for k in ("seed", "cpus", "memory", "events", "duration_s", "start_s", "chunk") if k in data}
    mdata.update({k: v for k, v in (machine or {}).items() if v is not None})
    if "memory" in mdata:
        mdata["memory"] = parse_size(mdata["memory"], f"{src}: memory")
    if "duration_s" in mdata and "events" not in mdata:
        mdata["events"] = None
    m = from_mapping(Machine, mdata, src)
    params = None
    pdata = dict(data.get("params", {}))
    if not isinstance(pdata, dict):
        raise SynthConfigError(f"{src}: [params] must be a table")
    pdata.update(overrides or {})
    mixes: list[tuple[str, float, Any]] = []
    phases: list[Phase] = []
    if wl in WORKLOADS:
        params = from_mapping(WORKLOADS[wl][0], pdata, f"{src}: [params]")
    elif pdata:
        raise SynthConfigError(f"{src}: [params]/--param apply to a named workload, not {wl!r}")
    if wl == "mix":
        comps = data.get("mix", [])
        if not comps:
            raise SynthConfigError(f"{src}: workload 'mix' needs [[mix]] tables (workload, weight, params)")
        for i, c in enumerate(comps):
            w = f"{src}: mix[{i}]"
            extra = set(c) - {"workload", "weight", "params"}
            if extra:
                raise SynthConfigError(f"{w}: unknown key {sorted(extra)[0]!r} (known: params, weight, workload)")
            name = c.get("workload")
            if name not in WORKLOADS or name == "boot":
                raise SynthConfigError(f"{w}.workload: {name!r} is not a steady workload ({', '.join(k for k in WORKLOADS if k != 'boot')})")
            weight = _coerce(c.get("weight", 1.0), float, f"{w}.weight")
            mixes.append((name, weight, from_mapping(WORKLOADS[name][0], c.get("params", {}), f"{w}.params")))
    if wl == "custom":
        for i, ph in enumerate(data.get("phase", [])):
            w = f"{src}: phase[{i}]"
            streams = []
            for j, s in enumerate(ph.get("stream", [])):
                if "name" not in s:
                    s = {**s, "name": f"stream{j}"}
                streams.append(from_mapping(Stream, s, f"{w}.stream[{j}]"))
            if not streams:
                raise SynthConfigError(f"{w}: needs at least one [[phase.stream]]")
            rest = {k: v for k, v in ph.items() if k != "stream"}
            rest.setdefault("name", f"phase{i}")
            phases.append(_phase(rest, tuple(streams), w))
    emit = from_mapping(EmitParams, data.get("emit", {}), f"{src}: [emit]")
    return SynthConfig(wl, m, params, emit, tuple(mixes), tuple(phases), src)


def _phase(rest: dict[str, Any], streams: tuple[Stream, ...], where: str) -> Phase:
    if "streams" in rest:
        raise SynthConfigError(f"{where}: use [[phase.stream]] tables, not a 'streams' key")
    base = Phase(name=str(rest.get("name")), streams=streams)
    return from_mapping(Phase, {k: v for k, v in rest.items()}, where, base)


__all__ = ["SynthConfig", "SynthConfigError", "from_mapping", "load_config", "parse_param_overrides", "parse_size"]
