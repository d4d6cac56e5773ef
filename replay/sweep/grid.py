"""The points of a sweep: traces x policies x cost presets x (the product of the axes | the listed points).

A :class:`Point` is everything one replay needs besides the prepared trace: the policy and the
cost preset with the point's axis values applied (``dataclasses.replace``, so the policy's and the
preset's own validation checks every combination before anything runs), the guest shape and the
firmware's pre-accepted memory.  Its ``id`` is a digest of all of that and of the trace's content
(``trace_fingerprint``): the same point gets the same id in every run and on every machine, so a
rerun can skip the points already done and a changed trace or preset is never mistaken for one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from parsers.errors import PagereplayError
from replay.sweep.spec import AXES, SweepSpec, SweepSpecError, TraceSource

__all__ = ["DEFAULT_FIRMWARE_ACCEPTED_BYTES", "Chunk", "Point", "chunk_grid", "expand_grid", "trace_fingerprint"]

#: bytes the firmware accepted before the kernel started when no axis says otherwise (as ``replay``)
DEFAULT_FIRMWARE_ACCEPTED_BYTES = 4 << 30
#: hashing block size for the fingerprints
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Point:
    """One replay of a sweep: trace, policy and costs with its axis values applied, guest shape."""

    index: int  # position in the grid (the order of every table the sweep writes)
    id: str  # digest of everything below and of the trace's content
    trace: str  # TraceSource.name
    policy: Any  # AcceptancePolicy with the point's policy axes applied
    costs: Any  # CostPreset with the point's costs axes applied
    guest_bytes: int | None  # the whole guest's RAM (None: the traced guest)
    vcpus: int | None  # the guest's vCPUs (None: the traced count)
    firmware_accepted_bytes: int
    mode: str
    settings: tuple[tuple[str, Any], ...]  # the axis values this point was given (axis, value)

    @property
    def partition(self) -> tuple[tuple[str, str], ...]:
        """The dataset partition of this point (``trace=.../policy=.../costs=...``)."""
        return (("trace", self.trace), ("policy", self.policy.name), ("costs", self.costs.name))

    def axis_columns(self) -> dict[str, Any]:
        """Every axis as the value this point has (given, or the policy's / preset's own; the guest
        columns are filled in from the trace when the point runs)."""
        p, c = self.policy, self.costs
        return {"unit_bytes": int(p.unit_bytes), "host_backing": c.host_backing, "calls_model": p.calls_model,
                "background_cpu_budget": float(p.background_cpu_budget),
                "background_rate_bytes_s": float(p.background_rate_bytes_s), "init_threads": int(p.init_threads),
                "firmware_accepted_bytes": int(self.firmware_accepted_bytes)}


def trace_fingerprint(src: TraceSource) -> str:
    """sha256 over the bytes of every file the replay of ``src`` reads (trace and snapshots)."""
    h = hashlib.sha256()
    for f in src.files():
        h.update(f.name.encode() + b"\0")
        try:
            with open(f, "rb") as fh:
                while chunk := fh.read(_BLOCK):
                    h.update(chunk)
        except OSError as e:
            raise SweepSpecError(f"{f}: cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def _without_source(d: dict[str, Any]) -> dict[str, Any]:
    # where a policy or preset was read from is not part of what it is
    return {k: v for k, v in d.items() if k not in ("source", "sources")}


def _canonical(obj: Any) -> str:
    """A policy's (``as_dict``) or a cost preset's (``figures``) fields, where it was read from
    aside, as canonical JSON."""
    d = obj.figures() if hasattr(obj, "figures") else obj.as_dict()
    return json.dumps(_without_source(d), sort_keys=True, default=str)


def point_id(trace: str, fingerprint: str, policy: Any, costs: Any, guest: dict[str, Any], mode: str,
             _memo: dict[int, tuple[Any, str]] | None = None) -> str:
    """The digest naming a point (its files and its row).  ``_memo``: the canonical JSON of the
    policies and presets already seen (by identity: a grid shares them between its points)."""
    def canon(obj: Any) -> str:
        if _memo is None:
            return _canonical(obj)
        hit = _memo.get(id(obj))
        if hit is None or hit[0] is not obj:
            hit = _memo[id(obj)] = (obj, _canonical(obj))
        return hit[1]

    head = json.dumps({"trace": trace, "trace_sha256": fingerprint, "mode": mode, "guest": guest}, sort_keys=True,
                      default=str)
    doc = f'{{"point": {head}, "policy": {canon(policy)}, "costs": {canon(costs)}}}'
    return "p" + hashlib.sha256(doc.encode()).hexdigest()[:20]


def _apply(obj: Any, target: str, settings: Sequence[tuple[str, Any]], where: str) -> Any:
    """``obj`` (a policy or a cost preset) with the settings of the axes of ``target``; the
    object's own validation checks the result."""
    changes = {AXES[name].field: v for name, v in settings if AXES[name].target == target}
    if not changes:
        return obj
    try:
        return dataclasses.replace(obj, **changes)
    except (PagereplayError, ValueError) as e:
        given = ", ".join(f"{name} = {v!r}" for name, v in settings if AXES[name].target == target)
        raise SweepSpecError(f"{where}: {given} with {target} {obj.name!r}: {str(e).splitlines()[0]}") from None


