"""The benchmarks as a suite, in the shape of pandas' asv suites: one module per concern, each a
class with `params` / `param_names`, `setup` (the lake via bench/lake.py, its page cache warmed
as the harness does) and one `time_<measure>` / `peakmem_<measure>` per figure, each returning
the process it measures (base.py). `python -m bench.suites` (runner.py) runs every measure in its
own process through the harness (bench/harness.py: launcher, wall / CPU / peak RSS of that
process alone), takes medians and prints `make bench`'s tables.

    python -m bench.suites [--scale S] [--only single_window,dag] [--repeat 3]
    python -m bench.suites --scale T=2000 --set backfill.rows_per_day=2000 --set backfill.days=4

Suites (name: module, what it measures):
  single_window  our `detect` vs the rule as one DuckDB query, one daily window, cold scans
  daily_cached   the daily run with the previous day in the scan cache, vs the DuckDB query
  flagged        the single window where UEBA flags 1 in 8 Azure AD sign-ins
  backfill       14 daily windows of a 15-day lake: one range process, one per window, cached
  dag            the DAG's tasks in one process, cold and with the worker's preload
  console        the alerts console's page time with 100,000 alerts in PostgreSQL
  remote         the Log Analytics pushdown: what crosses the wire, checked against pandas

Not here: the back-fill through a real Airflow scheduler (`python -m bench --airflow`).
"""

# name -> (module, class); the runner imports a suite only when it runs it
SUITES = {
    "single_window": ("single_window", "SingleWindow"),
    "daily_cached": ("daily_cached", "DailyCached"),
    "flagged": ("flagged", "Flagged"),
    "backfill": ("backfill", "Backfill"),
    "dag": ("dag", "Dag"),
    "console": ("console", "ConsolePages"),
    "remote": ("remote", "RemotePushdown"),
}
