"""Benchmark harness: our `detect` against the same rule as one DuckDB SQL query.

    make bench                      # = python -m bench: scales S, M, L, repeat 1
    python -m bench --scales S,M,L --repeat 3 --out bench-out/report.json [--dag] [--profile]

Modules:
  lake     realistic Parquet lakes (AzureActivity + BehaviorAnalytics) per scale, cached on disk
  peer     the reference peer: the rule as one DuckDB SQL query (`python -m bench.peer`)
  harness  runs each engine in its own process, measures wall/CPU/peak RSS, compares the rows
  launch   the stdlib-only launcher that forks and measures each engine process
  dag      the DAG's tasks in one process (`python -m bench.dag`), for --dag
  profile  where our detect spends its time (`python -m bench.profile`), for --profile

Nothing is imported here: `python -m bench.peer` and the engine processes stay lean.
"""
