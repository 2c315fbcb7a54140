"""include/intervals.py: "no data yet" only when neither table has a row at or after the start of
the run's own interval; any later row of either table means data is flowing."""

import json

import pytest

from include.intervals import no_data_yet
from tests.factories import run_command, ueba_row


def source(tmp_path, activity_at: str, ueba_at: str):
    folder = tmp_path / "source"
    folder.mkdir()
    for name, rows in (
        ("AzureActivity", run_command(start=activity_at)),
        ("BehaviorAnalytics", [ueba_row(TimeGenerated=ueba_at)]),
    ):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize(
    "activity_at, ueba_at, skip",
    [
        ("2026-10-30T10:00:00Z", "2026-10-30T09:00:00Z", True),
        ("2026-10-30T23:59:57Z", "2026-10-30T09:00:00Z", True),  # events at :57, :58, :59
        ("2026-10-31T00:00:00Z", "2026-10-30T09:00:00Z", False),
        ("2026-10-30T10:00:00Z", "2026-10-31T09:00:00Z", False),
        ("2026-11-05T10:00:00Z", "2026-10-30T09:00:00Z", False),
    ],
    ids=[
        "both tables end the day before",
        "the last row a second before the interval",
        "an AzureActivity row at the interval's start",
        "a BehaviorAnalytics row in the interval",
        "rows after the interval (a hole, not a wait)",
    ],
)
def test_no_data_yet_only_when_neither_table_has_a_row_since_the_interval_start(
    tmp_path, activity_at, ueba_at, skip
):
    reason = no_data_yet(
        source(tmp_path, activity_at, ueba_at), "2026-10-31T00:00:00Z", "2026-11-01T00:00:00Z"
    )
    if skip:
        assert reason.startswith(
            "no data yet for the interval [2026-10-31T00:00:00+00:00, "
            "2026-11-01T00:00:00+00:00): neither AzureActivity nor "
            "BehaviorAnalytics in "
        )
    else:
        assert reason is None
