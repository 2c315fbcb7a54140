"""One test per step of shared/reference/rule-semantics.md, traps included.

Each test is named after the KQL step it pins; parametrize ids read like the case.
"""

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.detection import correlation as c
from tests.factories import (
    RUN_COMMAND,
    activity,
    activity_row,
    authorization,
    run_command,
    ts,
    ueba,
    ueba_row,
)


def result_of(activity_rows, ueba_rows):
    return c.correlate(activity(activity_rows), ueba(ueba_rows))


# --- 1. OperationNameValue =~ ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, kept",
    [
        ("MICROSOFT.COMPUTE/VIRTUALMACHINES/RUNCOMMAND/ACTION", True),
        ("Microsoft.Compute/virtualMachines/runCommand/action", True),
        ("microsoft.compute/virtualmachines/runcommand/action", True),
        ("Microsoft.Compute/virtualMachines/runCommand/action ", False),
        ("Microsoft.Compute/virtualMachines/start/action", False),
        ("Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action", False),
        (None, False),
    ],
    ids=["upper", "mixed-case", "lower", "trailing-space", "other-operation", "vmss-op", "null"],
)
def test_step01_where_operation_name_equals_case_insensitive(op, kept):
    out = c.where_operation_is_run_command(activity([activity_row(OperationNameValue=op)]))
    assert len(out) == int(kept)


# --- 2. Authorization has "virtualMachines" -------------------------------------------------------


def _scope_only(scope):
    # Real Authorization blobs also carry the action "Microsoft.Compute/virtualMachines/runCommand/
    # action", which always has the term; scope-only blobs isolate what the scope contributes.
    return json.dumps({"scope": scope})


@pytest.mark.parametrize(
    "auth, kept",
    [
        (authorization(), True),
        (
            _scope_only(
                "/subscriptions/s/resourceGroups/r/providers/MICROSOFT.COMPUTE/VIRTUALMACHINES/vm"
            ),
            True,
        ),
        (
            _scope_only(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/ss/virtualMachines/0"
            ),
            True,
        ),
        (
            _scope_only(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachinesX/vm"
            ),
            False,
        ),
        (
            _scope_only(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/myvirtualMachines/vm"
            ),
            False,
        ),
        (
            _scope_only(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/ss"
            ),
            False,
        ),
        (_scope_only("/subscriptions/s/x/virtualMachines_1"), True),
        (_scope_only("/subscriptions/s/x/virtualMachines\u00e9"), True),
        (_scope_only("/subscriptions/s/x/virtualMachines9"), False),
        ("virtualMachines", True),
        ("", False),
        (None, False),
    ],
    ids=[
        "action-and-scope",
        "upper-case-term",
        "vmss-instance",
        "term-with-suffix",
        "term-with-prefix",
        "scale-set-only",
        "underscore-separates",
        "non-ascii-separates",
        "digit-joins-term",
        "bare-text",
        "empty",
        "null",
    ],
)
def test_step02_where_authorization_has_whole_term(auth, kept):
    out = c.where_authorization_has_virtual_machines(activity([activity_row(Authorization=auth)]))
    assert len(out) == int(kept)


# --- 3. summarize ... by CorrelationId, Authorization, Caller -------------------------------------


def test_step03_summarize_min_max_time_and_max_ip_string():
    rows = run_command(statuses=("Started", "Accepted", "Succeeded"))
    rows[0]["CallerIpAddress"], rows[1]["CallerIpAddress"], rows[2]["CallerIpAddress"] = (
        "10.0.0.9",
        "10.0.0.10",
        None,
    )
    out = c.summarize_by_correlation(activity(rows))
    assert len(out) == 1
    g = out.iloc[0]
    assert g["StartTime"] == ts("2026-10-31T10:00:00Z")
    assert g["EndTime"] == ts("2026-10-31T10:00:02Z")
    # max of strings is ordinal: "10.0.0.9" > "10.0.0.10"; null is "" and never the max
    assert g["max_CallerIpAddress"] == "10.0.0.9"


