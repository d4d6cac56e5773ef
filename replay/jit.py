"""The replay's compiled functions: ``@kernel(nrt=...)`` and ``@kernel_entry(nrt=...)``.

Every model, acceptance, policy and results kernel is plain Python compiled by
``numba.njit(cache=True)``; ``PAGEREPLAY_JIT=0`` runs the same functions uncompiled
(``parsers.compiled``).  Each kernel says how it compiles:

- ``nrt=False``: the function never allocates inside compiled code.  Without numba's runtime
  (NRT) the arrays of a namedtuple such as ``ModelState`` are not reference-counted on every
  access (a bounds check on ``st`` costs 0.8 ns instead of 530 ns; the exact loop runs at
  ~20 M events/s instead of ~0.7 M).  Every function it calls must be ``nrt=False`` too.
- ``nrt=True``: it may allocate (``np.zeros`` and friends inside the kernel).

numba's cache lives in the project cache folder, in a subfolder keyed on the source of every
module that can hold a kernel or a constant a kernel reads (``cache_key``): numba itself only
notices when a function's *own* file changes, not when a function it inlined from another
module does, so a stale ``pcp_del`` could otherwise survive inside ``exact_chunk``.
``NUMBA_CACHE_DIR`` wins.

Compiled ahead of time
----------------------
Compiling every kernel the demo runs takes numba ~90 s of CPU, so a wheel carries them: its
build (``build_backend.py``) runs the demo once with an empty cache, and the same trace in
simulate mode, and packs the cache they filled (``numba/<cache_key>``, the parser's scanner and
the binary readers built ahead of time) into ``replay/_jitcache/``; the first replay after the
install copies it into the user's cache (``seed_cache``, once per bundle).  That works because the cache is relocatable: numba names a
source folder's cache after a digest of its absolute path, which differs between the build tree
and the install, so ``_ProjectLocator`` names it by the folder's path inside the package
(``replay_model``); numba checks the rest itself (its version, the sha256 of each source file,
each function's bytecode, the CPU).  The bundle is used only with the numba, numpy and Python
it was built with, and only under the ``cache_key`` of the sources it was built from: any edit
to a kernel source (an editable install, a patched tree) misses it and compiles as before.

Each edit or upgrade leaves the previous key's folder behind; a key folder unused for
``STALE_KEY_DAYS`` is removed (``prune_stale_keys``) when a replay opens its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parsers.compiled import JIT_ENABLED, cache_root

__all__ = ["JIT_ENABLED", "build_bundle", "cache_key", "kernel", "kernel_entry", "prune_stale_keys", "seed_cache"]

_PACKAGE = Path(__file__).resolve().parent
#: packages that hold no kernel and no constant a kernel reads (imports run one way: a kernel
#: module never imports them), so editing them keeps the cache
_PRESENTATION = ("cli", "report")
#: the compiled code a wheel carries (``build_bundle`` writes it, ``seed_cache`` reads it)
BUNDLE = _PACKAGE / "_jitcache"
_cache_dir_set = False
_seeded = False


def _kernel_sources() -> list[Path]:
    files = [p for p in _PACKAGE.rglob("*.py") if p.relative_to(_PACKAGE).parts[0] not in _PRESENTATION]
    files.append(_PACKAGE.parent / "parsers" / "schema.py")  # event codes
    files.append(_PACKAGE.parent / "parsers" / "synthetic" / "emitted.py")  # what replay.synth.emit compiles in
    return sorted(files)


@functools.cache
def cache_key() -> str:
    """Digest of every kernel source (see the module docstring); read once per process."""
    h = hashlib.sha256()
    for p in _kernel_sources():
        h.update(str(p.relative_to(_PACKAGE.parent)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _toolchain() -> dict[str, str]:
    """What compiled code depends on besides the sources (numba's own cache checks the CPU)."""
    from importlib.metadata import version

    return {"python": sys.version, "machine": platform.machine(), "numba": version("numba"),
            "llvmlite": version("llvmlite"), "numpy": version("numpy")}


def seed_cache() -> bool:
    """Copy the wheel's compiled code (``BUNDLE``) into the user's cache, once per bundle.

    True when it was copied now.  Files already in the cache are kept; a bundle built from
    other sources or with another toolchain is skipped (and not looked at again).
    """
    global _seeded
    if _seeded or not JIT_ENABLED or os.environ.get("NUMBA_CACHE_DIR"):
        return False
    _seeded = True
    try:
        manifest = json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # a checkout, or a wheel built without it
    root = cache_root("")
    if root is None:
        return False
    marker = root / f".seeded-{manifest.get('id', 'unknown')}"
    if marker.exists():
        return False
    ok = manifest.get("cache_key") == cache_key() and manifest.get("toolchain") == _toolchain()
    if ok:
        _copy_missing(BUNDLE / "cache", root)
    try:
        marker.write_text("copied\n" if ok else "skipped: other sources or toolchain\n", encoding="utf-8")
    except OSError:
        pass
    return ok


def _copy_missing(src: Path, dst: Path) -> None:
    """Every file of ``src`` that ``dst`` lacks, each written whole (temporary name, then rename)."""
    for f in sorted(src.rglob("*")):
        if not f.is_file():
            continue
        t = dst / f.relative_to(src)
        if t.exists():
            continue
        try:
            t.parent.mkdir(parents=True, exist_ok=True)
            tmp = t.with_name(f".{t.name}.{os.getpid()}.tmp")
            shutil.copyfile(f, tmp)
            os.replace(tmp, t)
        except OSError:
            return  # a cache that cannot be written: the JIT compiles as it would have


def build_bundle(dest: Path, sample: Path) -> dict[str, Any]:
    """Run ``_bundle_run`` on ``sample`` in a child process with an empty cache and pack the cache
    it filled into ``dest`` (``dest/cache`` and ``dest/manifest.json``); returns the manifest."""
    import subprocess
    import tempfile

    root = _PACKAGE.parent
    key = cache_key()
    with tempfile.TemporaryDirectory(prefix="pagereplay-bundle-") as tmp:
        cache = Path(tmp) / "cache"
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PAGEREPLAY_NO_AOT")}
        env.update(PAGEREPLAY_CACHE_DIR=str(cache), PYTHONWARNINGS="ignore")
        env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        code = "import sys; from replay.jit import _bundle_run; _bundle_run(sys.argv[1], sys.argv[2])"
        subprocess.run([sys.executable, "-c", code, str(sample), tmp], env=env, cwd=root, check=True,
                       stdin=subprocess.DEVNULL)
        kernels = cache / "numba" / key
        if not kernels.is_dir() or any(d.name not in (key, "scan") for d in (cache / "numba").iterdir()):
            raise RuntimeError(f"the kernel sources changed while they were compiled (key {key}): build again")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(cache, dest / "cache", ignore=shutil.ignore_patterns("*.lock", "*.failed", ".seeded-*"))
    h = hashlib.sha256()
    for f in sorted((dest / "cache").rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(dest)).encode() + b"\0" + f.read_bytes())
    manifest = {"id": h.hexdigest()[:16], "cache_key": key, "toolchain": _toolchain()}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _bundle_run(sample: str, work: str) -> None:
    """``build_bundle``'s child: what fills the cache.  The demo (parse, exact replay under every
    preset), the same trace in simulate mode, and the binary readers' compiled kernels."""
    from parsers.binary import aot as binary_aot
    from replay.pipeline.demo import demo_replay
    from replay.pipeline.job import run_replay

    w, before = Path(work), Path(sample).parent / "proc_before"
    demo_replay(Path(sample), w / "results")  # it parses into work/events.parquet
    run_replay(w / "events.parquet", "simulate", w / "simulate", snapshot=before if before.is_dir() else None,
               all_presets=True, costs="tdx-4k")
    binary_aot.get()


