"""``pagereplay sweep``: traces x policies x cost presets x the axes of the design space (docs/sweep.md).

``spec`` (what to sweep: TOML and command line), ``grid`` (its points), ``guest`` (guest shapes),
``point`` (one trace prepared, one point replayed), ``dataset`` (the output folder: hive-partitioned
Parquet, summary, resume), ``execute`` (this process, a forked pool or Ray), ``progress``.
"""
