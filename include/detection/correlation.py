"""The rule's query, step by step, in the order of the KQL (shared/reference/rule-semantics.md).

Inputs are pandas DataFrames holding each table's rows for the query period, with the columns the
rule reads (see `sources`): `TimeGenerated` as datetime64[ns, UTC], strings as `str` (null allowed,
Kusto reads it as ""), dynamic columns as JSON text. Each step is a small function whose docstring
is the KQL line it reproduces; `correlate` chains them. Everything is column-at-a-time; the only
Python-level work is parsing JSON text whose shape the column-at-a-time path cannot decide
(kql.property_equals), once per distinct text.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from . import kql

RUN_COMMAND_OPERATION = "MICROSOFT.COMPUTE/VIRTUALMACHINES/RUNCOMMAND/ACTION"
SUCCESS_TERMS = ("Success", "Succeeded")
UEBA_BEFORE = pd.Timedelta(hours=1)
UEBA_AFTER = pd.Timedelta(hours=6)

OUTPUT_COLUMNS = [
    "StartTime",
    "EndTime",
    "Subscription",
    "VirtualMachineName",
    "Caller",
    "CallerIpAddress",
    "UEBAEventTime",
    "UEBAActionType",
    "UEBASourceIPLocation",
    "UEBAActivityInsights",
    "UEBAUsersInsights",
    "AccountName",
    "AccountUPNSuffix",
]
# Kept beside the rule's columns so alerts can name the execution and the VM's resource id;
# `detect` drops them.
CONTEXT_COLUMNS = ["CorrelationId", "ResourceId"]

GROUP_KEYS = ["CorrelationId", "Authorization", "Caller"]

# What the scan may drop before the query runs, as data: each side's first `where`, or a
# necessary condition of it, so only candidate rows are materialised. The query applies the exact
# step again, so a superset is always safe.
#   "=~"         case-insensitive equality (the step itself)
#   "=="         equality (the step itself)
#   "may_hold"   the JSON text can hold key == value: it has `"key" : "value"` verbatim, or a
#                \u escape (the only way JSON spells those letters differently)
PUSHDOWN = {
    "AzureActivity": [
        ("OperationNameValue", "=~", "MICROSOFT.COMPUTE/VIRTUALMACHINES/RUNCOMMAND/ACTION")
    ],
    "BehaviorAnalytics": [
        ("EventSource", "==", "Azure AD"),
        ("ActivityInsights", "may_hold", ("ActionUncommonlyPerformedByUser", "True")),
    ],
}


def _where(frame: pd.DataFrame, keep: pd.Series) -> pd.DataFrame:
    """The rows where `keep` holds. The scan already applied each side's first `where`, so the
    mask is often all True: then the frame itself (a mask copies every Arrow column)."""
    return frame if bool(keep.all()) else kql.where_rows(frame, keep)


# --- AzureActivity side ---------------------------------------------------------------------


def where_operation_is_run_command(activity: pd.DataFrame) -> pd.DataFrame:
    """| where OperationNameValue =~ "MICROSOFT.COMPUTE/VIRTUALMACHINES/RUNCOMMAND/ACTION" """
    return _where(activity, kql.equals_ci(activity["OperationNameValue"], RUN_COMMAND_OPERATION))


def where_authorization_has_virtual_machines(activity: pd.DataFrame) -> pd.DataFrame:
    """| where Authorization has "virtualMachines" """
    return _where(activity, kql.has_term(activity["Authorization"], "virtualMachines"))


def summarize_by_correlation(activity: pd.DataFrame) -> pd.DataFrame:
    """| summarize StartTime=min(TimeGenerated), EndTime=max(TimeGenerated), max(CallerIpAddress),
    make_list(ActivityStatusValue) by CorrelationId, Authorization, Caller

    The list is only ever read by the `has_any` that follows, so it is carried as a per-group flag
    ("some element's JSON text holds Success/Succeeded"), which is exactly what `has_any` sees.
    Null keys are "" in Kusto and form a group of their own (kusto_str: no key is null).
    Arrow's hash aggregation, single-threaded so groups come in order of first appearance (as
    pandas' groupby(sort=False)): pandas' named aggregations cost ~10 ms a window however few
    the rows, a fifth of a back-fill window's correlation. Strings compare as their UTF-8 bytes,
    which orders them as their code points, as pandas does.
    """
    table = pa.table(
        {
            **{k: _arrow_text(activity[k]) for k in GROUP_KEYS},
            "TimeGenerated": pa.array(activity["TimeGenerated"], pa.timestamp("ns", tz="UTC")),
            "CallerIpAddress": _arrow_text(activity["CallerIpAddress"]),
            "_status_success": pa.array(
                kql.element_has_any_in_list_text(activity["ActivityStatusValue"], SUCCESS_TERMS),
                pa.bool_(),
            ),
        }
    )
    out = table.group_by(GROUP_KEYS, use_threads=False).aggregate(
        [
            ("TimeGenerated", "min"),
            ("TimeGenerated", "max"),
            ("CallerIpAddress", "max"),
            ("_status_success", "any"),
        ]
    )
    names = {
        "TimeGenerated_min": "StartTime",
        "TimeGenerated_max": "EndTime",
        "CallerIpAddress_max": "max_CallerIpAddress",
        "_status_success_any": "_list_has_success",
    }
    out = out.rename_columns([names.get(n, n) for n in out.column_names])
    return out.select([*GROUP_KEYS, *names.values()]).to_pandas()


def _arrow_text(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A string column as Kusto sees it (null is ""), as Arrow text."""
    return pa.array(kql.kusto_str(column), pa.large_string())