def _project_locator(numba: Any) -> None:
    """Put ``_ProjectLocator`` first among numba's cache locators (see the module docstring)."""
    from numba.core import caching

    # older numbas spell them with an underscore; without either, numba's own locator serves
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    base = getattr(caching, "UserProvidedCacheLocator", None) or getattr(caching, "_UserProvidedCacheLocator", None)
    if impl is None or base is None:
        return

    class _ProjectLocator(base):  # type: ignore[misc, valid-type]
        """numba's ``CACHE_DIR`` locator, a replay source folder named by its path in the package."""

        def __init__(self, py_func: Any, py_file: str) -> None:
            super().__init__(py_func, py_file)
            rel = Path(py_file).resolve().parent.relative_to(_PACKAGE.parent)
            self._cache_path = os.path.join(numba.config.CACHE_DIR, "_".join(rel.parts))

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if not Path(py_file).resolve().is_relative_to(_PACKAGE):
                return None
            return super().from_function(py_func, py_file)

    if not any(c.__name__ == "_ProjectLocator" for c in impl._locator_classes):
        impl._locator_classes.insert(0, _ProjectLocator)


#: a key folder unused this long is compiled code of sources no longer installed (every edit of a
#: kernel source, every upgrade makes a new key): pruned when another key's folder is opened
STALE_KEY_DAYS = 30


def prune_stale_keys(numba_root: Path, current: str, *, now: float | None = None) -> list[str]:
    """Remove the key folders of ``numba_root`` (16 hex digits, not ``current``) unused for
    ``STALE_KEY_DAYS``; returns their names.  A key folder's mtime is its last use (``_set_cache_dir``
    touches it), so a folder another process is using is never old enough to go."""
    limit = (time.time() if now is None else now) - STALE_KEY_DAYS * 86400
    gone = []
    try:
        entries = list(numba_root.iterdir())
    except OSError:
        return gone
    for d in sorted(entries):
        if d.name == current or len(d.name) != 16 or not all(c in "0123456789abcdef" for c in d.name):
            continue
        try:
            if not d.is_dir() or d.is_symlink() or d.stat().st_mtime >= limit:
                continue
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        gone.append(d.name)
    return gone


def _set_cache_dir(numba: Any) -> None:
    global _cache_dir_set
    if _cache_dir_set or os.environ.get("NUMBA_CACHE_DIR"):
        return
    seed_cache()
    d = cache_root(f"numba/{cache_key()}")
    if d is not None:
        numba.config.CACHE_DIR = str(d)
        _project_locator(numba)
        try:
            os.utime(d)  # this key's last use (prune_stale_keys)
        except OSError:
            pass
        prune_stale_keys(d.parent, d.name)
    _cache_dir_set = True


def _compile(fn: Callable[..., Any], nrt: bool, nogil: bool) -> Callable[..., Any]:
    if not JIT_ENABLED:
        return fn
    import numba

    _set_cache_dir(numba)
    opts: dict[str, Any] = {"cache": True}
    if nogil:
        opts["nogil"] = True
    if not nrt:
        opts["_nrt"] = False
    return numba.njit(**opts)(fn)


def kernel(*, nrt: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A compiled model function, inlined into the compiled functions that call it."""
    return lambda fn: _compile(fn, nrt, nogil=False)


def kernel_entry(*, nrt: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A compiled entry point called from Python: it releases the GIL, so policy replays in
    threads and the warm-up beside the trace reader run in parallel."""
    return lambda fn: _compile(fn, nrt, nogil=True)