@pytest.mark.parametrize("field", ["CorrelationId", "Caller", "Authorization"])
def test_step03_summarize_null_and_empty_keys_form_one_group(field):
    rows = [
        activity_row(**{field: None}),
        activity_row(**{field: ""}),
        activity_row(**{field: None}, ActivityStatusValue="Started"),
    ]
    out = c.summarize_by_correlation(activity(rows))
    assert len(out) == 1, "null keys are '' in Kusto and group together (groupby drops them)"
    assert out.iloc[0][field] == ""


def test_step03_summarize_keys_are_case_sensitive():
    rows = [
        activity_row(Caller="alice@contoso.com"),
        activity_row(Caller="Alice@contoso.com"),
        activity_row(CorrelationId="CORR-1"),
    ]
    assert len(c.summarize_by_correlation(activity(rows))) == 3


def test_step03_summarize_same_correlation_different_authorization_are_two_groups():
    rows = [
        activity_row(),
        activity_row(
            Authorization=authorization(VM_OTHER := "/subscriptions/s/x/virtualMachines/vm-2")
        ),
    ]
    out = c.summarize_by_correlation(activity(rows))
    assert sorted(out["Authorization"]) == sorted([authorization(), authorization(VM_OTHER)])


def test_step03_summarize_groups_in_order_of_first_appearance():
    """Groups come out as they first appear (pandas groupby(sort=False) did; Arrow's hash
    aggregation does single-threaded), so the rows downstream keep the input's order."""
    callers = ["zoe@contoso.com", "adam@contoso.com", "mia@contoso.com"]
    rows = [activity_row(Caller=c, CorrelationId=f"corr-{c}") for c in callers * 2]
    assert c.summarize_by_correlation(activity(rows))["Caller"].tolist() == callers


def test_step03_summarize_no_rows_gives_no_groups_with_every_column():
    out = c.summarize_by_correlation(activity([activity_row()]).iloc[:0])
    assert len(out) == 0
    assert list(out.columns) == [
        "CorrelationId",
        "Authorization",
        "Caller",
        "StartTime",
        "EndTime",
        "max_CallerIpAddress",
        "_list_has_success",
    ]
    assert str(out["StartTime"].dtype) == "datetime64[ns, UTC]"


# --- 4. list_ActivityStatusValue has_any ("Success", "Succeeded") ---------------------------------


@pytest.mark.parametrize(
    "statuses, kept",
    [
        (("Started", "Accepted", "Succeeded"), True),
        (("Start", "Accept", "Success"), True),
        (("STARTED", "ACCEPTED", "SUCCEEDED"), True),
        (("start", "accept", "success"), True),
        (("Started", "Accepted", "Failed"), False),
        (("Start", "Accept", "Failure"), False),
        (("Started", "Successful"), False),
        (("Started", "Succeeded."), True),
        (("Started", "Not Success"), True),
        (("Started", "Success\n"), True),
        (("Started", "\nSuccess"), False),
        (("Started", "\tSucceeded"), False),
        (("Started", "\x01Success"), False),
        (("Started",), False),
        (("Started", None), False),
    ],
    ids=[
        "classic-family",
        "new-family",
        "upper",
        "lower",
        "failed",
        "failure",
        "successful-is-another-term",
        "punctuation-separates",
        "space-separates",
        "control-char-after",
        "escaped-newline-fuses",
        "escaped-tab-fuses",
        "unicode-escape-fuses",
        "started-only",
        "null-status",
    ],
)
def test_step04_where_list_has_any_success(statuses, kept):
    out = c.where_list_has_any_success(
        c.summarize_by_correlation(activity(run_command(statuses=statuses)))
    )
    assert len(out) == int(kept)


# --- 5. parse_json(Authorization) and 6. split(Scope, "/")[2], [-1] -------------------------------


