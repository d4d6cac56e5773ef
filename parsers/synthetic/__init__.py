"""Synthetic page-allocator traces: workload models, a stand-in emitter, the text renderer.

The default emitter of ``pagereplay synth`` is the replay engine's (``replay.synth.emit``).

* :mod:`parsers.synthetic.workloads` -- workload models as data; they generate *requests*
  (allocations and frees with cpu, task, time, order, migratetype, gfp, lifetime).
* :mod:`parsers.synthetic.emit` -- the stand-in emitter (``--emitter standin``): requests into
  canonical events with a plain pfn allocator and per-CPU page lists.
* :mod:`parsers.synthetic.render` -- canonical table -> the text a kernel of a given era prints
  (ftrace ``trace``/``trace_pipe``, ``trace-cmd report``, ``perf script``).
* :mod:`parsers.synthetic.config` -- TOML files and ``--param`` overrides -> ``SynthConfig``.
* :mod:`parsers.synthetic.pipeline` -- the chain streamed into Parquet (with metadata) and text.
* :mod:`parsers.synthetic.compare` -- calibration statistics, synthetic vs real, side by side
  (table, chart); :mod:`parsers.synthetic.fit` -- the search that fitted the default parameters.

``pagereplay synth`` is wired in ``replay/cli/synth.py``.

See ``docs/synthetic.md``.

Imports run one way: nothing here imports ``replay``.
"""
