"""``pagereplay synth`` with the replay engine's emitter (issue 5, "kernel-faithful emission").

parsers/ never imports replay/, so the synth command (``parsers.synthetic.cli``) is registered
from here with ``replay.synth.emit.EngineEmitter`` as the ``engine`` emitter and the default;
``--emitter standin`` keeps the stand-in.
"""

from __future__ import annotations

from typing import Any


def _engine_emitter(*args: Any, **kw: Any) -> Any:
    from replay.synth.emit import EngineEmitter  # numba compiles on first use, not at CLI start

    return EngineEmitter(*args, **kw)


_engine_emitter.DESCRIPTION = (  # type: ignore[attr-defined]
    "engine: replay.synth.emit (the replay model of 6.1: buddy, migratetypes, fallback, per-CPU lists, zones)")


def register(app: Any) -> None:
    from parsers.synthetic import cli

    cli.register(app, emitters={"engine": _engine_emitter}, default="engine")


__all__ = ["register"]