def _scope_parts(auth):
    groups = c.summarize_by_correlation(activity([activity_row(Authorization=auth)]))
    row = c.extend_scope_parts(groups).iloc[0]
    return row["Subscription"], row["VirtualMachineName"]


@pytest.mark.parametrize(
    "auth, expected",
    [
        (authorization(), ("sub-1", "vm-1")),
        (
            authorization(
                "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/ss/virtualMachines/3"
            ),
            ("sub-1", "3"),
        ),
        (authorization("/subscriptions/sub-1/virtualMachines/"), ("sub-1", "")),
        (authorization("/subscriptions"), ("", "subscriptions")),
        (authorization("virtualMachines"), ("", "virtualMachines")),
        (authorization(""), ("", "")),
        (json.dumps({"action": "x"}) + " virtualMachines", ("", "")),
        ("{not json} virtualMachines", ("", "")),
        (json.dumps({"action": "virtualMachines"}), ("", "")),
        (json.dumps({"scope": None, "x": "virtualMachines"}), ("", "")),
        (json.dumps(["virtualMachines", {"scope": "/a/b/c"}]), ("", "")),
        (json.dumps({"scope": 12, "a": "virtualMachines"}), ("", "12")),
        (json.dumps({"scope": ["/subscriptions/s/virtualMachines/v"]}), ("s", 'v"]')),
    ],
    ids=[
        "vm",
        "vmss-instance-last-part",
        "trailing-slash-gives-empty-last",
        "short-scope-index-out-of-range",
        "single-part",
        "empty-scope",
        "invalid-json-kept",
        "invalid-json-braces",
        "no-scope-key",
        "null-scope",
        "json-array",
        "numeric-scope-tostring",
        "array-scope-tostring",
    ],
)
def test_step05_06_parse_json_scope_and_split_indexes(auth, expected):
    assert _scope_parts(auth) == expected


def test_step05_invalid_json_row_is_kept_not_failed():
    rows = run_command(Authorization="virtualMachines <not json>")
    out = result_of(rows, [ueba_row()])
    assert len(out) == 1
    assert (out.iloc[0]["Subscription"], out.iloc[0]["VirtualMachineName"]) == ("", "")


# --- 7. joinkey = tolower(Caller) and 12. tolower(UserPrincipalName) ------------------------------


@pytest.mark.parametrize(
    "caller, upn, joined",
    [
        ("alice@contoso.com", "alice@contoso.com", True),
        ("Alice@Contoso.COM", "alice@contoso.com", True),
        ("alice@contoso.com", "ALICE@CONTOSO.COM", True),
        ("alice@contoso.com", "alice@contoso.com ", False),
        ("alice@contoso.com", "bob@contoso.com", False),
    ],
    ids=["same", "caller-mixed-case", "upn-upper", "trailing-space", "other-user"],
)
def test_step07_12_joinkey_is_lowercased_caller_and_upn(caller, upn, joined):
    out = result_of(run_command(Caller=caller), [ueba_row(UserPrincipalName=upn)])
    assert len(out) == int(joined)
    if joined:
        assert out.iloc[0]["Caller"] == caller, "the output keeps the caller's own spelling"


# --- 8. EventSource == "Azure AD" and 9. ActivityInsights.ActionUncommonlyPerformedByUser == "True"


@pytest.mark.parametrize(
    "source, kept",
    [
        ("Azure AD", True),
        ("AzureAD", False),
        ("azure ad", False),
        ("Azure AD ", False),
        ("AzureActivity", False),
        (None, False),
    ],
    ids=["exact", "no-space", "lower", "trailing-space", "other-source", "null"],
)
def test_step08_where_event_source_equals_case_sensitive(source, kept):
    assert len(c.where_azure_ad_uncommon_action(ueba([ueba_row(EventSource=source)]))) == int(kept)


