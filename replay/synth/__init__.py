"""Synthetic traces through the replay model: ``emit`` (the engine emitter), ``fit`` (its calibration).

:func:`engine_emitter` is the engine as a ``parsers.synthetic.pipeline.EmitterFactory`` (parsers/
never imports replay/, so it is handed to them): what ``pagereplay synth`` (``replay.cli.synth``)
and ``replay.synth.fit`` pass.  It imports ``replay.synth.emit`` (numba, the model) only when
called, so building the CLI stays light.
"""

from __future__ import annotations

from typing import Any


def engine_emitter(*args: Any, **kw: Any) -> Any:
    """A new ``replay.synth.emit.EngineEmitter(*args, **kw)``."""
    from replay.synth.emit import EngineEmitter

    return EngineEmitter(*args, **kw)


#: == ``replay.synth.emit.DESCRIPTION`` (a light copy, tested equal)
engine_emitter.DESCRIPTION = (  # type: ignore[attr-defined]
    "engine: replay.synth.emit (the replay model of 6.1: buddy, migratetypes, fallback, per-CPU lists, zones)")

__all__ = ["engine_emitter"]
