"""Synthetic page-allocator traces: workload models, a stand-in emitter, the text renderer.

* :mod:`parsers.synthetic.workloads` -- workload models as data; they generate *requests*
  (allocations and frees with cpu, task, time, order, migratetype, gfp, lifetime).
* :mod:`parsers.synthetic.emit` -- turns requests into canonical events with a plain pfn
  allocator and per-CPU page lists (stand-in until the replay engine's simulate mode does it).
* :mod:`parsers.synthetic.render` -- canonical table -> the text a kernel of a given era prints
  (ftrace ``trace``/``trace_pipe``, ``trace-cmd report``, ``perf script``).
* :mod:`parsers.synthetic.compare` -- calibration statistics, synthetic vs real, side by side.
* :mod:`parsers.synthetic.cli` -- ``pagereplay synth``.

Imports run one way: nothing here imports ``replay``.
"""