@pytest.mark.parametrize(
    "insights, kept",
    [
        ({"ActionUncommonlyPerformedByUser": "True"}, True),
        ({"ActionUncommonlyPerformedByUser": "true"}, False),
        ({"ActionUncommonlyPerformedByUser": "TRUE"}, False),
        ({"ActionUncommonlyPerformedByUser": True}, False),
        ({"ActionUncommonlyPerformedByUser": "False"}, False),
        ({"actionuncommonlyperformedbyuser": "True"}, False),
        ({"FirstTimeUserPerformedAction": "True"}, False),
        ({"ActionUncommonlyPerformedByUser": ["True"]}, False),
        ('{"ActionUncommonlyPerformedByUser": "True"', False),
        ('"ActionUncommonlyPerformedByUser True"', False),
        (None, False),
    ],
    ids=[
        "string-True",
        "lowercase-true",
        "uppercase",
        "json-boolean",
        "False",
        "key-case-differs",
        "key-missing",
        "array-value",
        "invalid-json-text",
        "json-string",
        "null",
    ],
)
def test_step09_where_activity_insight_is_string_True(insights, kept):
    text = insights if insights is None or isinstance(insights, str) else json.dumps(insights)
    out = c.where_azure_ad_uncommon_action(ueba([ueba_row(ActivityInsights=text)]))
    assert len(out) == int(kept)


def test_step09_unicode_escaped_key_is_parsed_not_missed():
    text = '{"\\u0041ctionUncommonlyPerformedByUser":"True"}'
    assert len(c.where_azure_ad_uncommon_action(ueba([ueba_row(ActivityInsights=text)]))) == 1


# --- 10. project renames --------------------------------------------------------------------------


def test_step10_project_renames_ueba_columns():
    out = result_of(
        run_command(),
        [
            ueba_row(
                ActionType="Sign-in", SourceIPLocation="NL", UsersInsights=json.dumps({"k": "v"})
            )
        ],
    )
    row = out.iloc[0]
    assert row["UEBAEventTime"] == ts("2026-10-31T09:30:00Z")
    assert (row["UEBAActionType"], row["UEBASourceIPLocation"]) == ("Sign-in", "NL")
    assert row["UEBAActivityInsights"]["ActionUncommonlyPerformedByUser"] == "True"
    assert row["UEBAUsersInsights"] == {"k": "v"}


def test_step10_null_action_type_is_empty_string_and_null_dynamic_is_null():
    out = result_of(run_command(), [ueba_row(ActionType=None, UsersInsights=None)])
    assert out.iloc[0]["UEBAActionType"] == ""
    assert out.iloc[0]["UEBAUsersInsights"] is None


@pytest.mark.parametrize(
    "users_insights, change",
    [
        ({"k": "v"}, lambda v: v.clear()),
        ({"k": {"nested": ["v"]}}, lambda v: v["k"]["nested"].append("x")),
        (["a", "b"], lambda v: v.append("x")),
        ([{"a": 1}], lambda v: v[0].clear()),
    ],
    ids=["flat-object", "nested-object", "flat-array", "array-of-objects"],
)
def test_step10_rows_sharing_a_text_get_values_of_their_own(users_insights, change):
    """A UEBA text is parsed once for every row holding it, yet changing one row's value (as a
    caller may) changes no other row's."""
    text = json.dumps(users_insights)
    out = result_of(
        run_command(),
        [ueba_row(TimeGenerated=f"2026-10-31T09:3{i}:00Z", UsersInsights=text) for i in range(3)],
    )
    values = list(out["UEBAUsersInsights"])
    assert len(values) == 3 and all(v == users_insights for v in values)
    change(values[0])
    assert values[0] != users_insights
    assert values[1] == values[2] == users_insights, "another row's value changed"


# --- 11. isnotempty(UserPrincipalName) and isnotempty(UEBASourceIPLocation) -----------------------


