"""The demo lake: seeded, realistic data for the Run Command / UEBA rule, with the rule's sample
cases planted as ground truth (a tool: the DAG and the CLI's detection never import it).

`generate(start_day, days, seed)` returns the two tables the rule reads, shaped like Log Analytics
exports: AzureActivity (a realistic subset of its columns, legacy upper-case ResourceId /
ResourceGroup / ResourceProviderValue, Authorization and Properties as JSON text) and
BehaviorAnalytics (dynamic insight columns as JSON text, insight values the strings "True"/"False").

The world is fixed (it does not depend on the seed): two tenants (contoso.com, fabrikam.com), 25
users, 4 service principals, 3 subscriptions holding 19 VMs, a VM scale set `vmss-build` (instances
0-5), storage accounts, NSGs, key vaults and web apps. The seed drives the background noise:

* AzureActivity: ~`activity_per_day` events per weekday (weekends a bit under half) with a
  diurnal shape per tenant (contoso on US hours, fabrikam on European hours, service principals
  around the clock with a nightly pipeline peak): storage listKeys, VM start/deallocate/restart/
  write, extensions, the managed `runCommands/write` (not the rule's operation), snapshots, role
  assignments, NSG and rule writes, deployments, Key Vault, web apps, diagnostic settings and Policy
  audits; 1-3 events per operation sharing a CorrelationId; ~3% fail. Run Commands every day, in
  both status families (Started/Accepted/Succeeded|Failed and Start/Accept/Success|Failure) and both
  letter cases of the operation name, by VM operators and service principals (~15% fail), plus
  developers without the permission (a single Failed/Forbidden event).
* BehaviorAnalytics: ~activity_per_day/6 rows per weekday from "Azure AD" (sign-ins),
  "AzureActivity" and "Device logons"; insights mostly "False", with some uncommon Azure AD activity
  (ActionUncommonlyPerformedByUser "True", often from a new country).

Noise never alerts, by construction: the users who run commands in the noise (cohort "runner")
never get an uncommon Azure AD insight, the users who do (cohort "other") never run a command that
succeeds, and service principals have no UEBA rows. The users of the planted cases (cohort
"planted") have neither. So the rule's result over any window is exactly the planted true positives
in it (`expected_alerts`).

Planted cases (`PLANTED`): the rule's sample cases,
include/rules/runcommand_ueba_breach.samples.yaml, each with its rows, expected result and reason
(tests/rules/test_samples.py runs them through both engines). Placed on the default demo (2026-10-26
Mon .. 2026-11-01 Sun), the near misses fall on 10-27, 10-28, 10-29 and 11-01, the true positives on
10-29 (two), 10-30 (three, one with two UEBA rows) and 10-31 (the sign-in of a run that crosses
midnight).

With the daily 2-day query period [D-2d, D): D = 10-30 finds the two 10-29 cases, D = 10-31
(`DEMO_ALERT_DATE`) the four cases of 10-29/10-30 (five rows), D = 11-01 the three 10-30 cases
again (a re-run/idempotency check), D = 11-02 the cross-midnight case, and D = 10-27, 10-28, 10-29
and 11-03 nothing.

Run as `python -m detection_tools.lakegen --out DIR [--format parquet|jsonl]` (the CLI's `demo`
subcommand calls the same); `make demo` writes the default lake with `ensure_demo_lake`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from include.detection.errors import UsageError
from include.detection.files import atomic_path

from . import samples

DEMO_START = date(2026, 10, 26)
DEMO_DAYS = 7
DEMO_SEED = 7
DEMO_ALERT_DATE = date(2026, 10, 31)
TABLES = ("AzureActivity", "BehaviorAnalytics")
DYNAMIC_COLUMNS = {"BehaviorAnalytics": ("ActivityInsights", "UsersInsights", "DevicesInsights")}
RUN_COMMAND = "Microsoft.Compute/virtualMachines/runCommand/action"
_RC_UPPER = RUN_COMMAND.upper()

ACTIVITY_SCHEMA = pa.schema(
    [("TimeGenerated", pa.timestamp("ns", tz="UTC"))]
    + [
        (c, pa.string())
        for c in (
            "TenantId",
            "SourceSystem",
            "CallerIpAddress",
            "CategoryValue",
            "CorrelationId",
            "Authorization",
            "ResourceGroup",
            "SubscriptionId",
            "EventDataId",
            "Level",
            "OperationId",
            "OperationNameValue",
            "OperationName",
            "ActivityStatusValue",
            "ActivitySubstatusValue",
            "ResourceProviderValue",
            "HTTPRequest",
            "Properties",
            "Caller",
            "Hierarchy",
            "ResourceId",
            "_ResourceId",
            "Type",
        )
    ]
)
UEBA_SCHEMA = pa.schema(
    [("TimeGenerated", pa.timestamp("ns", tz="UTC"))]
    + [
        (c, pa.string())
        for c in (
            "TenantId",
            "EventSource",
            "ActionType",
            "ActivityType",
            "UserName",
            "UserPrincipalName",
            "SourceIPAddress",
            "SourceIPLocation",
            "SourceDevice",
            "ActivityInsights",
            "UsersInsights",
            "DevicesInsights",
        )
    ]
    + [("InvestigationPriority", pa.int32()), ("Type", pa.string())]
)

_NS_PER_S = 1_000_000_000
_NS_PER_H = 3600 * _NS_PER_S
_NS_PER_DAY = 24 * _NS_PER_H
_UUID_NS = uuid.UUID("5b0f7c1e-3d2a-4e8f-9a61-c0ffee5eed07")


def _uid(name: str) -> str:
    """A stable GUID for a named thing of the fixed world (independent of the seed)."""
    return str(uuid.uuid5(_UUID_NS, name))


def _hex(name: str) -> str:
    return uuid.uuid5(_UUID_NS, name).hex


def _obj(values) -> np.ndarray:
    return np.asarray(values, dtype=object)


# --- The fixed world ----------------------------------------------------------------------------

_TENANTS = ("contoso", "fabrikam")
TENANT_IDS = {t: _uid(f"tenant/{t}") for t in _TENANTS}
_SUBSCRIPTIONS = (  # name, tenant, management group
    ("contoso-prod", "contoso", "mg-contoso-prod"),
    ("contoso-dev", "contoso", "mg-contoso-nonprod"),
    ("fabrikam-ops", "fabrikam", "mg-fabrikam-platform"),
)
SUBSCRIPTION_IDS = {name: _uid(f"subscription/{name}") for name, _, _ in _SUBSCRIPTIONS}

_LAYOUT = {
    "contoso-prod": {
        "rg-prod-web": {
            "vm": ["web-prod-01", "web-prod-02", "web-prod-03", "web-prod-04", "jumpbox-prod-01"],
            "nsg": ["nsg-prod-web"],
            "storage": ["stcontosoprodweb"],
            "site": ["app-contoso-portal"],
        },
        "RG-PROD-DATA": {
            "vm": ["sql-prod-01", "sql-prod-02"],
            "nsg": ["nsg-prod-data"],
            "storage": ["stcontosoproddata"],
            "kv": ["kv-contoso-prod"],
        },
    },
    "contoso-dev": {
        "rg-dev-app": {
            "vm": ["dev-app-01", "dev-app-02", "dev-app-03", "win-dev-01"],
            "nsg": ["nsg-dev"],
            "storage": ["stcontosodevtmp"],
        },
        "rg-dev-build": {
            "vm": ["build-agent-01"],
            "vmss": [("vmss-build", 6)],
            "storage": ["stcontosobuildcache"],
        },
    },
    "fabrikam-ops": {
        "rg-fab-ops": {
            "vm": ["fab-app-01", "fab-app-02", "fab-app-03", "fab-dc-01", "fab-mgmt-01"],
            "nsg": ["nsg-fab-ops"],
            "storage": ["stfabrikamops"],
            "kv": ["kv-fabrikam-ops"],
            "site": ["app-fab-intranet"],
        },
        "rg-fab-sap": {"vm": ["fab-sap-01", "fab-sap-02"], "storage": ["stfabrikambackup"]},
    },
}
_PROVIDER = {
    "vm": "Microsoft.Compute/virtualMachines",
    "nsg": "Microsoft.Network/networkSecurityGroups",
    "storage": "Microsoft.Storage/storageAccounts",
    "kv": "Microsoft.KeyVault/vaults",
    "site": "Microsoft.Web/sites",
}

# Canonical UPN (as the activity log shows the caller), display name, tenant, cohort, RBAC role.
# Cohorts: "planted" users appear in the planted cases and have no risky noise; "runner" users run
# commands in the noise and never have uncommon Azure AD activity; "other" users have uncommon
# Azure AD activity in the noise and never run a command that succeeds.
_USERS = (
    ("Alice.Admin@contoso.com", "Alice Admin", "contoso", "planted", "Owner"),
    ("bob.martin@contoso.com", "Bob Martin", "contoso", "planted", "Contributor"),
    (
        "carol.nguyen@contoso.com",
        "Carol Nguyen",
        "contoso",
        "planted",
        "Virtual Machine Contributor",
    ),
    ("erin.lopez@contoso.com", "Erin Lopez", "contoso", "planted", "Contributor"),
    ("grace.hall@contoso.com", "Grace Hall", "contoso", "planted", "Owner"),
    ("Ivan.Petrov@contoso.com", "Ivan Petrov", "contoso", "planted", "Contributor"),
    ("dave.kim@fabrikam.com", "Dave Kim", "fabrikam", "planted", "Virtual Machine Contributor"),
    ("frank.miller@fabrikam.com", "Frank Miller", "fabrikam", "planted", "Owner"),
    ("heidi.wong@fabrikam.com", "Heidi Wong", "fabrikam", "planted", "Contributor"),
    ("oscar.reyes@contoso.com", "Oscar Reyes", "contoso", "runner", "Virtual Machine Contributor"),
    ("Peggy.Chen@contoso.com", "Peggy Chen", "contoso", "runner", "Contributor"),
    ("victor.tran@contoso.com", "Victor Tran", "contoso", "runner", "Owner"),
    ("trent.becker@fabrikam.com", "Trent Becker", "fabrikam", "runner", "Contributor"),
    (
        "walter.fischer@fabrikam.com",
        "Walter Fischer",
        "fabrikam",
        "runner",
        "Virtual Machine Contributor",
    ),
    ("olivia.schmidt@fabrikam.com", "Olivia Schmidt", "fabrikam", "runner", "Owner"),
    ("judy.park@contoso.com", "Judy Park", "contoso", "other", "Contributor"),
    ("Mallory.Jones@contoso.com", "Mallory Jones", "contoso", "other", "Contributor"),
    ("niaj.brown@contoso.com", "Niaj Brown", "contoso", "other", "Network Contributor"),
    ("sybil.davis@contoso.com", "Sybil Davis", "contoso", "other", "Contributor"),
    ("rupert.white@contoso.com", "Rupert White", "contoso", "other", "Storage Account Contributor"),
    ("kate.moore@contoso.com", "Kate Moore", "contoso", "other", "Contributor"),
    ("lena.wagner@fabrikam.com", "Lena Wagner", "fabrikam", "other", "Contributor"),
    ("jonas.weber@fabrikam.com", "Jonas Weber", "fabrikam", "other", "Network Contributor"),
    ("mia.koch@fabrikam.com", "Mia Koch", "fabrikam", "other", "Contributor"),
    (
        "paul.richter@fabrikam.com",
        "Paul Richter",
        "fabrikam",
        "other",
        "Storage Account Contributor",
    ),
)
_SERVICE_PRINCIPALS = (
    ("sp-contoso-devops-pipeline", "contoso", "Contributor"),
    ("sp-contoso-automation", "contoso", "Virtual Machine Contributor"),
    ("sp-fabrikam-terraform", "fabrikam", "Owner"),
    ("sp-fabrikam-backup", "fabrikam", "Contributor"),
)
_ROLE_DEFINITIONS = {  # Azure built-in role definition ids
    "Owner": "8e3af657a8ff443ca75c2fe8c4bcb635",
    "Contributor": "b24988ac618042a0ab8820f7382dd24c",
    "Virtual Machine Contributor": "9980e02cc2be4d7394e8173b1dc7cf3c",
    "Network Contributor": "4d97b98b1d4f4787a291c67834d212e7",
    "Storage Account Contributor": "17d1049b9a8446fb8f53869881c3d3ab",
}
# Per tenant: usual country, ISP and corporate egress IPs (documentation address ranges only).
_HOME = {
    "contoso": (
        "United States",
        "Contoso Corp Network",
        ("203.0.113.10", "203.0.113.11", "203.0.113.12"),
    ),
    "fabrikam": ("Germany", "Fabrikam GmbH", ("192.0.2.40", "192.0.2.41", "192.0.2.42")),
}
_UNCOMMON_COUNTRIES = np.array(
    ["Netherlands", "Brazil", "India", "Singapore", "Mexico", "Poland"], dtype=object
)


class _World:
    """Users, service principals and resources as parallel numpy arrays (built once)."""

    def __init__(self):
        # Resources: VMs (vm), VM scale-set instances (vmss), storage, nsg, kv, site, resource
        # groups (rg).
        res = []
        for sub, groups in _LAYOUT.items():
            sub_i = [s[0] for s in _SUBSCRIPTIONS].index(sub)
            tenant_i = _TENANTS.index(_SUBSCRIPTIONS[sub_i][1])
            for rg, kinds in groups.items():
                rg_scope = f"/subscriptions/{SUBSCRIPTION_IDS[sub]}/resourceGroups/{rg}"
                res.append(("rg", sub_i, tenant_i, rg, rg, rg_scope))
                for kind, names in kinds.items():
                    for name in names:
                        if kind == "vmss":
                            ss, count = name
                            ss_scope = (
                                f"{rg_scope}/providers/Microsoft.Compute/"
                                f"virtualMachineScaleSets/{ss}"
                            )
                            res += [
                                (
                                    "vmss",
                                    sub_i,
                                    tenant_i,
                                    rg,
                                    f"{ss}/{i}",
                                    f"{ss_scope}/virtualMachines/{i}",
                                )
                                for i in range(count)
                            ]
                        else:
                            res.append(
                                (
                                    kind,
                                    sub_i,
                                    tenant_i,
                                    rg,
                                    name,
                                    f"{rg_scope}/providers/{_PROVIDER[kind]}/{name}",
                                )
                            )
        self.res_kind = np.array([r[0] for r in res], dtype=object)
        self.res_sub = np.array([r[1] for r in res])
        self.res_tenant = np.array([r[2] for r in res])
        self.res_rg = np.array([r[3] for r in res], dtype=object)
        self.res_name = np.array([r[4] for r in res], dtype=object)
        self.res_scope = np.array([r[5] for r in res], dtype=object)
        self.pool = {
            k: np.flatnonzero(self.res_kind == k)
            for k in ("rg", "vm", "vmss", "storage", "nsg", "kv", "site")
        }
        self.pool["vm_rc"] = np.concatenate([self.pool["vm"], self.pool["vmss"]])
        self.pool["diag"] = np.concatenate([self.pool["vm"], self.pool["storage"], self.pool["kv"]])
        self.pool["policy"] = np.concatenate(
            [self.pool["vm"], self.pool["storage"], self.pool["nsg"]]
        )
        self.scope_of = {r[4]: r[5] for r in res if r[0] in ("vm", "vmss")}

        sub_ids = np.array([SUBSCRIPTION_IDS[s[0]] for s in _SUBSCRIPTIONS], dtype=object)
        self.sub_id = sub_ids
        self.hierarchy = _obj(
            [f"{TENANT_IDS[t]}/{mg}/{SUBSCRIPTION_IDS[s]}" for s, t, mg in _SUBSCRIPTIONS]
        )

        # Callers: the 25 users, then the service principals.
        users = [
            dict(
                upn=u[0],
                display=u[1],
                tenant=_TENANTS.index(u[2]),
                cohort=u[3],
                role=u[4],
                oid=_uid(f"user/{u[0].lower()}"),
                ptype="User",
            )
            for u in _USERS
        ]
        sps = [
            dict(
                upn=_uid(f"sp/{s[0]}"),
                display=s[0],
                tenant=_TENANTS.index(s[1]),
                cohort="sp",
                role=s[2],
                oid=_uid(f"sp-object/{s[0]}"),
                ptype="ServicePrincipal",
            )
            for s in _SERVICE_PRINCIPALS
        ]
        callers = users + sps
        self.n_users = len(users)
        self.caller = np.array([c["upn"] for c in callers], dtype=object)
        self.caller_tenant = np.array([c["tenant"] for c in callers])
        self.cohort = np.array([c["cohort"] for c in callers], dtype=object)
        self.role = np.array([c["role"] for c in callers], dtype=object)
        self.role_def = np.array([_ROLE_DEFINITIONS[c["role"]] for c in callers], dtype=object)
        self.principal_id = np.array([c["oid"].replace("-", "") for c in callers], dtype=object)
        self.ptype = np.array([c["ptype"] for c in callers], dtype=object)
        self.role_assignment = np.array(
            [[_hex(f"ra/{c['upn']}/{s}") for s in sub_ids] for c in callers], dtype=object
        )
        # Where each caller calls from: three corporate egress IPs and a home/VPN address.
        ips = []
        for i, c in enumerate(callers):
            corp = _HOME[_TENANTS[c["tenant"]]][2]
            if c["ptype"] == "ServicePrincipal":
                own = f"198.51.100.{200 + i - len(users)}"
                ips.append((own, own, own, own))
            else:
                home = f"2001:db8:4a1c::{i + 16:x}" if i % 7 == 3 else f"198.51.100.{20 + i}"
                ips.append((*corp, home))
        self.ips = np.array(ips, dtype=object)

        # UEBA identity columns, per user.
        u = slice(0, self.n_users)
        upn = self.caller[u]
        local = np.array([x.split("@")[0].lower() for x in upn], dtype=object)
        domain = np.array([x.split("@")[1].lower() for x in upn], dtype=object)
        capitalized = _obj([d.capitalize() for d in domain])
        self.upn_variants = np.stack([local + "@" + domain, upn, local + "@" + capitalized], axis=1)
        self.user_name = local
        self.home_country = np.array([_HOME[_TENANTS[c["tenant"]]][0] for c in users], dtype=object)
        self.home_isp = np.array([_HOME[_TENANTS[c["tenant"]]][1] for c in users], dtype=object)
        self.internal_ip = _obj([f"10.{20 + c['tenant']}.8.{10 + i}" for i, c in enumerate(users)])
        self.workstation = np.array(
            [
                f"{'CONTOSO-LT' if c['tenant'] == 0 else 'FAB-NB'}-{4100 + 37 * i}"
                for i, c in enumerate(users)
            ],
            dtype=object,
        )
        self.users_insights = np.array(
            [_users_insights(c, i) for i, c in enumerate(users)], dtype=object
        )


def _users_insights(user: dict, i: int) -> str:
    insights = {
        "AccountDisplayName": user["display"],
        "AccountDomain": user["upn"].split("@")[1].lower(),
        "AccountObjectID": user["oid"],
        "BlastRadius": "High" if user["role"] == "Owner" else "Low",
        "IsDormantAccount": "False",
        "IsNewAccount": "False",
    }
    if _TENANTS[user["tenant"]] == "contoso":  # hybrid identities synced from on-premises AD
        insights["OnPremisesSID"] = f"S-1-5-21-3623811015-3361044348-30300820-{1104 + i}"
    return json.dumps(insights, separators=(",", ":"))


_WORLD = _World()


# --- Planted ground truth -----------------------------------------------------------------------

# The rule's sample cases (include/rules/<rule>.samples.yaml) are the planted ground truth: their
# rows as written, the columns the rule does not read filled in from the world below.
_STATUS_NEW = {"Start", "Accept", "Success", "Failure"}
_STATUS_FAILED = {"Failed", "Failure"}


def _day_ns(d: date) -> int:
    return int(np.datetime64(d, "D").astype("datetime64[ns]").astype(np.int64))


def _ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


def planted_cases(start_day: date = DEMO_START, days: int = DEMO_DAYS) -> list[dict]:
    """The rule's sample cases placed from `start_day` (their days after the samples' anchor
    become days after `start_day`), limited to those whose rows all fall in
    [start_day, start_day + days)."""
    start, end = _ts(_day_ns(start_day)), _ts(_day_ns(start_day) + days * _NS_PER_DAY)
    out = []
    for case in samples.load(anchor=start_day):
        ueba, activity = case.rows["BehaviorAnalytics"], case.rows["AzureActivity"]
        times = [r["TimeGenerated"] for r in ueba + activity]
        if min(times) < start or max(times) >= end:
            continue
        runs = {r["CorrelationId"] for r in activity}
        if len(runs) != 1 or not ueba:
            raise ValueError(f"sample {case.name}: the demo plants one run and its UEBA rows")
        scope = json.loads(activity[0]["Authorization"])["scope"]
        run_times = [r["TimeGenerated"] for r in activity]
        out.append(
            {
                "name": case.name,
                "day": ueba[0]["TimeGenerated"].date(),
                "expected_alert": case.alert,
                "expected_rows": len(case.results) if case.alert else 0,
                "description": case.reason,
                "caller": activity[0]["Caller"],
                "user_principal_name": ueba[0]["UserPrincipalName"],
                "subscription": scope.split("/")[2],
                "virtual_machine": scope.split("/")[-1],
                "correlation_id": activity[0]["CorrelationId"],
                "ueba_times": tuple(r["TimeGenerated"] for r in ueba),
                "run_start": min(run_times),
                "run_end": max(run_times),
                "rows": case.rows,
            }
        )
    return out


PLANTED: list[dict] = planted_cases()
"""Ground truth of the default demo (DEMO_START, DEMO_DAYS): name, day, expected_alert,
expected_rows, description (the sample's reason), caller, user_principal_name, subscription,
virtual_machine, correlation_id, ueba_times, run_start, run_end (pandas UTC Timestamps), and the
sample's rows (table -> row dicts)."""


def expected_alerts(start, end, cases: list[dict] | None = None) -> list[dict]:
    """The rule's result rows over [start, end) that the planted cases produce (noise yields none):
    one per (true positive, UEBA row) when the whole run and that UEBA row are in the window."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    rows = []
    for c in PLANTED if cases is None else cases:
        if not c["expected_alert"] or not (start <= c["run_start"] and c["run_end"] < end):
            continue
        for t in c["ueba_times"]:
            if start <= t < end:
                rows.append(
                    {
                        "name": c["name"],
                        "caller": c["caller"],
                        "virtual_machine": c["virtual_machine"],
                        "subscription": c["subscription"],
                        "correlation_id": c["correlation_id"],
                        "run_start": c["run_start"],
                        "ueba_time": t,
                    }
                )
    return rows


# --- Vectorised helpers -------------------------------------------------------------------------

# --- Shared with the bench lakes (bench/lake.py): ids, hourly shapes, times --------------------
# Both generators draw GUIDs and times through these, so the demo and the bench data look alike
# and a change to how an id or a time is drawn is made once.

STR = pa.large_string()  # built as large_string (no 2 GiB offset limit), written as UTF8
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def fixed_width(chars: np.ndarray) -> pa.Array:
    """(n, w) uint8 array of ASCII -> large_string array of n strings of width w (zero copy)."""
    n, w = chars.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
    return pa.Array.from_buffers(
        STR, n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))]
    )


def hex_chars(raw: np.ndarray) -> np.ndarray:
    """(n, k) bytes -> (n, 2k) lower-case hex characters."""
    out = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


def guid_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random version-4 UUIDs as (n, 16) bytes."""
    b = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    return b


def guids(raw: np.ndarray) -> pa.Array:
    """(n, 16) bytes -> 'xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx' strings."""
    h = hex_chars(raw)
    out = np.empty((raw.shape[0], 36), dtype=np.uint8)
    out[:, 0:8], out[:, 9:13], out[:, 14:18], out[:, 19:23], out[:, 24:36] = (
        h[:, 0:8],
        h[:, 8:12],
        h[:, 12:16],
        h[:, 16:20],
        h[:, 20:32],
    )
    out[:, [8, 13, 18, 23]] = ord("-")
    return fixed_width(out)


def times(rng, n: int, profile: np.ndarray, day_ns, max_offset_ns: int = 0) -> np.ndarray:
    """n times of day drawn from an hourly profile, in 100 ns ticks (Kusto's resolution), after
    `day_ns` (midnight; one or one per time), leaving `max_offset_ns` before the next midnight
    (so the later events of an operation stay in the day)."""
    hour = rng.choice(24, size=n, p=profile)
    tick = rng.integers(0, 3600 * 10**7, size=n, dtype=np.int64)
    return day_ns + np.minimum(hour * _NS_PER_H + tick * 100, _NS_PER_DAY - max_offset_ns - 100)


def _guids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random (version 4) GUID strings, as an object array."""
    return guids(guid_bytes(rng, n)).to_numpy(zero_copy_only=False).astype(object)


def _np(a) -> np.ndarray:
    return _obj(a.to_numpy(zero_copy_only=False))


def _upper(a: np.ndarray) -> np.ndarray:
    return _obj(pc.utf8_upper(pa.array(a, pa.string())).to_numpy(zero_copy_only=False))


def _lower(a: np.ndarray) -> np.ndarray:
    return _obj(pc.utf8_lower(pa.array(a, pa.string())).to_numpy(zero_copy_only=False))


def profile(weights) -> np.ndarray:
    """Weights normalised to a probability distribution."""
    p = np.asarray(weights, dtype=float)
    return p / p.sum()


# Hourly (UTC) activity shapes: contoso works US hours, fabrikam European hours, service principals
# run all day with nightly pipelines.
HOURLY = {
    "contoso": profile(
        [
            0.25,
            0.2,
            0.15,
            0.1,
            0.08,
            0.08,
            0.08,
            0.1,
            0.12,
            0.15,
            0.2,
            0.35,
            0.6,
            0.9,
            1,
            1,
            1,
            0.95,
            1,
            0.95,
            0.85,
            0.65,
            0.45,
            0.3,
        ]
    ),
    "fabrikam": profile(
        [
            0.06,
            0.05,
            0.05,
            0.05,
            0.08,
            0.2,
            0.5,
            0.85,
            1,
            1,
            0.95,
            0.9,
            1,
            1,
            0.95,
            0.8,
            0.55,
            0.35,
            0.2,
            0.15,
            0.12,
            0.1,
            0.08,
            0.07,
        ]
    ),
    "sp": profile(
        [
            0.5,
            0.6,
            1.6,
            1.4,
            0.6,
            0.4,
            0.4,
            0.4,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.45,
            0.4,
            0.4,
            0.45,
        ]
    ),
}


def _weekend(start_day: date, days: int) -> np.ndarray:
    return np.array([(start_day + timedelta(days=d)).weekday() >= 5 for d in range(days)])


# --- AzureActivity ------------------------------------------------------------------------------

# OperationNameValue, OperationName, target, events per operation, weight.
_NOISE_OPS = (
    (
        "Microsoft.Storage/storageAccounts/listKeys/action",
        "List Storage Account Keys",
        "storage",
        2,
        14,
    ),
    ("Microsoft.Compute/virtualMachines/start/action", "Start Virtual Machine", "vm", 3, 9),
    (
        "Microsoft.Compute/virtualMachines/deallocate/action",
        "Deallocate Virtual Machine",
        "vm",
        3,
        9,
    ),
    ("Microsoft.Compute/virtualMachines/restart/action", "Restart Virtual Machine", "vm", 3, 4),
    ("Microsoft.Compute/virtualMachines/write", "Create or Update Virtual Machine", "vm", 3, 4),
    (
        "Microsoft.Compute/virtualMachines/extensions/write",
        "Create or Update Virtual Machine Extension",
        "vmext",
        3,
        4,
    ),
    (
        "Microsoft.Compute/virtualMachines/runCommands/write",
        "Create or Update Virtual Machine Run Command",
        "vmruncmd",
        3,
        1,
    ),
    ("Microsoft.Compute/snapshots/write", "Create or Update Snapshot", "snapshot", 3, 2),
    ("Microsoft.Storage/storageAccounts/write", "Create/Update Storage Account", "storage", 2, 3),
    ("Microsoft.Authorization/roleAssignments/write", "Create role assignment", "roleassign", 2, 2),
    (
        "Microsoft.Authorization/roleAssignments/delete",
        "Delete role assignment",
        "roleassign",
        2,
        1,
    ),
    (
        "Microsoft.Network/networkSecurityGroups/write",
        "Create or Update Network Security Group",
        "nsg",
        3,
        2,
    ),
    (
        "Microsoft.Network/networkSecurityGroups/securityRules/write",
        "Create or Update Security Rule",
        "nsgrule",
        3,
        4,
    ),
    ("Microsoft.Resources/deployments/write", "Create Deployment", "deployment", 3, 6),
    ("Microsoft.KeyVault/vaults/write", "Update Key Vault", "kv", 2, 2),
    ("Microsoft.Web/sites/restart/action", "Restart Web App", "site", 2, 2),
    (
        "Microsoft.Insights/diagnosticSettings/write",
        "Create or update resource diagnostic setting",
        "diag",
        2,
        1,
    ),
    ("Microsoft.Authorization/policies/audit/action", "'audit' Policy action.", "policy", 1, 8),
)
_RUN_COMMAND_NAME = "Run Command on Virtual Machine"
_SUFFIXES = {
    "vmext": (
        "/extensions/",
        [
            "CustomScriptExtension",
            "AzureMonitorWindowsAgent",
            "AzureMonitorLinuxAgent",
            "MDE.Windows",
            "DependencyAgentWindows",
        ],
    ),
    "vmruncmd": ("/runCommands/", ["patch-check", "collect-logs", "rotate-certs"]),
    "nsgrule": (
        "/securityRules/",
        [
            "allow-https-inbound",
            "allow-rdp-from-bastion",
            "deny-all-inbound",
            "allow-ssh-from-jumpbox",
        ],
    ),
    "deployment": (
        "/providers/Microsoft.Resources/deployments/",
        ["main", "vm-baseline", "network-hub", "pipeline-release", "monitoring"],
    ),
    "diag": (
        "/providers/microsoft.insights/diagnosticSettings/",
        ["send-to-law", "archive-to-storage"],
    ),
}
_TARGET_POOL = {
    "vm": "vm",
    "vmext": "vm",
    "vmruncmd": "vm",
    "snapshot": "vm",
    "storage": "storage",
    "roleassign": "rg",
    "nsg": "nsg",
    "nsgrule": "nsg",
    "deployment": "rg",
    "kv": "kv",
    "site": "site",
    "diag": "diag",
    "policy": "policy",
}
_FAIL_REASONS = _obj(["Conflict", "BadRequest", "InternalServerError", "NotFound"])
# Event kinds: 0 start, 1 accept, 2 success, 3 failure; kinds of an operation of n events.
_KINDS = np.array([[2, 2, 2], [2, 2, 2], [0, 2, 2], [0, 1, 2]])
_LEGACY = _obj(["Started", "Accepted", "Succeeded", "Failed"])
_NEW = _obj(["Start", "Accept", "Success", "Failure"])


def _pick_callers(rng, tenant: np.ndarray, pools: dict, weights: dict) -> np.ndarray:
    """For each row, a caller of its tenant from pools[tenant] (indices) with weights[tenant]."""
    out = np.empty(len(tenant), dtype=np.int64)
    for t in range(len(_TENANTS)):
        m = tenant == t
        out[m] = rng.choice(pools[t], size=int(m.sum()), p=weights[t])
    return out


def _caller_pool(cohort_weight: dict) -> tuple[dict, dict]:
    w = _WORLD
    weight = np.array([cohort_weight.get(c, 0.0) for c in w.cohort])
    pools, probs = {}, {}
    for t in range(len(_TENANTS)):
        idx = np.flatnonzero((w.caller_tenant == t) & (weight > 0))
        pools[t], probs[t] = idx, weight[idx] / weight[idx].sum()
    return pools, probs


def _noise_operations(rng, start_ns: int, days: int, weekend: np.ndarray, per_day: int) -> dict:
    """Background operations (everything but Run Command), one entry per operation."""
    w = _WORLD
    weights = profile([o[4] for o in _NOISE_OPS])
    mean_events = float((weights * np.array([o[3] for o in _NOISE_OPS])).sum())
    ops_per_day = per_day / mean_events
    n_user = rng.poisson(np.where(weekend, 0.3, 1.0) * ops_per_day * 0.8)
    n_sp = rng.poisson(np.full(days, ops_per_day * 0.2))
    day = np.concatenate([np.repeat(np.arange(days), n_user), np.repeat(np.arange(days), n_sp)])
    is_sp = np.concatenate([np.zeros(n_user.sum(), bool), np.ones(n_sp.sum(), bool)])
    m = len(day)

    op = rng.choice(len(_NOISE_OPS), size=m, p=weights)
    res = np.empty(m, dtype=np.int64)
    scope = np.empty(m, dtype=object)
    for k, (op_value, _, target, _, _) in enumerate(_NOISE_OPS):
        sel = np.flatnonzero(op == k)
        pool = w.pool[_TARGET_POOL[target]]
        r = pool[rng.integers(0, len(pool), size=len(sel))]
        res[sel] = r
        base = w.res_scope[r]
        if target in _SUFFIXES:
            sep, names = _SUFFIXES[target]
            base = base + sep + _obj(names)[rng.integers(0, len(names), size=len(sel))]
        elif target == "snapshot":
            base = (
                "/subscriptions/"
                + w.sub_id[w.res_sub[r]]
                + "/resourceGroups/"
                + w.res_rg[r]
                + "/providers/Microsoft.Compute/snapshots/"
                + w.res_name[r]
                + "-osdisk-snap"
            )
        elif target == "roleassign":
            base = (
                base + "/providers/Microsoft.Authorization/roleAssignments/" + _guids(rng, len(sel))
            )
        scope[sel] = base
    tenant = w.res_tenant[res]

    caller = np.empty(m, dtype=np.int64)
    user_pools = _caller_pool({"planted": 2.0, "runner": 3.0, "other": 1.5})
    sp_pools = _caller_pool({"sp": 1.0})
    for sp, (pools, probs) in ((False, user_pools), (True, sp_pools)):
        sel = np.flatnonzero(is_sp == sp)
        caller[sel] = _pick_callers(rng, tenant[sel], pools, probs)

    t0 = np.empty(m, dtype=np.int64)
    day_ns = start_ns + day * _NS_PER_DAY
    for t, name in enumerate(_TENANTS):
        sel = np.flatnonzero((tenant == t) & ~is_sp)
        t0[sel] = times(rng, len(sel), HOURLY[name], day_ns[sel])
    sel = np.flatnonzero(is_sp)
    t0[sel] = times(rng, len(sel), HOURLY["sp"], day_ns[sel])

    n_events = np.array([o[3] for o in _NOISE_OPS])[op]
    failed = (rng.random(m) < 0.03) & (n_events > 1)
    canon = _obj([o[0] for o in _NOISE_OPS])[op]
    return _operations(
        rng,
        t0=t0,
        n_events=n_events,
        failed=failed,
        fail_reason=_FAIL_REASONS[rng.integers(0, len(_FAIL_REASONS), size=m)],
        new_family=rng.random(m) < 0.35,
        canon=canon,
        op_value=np.where(rng.random(m) < 0.5, _upper(canon), canon),
        op_name=_obj([o[1] for o in _NOISE_OPS])[op],
        caller=caller,
        res_sub=w.res_sub[res],
        rg=w.res_rg[res],
        scope=scope,
        action=canon,
        evidence=n_events > 1,
        policy=n_events == 1,
    )


def _noise_run_commands(rng, start_ns: int, days: int, weekend: np.ndarray) -> dict:
    """Background Run Commands: operators and automation (some fail), developers without the
    permission (a single Failed/Forbidden event). None of them can alert (see the module doc)."""
    w = _WORLD
    n_ops = rng.poisson(np.where(weekend, 3.0, 6.0))
    n_sp = rng.poisson(np.full(days, 2.0))
    n_denied = rng.poisson(np.where(weekend, 0.3, 1.5))
    parts = []
    for count, cohort in ((n_ops, "runner"), (n_sp, "sp"), (n_denied, "other")):
        idx = np.flatnonzero(w.cohort == cohort)
        day = np.repeat(np.arange(days), count)
        parts.append((day, idx[rng.integers(0, len(idx), size=len(day))], cohort))
    day = np.concatenate([p[0] for p in parts])
    caller = np.concatenate([p[1] for p in parts])
    denied = np.concatenate([np.full(len(p[0]), p[2] == "other") for p in parts])
    is_sp = np.concatenate([np.full(len(p[0]), p[2] == "sp") for p in parts])
    m = len(day)
    tenant = w.caller_tenant[caller]
    vm = np.empty(m, dtype=np.int64)
    t0 = np.empty(m, dtype=np.int64)
    day_ns = start_ns + day * _NS_PER_DAY
    for t, name in enumerate(_TENANTS):
        pool = w.pool["vm_rc"][w.res_tenant[w.pool["vm_rc"]] == t]
        sel = np.flatnonzero(tenant == t)
        vm[sel] = pool[rng.integers(0, len(pool), size=len(sel))]
        sel_user = np.flatnonzero((tenant == t) & ~is_sp)
        t0[sel_user] = times(rng, len(sel_user), HOURLY[name], day_ns[sel_user])
    sel = np.flatnonzero(is_sp)
    t0[sel] = times(rng, len(sel), HOURLY["sp"], day_ns[sel])
    failed = denied | (rng.random(m) < 0.15)
    reasons = _obj(["Conflict", "InternalServerError", "GatewayTimeout"])
    canon = np.full(m, RUN_COMMAND, dtype=object)
    return _operations(
        rng,
        t0=t0,
        n_events=np.where(denied, 1, 3),
        failed=failed,
        fail_reason=np.where(denied, "Forbidden", reasons[rng.integers(0, len(reasons), size=m)]),
        new_family=rng.random(m) < 0.4,
        canon=canon,
        op_value=np.where(rng.random(m) < 0.5, _RC_UPPER, RUN_COMMAND),
        op_name=np.full(m, _RUN_COMMAND_NAME, dtype=object),
        caller=caller,
        res_sub=w.res_sub[vm],
        rg=w.res_rg[vm],
        scope=w.res_scope[vm],
        action=canon,
        evidence=~denied,
        policy=np.zeros(m, bool),
    )


def _operations(
    rng,
    *,
    t0,
    n_events,
    failed,
    fail_reason,
    new_family,
    canon,
    op_value,
    op_name,
    caller,
    res_sub,
    rg,
    scope,
    action,
    evidence,
    policy,
    offsets=None,
    correlation_id=None,
    ip=None,
) -> dict:
    """Per-operation arrays, with what the seed decides (times of later events, IPs, ids) filled
    in."""
    m = len(t0)
    w = _WORLD
    if offsets is None:
        accept = rng.uniform(0.05, 1.5, size=m)
        done = accept + np.minimum(rng.lognormal(np.log(35.0), 0.8, size=m), 900.0)
        offsets = np.stack([np.zeros(m), accept, done], axis=1) * _NS_PER_S
        offsets = (offsets // 100 * 100).astype(np.int64)
        offsets[n_events == 2, 1] = offsets[n_events == 2, 2]  # 2 events: start, then the outcome
    if ip is None:
        ip = w.ips[caller, rng.choice(4, size=m, p=[0.3, 0.3, 0.25, 0.15])]
    if correlation_id is None:
        correlation_id = _guids(rng, m)
    return dict(
        t0=np.asarray(t0, np.int64),
        n_events=np.asarray(n_events),
        failed=np.asarray(failed, bool),
        fail_reason=_obj(fail_reason),
        new_family=np.asarray(new_family, bool),
        canon=_obj(canon),
        op_value=_obj(op_value),
        op_name=_obj(op_name),
        caller=np.asarray(caller, np.int64),
        res_sub=np.asarray(res_sub),
        rg=_obj(rg),
        scope=_obj(scope),
        action=_obj(action),
        evidence=np.asarray(evidence, bool),
        policy=np.asarray(policy, bool),
        offsets=np.asarray(offsets, np.int64),
        correlation_id=_obj(correlation_id),
        ip=_obj(ip),
        operation_id=_guids(rng, m),
    )


def _planted_operations(rng, cases: list[dict]) -> dict:
    """Each case's run, from its sample rows: the events' times, statuses, operation name, caller,
    address and Authorization as written; what the rule does not read from the world."""
    w = _WORLD
    ops = []
    for case in cases:
        events = case["rows"]["AzureActivity"]
        first, last = events[0], events[-1]
        t0 = first["TimeGenerated"].value
        auth = json.loads(first["Authorization"])
        parts = auth["scope"].split("/")
        ops.append(
            dict(
                t0=t0,
                n_events=len(events),
                failed=last["ActivityStatusValue"] in _STATUS_FAILED,
                fail_reason="Conflict",
                new_family=first["ActivityStatusValue"] in _STATUS_NEW,
                canon=RUN_COMMAND,
                op_value=first["OperationNameValue"],
                op_name=_RUN_COMMAND_NAME,
                caller=int(np.flatnonzero(w.caller == first["Caller"])[0]),
                res_sub=list(SUBSCRIPTION_IDS.values()).index(parts[2]),
                rg=parts[4],
                scope=auth["scope"],
                action=auth["action"],
                evidence=True,
                policy=False,
                offsets=[e["TimeGenerated"].value - t0 for e in events],
                correlation_id=first["CorrelationId"],
                ip=first["CallerIpAddress"],
            )
        )
    if not ops:
        return {}
    return _operations(rng, **{k: [r[k] for r in ops] for k in ops[0]})


def _concat(parts: list[dict]) -> dict:
    parts = [p for p in parts if p]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _activity_table(rng, ops: dict) -> pa.Table:
    """Expand operations into their events and build the AzureActivity columns."""
    w = _WORLD
    n_ev = ops["n_events"]
    rep = np.repeat(np.arange(len(n_ev)), n_ev)
    idx = np.arange(len(rep)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    n = len(rep)
    time = ops["t0"][rep] + ops["offsets"][rep, idx]
    last = idx == n_ev[rep] - 1
    kind = _KINDS[n_ev[rep], idx]
    kind = np.where(ops["failed"][rep] & last, 3, kind)
    status = np.where(ops["new_family"][rep], _NEW[kind], _LEGACY[kind])
    outcome = np.where(kind == 1, "Accepted", np.where(kind == 2, "OK", ops["fail_reason"][rep]))
    outcome = outcome.astype(object)
    substatus = np.where(kind == 0, "", outcome).astype(object)
    policy = ops["policy"][rep]
    level = np.where(kind == 3, "Error", np.where(policy, "Warning", "Informational"))
    category = np.where(policy, "Policy", "Administrative")

    # Per operation: who, where, and the Authorization blob shared by its events.
    c = ops["caller"]
    sub = ops["res_sub"]
    sub_id = w.sub_id[sub]
    evidence = (
        ',"evidence":{"role":"'
        + w.role[c]
        + '","roleAssignmentScope":"/subscriptions/'
        + sub_id
        + '","roleAssignmentId":"'
        + w.role_assignment[c, sub]
        + '","roleDefinitionId":"'
        + w.role_def[c]
        + '","principalId":"'
        + w.principal_id[c]
        + '","principalType":"'
        + w.ptype[c]
        + '"}'
    )
    evidence = np.where(ops["evidence"], evidence, "")
    authorization = (
        '{"action":"' + ops["action"] + '","scope":"' + ops["scope"] + '"' + evidence + "}"
    )
    tenant_id = _obj([TENANT_IDS[s[1]] for s in _SUBSCRIPTIONS])[sub]
    hierarchy = w.hierarchy[sub]
    canon = pa.array(ops["canon"], pa.string())
    method = np.where(
        _np(pc.ends_with(canon, "/delete")),
        "DELETE",
        np.where(_np(pc.ends_with(canon, "/write")), "PUT", "POST"),
    )
    scope = ops["scope"]

    # Per event.
    ip = ops["ip"][rep]
    http = (
        '{"clientRequestId":"'
        + _guids(rng, n)
        + '","clientIpAddress":"'
        + ip
        + '","method":"'
        + _obj(method)[rep]
        + '"}'
    )
    http = np.where((idx == 0) & ~policy, http, "")
    properties = (
        np.where(kind == 0, "{", '{"statusCode":"' + outcome + '",').astype(object)
        + '"serviceRequestId":"'
        + _guids(rng, n)
        + '","eventCategory":"'
        + category
        + '","entity":"'
        + scope[rep]
        + '","message":"'
        + ops["canon"][rep]
        + '","hierarchy":"'
        + hierarchy[rep]
        + '"}'
    )
    provider = _upper(_np(pc.list_element(pc.split_pattern(canon, "/", max_splits=1), 0)))
    resource_id = _upper(scope)

    order = np.argsort(time, kind="stable")
    columns = {
        "TimeGenerated": time,
        "TenantId": tenant_id[rep],
        "SourceSystem": np.full(n, "Azure", object),
        "CallerIpAddress": ip,
        "CategoryValue": category,
        "CorrelationId": ops["correlation_id"][rep],
        "Authorization": authorization[rep],
        "ResourceGroup": _upper(ops["rg"])[rep],
        "SubscriptionId": sub_id[rep],
        "EventDataId": _guids(rng, n),
        "Level": level,
        "OperationId": ops["operation_id"][rep],
        "OperationNameValue": ops["op_value"][rep],
        "OperationName": ops["op_name"][rep],
        "ActivityStatusValue": status,
        "ActivitySubstatusValue": substatus,
        "ResourceProviderValue": provider[rep],
        "HTTPRequest": http,
        "Properties": properties,
        "Caller": w.caller[c][rep],
        "Hierarchy": hierarchy[rep],
        "ResourceId": resource_id[rep],
        "_ResourceId": _lower(scope)[rep],
        "Type": np.full(n, "AzureActivity", dtype=object),
    }
    return _table(columns, order, ACTIVITY_SCHEMA)


def _table(columns: dict, order: np.ndarray, schema: pa.Schema) -> pa.Table:
    arrays = []
    for f in schema:
        v = np.asarray(columns[f.name])[order]
        if pa.types.is_timestamp(f.type):
            arrays.append(pa.array(v.astype(np.int64).view("datetime64[ns]"), type=f.type))
        else:
            arrays.append(pa.array(v, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


# --- BehaviorAnalytics --------------------------------------------------------------------------

AAD_KEYS = (
    "FirstTimeUserConnectedFromCountry",
    "CountryUncommonlyConnectedFromAmongPeers",
    "FirstTimeUserConnectedViaISP",
    "ISPUncommonlyUsedAmongPeers",
    "FirstTimeConnectionViaISPInTenant",
    "FirstTimeUserConnectedFromDevice",
    "FirstTimeUserUsedApp",
    "AppUncommonlyUsedAmongPeers",
    "FirstTimeUserPerformedAction",
    "ActionUncommonlyPerformedByUser",
    "ActionUncommonlyPerformedAmongPeers",
)
ACTIVITY_KEYS = (
    "FirstTimeUserPerformedAction",
    "ActionUncommonlyPerformedByUser",
    "ActionUncommonlyPerformedAmongPeers",
    "FirstTimeActionPerformedInTenant",
    "FirstTimeUserAccessedResource",
    "ResourceUncommonlyAccessedAmongPeers",
    "FirstTimeUserConnectedFromCountry",
    "CountryUncommonlyConnectedFromAmongPeers",
)
DEVICE_KEYS = (
    "FirstTimeUserLoggedOnToDevice",
    "FirstTimeUserConnectedFromDevice",
    "DeviceUncommonlyUsedAmongPeers",
    "FirstTimeUserPerformedAction",
    "ActionUncommonlyPerformedByUser",
    "ActionUncommonlyPerformedAmongPeers",
)
_SOURCES = ("Azure AD", "AzureActivity", "Device logons")
_BROWSERS = (
    ("Edge 131.0", "Windows", "Desktop", "Windows 11", "Edge"),
    ("Chrome 131.0", "Windows", "Desktop", "Windows 10", "Chrome"),
    ("Safari 18.1", "Apple", "Desktop", "macOS 15", "Safari"),
    ("Mobile Safari 18.1", "Apple", "Mobile", "iOS 18", "Mobile Safari"),
)


def _insights(keys, flags: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """JSON text of {key: "True"|"False"} and the count of "True" values."""
    text = _obj(["{"] * n)
    count = np.zeros(n, dtype=np.int64)
    for i, k in enumerate(keys):
        f = flags[k]
        text = text + ("," if i else "") + f'"{k}":' + np.where(f, '"True"', '"False"')
        count += f
    return text + "}", count


def _devices_insights(rng, n: int, isp: np.ndarray) -> np.ndarray:
    b = _obj(_BROWSERS)[rng.choice(len(_BROWSERS), size=n, p=[0.45, 0.3, 0.1, 0.15])]
    return (
        '{"Browser":"'
        + b[:, 0]
        + '","DeviceFamily":"'
        + b[:, 1]
        + '","DeviceType":"'
        + b[:, 2]
        + '","ISP":"'
        + isp
        + '","OperatingSystem":"'
        + b[:, 3]
        + '","UserAgentFamily":"'
        + b[:, 4]
        + '"}'
    )


def _chance(rng, k: int):
    """r(p): k independent draws, each True with probability p."""
    return lambda p: rng.random(k) < p


def _noise_ueba(rng, start_ns: int, days: int, weekend: np.ndarray, per_day: int) -> dict:
    w = _WORLD
    count = rng.poisson(np.where(weekend, 0.35, 1.0) * per_day / 6)
    day = np.repeat(np.arange(days), count)
    n = len(day)
    user = rng.integers(0, w.n_users, size=n)
    tenant = w.caller_tenant[user]
    t = np.empty(n, dtype=np.int64)
    for ti, name in enumerate(_TENANTS):
        sel = np.flatnonzero(tenant == ti)
        t[sel] = times(rng, len(sel), HOURLY[name], start_ns + day[sel] * _NS_PER_DAY)
    source = rng.choice(3, size=n, p=[0.55, 0.25, 0.2])
    cohort = w.cohort[user]

    cols = {
        k: np.empty(n, dtype=object)
        for k in (
            "EventSource",
            "ActionType",
            "ActivityType",
            "UserPrincipalName",
            "UserName",
            "SourceIPAddress",
            "SourceIPLocation",
            "SourceDevice",
            "ActivityInsights",
            "DevicesInsights",
            "UsersInsights",
        )
    }
    priority = np.zeros(n, dtype=np.int64)
    upn = w.upn_variants[user, rng.choice(3, size=n, p=[0.75, 0.15, 0.10])]
    cols["EventSource"] = _obj(_SOURCES)[source]
    cols["UserPrincipalName"] = upn
    cols["UserName"] = w.user_name[user]
    cols["UsersInsights"] = w.users_insights[user]

    # Azure AD sign-ins. Only the "other" cohort ever gets ActionUncommonlyPerformedByUser "True".
    s = np.flatnonzero(source == 0)
    k = len(s)
    r = _chance(rng, k)
    uncommon = (cohort[s] == "other") & r(0.06)
    new_country = (uncommon & r(0.6)) | r(0.01)
    flags = {
        "FirstTimeUserConnectedFromCountry": new_country,
        "CountryUncommonlyConnectedFromAmongPeers": new_country & r(0.7),
        "FirstTimeUserConnectedViaISP": new_country | r(0.03),
        "ISPUncommonlyUsedAmongPeers": (new_country & r(0.5)) | r(0.02),
        "FirstTimeConnectionViaISPInTenant": new_country & r(0.3),
        "FirstTimeUserConnectedFromDevice": (uncommon & r(0.5)) | r(0.04),
        "FirstTimeUserUsedApp": r(0.03),
        "AppUncommonlyUsedAmongPeers": r(0.02),
        "FirstTimeUserPerformedAction": (uncommon & r(0.5)) | r(0.01),
        "ActionUncommonlyPerformedByUser": uncommon,
        "ActionUncommonlyPerformedAmongPeers": uncommon & r(0.4),
    }
    cols["ActivityInsights"][s], priority[s] = _insights(AAD_KEYS, flags, k)
    cols["ActionType"][s] = "Sign-in"
    cols["ActivityType"][s] = "LogOn"
    away_ip = "198.51.100." + rng.integers(100, 150, size=k).astype(str).astype(object)
    cols["SourceIPAddress"][s] = np.where(
        new_country, away_ip, w.ips[user[s], rng.choice(4, size=k, p=[0.3, 0.3, 0.2, 0.2])]
    )
    away = _UNCOMMON_COUNTRIES[rng.integers(0, len(_UNCOMMON_COUNTRIES), size=k)]
    location = np.where(new_country, away, w.home_country[user[s]])
    cols["SourceIPLocation"][s] = np.where(r(0.02), "", location)  # geo lookup sometimes fails
    cols["SourceDevice"][s] = ""
    cols["DevicesInsights"][s] = _devices_insights(
        rng, k, np.where(new_country, "Example Hosting Ltd", w.home_isp[user[s]])
    )

    # Azure activity as UEBA sees it.
    s = np.flatnonzero(source == 1)
    k = len(s)
    r = _chance(rng, k)
    uncommon = r(0.05)
    flags = {
        "FirstTimeUserPerformedAction": (uncommon & r(0.5)) | r(0.02),
        "ActionUncommonlyPerformedByUser": uncommon,
        "ActionUncommonlyPerformedAmongPeers": uncommon & r(0.4),
        "FirstTimeActionPerformedInTenant": r(0.005),
        "FirstTimeUserAccessedResource": r(0.05),
        "ResourceUncommonlyAccessedAmongPeers": r(0.03),
        "FirstTimeUserConnectedFromCountry": r(0.005),
        "CountryUncommonlyConnectedFromAmongPeers": r(0.005),
    }
    cols["ActivityInsights"][s], priority[s] = _insights(ACTIVITY_KEYS, flags, k)
    names = _obj([o[1] for o in _NOISE_OPS[:-1]] + [_RUN_COMMAND_NAME])
    cols["ActionType"][s] = names[rng.integers(0, len(names), size=k)]
    cols["ActivityType"][s] = "Administrative"
    cols["SourceIPAddress"][s] = w.ips[user[s], rng.choice(4, size=k, p=[0.3, 0.3, 0.25, 0.15])]
    cols["SourceIPLocation"][s] = w.home_country[user[s]]
    cols["SourceDevice"][s] = ""
    cols["DevicesInsights"][s] = '{"ISP":"' + w.home_isp[user[s]] + '"}'

    # Windows logons to devices: internal addresses have no geolocation; some local accounts.
    s = np.flatnonzero(source == 2)
    k = len(s)
    r = _chance(rng, k)
    uncommon = r(0.04)
    flags = {
        "FirstTimeUserLoggedOnToDevice": r(0.04),
        "FirstTimeUserConnectedFromDevice": r(0.03),
        "DeviceUncommonlyUsedAmongPeers": r(0.03),
        "FirstTimeUserPerformedAction": uncommon & r(0.5),
        "ActionUncommonlyPerformedByUser": uncommon,
        "ActionUncommonlyPerformedAmongPeers": uncommon & r(0.3),
    }
    cols["ActivityInsights"][s], priority[s] = _insights(DEVICE_KEYS, flags, k)
    cols["ActionType"][s] = _obj(["RemoteInteractive", "Network", "Interactive"])[
        rng.choice(3, size=k, p=[0.5, 0.35, 0.15])
    ]
    cols["ActivityType"][s] = "LogOn"
    cols["SourceIPAddress"][s] = w.internal_ip[user[s]]
    cols["SourceIPLocation"][s] = ""
    cols["SourceDevice"][s] = w.workstation[user[s]]
    os_name = np.where(
        w.caller_tenant[user[s]] == 0, "Windows 11 Enterprise", "Windows 10 Enterprise"
    )
    cols["DevicesInsights"][s] = (
        '{"DeviceFamily":"Windows","OperatingSystem":"' + os_name.astype(object) + '"}'
    )
    local = r(0.08)
    cols["UserPrincipalName"][s] = np.where(local, "", cols["UserPrincipalName"][s])
    cols["UserName"][s] = np.where(local, "localadmin", cols["UserName"][s])
    cols["UsersInsights"][s] = np.where(
        local, '{"IsDormantAccount":"False","IsNewAccount":"False"}', cols["UsersInsights"][s]
    )

    priority = np.clip(priority * 2 + rng.integers(0, 2, size=n), 0, 10)
    cols.update(
        TimeGenerated=t,
        InvestigationPriority=priority,
        TenantId=_obj(list(TENANT_IDS.values()))[tenant],
        Type=np.full(n, "BehaviorAnalytics", object),
    )
    return cols


_ATTACKER_DEVICE = json.dumps(
    {
        "Browser": "Chrome 130.0",
        "DeviceFamily": "Windows",
        "DeviceType": "Desktop",
        "ISP": "Example Hosting Ltd",
        "OperatingSystem": "Windows 10",
        "UserAgentFamily": "Chrome",
    },
    separators=(",", ":"),
)


def _planted_ueba(cases: list[dict]) -> dict:
    """Each case's UEBA rows as written; tenant, user name and insights of the user from the world,
    the attacker's device."""
    w = _WORLD
    rows = []
    for case in cases:
        for r in case["rows"]["BehaviorAnalytics"]:
            user = int(np.flatnonzero(_lower(w.caller) == r["UserPrincipalName"].lower())[0])
            rows.append(
                {
                    "TenantId": TENANT_IDS[_TENANTS[w.caller_tenant[user]]],
                    "ActivityType": "LogOn",
                    "UserName": w.user_name[user],
                    "SourceDevice": "",
                    "UsersInsights": w.users_insights[user],
                    "DevicesInsights": _ATTACKER_DEVICE,
                    "InvestigationPriority": 8,
                    "Type": "BehaviorAnalytics",
                    **r,
                    "TimeGenerated": r["TimeGenerated"].value,
                }
            )
    return {k: _obj([r[k] for r in rows]) for k in UEBA_SCHEMA.names} if rows else {}


# --- Public API ---------------------------------------------------------------------------------


def generate(
    start_day: date = DEMO_START,
    days: int = DEMO_DAYS,
    seed: int = DEMO_SEED,
    activity_per_day: int = 3000,
) -> dict[str, pa.Table]:
    """The demo tables for [start_day, start_day + days): {"AzureActivity", "BehaviorAnalytics"}.

    Same arguments, same tables (bit for bit). The planted cases (`planted_cases(start_day, days)`)
    do not depend on the seed; the noise does. Rows are sorted by TimeGenerated.
    """
    if days < 1:
        raise UsageError("days must be at least 1")
    rng = np.random.default_rng(seed)
    start_ns = _day_ns(start_day)
    weekend = _weekend(start_day, days)
    cases = planted_cases(start_day, days)

    ops = _concat(
        [
            _noise_operations(rng, start_ns, days, weekend, activity_per_day),
            _noise_run_commands(rng, start_ns, days, weekend),
            _planted_operations(rng, cases),
        ]
    )
    activity = _activity_table(rng, ops)

    ueba = _concat(
        [_noise_ueba(rng, start_ns, days, weekend, activity_per_day), _planted_ueba(cases)]
    )
    ueba = {k: np.asarray(v) for k, v in ueba.items()}
    order = np.argsort(ueba["TimeGenerated"].astype(np.int64), kind="stable")
    ueba_table = _table(ueba, order, UEBA_SCHEMA)
    return {"AzureActivity": activity, "BehaviorAnalytics": ueba_table}


def write_lake(tables: dict[str, pa.Table], root: Path) -> Path:
    """Hive-partitioned Parquet: root/<Table>/date=YYYY-MM-DD/part-0.parquet, by the UTC date of
    TimeGenerated. Each file is written under a dot-name and renamed into place."""
    root = Path(root)
    for name, table in tables.items():
        ns = table.column("TimeGenerated").cast(pa.int64()).to_numpy()
        day = ns.astype("datetime64[ns]").astype("datetime64[D]")
        for d in np.unique(day):
            with atomic_path(root / name / f"date={d}" / "part-0.parquet") as tmp:
                pq.write_table(table.filter(pa.array(day == d)), tmp)
    return root


def _iso(ns: np.ndarray) -> np.ndarray:
    """ISO 8601 UTC with 7 fractional digits and 'Z' (Log Analytics style)."""
    ns = np.asarray(ns, dtype=np.int64)
    secs = np.datetime_as_string(ns.astype("datetime64[ns]").astype("datetime64[s]"), unit="s")
    secs = secs.astype(object)
    ticks = np.char.zfill(((ns % _NS_PER_S) // 100).astype(str), 7).astype(object)
    return secs + "." + ticks + "Z"


def write_jsonl(tables: dict[str, pa.Table], root: Path) -> Path:
    """root/<Table>.jsonl: one JSON object per row, datetimes ISO 8601 UTC (7 digits, 'Z'),
    dynamic columns as JSON objects."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        data = {c: table.column(c).to_pylist() for c in table.column_names if c != "TimeGenerated"}
        data["TimeGenerated"] = list(
            _iso(table.column("TimeGenerated").cast(pa.int64()).to_numpy())
        )
        for c in DYNAMIC_COLUMNS.get(name, ()):
            data[c] = [_parse_dynamic(v) for v in data[c]]
        names = table.column_names
        with atomic_path(root / f"{name}.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for values in zip(*(data[c] for c in names)):
                fh.write(
                    json.dumps(dict(zip(names, values)), ensure_ascii=False, separators=(",", ":"))
                )
                fh.write("\n")
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _parse_dynamic(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def ensure_demo_lake(root: Path) -> Path:
    """Write the default demo lake at `root` unless root/AzureActivity exists; returns root.

    The lake is built in a sibling `root.tmp-<pid>` and renamed into place (atomic when `root` is
    absent or an empty folder), so an interrupted run never leaves a half lake at `root`; the
    temporary folders of dead processes are removed. AzureActivity marks a complete lake: if
    `root` already holds other files, the tables are moved in one by one, AzureActivity last.
    """
    root = Path(root)
    if (root / "AzureActivity").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    for leftover in root.parent.glob(f"{root.name}.tmp-*"):
        pid = leftover.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = root.parent / f"{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_lake(generate(DEMO_START, DEMO_DAYS, DEMO_SEED), tmp)
        try:
            os.rename(tmp, root)  # atomic; replaces `root` only if it is an empty folder
            return root
        except OSError:
            if (root / "AzureActivity").exists():  # another process finished first
                return root
        for name in ("BehaviorAnalytics", "AzureActivity"):
            dest = root / name
            if dest.exists():
                stale = root / f".{name}.stale-{os.getpid()}"
                os.rename(dest, stale)
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(tmp / name, dest)
            except OSError:
                if name == "AzureActivity" and dest.exists():  # lost a race at the last step
                    break
                raise
        return root
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m detection_tools.lakegen --out DIR [--format parquet|jsonl]`: the default demo
    data set."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m detection_tools.lakegen", description=main.__doc__
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    args = parser.parse_args(argv)
    write_demo(args.out, args.format)
    print(f"demo data ({args.format}) written to {args.out}", file=sys.stderr)
    return 0


def write_demo(out: Path, fmt: str = "parquet") -> Path:
    """The default demo tables written at `out` as a Parquet lake or JSON Lines files."""
    tables = generate(DEMO_START, DEMO_DAYS)
    return (write_lake if fmt == "parquet" else write_jsonl)(tables, out)


if __name__ == "__main__":
    raise SystemExit(main())
