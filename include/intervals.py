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


def no_data_yet(source, interval_start, interval_end) -> str | None:
    """The reason to skip, or None when either table has a row at or after `interval_start`.
    `source`: anything sources.open_source takes (a folder, a URL, an opened source)."""
    import pandas as pd

    from include.detection import sources

    start, end = (_utc(pd.Timestamp(t)) for t in (interval_start, interval_end))
    # Up to a day past now, not to the end of time: a remote source is asked for a real range.
    until = max(end, pd.Timestamp.now(tz="UTC")) + pd.Timedelta(days=1)
    opened = sources.open_source(source)
    for table in sources.TABLES:
        scan = opened.scan(table, start, until, {"TimeGenerated": "datetime"}, prefilter=False)
        if scan.rows_in_window:
            return None
    return (
        f"no data yet for the interval [{start.isoformat()}, {end.isoformat()}): neither "
        f"{' nor '.join(sources.TABLES)} in {opened.url} has a row at or after "
        f"{start.isoformat()}. Nothing was examined: clear this run once the data is there"
    )


def _utc(ts):
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