@pytest.mark.parametrize(
    "upn, location, kept",
    [
        ("alice@contoso.com", "NL", True),
        ("", "NL", False),
        (None, "NL", False),
        ("alice@contoso.com", "", False),
        ("alice@contoso.com", None, False),
        ("alice@contoso.com", " ", True),
    ],
    ids=[
        "both-set",
        "empty-upn",
        "null-upn",
        "empty-location",
        "null-location",
        "blank-is-not-empty",
    ],
)
def test_step11_where_upn_and_location_are_not_empty(upn, location, kept):
    out = c.uncommon_logins(ueba([ueba_row(UserPrincipalName=upn, SourceIPLocation=location)]))
    assert len(out) == int(kept)


def test_step11_null_caller_never_joins_empty_upn():
    out = result_of(run_command(Caller=None), [ueba_row(UserPrincipalName="")])
    assert out.empty


# --- 13. join kind=inner --------------------------------------------------------------------------


def test_step13_inner_join_keeps_every_matching_pair():
    ueba_rows = [
        ueba_row(TimeGenerated="2026-10-31T09:00:00Z"),
        ueba_row(TimeGenerated="2026-10-31T09:30:00Z"),
    ]
    activity_rows = run_command("corr-1") + run_command("corr-2", start="2026-10-31T11:00:00Z")
    out = result_of(activity_rows, ueba_rows)
    assert len(out) == 4, "inner, not innerunique: 2 runs x 2 UEBA rows"


def test_step13_identical_ueba_rows_each_give_a_row():
    out = result_of(run_command(), [ueba_row(), ueba_row()])
    assert len(out) == 2


def _unfiltered(activity_frame, ueba_frame):
    """The query without correlate's only_joinable: every UEBA row through the right side."""
    joined = c.join_inner_on_joinkey(c.run_commands(activity_frame), c.uncommon_logins(ueba_frame))
    return c.project_output(c.where_start_between_ueba_window(joined))


@pytest.mark.parametrize(
    "callers, upns",
    [
        (["alice@contoso.com"], ["ALICE@contoso.com", "bob@contoso.com", "alice@contoso.com"]),
        (["Élise@contoso.com"], ["élise@CONTOSO.com", "elise@contoso.com"]),
        (["İrem@contoso.com", "straße@contoso.com"], ["i̇rem@contoso.com", "STRASSE@contoso.com"]),
        ([None], ["", None, "alice@contoso.com"]),
        (["alice@contoso.com", "bob@contoso.com"], ["carol@contoso.com", None]),
        (["alice@contoso.com"], []),
    ],
    ids=["case-and-other-user", "accents", "unicode-case-rules", "null-caller", "none", "no-ueba"],
)
def test_step13_only_joinable_drops_only_rows_the_inner_join_drops(callers, upns):
    """correlate drops the UEBA rows whose tolower(UserPrincipalName) no run has before the
    right side's steps: the result is the unfiltered query's, row for row and in order."""
    activity_rows = [
        row
        for i, caller in enumerate(callers)
        for row in run_command(f"corr-{i}", Caller=caller, start=f"2026-10-31T1{i}:00:00Z")
    ]
    ueba_rows = [
        ueba_row(UserPrincipalName=upn, TimeGenerated=f"2026-10-31T09:{i:02d}:00Z")
        for i, upn in enumerate(upns)
    ]
    a, u = activity(activity_rows), ueba(ueba_rows)
    got = c.correlate(a, u)
    pd.testing.assert_frame_equal(got, _unfiltered(a, u))
    left = c.run_commands(a)
    kept = c.only_joinable(u, left["joinkey"])
    joinable = c.join_inner_on_joinkey(left, c.uncommon_logins(u))
    assert len(kept) <= len(u)
    assert set(c.uncommon_logins(kept)["joinkey"]) == set(joinable["joinkey"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["alice@contoso.com", "ALICE@contoso.com", "bob@x", None]), max_size=4
    ),
    st.lists(st.sampled_from(["Alice@Contoso.com", "bob@X", "", None, "carol@x"]), max_size=6),
)
def test_step13_only_joinable_changes_no_result_on_any_mix(callers, upns):
    test_step13_only_joinable_drops_only_rows_the_inner_join_drops(callers, upns)


