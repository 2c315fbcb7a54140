"""Alerts from result rows: one per execution, ids, grouping modes, metadata, merges."""

import pytest

from include.detection.alerts import GROUPINGS, build_alerts, grouping_of, merge_alert
from include.detection.correlation import correlate
from include.detection.errors import UsageError
from include.detection.rule import load_rule
from tests.detection.alert_cases import ACTIVITY, UEBA, W1, W2, alerts_for
from tests.factories import RULE, activity, run_command, ueba, ueba_row


def test_one_alert_per_execution_with_all_its_ueba_evidence():
    built = alerts_for(
        run_command("c1") + run_command("c2", start="2026-10-31T10:30:00Z"),
        [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:45:00Z")],
    )
    assert len(built) == 2
    assert all(len(a["evidence"]) == 2 for a in built)
    assert {a["correlation_id"] for a in built} == {"c1", "c2"}


def test_alert_id_is_stable_across_overlapping_windows_and_depends_on_the_execution():
    a1 = alerts_for(run_command("c1"), [ueba_row()], W1)
    a2 = alerts_for(run_command("c1"), [ueba_row()], W2)
    other = alerts_for(run_command("c2"), [ueba_row()], W1)
    assert a1[0]["id"] == a2[0]["id"] != other[0]["id"]


def test_alert_carries_rule_metadata_entities_and_details():
    alert = alerts_for(run_command("c1"), [ueba_row()])[0]
    assert alert["severity"] == "High" and alert["rule_id"] == RULE.id
    assert alert["tactics"] == ["LateralMovement", "CredentialAccess"]
    assert alert["techniques"] == ["T1570", "T1212"]
    entities = {e["type"]: e for e in alert["entities"]}
    assert entities["Account"] == {"type": "Account", "Name": "alice", "UPNSuffix": "contoso.com"}
    assert entities["IP"]["Address"] == "10.0.0.1"
    assert entities["AzureResource"]["SubscriptionId"] == "sub-1"
    assert entities["AzureResource"]["ResourceId"].endswith("/virtualMachines/vm-1")
    assert "vm-1" in alert["title"] and "alice@contoso.com" in alert["title"]
    assert alert["window"] == {"start": W1[0], "end": W1[1]}


def test_no_results_no_alerts():
    assert alerts_for(run_command("c1"), [ueba_row(EventSource="AzureAD")]) == []


def test_the_rule_yaml_groups_one_alert_per_execution_by_default():
    assert grouping_of(load_rule()) == "AlertPerExecution"
    assert GROUPINGS == ("AlertPerExecution", "SingleAlert", "AlertPerResult")


@pytest.mark.parametrize(
    "grouping, alerts, rows_per_alert",
    [
        ("AlertPerExecution", 3, [2, 1, 1]),
        ("SingleAlert", 1, [4]),
        ("AlertPerResult", 4, [1, 1, 1, 1]),
    ],
    ids=["per-execution", "single-alert", "per-result"],
)
def test_grouping_modes_split_the_same_result_rows(grouping, alerts, rows_per_alert):
    built = alerts_for(ACTIVITY, UEBA, grouping=grouping)
    assert len(built) == alerts
    assert sorted(len(a["evidence"]) for a in built) == sorted(rows_per_alert)
    assert sum(len(a["evidence"]) for a in built) == 4, "every result row is in exactly one alert"
    assert len({a["id"] for a in built}) == alerts
    assert all(a["grouping"] == grouping for a in built)


@pytest.mark.parametrize(
    "grouping, same_id_in_next_window",
    [
        ("AlertPerExecution", True),
        ("AlertPerResult", True),
        ("SingleAlert", False),
    ],
    ids=["per-execution", "per-result", "single-alert"],
)
def test_ids_are_deterministic_and_window_free_except_single_alert(
    grouping, same_id_in_next_window
):
    first = {a["id"] for a in alerts_for(ACTIVITY, UEBA, W1, grouping)}
    rerun = {a["id"] for a in alerts_for(ACTIVITY, UEBA, W1, grouping)}
    overlap = {a["id"] for a in alerts_for(ACTIVITY, UEBA, W2, grouping)}
    assert first == rerun, "a re-run of the same window gives the same ids"
    assert (first == overlap) is same_id_in_next_window


def test_single_alert_carries_the_distinct_entities_of_all_rows():
    (alert,) = alerts_for(ACTIVITY, UEBA, grouping="SingleAlert")
    accounts = sorted(e["Name"] for e in alert["entities"] if e["type"] == "Account")
    assert accounts == ["alice", "bob"]
    assert sorted(e["Address"] for e in alert["entities"] if e["type"] == "IP") == [
        "10.0.0.1",
        "10.9.9.9",
    ]
    assert alert["correlation_id"] is None and sorted(alert["executions"]) == ["c1", "c2", "c3"]


def test_unknown_grouping_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown event grouping 'AlertPerHour'"):
        alerts_for(ACTIVITY, UEBA, grouping="AlertPerHour")


def test_custom_details_hold_vm_subscription_ip_ueba_action_location_and_insights():
    alert = next(a for a in alerts_for(ACTIVITY, UEBA) if a["correlation_id"] == "c1")
    details = alert["custom_details"]
    assert details["VirtualMachine"] == ["vm-1"] and details["Subscription"] == ["sub-1"]
    assert details["CallerIpAddress"] == ["10.0.0.1"]
    assert details["UEBAActionType"] == ["Sign-in"]
    assert sorted(details["UEBASourceIPLocation"]) == ["France", "Netherlands"]
    assert details["UEBAActivityInsights"][0]["ActionUncommonlyPerformedByUser"] == "True"
    assert details["UEBAUsersInsights"] == [{"IsDormantAccount": "False"}]
    assert alert["rule_version"] == RULE.version and alert["data_quality"] == "passed"
    assert (
        alert["start_time"] == "2026-10-31T10:00:00Z"
        and alert["end_time"] == "2026-10-31T10:00:02Z"
    )
    assert alert["caller"] == "alice@contoso.com" and alert["resource_id"].endswith("/vm-1")
    assert len(alert["fingerprint"]) == 64


def test_merge_adds_new_evidence_entities_and_details_and_keeps_an_unchanged_alert_as_is():
    (old,) = alerts_for(run_command("c1"), [ueba_row()], W1)
    (new,) = alerts_for(
        run_command("c1"),
        [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:50:00Z", SourceIPLocation="Peru")],
        W2,
    )
    assert merge_alert(old, old) == (old, False)
    merged, changed = merge_alert(old, new)
    assert changed and len(merged["evidence"]) == 2 and merged["fingerprint"] != old["fingerprint"]
    assert merged["custom_details"]["UEBASourceIPLocation"] == ["Netherlands", "Peru"]
    assert merged["window"] == new["window"] and merged["id"] == old["id"]
    worse, _ = merge_alert(old, {**new, "data_quality": "warnings"})
    assert worse["data_quality"] == "warnings", "the worst data-quality status of its inputs"


def test_the_same_execution_in_two_workspaces_is_two_alerts_that_name_their_workspace():
    """Issue #10 (MSSP): two tenants' rows never merge into one alert; one source keeps its ids."""
    result = correlate(activity(ACTIVITY), ueba(UEBA))
    plain = build_alerts(result, RULE, *W1)
    a = build_alerts(result, RULE, *W1, workspace="11111111-1111-1111-1111-111111111111")
    b = build_alerts(result, RULE, *W1, workspace="22222222-2222-2222-2222-222222222222")
    assert len(a) == len(b) == len(plain)
    assert not {x["id"] for x in a} & {x["id"] for x in b} and not {x["id"] for x in a} & {
        x["id"] for x in plain
    }
    assert [x["id"] for x in build_alerts(result, RULE, *W2, workspace=a[0]["workspace"])][0] == a[
        0
    ]["id"], "stable across overlapping windows, as without a workspace"
    assert all(x["custom_details"]["Workspace"] == [x["workspace"]] for x in a + b)
    assert "Workspace" not in plain[0]["custom_details"]
