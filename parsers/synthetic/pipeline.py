"""Workload -> requests -> canonical events -> Parquet (and text), streamed with bounded memory.

``Synthesis(cfg).batches()`` is the whole chain as a stream of record batches; ``write_parquet`` writes it
with self-describing metadata (workload, parameters, seed; keys under ``pagereplay.``); and
``render_parquet`` renders a written file as kernel text batch by batch.  The same configuration
gives a byte-identical Parquet file.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..parquet import check_parquet_output, write_overlapped, writer_options
from ..schema import GFP_BIT_TABLE_NAME, METADATA_PREFIX, SCHEMA_VERSION, SORT_KEYS, arrow_schema
from ..version import TOOL_VERSION
from .config import SynthConfig
from .emit import Emitter
from .render import RenderOptions, render
from .requests import RequestGenerator

#: the stand-in emitter's description (``synthetic.emitter`` in the metadata)
EMITTER = "stand-in: parsers.synthetic.emit (plain pfn allocator + 6.1 per-CPU lists)"

#: ``EmitterFactory(machine, emit_params, phases=..., source=...)`` returns an object with
#: ``feed(request_batch) -> Iterator[RecordBatch]`` and ``finish() -> Iterator[RecordBatch]``
#: (optional: ``DESCRIPTION``, ``pcp_info()``).  parsers/ never imports replay/: the replay
#: engine's emitter (``replay.synth.emit.EngineEmitter``) is injected by its caller
#: (``replay.cli.synth`` for ``pagereplay synth``); the default is the stand-in.
EmitterFactory = Callable[..., Any]


class Synthesis:
    """One run: ``batches()`` streams canonical record batches; ``metadata()`` describes them.

    ``emitter``: the emitter factory (default: the stand-in :class:`~.emit.Emitter`).
    """

    def __init__(self, cfg: SynthConfig, emitter: EmitterFactory | None = None) -> None:
        self.cfg = cfg
        self.workload = cfg.build()
        self.gen = RequestGenerator(self.workload, cfg.machine)
        self.events = 0
        self.emitter = emitter or Emitter
        self.emitter_description = getattr(self.emitter, "DESCRIPTION", EMITTER)

    def batches(self) -> Iterator[pa.RecordBatch]:
        em = self.emitter(self.cfg.machine, self.cfg.emit, phases=self.gen.phase_info(),
                          source=f"<synthetic:{self.cfg.workload}>")
        self.emitter_description = getattr(em, "DESCRIPTION", EMITTER)
        self.pcp = em.pcp_info() if hasattr(em, "pcp_info") else {"batch": self.cfg.emit.batch, "high": em.high}
        for b in _prefetch(self.gen):
            for out in em.feed(b):
                self.events += out.num_rows
                yield out
        for out in em.finish():
            self.events += out.num_rows
            yield out

    def metadata(self) -> dict[str, str]:
        c = self.cfg
        md = {
            "schema_version": SCHEMA_VERSION,
            "tool_version": TOOL_VERSION,
            "sorted_by": ",".join(SORT_KEYS),
            "inputs": "[]",
            "format": "synthetic",
            "kernel_version": "",
            "kmem_era": ">=5.19 (synthetic, real percpu_refill)",
            "timestamp_unit": "ns",
            "gfp_bit_table": GFP_BIT_TABLE_NAME,
            "lost_events": "[]",
            "synthetic.workload": c.workload,
            "synthetic.parameters": json.dumps(c.parameters(), sort_keys=True),
            "synthetic.seed": str(c.machine.seed),
            "synthetic.emitter": self.emitter_description,
            "synthetic.phases": json.dumps(self.gen.phase_info(), sort_keys=True),
            "synthetic.requests": json.dumps(self.gen.stats, sort_keys=True),
            "synthetic.pcp": json.dumps(getattr(self, "pcp", {}), sort_keys=True),
            "synthetic.events": str(self.events),
        }
        return {METADATA_PREFIX + k: v for k, v in md.items()}


def _prefetch(it: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """``it`` produced in a background thread, ``depth`` items ahead, in order: request generation
    (numpy, mostly outside the GIL) overlaps with emission (the compiled emitters release it)."""
    q: queue.Queue = queue.Queue(depth)
    done = object()

    def run() -> None:
        try:
            for x in it:
                q.put((True, x))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put((False, e))
        q.put((True, done))

    threading.Thread(target=run, daemon=True, name="synth-requests").start()
    while True:
        ok, x = q.get()
        if not ok:
            raise x
        if x is done:
            return
        yield x


def write_parquet(cfg: SynthConfig, out: str | os.PathLike[str], *, compression: str = "zstd",
                  emitter: EmitterFactory | None = None) -> dict[str, str]:
    """Write the run to ``out`` (atomically); returns the metadata written.  ``emitter``: see
    :class:`Synthesis`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    syn = Synthesis(cfg, emitter)
    try:
        with pq.ParquetWriter(tmp, arrow_schema(), **writer_options(compression)) as w:
            write_overlapped(w.write_batch, syn.batches())  # encoding overlaps with the next batches
            md = syn.metadata()
            w.add_key_value_metadata(md)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return md


def render_parquet(path: str | os.PathLike[str], text_out: str | os.PathLike[str], opts: RenderOptions,
                   *, nr_cpus: int | None = None, batch_rows: int = 1 << 20) -> int:  # fmt: skip
    """Render a Parquet event table as kernel text, batch by batch; returns bytes written."""
    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    if nr_cpus is None:
        stats = [pf.metadata.row_group(i).column(1).statistics for i in range(pf.metadata.num_row_groups)]
        nr_cpus = max((int(s.max) + 1 for s in stats if s is not None and s.has_min_max), default=1)
    return render(pf.iter_batches(batch_size=batch_rows), text_out, opts, n_events=n, nr_cpus=nr_cpus)


def check_outputs(output: str | os.PathLike[str], text: str | os.PathLike[str] | None, inputs: list[Any]) -> None:
    """Refuse outputs that would replace one of ``inputs``, the other output, or a file pagereplay
    did not write (a text trace cannot be told from a real one: an existing ``--text`` file is
    refused)."""
    from ..errors import refuse_clobber, refuse_foreign

    check_parquet_output(output, inputs)
    if text is not None:
        refuse_clobber(text, [*inputs, output], option="--text")
        refuse_foreign(text, False, "a trace", option="--text")


__all__ = ["EMITTER", "EmitterFactory", "Synthesis", "check_outputs", "render_parquet", "write_parquet"]