# --- 14. StartTime between (UEBAEventTime - 1h .. UEBAEventTime + 6h) -----------------------------


@pytest.mark.parametrize(
    "start, kept",
    [
        ("2026-10-31T09:00:00Z", True),  # exactly -1h: inclusive
        ("2026-10-31T08:59:59.9999999Z", False),  # 100 ns before -1h
        ("2026-10-31T16:00:00Z", True),  # exactly +6h: inclusive
        ("2026-10-31T16:00:00.0000001Z", False),  # 100 ns after +6h
        ("2026-10-31T10:00:00Z", True),
        ("2026-10-31T16:00:01Z", False),
    ],
    ids=[
        "minus-1h-inclusive",
        "just-before",
        "plus-6h-inclusive",
        "100ns-after",
        "inside",
        "1s-after",
    ],
)
def test_step14_start_time_between_is_inclusive(start, kept):
    out = result_of(
        run_command(start=start, statuses=("Succeeded",)),
        [ueba_row(TimeGenerated="2026-10-31T10:00:00Z")],
    )
    assert len(out) == int(kept)


def test_step14_window_uses_start_time_not_end_time():
    # started inside the window, finished after it: StartTime decides
    rows = run_command(start="2026-10-31T15:59:59Z", statuses=("Started", "Accepted", "Succeeded"))
    rows[-1]["TimeGenerated"] = "2026-10-31T17:00:00Z"
    out = result_of(rows, [ueba_row(TimeGenerated="2026-10-31T10:00:00Z")])
    assert len(out) == 1 and out.iloc[0]["EndTime"] == ts("2026-10-31T17:00:00Z")


# --- 15. output columns, AccountName / AccountUPNSuffix -------------------------------------------


def test_step15_output_columns_in_rule_order():
    out = result_of(run_command(), [ueba_row()])
    assert list(out.columns[:13]) == c.OUTPUT_COLUMNS
    from include.detection.rule import load_rule

    assert c.OUTPUT_COLUMNS == list(load_rule().output_columns)


@pytest.mark.parametrize(
    "caller, name, suffix",
    [
        ("alice@contoso.com", "alice", "contoso.com"),
        ("0d5b8b8e-4a7c-4a34-9d1b-3b1f2e2d1c0a", "0d5b8b8e-4a7c-4a34-9d1b-3b1f2e2d1c0a", ""),
        ("a@b@c", "a", "b"),
        ("@contoso.com", "", "contoso.com"),
        ("alice@", "alice", ""),
    ],
    ids=["upn", "service-principal-guid", "two-ats-takes-second-part", "leading-at", "trailing-at"],
)
def test_step15_account_name_and_upn_suffix_from_split(caller, name, suffix):
    out = result_of(run_command(Caller=caller), [ueba_row(UserPrincipalName=caller)])
    assert (out.iloc[0]["AccountName"], out.iloc[0]["AccountUPNSuffix"]) == (name, suffix)


# --- The whole query ------------------------------------------------------------------------------


def test_correlate_end_to_end_failed_run_is_not_reported_but_success_is():
    rows = run_command("ok") + run_command(
        "failed", statuses=("Started", "Accepted", "Failed"), start="2026-10-31T10:05:00Z"
    )
    out = result_of(rows, [ueba_row()])
    assert len(out) == 1 and out.iloc[0]["CorrelationId"] == "ok"


def test_correlate_empty_inputs_give_empty_result_with_columns():
    out = c.correlate(activity([]), ueba([]))
    assert out.empty and list(out.columns[:13]) == c.OUTPUT_COLUMNS


def test_correlate_non_run_command_rows_are_ignored():
    noise = [
        activity_row(
            OperationNameValue="Microsoft.Storage/storageAccounts/listKeys/action",
            CorrelationId=f"n{i}",
        )
        for i in range(5)
    ]
    assert result_of(noise, [ueba_row()]).empty
    assert RUN_COMMAND.lower() == c.RUN_COMMAND_OPERATION.lower()
