"""The wheel's build backend: setuptools', and then the compiled replay kernels packed into the wheel.

A wheel built here carries ``replay/_jitcache/`` (``replay.jit.build_bundle``: the numba cache and
the parser's scanner that one demo run on the bundled sample fills), so that the first
``pagereplay demo`` after ``pip install`` loads compiled code instead of compiling for ~90 s
(replay/jit.py, "Compiled ahead of time").  The kernels are compiled from the wheel's own files
(unpacked into a temporary folder), with the numba the project depends on, which is why the
build asks for the project's dependencies.  Editable installs and sdists are plain setuptools.

``PAGEREPLAY_BUILD_NO_JITCACHE=1`` builds the wheel without it; a failed compilation only warns
(the wheel then compiles on first use, as a checkout does).
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *

_ROOT = Path(__file__).resolve().parent
_SAMPLE = _ROOT / "sample_traces" / "debian12-6.1-medium-head" / "trace.txt.zst"
_BUNDLE = "replay/_jitcache"


def _wanted() -> bool:
    return os.environ.get("PAGEREPLAY_BUILD_NO_JITCACHE") != "1" and _SAMPLE.is_file()


def get_requires_for_build_wheel(config_settings=None):  # type: ignore[no-untyped-def]
    """setuptools' needs, plus the project's dependencies: the build runs the demo's replay."""
    extra = tomllib.loads((_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    return list(_setuptools.get_requires_for_build_wheel(config_settings)) + (list(extra) if _wanted() else [])


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    """setuptools' wheel, then ``replay/_jitcache/`` compiled from its files and added to it."""
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    if _wanted():
        try:
            _add_bundle(Path(wheel_directory) / name)
        except (OSError, subprocess.CalledProcessError, zipfile.BadZipFile) as e:
            print(f"pagereplay build: no compiled kernels in the wheel ({e}); the first replay compiles them",
                  file=sys.stderr)
    return name


def _add_bundle(wheel: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pagereplay-wheel-") as tmp:
        site = Path(tmp) / "site"
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
        bundle = site / _BUNDLE
        env = dict(os.environ)  # pip's build environment reaches its packages through PYTHONPATH
        env["PYTHONPATH"] = str(site) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        code = ("import sys; from pathlib import Path; from replay.jit import build_bundle; "
                "build_bundle(Path(sys.argv[1]), Path(sys.argv[2]))")
        print("pagereplay build: compiling the replay kernels for the wheel (~2 min)", file=sys.stderr)
        subprocess.run([sys.executable, "-c", code, str(bundle), str(_SAMPLE)], env=env, cwd=site, check=True,
                       stdin=subprocess.DEVNULL, stdout=sys.stderr)
        _rewrite(wheel, site, sorted(p for p in bundle.rglob("*") if p.is_file()))


def _record_line(arc: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arc},sha256={digest},{len(data)}"


def _rewrite(wheel: Path, site: Path, files: list[Path]) -> None:
    """The wheel again with ``files`` (under ``site``) added and its RECORD listing them."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        for info in src.infolist():
            if info.filename != record:
                dst.writestr(info, src.read(info))
        lines = src.read(record).decode().splitlines()
        for f in files:
            arc = f.relative_to(site).as_posix()
            data = f.read_bytes()
            dst.writestr(arc, data)
            lines.append(_record_line(arc, data))
        dst.writestr(record, "\n".join(lines) + "\n")
    os.replace(tmp, wheel)
