"""What a worker imports once so its task processes don't: pandas, pyarrow, DuckDB and Great
Expectations (~3 s of imports, 2.5 s of them GE's, on every validate task otherwise).

Airflow 3.3's LocalExecutor forks its workers from a forkserver that can import modules first;
each task process is then forked from a worker and inherits them copy-on-write:

    [scheduler]
    mp_start_method = forkserver
    mp_forkserver_preload = include.detection.preload

(`make airflow` sets these; tests/dags/test_scheduler_backfill.py checks the task processes
get GE this way.) Nothing here runs any work, opens a connection or starts a Python thread; the
native threads that numpy's OpenBLAS and pyarrow's jemalloc start at import are fork-aware
(they re-create their pools in the child), as every pandas program that forks relies on.
"""

import os

# A security product sends no usage analytics anywhere (GE reads this at import).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import duckdb  # noqa: E402,F401
import great_expectations  # noqa: E402,F401
import pandas  # noqa: E402,F401
import pyarrow  # noqa: E402,F401
import pyarrow.parquet  # noqa: E402,F401

MODULES = ("duckdb", "great_expectations", "pandas", "pyarrow")