def where_list_has_any_success(groups: pd.DataFrame) -> pd.DataFrame:
    """| where list_ActivityStatusValue has_any ("Success", "Succeeded")"""
    return groups[groups["_list_has_success"]].drop(columns="_list_has_success")


def extend_scope_parts(groups: pd.DataFrame) -> pd.DataFrame:
    """| extend Authorization_d = parse_json(Authorization)
    | extend Scope = Authorization_d.scope
    | extend Scope_s = split(Scope, "/")
    | extend Subscription = tostring(Scope_s[2])
    | extend VirtualMachineName = tostring(Scope_s[-1])

    Invalid JSON yields a dynamic string whose `.scope` is null; split(null) is [""], so both
    parts are "" and the row stays.
    """
    scopes = {
        a: kql.tostring(kql.get_property(kql.parsed(a), "scope"))
        for a in groups["Authorization"].unique()
    }
    scope = groups["Authorization"].map(scopes).astype("str")
    return groups.assign(
        ResourceId=scope,
        Subscription=kql.split_at(scope, "/", 2),
        VirtualMachineName=kql.split_at(scope, "/", -1),
    )


def joinkey(text: pd.Series) -> pd.Series:
    """`tolower(...)` of a string column as Kusto sees it: both sides' join key, and the one
    only_joinable matches, so all three are one expression."""
    return kql.kusto_str(text).str.lower()


def project_run_commands(groups: pd.DataFrame) -> pd.DataFrame:
    """| project StartTime, EndTime, Subscription, VirtualMachineName, CorrelationId, Caller,
    CallerIpAddress=max_CallerIpAddress
    | extend joinkey = tolower(Caller)"""
    out = groups[
        [
            "StartTime",
            "EndTime",
            "Subscription",
            "VirtualMachineName",
            "CorrelationId",
            "Caller",
            "max_CallerIpAddress",
            "ResourceId",
        ]
    ]
    out = out.rename(columns={"max_CallerIpAddress": "CallerIpAddress"})
    return out.assign(joinkey=joinkey(out["Caller"]))


