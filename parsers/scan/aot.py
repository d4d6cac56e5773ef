"""The scanner compiled ahead of time: the same kernels without importing numba at start-up.

Importing numba (~0.12 s) and loading the scanner from numba's cache (~0.12 s, most of it
numba's target-context set-up) would be half of the fixed cost of ``pagereplay parse``.  The
entry points of ``parsers/scan/kernels.py`` are therefore also compiled once, by numba's
ahead-of-time compiler (``numba.pycc``), into a small extension module that needs only numpy;
``parsers.scan`` loads it (~1 ms) when one built from its exact sources exists, and otherwise
imports numba and JIT compiles.

The module is built from the same Python functions, with the same signatures the JIT compiles
for the parser (a ``bytearray`` block viewed as uint8), so the results are the same by
construction; ``tests/parsers/test_scan_aot.py`` compares the two.  The build sets
``release_gil`` (pycc's default wrappers hold the GIL; the JIT's ``nogil=True`` does not), so two
blocks still scan in parallel.

Where and when
--------------
The ``aot`` folder of the project cache (``parsers.compiled.cache_root``).  The file name carries
a digest of the scanner's sources (``compile.sources_digest``), the interpreter and numpy, so an
edit to the scanner builds a new one.
It is built by the first parse that finds none (in a child process, once: ~10 s, ~20 s when
numba's own cache is cold too; concurrent parsers wait for one build under a file lock; older
builds in the directory are removed).  If it cannot be built (no C compiler, numba without
``pycc``), a marker (``<name>.failed``, holding the build's output; delete it to try again)
records that and the JIT is used from then on.  ``PAGEREPLAY_NO_AOT=1`` forces the JIT;
``PAGEREPLAY_JIT=0`` (plain Python) uses neither.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from ..compiled import aot_enabled, cache_root
from .compile import sources_digest

MODULE = "_pagereplay_scan"  # the extension's init symbol is PyInit_<MODULE>
EXPORTS = ("scan_block", "sort_order", "per_cpu_order_check")  # as kernels.EXPORTS (which imports numba)
BUILD_TIMEOUT = 600

_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the parsers package


def enabled() -> bool:
    return aot_enabled()


def _key() -> str:
    import numpy as np

    h = hashlib.sha256(sources_digest().encode())
    h.update(f"{sys.version}|{platform.machine()}|numpy {np.__version__}".encode())
    return h.hexdigest()[:16]


def _dirs() -> list[Path]:
    d = cache_root("aot")
    return [] if d is None else [d]


def _filename(key: str) -> str:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return f"_scan_aot.{key}{suffix}"


def _load_file(path: Path) -> ModuleType | None:
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not all(hasattr(mod, name) for name in EXPORTS):
        return None
    return mod


def load() -> ModuleType | None:
    """The compiled scanner built from the current sources, or None (not built, or disabled)."""
    if not enabled():
        return None
    try:
        name = _filename(_key())
        for d in _dirs():
            p = d / name
            if p.is_file():
                return _load_file(p)
    except Exception:  # noqa: BLE001 - whatever is wrong with the file, the JIT serves
        return None
    return None


def build_and_load() -> ModuleType | None:
    """Build the compiled scanner (once, under a lock) and load it; None when that fails.

    Never raises: the JIT is always there to fall back on.
    """
    if not enabled():
        return None
    try:
        key = _key()
    except OSError:
        return None
    name = _filename(key)
    for d in _dirs():
        if (d / (name + ".failed")).exists():
            return None  # a previous build failed here: don't pay for a failing build on every run
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(d, os.W_OK):
            continue
        try:
            return _build_in(d, name)
        except Exception:  # noqa: BLE001 - a failed build must never fail the parse: the JIT serves
            return None
    return None


def _build_in(d: Path, name: str) -> ModuleType | None:
    target = d / name
    lock_path = d / (name + ".lock")
    with open(lock_path, "a+b") as lock:
        try:
            import fcntl

            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # another process may be building it right now
        except ImportError:  # pragma: no cover - not POSIX: at worst two builds race to the rename
            pass
        if not target.is_file():
            env = dict(os.environ, PAGEREPLAY_NO_AOT="1")
            root = str(_ROOT)
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            proc = subprocess.run(
                [sys.executable, "-m", "parsers.scan.aot", str(target)],
                env=env,
                cwd=root,  # `-m` puts the working directory first: another checkout's parsers/ would win
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if proc.returncode != 0 or not target.is_file():
                (d / (name + ".failed")).write_bytes(proc.stdout[-20000:])
                return None
            _remove_stale(d, name)
    return _load_file(target)


def _remove_stale(d: Path, keep: str) -> None:
    """Builds of earlier versions of the scanner's source (never loaded again) and their lock files."""
    for p in d.glob("_scan_aot.*"):
        if not p.name.startswith(keep):
            try:
                p.unlink()
            except OSError:
                pass


def _build(target: Path) -> None:
    """Child process: compile the JIT kernels' signatures with numba.pycc into ``target``."""
    import shutil
    import warnings

    warnings.simplefilter("ignore")
    import numba.pycc.compiler as pycc_compiler
    from numba.pycc import CC

    from parsers import scan
    from parsers.scan import kernels

    class _NogilFlags(pycc_compiler.Flags):
        """pycc compiles with default flags, whose wrappers hold the GIL during the call; the kernels
        are ``nogil`` (two blocks scan in parallel while the main thread runs Python code)."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _NogilFlags

    assert kernels.EXPORTS == EXPORTS
    scan.warm_up()  # compiles (or loads) each entry point for the parser's types
    assert scan.backend() == "jit", "the build must see the JIT kernels"
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        cc = CC(MODULE, source_module=kernels)
        cc.output_dir = str(tmp)
        cc.target_cpu = "generic"  # safe on any CPU of the architecture; as fast as "host" here
        for fname in EXPORTS:
            disp = getattr(kernels, fname)
            sigs = disp.signatures
            if len(sigs) != 1:
                raise RuntimeError(f"{fname}: expected one compiled signature, got {sigs}")
            cc.export(fname, disp.overloads[sigs[0]].signature)(disp.py_func)
        cc.compile()
        built = tmp / cc.output_file
        os.replace(built, target)  # atomic: a reader sees the whole file or none
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # python -m parsers.scan.aot TARGET
    _build(Path(sys.argv[1]))
