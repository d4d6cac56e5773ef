"""The binary readers' kernels (``kernels.py``) compiled ahead of time, like the text scanner.

The kernels are compiled once by numba's ahead-of-time compiler (``numba.pycc``) into a small
extension module that needs only numpy, so reading a binary never imports numba (whose import
and JIT set-up would cost more than the whole read).  The module lives in the ``aot`` folder
of the project cache (``parsers.compiled.cache_root``), named after a digest of
``kernels.py``, this file, the interpreter and numpy; it is built by the first binary read that
finds none (in a child process, under a file lock: ~10-30 s once).  If it cannot be built (no
C compiler, numba without ``pycc``) a ``<name>.failed`` marker records it and the numpy
implementations are used from then on, as they are with ``PAGEREPLAY_NO_AOT=1`` or
``PAGEREPLAY_JIT=0``.  Both give the same results (the tests compare them).

Every array handed to the compiled functions is C-contiguous and read-only (``ro``): the
exported signatures are for read-only arrays, so one compiled version serves mmap-ed files,
bytes and fresh arrays alike.
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
import threading
from pathlib import Path
from types import ModuleType

import numpy as np

from ..compiled import aot_enabled, cache_root
from .kernels import PlanArrays, Records, RingGeo, SampleLayout, SampleRows

MODULE = "_pagereplay_binary"
EXPORTS = ("rb_count", "rb_scan_into", "perf_walk", "perf_samples", "decode", "comm_of", "gather")
BUILD_TIMEOUT = 600
_HERE = Path(__file__).resolve().parent
_lock = threading.Lock()
_state: dict[str, object] = {}


def ro(a: np.ndarray, dtype=None) -> np.ndarray:
    """``a`` as a read-only C-contiguous array (a view when it already is one)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def rb_outputs(n: int, nf: int) -> Records:
    """The ``kernels.Records`` ``rb_scan_into`` fills for ``n`` records, of the types its compiled
    signature has."""
    i8, i4 = np.int64, np.int32
    return Records(np.empty(n, i8), np.empty(n, i4), np.empty(n, i8), np.empty(n, i4), np.empty(n, i4),
                   np.empty(n, i4), np.empty(n, np.int8), np.empty((nf, n), i8))


def perf_outputs(ns: int, nf: int) -> SampleRows:
    """The ``kernels.SampleRows`` ``perf_samples`` fills for ``ns`` samples, of the types its
    compiled signature has."""
    i8, i4 = np.int64, np.int32
    return SampleRows(np.empty(ns, i8), np.empty(ns, i4), np.empty(ns, i4), np.empty(ns, i4), np.empty(ns, i8),
                      np.empty(ns, i4), np.empty(ns, i4), np.empty(ns, i4), np.empty(ns, i4), np.empty(ns, np.int8),
                      np.empty((nf, ns), i8))


def _key() -> str:
    h = hashlib.sha256()
    for name in ("kernels.py", "aot.py"):
        h.update((_HERE / name).read_bytes())
    h.update(f"{sys.version}|{platform.machine()}|numpy {np.__version__}".encode())
    return h.hexdigest()[:16]


def _filename(key: str) -> str:
    return f"_binary_aot.{key}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def _load_file(path: Path) -> ModuleType | None:
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod if all(hasattr(mod, n) for n in EXPORTS) else None


def get() -> ModuleType | None:
    """The compiled kernels (built on first use), or None: then the numpy implementations serve."""
    if "mod" in _state:
        return _state["mod"]  # type: ignore[return-value]
    with _lock:
        if "mod" not in _state:
            _state["mod"] = _load_or_build()
    return _state["mod"]  # type: ignore[return-value]


def _load_or_build() -> ModuleType | None:
    if not aot_enabled():
        return None
    try:
        d = cache_root("aot")
        if d is None:
            return None
        name = _filename(_key())
        target = d / name
        if target.is_file():
            return _load_file(target)
        if (d / (name + ".failed")).exists():
            return None
        return _build_in(d, name)
    except Exception:  # noqa: BLE001 - the numpy implementations always serve
        return None


def _build_in(d: Path, name: str) -> ModuleType | None:
    target = d / name
    with open(d / (name + ".lock"), "a+b") as lock:
        try:
            import fcntl

            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # another process may be building it right now
        except ImportError:  # pragma: no cover - not POSIX
            pass
        if not target.is_file():
            env = dict(os.environ, PAGEREPLAY_NO_AOT="1")
            root = str(_HERE.parent.parent)
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            proc = subprocess.run(
                [sys.executable, "-m", "parsers.binary.aot", str(target)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT, check=False,
            )
            if proc.returncode != 0 or not target.is_file():
                (d / (name + ".failed")).write_bytes(proc.stdout[-20000:])
                return None
            for p in d.glob("_binary_aot.*"):  # builds of earlier sources
                if not p.name.startswith(name):
                    try:
                        p.unlink()
                    except OSError:
                        pass
    return _load_file(target)


def _build(target: Path) -> None:
    """Child process: JIT the kernels for the readers' argument types, then export those with pycc."""
    import shutil
    import warnings

    warnings.simplefilter("ignore")
    import numba.pycc.compiler as pycc_compiler
    from numba import njit
    from numba.pycc import CC

    from parsers.binary import kernels as K

    class _NogilFlags(pycc_compiler.Flags):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _NogilFlags
    for helper in ("_u", "_sext", "_attr_of", "_sample"):  # (scalar helpers, called per record)
        setattr(K, helper, njit(inline="always")(getattr(K, helper)))
    for helper in ("_decode_all", "_page"):
        setattr(K, helper, njit(getattr(K, helper)))
    jit = {n: njit(getattr(K, n)) for n in EXPORTS}
    u8 = ro(np.zeros(64, np.uint8))
    i8 = ro(np.zeros(1, np.int64))
    hdr = ro(np.array([0, 2, 4, 4], np.int64))
    pa = PlanArrays(hdr, i8, ro(np.zeros((1, 1, 3), np.int64)), i8, i8)
    jit["rb_count"](u8, i8, 4096, 8, 8, 8, 16, True)
    jit["rb_scan_into"](u8, i8, 0, 0, 0, RingGeo(4096, 8, 8, 8, 16, True, 8), pa, rb_outputs(0, 1),
                        np.zeros(1, np.int64), np.zeros((1, 3), np.int64), np.zeros(3, np.int64))
    fix = ro(np.zeros((1, 5), np.int64))
    jit["perf_walk"](u8, 0, 0, True, 16)
    # (the output arrays of perf_samples are writable: the readers allocate them, see ``perf_outputs``)
    jit["perf_samples"](u8, i8, 0, 0, True, SampleLayout(0, i8, i8, i8, i8, fix), pa, perf_outputs(0, 1))
    jit["decode"](u8, i8, i8, True, pa)
    i4 = ro(np.zeros(1, np.int32))
    jit["comm_of"](i8, i8, i4, i8, i8, i8, i4, 1)
    jit["gather"](u8, i8, 8, False, True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        cc = CC(MODULE, source_module=K)
        cc.output_dir = str(tmp)
        cc.target_cpu = "generic"
        for n, disp in jit.items():
            sigs = disp.signatures
            if len(sigs) != 1:
                raise RuntimeError(f"{n}: expected one compiled signature, got {sigs}")
            cc.export(n, disp.overloads[sigs[0]].signature)(disp.py_func)
        cc.compile()
        os.replace(tmp / cc.output_file, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # python -m parsers.binary.aot TARGET
    _build(Path(sys.argv[1]))