def run_commands(activity: pd.DataFrame) -> pd.DataFrame:
    """The left side of the join: one row per succeeded Run Command execution."""
    step = where_operation_is_run_command(activity)
    step = where_authorization_has_virtual_machines(step)
    step = summarize_by_correlation(step)
    step = where_list_has_any_success(step)
    step = extend_scope_parts(step)
    return project_run_commands(step)


# --- BehaviorAnalytics side -------------------------------------------------------------------

INSIGHT_KEY = "ActionUncommonlyPerformedByUser"


def where_azure_ad_uncommon_action(ueba: pd.DataFrame) -> pd.DataFrame:
    """| where EventSource == "Azure AD" and ActivityInsights.ActionUncommonlyPerformedByUser == "True"

    `==` is case-sensitive and compares the string "True": a JSON `true` is "true", no match.
    Decided per distinct text, column-at-a-time where the text's shape makes it certain, parsed
    otherwise (kql.property_equals): UEBA may flag many rows, but they share few texts.
    """  # noqa: E501 (the first line is the KQL step, verbatim)
    azure_ad = _where(ueba, kql.kusto_str(ueba["EventSource"]) == "Azure AD")
    return _where(azure_ad, kql.property_equals(azure_ad["ActivityInsights"], INSIGHT_KEY, "True"))


def project_ueba(ueba: pd.DataFrame) -> pd.DataFrame:
    """| project UEBAEventTime=TimeGenerated, UEBAActionType=ActionType, UserPrincipalName,
    UEBASourceIPLocation=SourceIPLocation, UEBAActivityInsights=ActivityInsights,
    UEBAUsersInsights=UsersInsights"""
    return pd.DataFrame(
        {
            "UEBAEventTime": ueba["TimeGenerated"],
            "UEBAActionType": kql.kusto_str(ueba["ActionType"]),
            "UserPrincipalName": kql.kusto_str(ueba["UserPrincipalName"]),
            "UEBASourceIPLocation": kql.kusto_str(ueba["SourceIPLocation"]),
            "UEBAActivityInsights": _by_code(ueba["ActivityInsights"]),
            "UEBAUsersInsights": _by_code(ueba["UsersInsights"]),
        },
        index=ueba.index,
    )


def _by_code(text: pd.Series) -> pd.Series:
    """The wide JSON text as a categorical: the filters and the join then move small codes, not
    copies of every text (UEBA repeats a few texts across many rows); the text is the same."""
    return kql.categorical(text)


def where_upn_and_location_not_empty(ueba: pd.DataFrame) -> pd.DataFrame:
    """| where isnotempty(UserPrincipalName) and isnotempty(UEBASourceIPLocation)
    | extend joinkey = tolower(UserPrincipalName)"""
    kept = _where(ueba, (ueba["UserPrincipalName"] != "") & (ueba["UEBASourceIPLocation"] != ""))
    return kept.assign(joinkey=joinkey(kept["UserPrincipalName"]))


def uncommon_logins(ueba: pd.DataFrame) -> pd.DataFrame:
    """The right side of the join: UEBA-flagged uncommon Azure AD activity with a user and place."""
    step = where_azure_ad_uncommon_action(ueba)
    step = project_ueba(step)
    return where_upn_and_location_not_empty(step)


# --- Join and window ----------------------------------------------------------------------------


