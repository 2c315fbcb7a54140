"""What the DAG decides about an interval before judging its window (no Airflow import).

"No data yet": neither table has a single row at or after the start of the run's own interval
(the day it adds to the 2-day window). Nothing new has arrived to examine: every pair of rows of
the window's older day was examined by the run before (whose window held that day whole), so
running now would only fail (the gate finds the window incomplete or empty) or find nothing. The
DAG skips such a run and says so; see the DAG's doc for why a skip and not a failure.

Any row at or after that start, in either table, means data is flowing: the window is then judged
as always (incomplete: wait and fail; empty: fail), so an outage inside a window is never a skip.
"""

from __future__ import annotations

from pathlib import Path


def no_data_yet(source: Path, interval_start, interval_end) -> str | None:
    """The reason to skip, or None when either table has a row at or after `interval_start`."""
    import pandas as pd

    from include.detection import pipeline, sources

    start = pd.Timestamp(interval_start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    for table in sources.TABLES:
        scan = sources.read_table(Path(source), table, start, pipeline.LATEST,
                                  {"TimeGenerated": "datetime"}, prefilter=False)
        if scan.rows_in_window:
            return None
    end = pd.Timestamp(interval_end)
    return (f"no data yet for the interval [{start.isoformat()}, {end.isoformat()}): neither "
            f"{' nor '.join(sources.TABLES)} in {source} has a row at or after "
            f"{start.isoformat()}. Nothing was examined: clear this run once the data is there")
