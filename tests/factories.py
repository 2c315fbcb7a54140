"""Tiny in-memory tables for tests, shaped as `sources` delivers them."""

from __future__ import annotations

import json

import pandas as pd

from include.detection.rule import load_rule

RULE = load_rule()
RUN_COMMAND = "Microsoft.Compute/virtualMachines/runCommand/action"
VM_SCOPE = (
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-1"
)


def ts(text: str) -> pd.Timestamp:
    return (
        pd.Timestamp(text).tz_convert("UTC")
        if pd.Timestamp(text).tzinfo
        else pd.Timestamp(text, tz="UTC")
    )


def authorization(scope=VM_SCOPE, **extra) -> str:
    return json.dumps({"action": RUN_COMMAND, "scope": scope, **extra})


def activity_row(**over) -> dict:
    row = {
        "TimeGenerated": "2026-10-31T10:00:00Z",
        "OperationNameValue": RUN_COMMAND,
        "Authorization": authorization(),
        "CorrelationId": "corr-1",
        "Caller": "alice@contoso.com",
        "CallerIpAddress": "10.0.0.1",
        "ActivityStatusValue": "Succeeded",
    }
    row.update(over)
    return row


def run_command(
    correlation_id="corr-1",
    start="2026-10-31T10:00:00Z",
    statuses=("Started", "Accepted", "Succeeded"),
    **over,
) -> list[dict]:
    """The events of one Run Command execution, a second apart."""
    t0 = ts(start)
    return [
        activity_row(
            CorrelationId=correlation_id,
            ActivityStatusValue=s,
            TimeGenerated=(t0 + pd.Timedelta(seconds=i)).isoformat(),
            **over,
        )
        for i, s in enumerate(statuses)
    ]


def ueba_row(**over) -> dict:
    row = {
        "TimeGenerated": "2026-10-31T09:30:00Z",
        "EventSource": "Azure AD",
        "ActivityInsights": json.dumps(
            {"ActionUncommonlyPerformedByUser": "True", "FirstTimeUserConnectedFromCountry": "True"}
        ),
        "ActionType": "Sign-in",
        "UserPrincipalName": "alice@contoso.com",
        "SourceIPLocation": "Netherlands",
        "UsersInsights": json.dumps({"IsDormantAccount": "False"}),
    }
    row.update(over)
    return row


def frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """Rows to a frame typed like `sources.read_table` output (null stays null)."""
    columns = RULE.inputs[table]
    data = {}
    for col, kind in columns.items():
        values = [r.get(col) for r in rows]
        if kind == "datetime":
            data[col] = pd.Series(
                pd.to_datetime(values, utc=True, format="ISO8601"), dtype="datetime64[ns, UTC]"
            )
        else:
            data[col] = pd.Series(values, dtype="str")
    return pd.DataFrame(data)


def activity(rows) -> pd.DataFrame:
    return frame("AzureActivity", rows)


def ueba(rows) -> pd.DataFrame:
    return frame("BehaviorAnalytics", rows)