def join_inner_on_joinkey(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """| join kind = inner (...) on joinkey

    `inner` keeps every matching pair (not Kusto's default `innerunique`).
    """
    return left.merge(right, on="joinkey", how="inner", sort=False)


def where_start_between_ueba_window(joined: pd.DataFrame) -> pd.DataFrame:
    """| extend UEBAWindowStart = UEBAEventTime - 1h, UEBAWindowEnd = UEBAEventTime + 6h
    | where StartTime between (UEBAWindowStart .. UEBAWindowEnd)

    `between` includes both ends.
    """
    start, event = joined["StartTime"], joined["UEBAEventTime"]
    return joined[(start >= event - UEBA_BEFORE) & (start <= event + UEBA_AFTER)]


def project_output(joined: pd.DataFrame) -> pd.DataFrame:
    """| project StartTime, EndTime, Subscription, VirtualMachineName, Caller, CallerIpAddress,
    UEBAEventTime, UEBAActionType, UEBASourceIPLocation, UEBAActivityInsights, UEBAUsersInsights
    | extend AccountName = tostring(split(Caller, "@")[0]),
             AccountUPNSuffix = tostring(split(Caller, "@")[1])

    Dynamic columns become Python values (dict, list, str...) as Kusto would return them.
    """
    out = joined.assign(
        UEBAActivityInsights=_dynamic(joined["UEBAActivityInsights"]),
        UEBAUsersInsights=_dynamic(joined["UEBAUsersInsights"]),
        AccountName=kql.split_at(joined["Caller"], "@", 0),
        AccountUPNSuffix=kql.split_at(joined["Caller"], "@", 1),
    )
    return out[OUTPUT_COLUMNS + CONTEXT_COLUMNS].reset_index(drop=True)


def _dynamic(text: pd.Series) -> pd.Series:
    """JSON text to dynamic values, as an object column: a map() would infer `str` when every
    value is a string (invalid JSON stays a string) and turn null into NaN.

    A UEBA text recurs in many result rows: it is parsed once and each row gets its own copy of
    the value (a flat object or array by a C-level copy, a nested one parsed again), so no
    row's value is another's."""
    if isinstance(text.dtype, pd.CategoricalDtype):
        texts, codes = text.cat.categories, text.cat.codes.to_numpy()
    else:
        try:
            codes, texts = pd.Index(text.astype(object)).factorize()
        except TypeError:  # values that are not text (already dynamic): each its own
            return pd.Series(
                [_maker(v)() for v in text.astype(object)], index=text.index, dtype=object
            )
    makers: dict[int, object] = {}
    out = []
    for k in codes.tolist():
        if k < 0:
            out.append(None)
            continue
        make = makers.get(k)
        if make is None:
            make = makers[k] = _maker(texts[k])
        out.append(make())
    return pd.Series(out, index=text.index, dtype=object)


def _maker(text):
    """A function giving a fresh dynamic value of `text` on each call."""
    value = kql.parsed(text)
    if isinstance(value, (dict, list)):
        items = value.values() if isinstance(value, dict) else value
        if any(isinstance(v, (dict, list)) for v in items):
            return lambda: kql.parse_json(text)
        return value.copy
    return lambda: value  # strings, numbers, booleans, null: immutable


def only_joinable(ueba: pd.DataFrame, joinkeys: pd.Series) -> pd.DataFrame:
    """Not a line of the KQL: the UEBA rows whose joinkey no Run Command has, dropped before
    the right side's steps, because the inner join would drop them after. Where UEBA flags
    many rows (1 in 8 Azure AD rows), the right side's steps cost more than the rest of a
    window's query; few of those rows belong to a user who ran a command. The key is
    where_upn_and_location_not_empty's, by the same function (joinkey), so a row kept here is
    one the join could match, and the rows kept keep their order: the join's output is the
    same, row for row (tests/detection/test_correlation.py)."""
    if "UserPrincipalName" not in ueba:
        return ueba  # the right side's own steps report the missing column
    wanted = joinkeys.unique()
    return _where(
        ueba,
        kql.by_distinct(ueba["UserPrincipalName"], lambda upn: joinkey(upn).isin(wanted)),
    )


def correlate(activity: pd.DataFrame, ueba: pd.DataFrame) -> pd.DataFrame:
    """The whole query. Returns the rule's 13 columns plus CONTEXT_COLUMNS."""
    left = run_commands(activity)
    joined = join_inner_on_joinkey(left, uncommon_logins(only_joinable(ueba, left["joinkey"])))
    return project_output(where_start_between_ueba_window(joined))
