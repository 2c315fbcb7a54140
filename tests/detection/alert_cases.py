"""Alerts built from tiny tables, shared by the alerts, store and outbox tests."""

from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from tests.factories import RULE, activity, run_command, ueba, ueba_row

W1 = ("2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
W2 = ("2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z")


def alerts_for(activity_rows, ueba_rows, window=W1, grouping=None):
    return build_alerts(
        correlate(activity(activity_rows), ueba(ueba_rows)), RULE, *window, grouping=grouping
    )


# Two executions by alice (c1 with two UEBA rows in its window, c2 with one) and one by bob.
ACTIVITY = (
    run_command("c1")
    + run_command("c2", start="2026-10-31T16:00:00Z")
    + run_command("c3", Caller="bob@fabrikam.com", CallerIpAddress="10.9.9.9")
)
UEBA = [
    ueba_row(),
    ueba_row(TimeGenerated="2026-10-31T09:45:00Z", SourceIPLocation="France"),
    ueba_row(TimeGenerated="2026-10-31T15:30:00Z", ActionType="Add member to role"),
    ueba_row(UserPrincipalName="bob@fabrikam.com", SourceIPLocation="Brazil"),
]
