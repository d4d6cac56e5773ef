"""Calibration of the synthetic workloads with the replay engine's emitter.

``parsers.synthetic.fit`` is the search; parsers/ never imports replay/, so the engine emitter
(``replay.synth.emit.EngineEmitter``, the default emitter of ``pagereplay synth``) is passed to it
from here.  Deterministic (seed 0 for the runs and the samples):

    python -m replay.synth.fit churn /tmp/medium.parquet [SAMPLES [ROUNDS]]
"""

from __future__ import annotations

import sys
from typing import Any

from parsers.synthetic import fit as _fit
from replay.synth import engine_emitter


def evaluate(name: str, params: Any, real: Any, machine: Any) -> tuple[float, Any]:
    """:func:`parsers.synthetic.fit.evaluate` with the engine emitter."""
    return _fit.evaluate(name, params, real, machine, engine_emitter)


def fit(name: str, real: Any, **kw: Any) -> tuple[Any, float, Any]:
    """:func:`parsers.synthetic.fit.fit` with the engine emitter."""
    return _fit.fit(name, real, emitter=engine_emitter, **kw)


def main(argv: list[str]) -> None:
    _fit.main(argv, emitter=engine_emitter, emitter_name="engine")


__all__ = ["engine_emitter", "evaluate", "fit", "main"]

if __name__ == "__main__":
    main(sys.argv[1:])
