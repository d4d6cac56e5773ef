"""The tree is the pipeline: each package one layer, imports only downward, no cycles (docs/layout.md).

Every import of ``parsers``/``replay`` code, also the lazy ones inside functions, is read from the
sources (``ast``), resolved to the module it names and checked against :data:`LAYERS`: a module
may import its own package (a layer) and the layers below it, never one of its own rank or
above.  A new package has to be given its rank here, which is the point: its place in the
pipeline is decided, and written down, when it is made.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layer -> rank; imports go to a strictly lower rank.  parsers/ (reading traces into the
#: canonical table) lies wholly below replay/ (replaying it).  Layers of one rank do not import
#: each other.
LAYERS = {
    # parsers: leaves, the table's schema, the scanner, the readers, the entry points
    "parsers.errors": 0, "parsers.version": 0, "parsers.gfp": 0, "parsers.compiled": 0, "parsers.units": 0,
    "parsers.ranges": 0,
    "parsers.schema": 1,
    "parsers.scan": 2, "parsers.arrow_columns": 2, "parsers.stats": 2, "parsers.inputs": 2,
    "parsers.accounting": 3, "parsers.formats": 3, "parsers.parquet": 3, "parsers.capture": 3,
    "parsers.binary": 4, "parsers.sorted_block": 4, "parsers.synthetic": 4,
    "parsers.trace_parser": 5,
    "parsers.api": 6,
    # replay: compile machinery, events, the kernel model, acceptance, one policy's replay,
    # results, the pipeline and presentation, the sweep, the command line
    "replay.errors": 10, "replay.jit": 10,
    "replay.events": 11,
    "replay.model": 12,
    "replay.acceptance": 13,
    "replay.policy": 14, "replay.synth": 14,
    "replay.results": 15,
    "replay.pipeline": 16, "replay.report": 16,
    "replay.sweep": 17,
    "replay.cli": 18,
}  # fmt: skip

#: imports against the rule, each with its reason: (importer, imported), modules or packages.
#: Both are build steps run in a child process, importing what they build from.
ALLOWED = {
    ("replay.jit", "replay.pipeline"): "build_bundle's child (_bundle_run) runs the demo to fill the wheel's cache",
    ("parsers.scan.aot", "parsers.scan"): "the ahead-of-time build's child (_build) compiles the package's kernels",
}


def _allowed(mod: str, target: str) -> bool:
    inside = lambda m, p: m == p or m.startswith(p + ".")  # noqa: E731
    return any(inside(mod, a) and inside(target, b) for a, b in ALLOWED)


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("parsers", "replay"):
        for p in sorted((ROOT / top).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module ``name`` is, or lies in (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(mod: str) -> list[tuple[int, str]]:
    """(line, module) of every parsers/replay module ``mod`` imports, lazy imports included."""
    path = MODULES[mod]
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(x) for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test).endswith("TYPE_CHECKING")
                   for b in n.body for x in ast.walk(b)}  # fmt: skip
    for n in ast.walk(tree):
        if id(n) in typing_only:
            continue  # annotations only: not imported when the code runs
        names: list[str] = []
        if isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                base = ".".join(up + ([n.module] if n.module else []))
            # ``from pkg import mod`` names the module, ``from mod import attr`` the module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in n.names]
        for name in names:
            target = _resolve(name) if name.split(".")[0] in ("parsers", "replay") else None
            if target is not None and target != mod:
                out.append((n.lineno, target))
    return out


def layer(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def test_every_layer_has_a_rank() -> None:
    missing = sorted({layer(m) for m in MODULES if "." in m} - set(LAYERS))
    assert not missing, f"give these packages/modules a rank in LAYERS (docs/layout.md): {missing}"


def violations(mods: list[str]) -> list[str]:
    """The imports of ``mods`` that go up or sideways, one line each."""
    bad = []
    for mod in mods:
        if "." not in mod:
            continue  # the (empty) top packages
        src = layer(mod)
        for line, target in imports(mod):
            dst = layer(target)
            if dst == src or "." not in target or _allowed(mod, target):
                continue
            if LAYERS.get(dst, 99) >= LAYERS.get(src, -1):
                bad.append(f"{MODULES[mod].name}:{line}: {mod} ({src}, rank {LAYERS.get(src)}) imports "
                           f"{target} ({dst}, rank {LAYERS.get(dst)})")
    return bad


def test_imports_go_down() -> None:
    bad = violations(list(MODULES))
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_module_cycles() -> None:
    """No cycle among modules either, inside a layer included (Tarjan's strongly connected components)."""
    graph = {m: sorted({t for _, t in imports(m) if not _allowed(m, t)}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in graph:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("code,expect", [
    ("from replay.cli import app\n", "replay.cli"),  # parsers never imports replay
    ("def f():\n    from ..api import load_events\n", "parsers.api"),  # lazy, relative, upward
    ("from .. import trace_parser\n", "parsers.trace_parser"),
])  # fmt: skip
def test_an_upward_import_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str, expect: str) -> None:
    """The check itself, on a module placed (as far as it knows) at parsers/scan/_probe.py."""
    (tmp_path / "_probe.py").write_text(code)
    monkeypatch.setitem(MODULES, "parsers.scan._probe", tmp_path / "_probe.py")
    assert [t for _, t in imports("parsers.scan._probe")] == [expect]
    assert len(violations(["parsers.scan._probe"])) == 1
    monkeypatch.setitem(MODULES, "parsers.scan._probe", tmp_path / "_probe.py")
    (tmp_path / "_probe.py").write_text("from ..schema import Event\nfrom . import codes\n")  # down, and inside
    assert violations(["parsers.scan._probe"]) == []
