"""The host's own Python, as little of it as ``parsers.capture.record`` needs, for the e2e guest.

The guest has busybox and no Python; to run the Python capture (``record()``, what ``pagereplay
record`` calls) inside the real kernel, the initramfs gets the interpreter this test runs under:
its executable and the shared libraries ``ldd`` lists (at the paths the loader looks them up
by), and every module a ``python -S -E`` import of the capture code loads, compiled to sourceless
``.pyc`` files at their own paths (stdlib, lib-dynload extensions, zstandard, this repo's
``parsers``).  ``guest/pyrecord.py`` is the driver the guest runs; ``pyrun.sh`` starts it.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import re
import subprocess
import sys
from pathlib import Path

#: what the capture imports, also lazily (zstd writer, the folder reader, the manifest, the version lookup)
_COLLECT = r"""
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
import parsers.capture.record, parsers.capture.folder, parsers.capture.manifest, parsers.capture.untraced
import zstandard, json, subprocess, tempfile, shutil, datetime, select, signal, threading, importlib.metadata
import sysconfig
print(json.dumps({"files": sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)}),
                  "stdlib": sysconfig.get_path("stdlib"), "platstdlib": sysconfig.get_path("platstdlib")}))
"""


def _ldd(path: str) -> list[tuple[str, str]]:
    """(path the loader uses, file to copy) for each library ``path`` needs, and its ELF interpreter."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    out = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*\S+ => (/\S+)", line) or re.match(r"\s*(/\S+) \(0x", line)
        if m:
            out.append((m.group(1), os.path.realpath(m.group(1))))
    return out


def _pyc(source: Path) -> bytes:
    """A sourceless .pyc of ``source`` (the header's mtime and size are not checked without a source)."""
    code = compile(source.read_bytes(), str(source), "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(code)


def python_bundle(repo: Path) -> tuple[list[tuple[str, int, bytes]], dict[str, str]]:
    """(initramfs entries, facts) for the host's Python running ``parsers.capture`` from ``repo``.

    The entries are (path without the leading /, mode, data); directories are not included (the
    caller adds the parents).  The facts: ``python`` (the executable's path), ``syspath`` (for the
    driver), ``ld_library_path``."""
    import zstandard

    exe = os.path.realpath(sys.executable)
    syspath = [str(repo), str(Path(zstandard.__file__).resolve().parents[1])]
    r = subprocess.run([exe, "-S", "-E", "-c", _COLLECT, json.dumps(syspath)], capture_output=True, text=True,
                       check=True, cwd="/")
    info = json.loads(r.stdout)
    files: dict[str, tuple[int, bytes]] = {}
    libs = set(_ldd(exe))
    for f in map(Path, info["files"]):
        if f.suffix == ".py":
            files[str(f.with_suffix(".pyc"))] = (0o100644, _pyc(f))
        elif f.suffix == ".so":
            files[str(f)] = (0o100755, f.read_bytes())
            libs |= set(_ldd(str(f)))
    # getpath's landmark for the prefix (os is frozen: its file may not be among the modules)
    files.setdefault(str(Path(info["stdlib"]) / "os.pyc"), (0o100644, _pyc(Path(info["stdlib"]) / "os.py")))
    files[exe] = (0o100755, Path(exe).read_bytes())
    for where, real in sorted(libs):
        files.setdefault(where, (0o100755, Path(real).read_bytes()))
    dirs = [str(Path(info["platstdlib"]) / "lib-dynload")]  # getpath's exec_prefix landmark
    facts = {"python": exe, "syspath": ":".join(syspath),
             "ld_library_path": ":".join(sorted({str(Path(w).parent) for w, _ in libs}))}
    entries = [(d.lstrip("/"), 0o40755, b"") for d in dirs] + [(p.lstrip("/"), m, d) for p, (m, d) in sorted(files.items())]
    return entries, facts


def pyrun_script(facts: dict[str, str]) -> str:
    """``/pyrun.sh OUT MODE``: the guest's way to start ``/pyrecord.py`` with the bundled Python."""
    return ("#!/bin/sh\n"
            f"export LD_LIBRARY_PATH='{facts['ld_library_path']}' PAGEREPLAY_SYSPATH='{facts['syspath']}'\n"
            f"exec '{facts['python']}' -S -E -B /pyrecord.py \"$@\"\n")