def _settings_list(spec: SweepSpec) -> list[tuple[tuple[str, Any], ...]]:
    if spec.points is not None:
        return list(spec.points)
    names = [name for name, _ in spec.axes]
    return [tuple(zip(names, combo)) for combo in itertools.product(*(vals for _, vals in spec.axes))]


def expand_grid(spec: SweepSpec, fingerprints: dict[str, str] | None = None) -> list[Point]:
    """Every point of ``spec``, in grid order: trace, policy, costs, then the axes (the first axis
    varying slowest).  ``fingerprints``: trace name -> ``trace_fingerprint`` (computed when absent)."""
    fps = dict(fingerprints or {})
    for t in spec.traces:
        if t.name not in fps:
            fps[t.name] = trace_fingerprint(t)
    settings = _settings_list(spec)
    # the policies and presets of every setting, built (and validated) once
    resolved: dict[tuple[int, int, int], tuple[Any, Any]] = {}
    for si, s in enumerate(settings):
        for pi, p in enumerate(spec.policies):
            pol = _apply(p, "policy", s, spec.source)
            for ci, c in enumerate(spec.costs):
                resolved[si, pi, ci] = (pol, _apply(c, "costs", s, spec.source))
    points: list[Point] = []
    memo: dict[int, tuple[Any, str]] = {}
    for t in spec.traces:
        for pi in range(len(spec.policies)):
            for ci in range(len(spec.costs)):
                for si, s in enumerate(settings):
                    pol, cost = resolved[si, pi, ci]
                    g = dict(s)
                    guest = {"guest_bytes": g.get("guest_size"), "vcpus": g.get("vcpus"),
                             "firmware_accepted_bytes": g.get("firmware_accepted", DEFAULT_FIRMWARE_ACCEPTED_BYTES)}
                    points.append(Point(index=len(points), id=point_id(t.name, fps[t.name], pol, cost, guest, spec.mode, memo),
                                        trace=t.name, policy=pol, costs=cost, guest_bytes=guest["guest_bytes"],
                                        vcpus=guest["vcpus"], firmware_accepted_bytes=guest["firmware_accepted_bytes"],
                                        mode=spec.mode, settings=s))
    seen: dict[str, Point] = {}
    for p in points:  # listed points that are one replay (one gives an axis its default, one omits it)
        if p.id in seen:
            raise SweepSpecError(f"{spec.source}: two points are the same replay ({_describe(seen[p.id])} and "
                                 f"{_describe(p)}); list each value once")
        seen[p.id] = p
    return points


def _describe(p: Point) -> str:
    s = ", ".join(f"{k}={v}" for k, v in p.settings)
    return f"{p.trace}/{p.policy.name}/{p.costs.name}" + (f" {s}" if s else "")


@dataclass(frozen=True)
class Chunk:
    """Consecutive points of one partition (trace, policy, costs) in grid order: what one task
    replays and what the dataset writes as one file per table (and commits at once)."""

    id: str  # digest of its points' ids
    points: tuple[Point, ...]

    @property
    def trace(self) -> str:
        return self.points[0].trace

    @property
    def partition(self) -> tuple[tuple[str, str], ...]:
        return self.points[0].partition


def _runs(points: Sequence[Point]) -> list[list[Point]]:
    """``points`` cut where the partition changes (grid order keeps a partition's points together)."""
    runs: list[list[Point]] = []
    for p in points:
        if not runs or p.partition != runs[-1][0].partition:
            runs.append([])
        runs[-1].append(p)
    return runs


def _chunk(points: Sequence[Point]) -> Chunk:
    digest = hashlib.sha256("/".join(p.id for p in points).encode()).hexdigest()[:20]
    return Chunk(id="c" + digest, points=tuple(points))


def chunk_grid(points: Sequence[Point], size: int) -> list[Chunk]:
    """The grid cut into chunks of at most ``size`` consecutive points of one partition, each
    partition into as few chunks as that allows, of sizes that differ by one at most (9 points
    and ``size`` 8: 5 + 4, not 8 + 1: a file and a task each cost the same whatever they hold).

    The cut depends on the grid alone (never on what is done), so a resumed sweep writes the
    same files as an uninterrupted one."""
    out: list[Chunk] = []
    for run in _runs(points):
        k = -(-len(run) // size)
        base, extra = divmod(len(run), k)
        start = 0
        for i in range(k):
            n = base + (1 if i < extra else 0)
            out.append(_chunk(run[start:start + n]))
            start += n
    return out


def by_trace(chunks: Iterable[Chunk]) -> dict[str, list[Chunk]]:
    """Chunks grouped by trace, each group in grid order."""
    out: dict[str, list[Chunk]] = {}
    for c in chunks:
        out.setdefault(c.trace, []).append(c)
    return out


def grid_json(spec: SweepSpec, points: Sequence[Point], fingerprints: dict[str, str]) -> dict[str, Any]:
    """The sweep and its points as JSON (``DIR/sweep.json``)."""
    return {"format": "pagereplay.sweep/1", "spec": spec.as_dict(),
            "trace_sha256": {t: fingerprints[t] for t in sorted(fingerprints)},
            "points": [{"point": p.id, "trace": p.trace, "policy": p.policy.name, "costs": p.costs.name,
                        **{k: v for k, v in p.settings}} for p in points]}

