"""Benchmark lakes: realistic AzureActivity / BehaviorAnalytics exports at a given volume.

`ensure_lake(root, spec)` returns a Hive-partitioned Parquet lake
`<lake>/<Table>/date=YYYY-MM-DD/part-0.parquet`, generating it only when no complete lake with the
same spec is cached on disk. A lake is built in `<lake>.tmp-<pid>` and renamed into place, with
`_bench_lake.json` (the spec, row counts, generation time) written last: a folder holding that
file is complete.

What a lake looks like (per day; `rows_per_day` AzureActivity rows, a fifth of that in
BehaviorAnalytics):

* AzureActivity: 35 Log Analytics columns, rows sorted by TimeGenerated (100 ns ticks,
  timestamp[ns, UTC]), diurnal per tenant. Operations of 1-3 events sharing a CorrelationId
  (Started/Accepted/Succeeded|Failed, and the newer Start/Accept/Success|Failure family), mostly
  Policy audits, storage listKeys, deployments, VM and network writes, by users (Zipf-distributed
  activity) and service principals. `Authorization` (~0.4 KB: action, scope, RBAC evidence),
  `Properties` (~0.3-1.5 KB: status, ids, entity, request/response bodies, policy details) and
  `Claims` (~1.3 KB JWT claims; drawn per row from a pool of 4 tokens per caller) are the large
  strings. About 1 row in 4,000 is a Run Command (`runCommand/action`, three letter cases of the
  operation name), in triplets in both status families, ~15 % failing, plus single Forbidden
  events, on VMs and VM scale-set instances, by operators and service principals; 1 % of their
  Authorization blobs are truncated (invalid JSON) and 0.5 % have no CorrelationId (a sign-in is
  planted inside the window of each of those run by users, so they reach the result).
* BehaviorAnalytics: 33 columns, Azure AD sign-ins (55 %), Azure activity (25 %) and device
  logons (20 %); insight values the strings "True"/"False"; ~0.3 % of sign-ins uncommon
  (ActionUncommonlyPerformedByUser "True"; `uncommon_share` sets it: a busy tenant's UEBA flags
  about 1 in 8). For 30 % of the Run Commands by users an Azure AD
  sign-in is planted around the run: inside the [-6h, +1h] window, exactly on its inclusive edges,
  100 ns outside them, or far away; some of those carry a trap ("true", JSON true, "AzureAD",
  empty location). The rule's result is therefore non-empty and exercises the 100 ns edges.

Strings are built column-at-a-time with Arrow compute (`binary_join_element_wise`, `take` from
pools), GUIDs from random bytes, one (table, day) file at a time (`workers` > 1 runs files in
parallel processes; on the 2-vCPU VM this was measured slower than one: 25 s vs 18 s for 1M
rows/day, the two processes mostly wait on page faults), in row groups of 1 Mi rows (pyarrow's
default), zstd-compressed, without the Arrow schema in the file metadata (as a Spark / ADX
exporter writes it: `string` columns, not `large_string`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from detection_tools import lakegen

GENERATOR_VERSION = 2
TABLES = ("AzureActivity", "BehaviorAnalytics")
MANIFEST = "_bench_lake.json"
ROW_GROUP_ROWS = 1 << 20
RUN_COMMAND = "Microsoft.Compute/virtualMachines/runCommand/action"

NS_S = 1_000_000_000
NS_H = 3600 * NS_S
NS_DAY = 24 * NS_H
UNCOMMON_SHARE = 0.003  # of Azure AD sign-ins flagged uncommon, by default (a quiet tenant)
HIGH_UNCOMMON_SHARE = 1 / 8


@dataclass(frozen=True)
class LakeSpec:
    rows_per_day: int  # AzureActivity rows per day
    days: int = 3
    first_day: str = "2026-10-27"  # a Tuesday: three weekdays
    seed: int = 20261027
    compression: str = "zstd"
    row_group_rows: int = ROW_GROUP_ROWS
    version: int = GENERATOR_VERSION
    # Share of Azure AD sign-ins UEBA flags as ActionUncommonlyPerformedByUser "True": where the
    # flag is common, the rule's right side is no longer "a few rows after the cheap filters".
    uncommon_share: float = UNCOMMON_SHARE

    @property
    def ueba_rows_per_day(self) -> int:
        return self.rows_per_day // 5

    @property
    def end(self) -> datetime:
        """The day after the last day, 00:00 UTC: the window end that covers the last two days."""
        d = date.fromisoformat(self.first_day) + timedelta(days=self.days)
        return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)

    def name(self) -> str:
        rows = (
            f"{self.rows_per_day // 1_000_000}M"
            if self.rows_per_day % 1_000_000 == 0
            else f"{self.rows_per_day // 1000}k"
            if self.rows_per_day % 1000 == 0
            else str(self.rows_per_day)
        )
        return (
            f"lake-{rows}-{self.days}d-{self.first_day}-s{self.seed}-{self.compression}"
            f"-rg{self.row_group_rows}-v{self.version}"
            + (f"-u{self.uncommon_share:g}" if self.uncommon_share != UNCOMMON_SHARE else "")
        )


# ================================================================================================
# Arrow helpers
# ================================================================================================

# GUIDs and large_string building: the demo's (detection_tools.lakegen), one implementation.
STR, guid_bytes, guids = lakegen.STR, lakegen.guid_bytes, lakegen.guids


def _strings(values) -> pa.Array:
    return pa.array(list(values), type=STR)


def _ts(ns: np.ndarray) -> pa.Array:
    ns = np.ascontiguousarray(ns, dtype=np.int64)
    return pa.Array.from_buffers(pa.timestamp("ns", tz="UTC"), len(ns), [None, pa.py_buffer(ns)])


def _join(*parts) -> pa.Array:
    """Element-wise concatenation of string arrays and Python str literals."""
    return pc.binary_join_element_wise(
        *[p if isinstance(p, (pa.Array, pa.ChunkedArray)) else pa.scalar(p, STR) for p in parts],
        pa.scalar("", STR),
    )


def _take(pool: pa.Array, idx: np.ndarray) -> pa.Array:
    return pool.take(pa.array(np.asarray(idx, dtype=np.int64)))


def _choose(mask: np.ndarray, yes, no) -> pa.Array:
    return pc.if_else(
        pa.array(mask),
        yes if isinstance(yes, pa.Array) else pa.scalar(yes, STR),
        no if isinstance(no, pa.Array) else pa.scalar(no, STR),
    )


def _hex_id(rng, n: int, k: int = 16) -> list[str]:
    return [bytes(r).hex() for r in rng.integers(0, 256, size=(n, k), dtype=np.uint8)]


def _uuid(rng) -> str:
    return guids(guid_bytes(rng, 1))[0].as_py()


# Hourly (UTC) activity shapes and the draw of times: the demo data's, so both look like the same
# tenants.
HOURLY = lakegen.HOURLY
_profile = lakegen.profile
_times = lakegen.times


# ================================================================================================
# The world: tenants, subscriptions, resources, principals (a function of the scale and seed)
# ================================================================================================

_FIRST = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yusuf",
    "zoe",
    "amir",
    "bianca",
    "chen",
    "dmitri",
    "elena",
    "farid",
    "giulia",
    "hana",
    "igor",
    "jamal",
    "kenji",
    "lena",
    "marco",
    "nadia",
    "oscar",
    "priya",
    "quentin",
    "rosa",
    "sven",
    "tariq",
    "uma",
    "vera",
    "wei",
    "ximena",
    "yara",
    "zane",
    "anika",
    "bruno",
    "chloe",
)
_LAST = (
    "admin",
    "martin",
    "nguyen",
    "kim",
    "lopez",
    "miller",
    "hall",
    "wong",
    "petrov",
    "smith",
    "reyes",
    "garcia",
    "novak",
    "silva",
    "ivanova",
    "schmidt",
    "rossi",
    "dubois",
    "tanaka",
    "okafor",
    "jensen",
    "costa",
    "kowalski",
    "haddad",
    "murphy",
    "larsen",
    "fischer",
    "moreau",
    "sato",
    "ahmed",
    "bauer",
    "keller",
    "lindqvist",
    "oconnor",
    "pereira",
    "quinn",
    "richter",
    "santos",
    "torres",
    "ueda",
    "vargas",
    "weber",
    "xu",
    "yilmaz",
    "zhang",
    "andersen",
    "brennan",
    "castillo",
    "dalton",
    "evans",
)
_COUNTRIES = ("United States", "Germany", "United Kingdom", "Netherlands", "France", "Canada")
_AWAY = ("Romania", "Vietnam", "Brazil", "Nigeria", "Russia", "Indonesia", "Ukraine", "Iran")
_ISPS = (
    "Comcast Cable",
    "Deutsche Telekom AG",
    "British Telecommunications",
    "KPN B.V.",
    "Orange S.A.",
    "Rogers Communications",
    "Microsoft Corporation",
)
_ROLES = (
    ("Owner", "8e3af657a8ff443ca75c2fe8c4bcb635"),
    ("Contributor", "b24988ac618042a0ab8820f7382dd24c"),
    ("Virtual Machine Contributor", "9980e02c92f4427c8b5ce5edf6ae0d55"),
    ("Storage Account Contributor", "17d1049b9a8442078ed1df1c1e8ac3f5"),
    ("Network Contributor", "4d97b98b1d4f4787a291c67834d212e7"),
)
_BROWSERS = (
    (
        '"Browser":"Edge 131.0","DeviceFamily":"Windows","DeviceType":"Desktop",'
        '"OperatingSystem":"Windows 11","UserAgentFamily":"Edge"'
    ),
    (
        '"Browser":"Chrome 131.0","DeviceFamily":"Windows","DeviceType":"Desktop",'
        '"OperatingSystem":"Windows 10","UserAgentFamily":"Chrome"'
    ),
    (
        '"Browser":"Safari 18.1","DeviceFamily":"Apple","DeviceType":"Desktop",'
        '"OperatingSystem":"macOS 15","UserAgentFamily":"Safari"'
    ),
    (
        '"Browser":"Mobile Safari 18.1","DeviceFamily":"Apple","DeviceType":"Mobile",'
        '"OperatingSystem":"iOS 18","UserAgentFamily":"Mobile Safari"'
    ),
)


class World:
    """Everything that does not change from row to row, as Arrow pools and numpy attributes."""

    def __init__(self, rows_per_day: int, seed: int):
        rng = np.random.default_rng([seed, 1])
        f = max(rows_per_day / 200_000, 0.05)
        self.tenants = ("contoso", "fabrikam")
        self.domains = ("contoso.com", "fabrikam.com")
        self.tenant_ids = [_uuid(rng) for _ in self.tenants]
        n_subs = max(3, round(4 + 2 * math.sqrt(f)))
        self.sub_ids = [_uuid(rng) for _ in range(n_subs)]
        self.sub_tenant = np.array([0 if i % 3 != 2 else 1 for i in range(n_subs)])
        self.sub_hierarchy = [
            f"{self.tenant_ids[t]}/mg-{self.tenants[t]}-{'prod' if i % 2 == 0 else 'nonprod'}/{s}"
            for i, (s, t) in enumerate(zip(self.sub_ids, self.sub_tenant))
        ]
        purposes = ("web", "data", "app", "build", "ops", "sap", "shared", "dmz")
        rgs = [
            (s, f"rg-{purposes[k]}-{s:02d}" if k % 3 else f"RG-{purposes[k].upper()}-{s:02d}")
            for s in range(n_subs)
            for k in range(6)
        ]

        n_vms = max(40, round(300 * f**0.6))
        targets: dict[
            str, list[tuple[int, str, str, str]]
        ] = {}  # segment -> (sub, rg, scope, name)

        def res(kind_provider: str, count: int, prefix: str):
            out = []
            for i in range(count):
                s, rg = rgs[rng.integers(len(rgs))]
                name = f"{prefix}-{i:04d}"
                out.append(
                    (
                        s,
                        rg,
                        f"/subscriptions/{self.sub_ids[s]}/resourceGroups/{rg}/providers/"
                        f"{kind_provider}/{name}",
                        name,
                    )
                )
            return out

        targets["vm"] = res("Microsoft.Compute/virtualMachines", n_vms, "vm")
        vmss = res("Microsoft.Compute/virtualMachineScaleSets", max(2, n_vms // 30), "vmss")
        targets["vmss_inst"] = [
            (s, rg, f"{scope}/virtualMachines/{i}", str(i))
            for s, rg, scope, _ in vmss
            for i in range(8)
        ]
        targets["vmext"] = [
            (s, rg, f"{scope}/extensions/{e}", e)
            for s, rg, scope, _ in targets["vm"]
            for e in (
                "CustomScriptExtension",
                "AzureMonitorWindowsAgent",
                "MDE.Windows",
                "DependencyAgentWindows",
            )
        ]
        targets["vmruncmd"] = [
            (s, rg, f"{scope}/runCommands/{c}", c)
            for s, rg, scope, _ in targets["vm"]
            for c in ("patch-check", "collect-logs", "rotate-certs")
        ]
        targets["snapshot"] = res("Microsoft.Compute/snapshots", n_vms, "snap")
        targets["disk"] = res("Microsoft.Compute/disks", n_vms, "osdisk")
        targets["storage"] = [
            (s, rg, scope, name.replace("-", ""))
            for s, rg, scope, name in res(
                "Microsoft.Storage/storageAccounts", max(10, n_vms // 2), "st"
            )
        ]
        nsg = res("Microsoft.Network/networkSecurityGroups", max(5, n_vms // 6), "nsg")
        targets["nsg"] = nsg
        targets["nsgrule"] = [
            (s, rg, f"{scope}/securityRules/{r}", r)
            for s, rg, scope, _ in nsg
            for r in (
                "allow-https-inbound",
                "allow-rdp-from-bastion",
                "deny-all-inbound",
                "allow-ssh-from-jumpbox",
            )
        ]
        rg_scopes = [
            (s, rg, f"/subscriptions/{self.sub_ids[s]}/resourceGroups/{rg}", rg) for s, rg in rgs
        ]
        targets["deployment"] = [
            (s, rg, f"{scope}/providers/Microsoft.Resources/deployments/{d}", d)
            for s, rg, scope, _ in rg_scopes
            for d in ("main", "vm-baseline", "network-hub", "pipeline-release", "monitoring")
        ]
        targets["roleassign"] = [
            (
                s,
                rg,
                f"{scope}/providers/Microsoft.Authorization/roleAssignments/{_uuid(rng)}",
                "roleAssignments",
            )
            for s, rg, scope, _ in rg_scopes
            for _ in range(4)
        ]
        targets["kv"] = res("Microsoft.KeyVault/vaults", max(4, n_vms // 20), "kv")
        targets["site"] = res("Microsoft.Web/sites", max(4, n_vms // 15), "app")
        targets["diag"] = [
            (
                s,
                rg,
                f"{scope}/providers/microsoft.insights/diagnosticSettings/send-to-law",
                "send-to-law",
            )
            for s, rg, scope, _ in targets["storage"] + targets["kv"]
        ]
        targets["policy"] = (
            targets["vm"]
            + targets["storage"]
            + targets["nsg"]
            + targets["kv"]
            + targets["site"]
            + targets["disk"]
        )

        self.segment: dict[str, tuple[int, int]] = {}  # name -> (offset, count) in the global pool
        flat = []
        for name, items in targets.items():
            self.segment[name] = (len(flat), len(items))
            flat.extend(items)
        self.target_sub = np.array([t[0] for t in flat], dtype=np.int64)
        self.scope = _strings(t[2] for t in flat)
        self.resource_id = _strings(t[2].upper() for t in flat)
        self.resource_id_lower = _strings(t[2].lower() for t in flat)
        self.resource_group = _strings(t[1].upper() for t in flat)
        self.resource = _strings(t[3].upper() for t in flat)
        provider = [
            t[2].split("/providers/")[-1].split("/")[0]
            if "/providers/" in t[2]
            else "Microsoft.Resources"
            for t in flat
        ]
        self.provider = _strings(provider)
        self.provider_upper = _strings(p.upper() for p in provider)
        self.sub_id = _strings(self.sub_ids)
        self.hierarchy = _strings(self.sub_hierarchy)
        self.tenant_of_sub = _strings(self.tenant_ids[t] for t in self.sub_tenant)

        # --- principals: users (UPN callers) then service principals (GUID callers) -------------
        n_users = max(60, round(400 * f**0.6))
        n_sps = max(8, n_users // 8)
        self.n_users, self.n_sps = n_users, n_sps
        names, seen = [], set()
        for i in range(n_users):
            first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST) + 7 * i) % len(_LAST)]
            base = f"{first}.{last}"
            k = 2
            while base in seen:
                base, k = f"{first}.{last}{k}", k + 1
            seen.add(base)
            names.append((first, last, base))
        self.user_tenant = (rng.random(n_users) < 0.4).astype(np.int64)
        # As the activity log writes the caller: mostly lower case, some as typed in Entra ID.
        canonical = []
        for (first, last, base), t in zip(names, self.user_tenant):
            upn = f"{base}@{self.domains[t]}"
            canonical.append(
                upn
                if rng.random() < 0.7
                else f"{first.capitalize()}.{base.split('.', 1)[1].capitalize()}@{self.domains[t]}"
            )
        sp_app = [_uuid(rng) for _ in range(n_sps)]
        self.caller_text = canonical + sp_app
        self.caller = _strings(self.caller_text)
        n_callers = n_users + n_sps
        self.n_callers = n_callers
        self.is_sp = np.arange(n_callers) >= n_users
        # The UPN as UEBA writes it: lower case, as-is, or an upper-case domain.
        self.upn_variants = _strings(
            v
            for upn in canonical
            for v in (upn.lower(), upn, upn.split("@")[0] + "@" + upn.split("@")[1].upper())
        )
        self.user_name = _strings(c.split("@")[0] for c in canonical)
        self.display_name = _strings(f"{a.capitalize()} {b.capitalize()}" for a, b, _ in names)
        # Zipf-ish activity: a few principals do most of the work.
        w = 1.0 / np.arange(1, n_users + 1) ** 0.8
        self.user_weight = _profile(rng.permutation(w))
        self.sp_weight = _profile(rng.permutation(1.0 / np.arange(1, n_sps + 1) ** 1.1))
        # Operators (run Run Commands): 8 % of the users.
        self.operators = np.flatnonzero(rng.random(n_users) < 0.08)
        if len(self.operators) < 3:
            self.operators = np.arange(3)
        self.home_country = rng.integers(0, len(_COUNTRIES), size=n_users)
        self.home_isp = rng.integers(0, len(_ISPS) - 1, size=n_users)
        self.home_sub = np.array(
            [
                rng.choice(np.flatnonzero(self.sub_tenant == t))
                for t in np.concatenate([self.user_tenant, rng.integers(0, 2, n_sps)])
            ]
        )

        # Caller IP pool: 4 per caller (users: office NAT, home, VPN, mobile; SPs: Azure or none).
        ips = []
        for c in range(n_callers):
            if c < n_users:
                a = rng.integers(1, 255, size=(4, 2))
                ips += [
                    f"203.0.{a[0, 0]}.{a[0, 1]}",
                    f"198.18.{a[1, 0]}.{a[1, 1]}",
                    f"100.64.{a[2, 0]}.{a[2, 1]}",
                    f"2001:db8:{a[3, 0]:x}::{a[3, 1]:x}",
                ]
            else:
                a = rng.integers(1, 255, size=(3, 3))
                ips += [
                    f"20.{a[0, 0]}.{a[0, 1]}.{a[0, 2]}",
                    f"52.{a[1, 0]}.{a[1, 1]}.{a[1, 2]}",
                    f"40.{a[2, 0]}.{a[2, 1]}.{a[2, 2]}",
                    "",
                ]
        self.ip = _strings(ips)

        # RBAC evidence per caller (on its home subscription), as in Authorization.evidence.
        role = rng.integers(0, len(_ROLES), size=n_callers)
        role[self.operators] = rng.choice([0, 1, 2], size=len(self.operators))
        evidence = []
        for c in range(n_callers):
            rname, rdef = _ROLES[role[c]]
            evidence.append(
                f',"evidence":{{"role":"{rname}","roleAssignmentScope":"/subscriptions/'
                f'{self.sub_ids[self.home_sub[c]]}","roleAssignmentId":"{_hex_id(rng, 1)[0]}",'
                f'"roleDefinitionId":"{rdef}","principalId":"{_hex_id(rng, 1)[0]}",'
                f'"principalType":"{"ServicePrincipal" if c >= n_users else "User"}"}}'
            )
        self.evidence = _strings(evidence + [""])  # last entry: no evidence
        self.no_evidence = n_callers

        # Claims: 4 tokens per caller (a token lives an hour; the pool stands for the day's).
        claims = []
        for c in range(n_callers):
            t = int(self.sub_tenant[self.home_sub[c]])
            oid = _uuid(rng)
            for k in range(4):
                iat = 1793000000 + int(rng.integers(0, 86400))
                aio = "".join(
                    rng.choice(
                        list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
                        120,
                    )
                )
                d = {
                    "aud": "https://management.core.windows.net/",
                    "iss": f"https://sts.windows.net/{self.tenant_ids[t]}/",
                    "iat": str(iat),
                    "nbf": str(iat),
                    "exp": str(iat + 4200),
                    "http://schemas.microsoft.com/claims/authnclassreference": "1",
                    "aio": aio,
                    "appid": _uuid(rng) if c < n_users else sp_app[c - n_users],
                    "appidacr": "0" if c < n_users else "2",
                    "http://schemas.microsoft.com/identity/claims/identityprovider": f"https://sts.windows.net/{self.tenant_ids[t]}/",
                    "http://schemas.microsoft.com/identity/claims/objectidentifier": oid,
                    "http://schemas.microsoft.com/identity/claims/tenantid": self.tenant_ids[t],
                    "uti": "".join(
                        rng.choice(
                            list(
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
                            ),
                            22,
                        )
                    ),
                    "ver": "1.0",
                    "xms_tcdt": str(1600000000 + int(rng.integers(0, 10**7))),
                }
                if c < n_users:
                    first, last, _ = names[c]
                    d.update(
                        {
                            "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd,mfa",
                            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": (
                                last.capitalize()
                            ),
                            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": (
                                first.capitalize()
                            ),
                            "name": f"{first.capitalize()} {last.capitalize()}",
                            "http://schemas.microsoft.com/identity/claims/scope": (
                                "user_impersonation"
                            ),
                            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": "".join(  # noqa: E501
                                rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789-_"), 43)
                            ),
                            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": canonical[
                                c
                            ],
                            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": canonical[
                                c
                            ],
                            "puid": bytes(rng.integers(0, 256, 8, dtype=np.uint8)).hex().upper(),
                            "ipaddr": ips[4 * c],
                            "onprem_sid": f"S-1-5-21-{rng.integers(10**9, 2 * 10**9)}-"
                            f"{rng.integers(10**9, 2 * 10**9)}-{rng.integers(1000, 99999)}",
                            "wids": "b79fbf4d-3ef9-4689-8143-76b194e85509",
                        }
                    )
                else:
                    d["idtyp"] = "app"
                claims.append(json.dumps(d, separators=(",", ":")))
        self.claims = _strings(claims)

        # UEBA's view of a user.
        users_insights = []
        for u in range(n_users):
            first, last, _ = names[u]
            users_insights.append(
                json.dumps(
                    {
                        "AccountCreationTime": (
                            f"20{rng.integers(15, 25)}-0{rng.integers(1, 9)}"
                            f"-1{rng.integers(0, 9)}T09:1{rng.integers(0, 9)}:00Z"
                        ),
                        "AccountDisplayName": f"{first.capitalize()} {last.capitalize()}",
                        "AccountDomain": self.domains[self.user_tenant[u]].split(".")[0].upper(),
                        "AccountObjectID": _uuid(rng),
                        "BlastRadius": ["Low", "Medium", "High"][int(rng.integers(0, 3))],
                        "IsDormantAccount": "False",
                        "IsNewAccount": "False",
                        "OnPremisesSAMAccountName": names[u][2][:20],
                    },
                    separators=(",", ":"),
                )
            )
        self.users_insights = _strings(users_insights)
        self.workstation = _strings(
            f"WS-{self.domains[self.user_tenant[u]][:3].upper()}-{u:05d}" for u in range(n_users)
        )
        self.internal_ip = _strings(
            f"10.{(u >> 8) & 255}.{u & 255}.{rng.integers(2, 250)}" for u in range(n_users)
        )


@lru_cache(maxsize=2)
def world(rows_per_day: int, seed: int) -> World:
    return World(rows_per_day, seed)


# ================================================================================================
# Operations
# ================================================================================================

# OperationNameValue, OperationName, target segment, events, weight, category, SP share, fail rate
OPS = (
    (
        "Microsoft.Authorization/policies/audit/action",
        "'audit' Policy action.",
        "policy",
        1,
        20,
        "Policy",
        0.5,
        0,
    ),
    (
        "Microsoft.Authorization/policies/auditIfNotExists/action",
        "'auditIfNotExists' Policy action.",
        "policy",
        1,
        10,
        "Policy",
        0.5,
        0,
    ),
    (
        "Microsoft.Storage/storageAccounts/listKeys/action",
        "List Storage Account Keys",
        "storage",
        2,
        14,
        "Administrative",
        0.85,
        0.01,
    ),
    (
        "Microsoft.Resources/deployments/write",
        "Create Deployment",
        "deployment",
        3,
        6,
        "Administrative",
        0.7,
        0.05,
    ),
    (
        "Microsoft.Compute/virtualMachines/write",
        "Create or Update Virtual Machine",
        "vm",
        3,
        4,
        "Administrative",
        0.6,
        0.03,
    ),
    (
        "Microsoft.Compute/virtualMachines/start/action",
        "Start Virtual Machine",
        "vm",
        3,
        5,
        "Administrative",
        0.7,
        0.02,
    ),
    (
        "Microsoft.Compute/virtualMachines/deallocate/action",
        "Deallocate Virtual Machine",
        "vm",
        3,
        5,
        "Administrative",
        0.7,
        0.02,
    ),
    (
        "Microsoft.Compute/virtualMachines/restart/action",
        "Restart Virtual Machine",
        "vm",
        3,
        2,
        "Administrative",
        0.4,
        0.02,
    ),
    (
        "Microsoft.Compute/virtualMachines/extensions/write",
        "Create or Update Virtual Machine Extension",
        "vmext",
        3,
        4,
        "Administrative",
        0.8,
        0.04,
    ),
    (
        "Microsoft.Compute/virtualMachines/runCommands/write",
        "Create or Update Virtual Machine Run Command",
        "vmruncmd",
        3,
        0.5,
        "Administrative",
        0.6,
        0.05,
    ),
    (
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/write",
        "Update Virtual Machine Scale Set VM",
        "vmss_inst",
        3,
        1.5,
        "Administrative",
        0.9,
        0.02,
    ),
    (
        "Microsoft.Compute/snapshots/write",
        "Create or Update Snapshot",
        "snapshot",
        3,
        2,
        "Administrative",
        0.9,
        0.02,
    ),
    (
        "Microsoft.Compute/disks/beginGetAccess/action",
        "Get Disk SAS URI",
        "disk",
        2,
        1,
        "Administrative",
        0.8,
        0.01,
    ),
    (
        "Microsoft.Network/networkSecurityGroups/securityRules/write",
        "Create or Update Security Rule",
        "nsgrule",
        3,
        3,
        "Administrative",
        0.5,
        0.03,
    ),
    (
        "Microsoft.Network/networkSecurityGroups/write",
        "Create or Update Network Security Group",
        "nsg",
        3,
        1,
        "Administrative",
        0.6,
        0.03,
    ),
    (
        "Microsoft.Authorization/roleAssignments/write",
        "Create role assignment",
        "roleassign",
        2,
        1,
        "Administrative",
        0.3,
        0.05,
    ),
    (
        "Microsoft.KeyVault/vaults/write",
        "Update Key Vault",
        "kv",
        2,
        1,
        "Administrative",
        0.6,
        0.02,
    ),
    (
        "Microsoft.Web/sites/restart/action",
        "Restart Web App",
        "site",
        2,
        1,
        "Administrative",
        0.6,
        0.01,
    ),
    (
        "Microsoft.Web/sites/config/list/action",
        "List Web App Security Sensitive Settings",
        "site",
        2,
        3,
        "Administrative",
        0.9,
        0.01,
    ),
    (
        "Microsoft.Insights/diagnosticSettings/write",
        "Create or update resource diagnostic setting",
        "diag",
        2,
        1,
        "Administrative",
        0.8,
        0.02,
    ),
    (
        RUN_COMMAND,
        "Run Command on Virtual Machine",
        "vm",
        3,
        0,
        "Administrative",
        0,
        0,
    ),  # planned only
)
RC = len(OPS) - 1
# event kinds by (events in the operation, index): 0 start, 1 accept, 2 success, 3 failure
_KINDS = {
    1: (2,),
    2: (0, 2),
    3: (0, 1, 2),
}
_STATUS = {
    False: ("Started", "Accepted", "Succeeded", "Failed"),
    True: ("Start", "Accept", "Success", "Failure"),
}
_FAIL = ("Conflict", "BadRequest", "InternalServerError", "NotFound")


def _extra_pool(rng) -> tuple[pa.Array, np.ndarray]:
    """Per operation: 48 request/response-body variants for Properties (JSON-escaped JSON)."""
    entries = [""]
    offset = np.zeros(len(OPS), dtype=np.int64)
    for k, (value, _, seg, *_rest) in enumerate(OPS):
        offset[k] = len(entries)
        for v in range(48):
            if seg == "policy":
                pol = [
                    {
                        "policyDefinitionId": (
                            f"/providers/Microsoft.Authorization/policyDefinitions/{_uuid(rng)}"
                        ),
                        "policySetDefinitionId": (
                            f"/providers/Microsoft.Authorization/policySetDefinitions/{_uuid(rng)}"
                        ),
                        "policyDefinitionReferenceId": f"ref{int(rng.integers(1000, 99999))}",
                        "policySetDefinitionName": _uuid(rng),
                        "policyDefinitionName": _uuid(rng),
                        "policyDefinitionEffect": "Audit"
                        if "audit/" in value
                        else "AuditIfNotExists",
                        "policyAssignmentId": (
                            "/providers/Microsoft.Management/managementGroups/mg-root/providers/"
                            f"Microsoft.Authorization/policyAssignments/{_hex_id(rng, 1, 12)[0]}"
                        ),
                        "policyAssignmentName": _hex_id(rng, 1, 12)[0],
                        "policyAssignmentScope": (
                            "/providers/Microsoft.Management/managementGroups/mg-root"
                        ),
                        "policyExemptionIds": [],
                    }
                    for _ in range(int(rng.integers(1, 3)))
                ]
                entries.append(
                    ',"isComplianceCheck":"False","resourceLocation":"westeurope",'
                    '"ancestors":"mg-root,mg-platform","policies":' + json.dumps(json.dumps(pol))
                )
            elif value.endswith("/write"):
                body = {
                    "properties": {
                        "provisioningState": "Succeeded",
                        "timeCreated": "2026-10-01T08:00:00Z",
                        "settings": {
                            "k" + str(i): _hex_id(rng, 1, 6)[0]
                            for i in range(int(rng.integers(2, 12)))
                        },
                    },
                    "location": ["westeurope", "eastus", "northeurope"][v % 3],
                    "tags": {
                        "env": ["prod", "dev", "test"][v % 3],
                        "owner": _FIRST[v % len(_FIRST)],
                    },
                }
                entries.append(
                    ',"responseBody":' + json.dumps(json.dumps(body, separators=(",", ":")))
                )
            elif "list" in value:
                entries.append(
                    ',"responseBody":"{\\"keys\\":[{\\"creationTime\\":\\"2026-0'
                    + str(v % 9 + 1)
                    + '-01T00:00:00Z\\",\\"keyName\\":\\"key1\\",\\"permissions\\":\\"FULL\\"}]}"'
                )
            else:
                entries.append("")
    return _strings(entries), offset


@lru_cache(maxsize=2)
def extra_pool(seed: int):
    return _extra_pool(np.random.default_rng([seed, 2]))


# ================================================================================================
# The plan: Run Commands and the UEBA sign-ins planted around them (all days, cheap)
# ================================================================================================


@lru_cache(maxsize=2)
def plan(spec: LakeSpec) -> dict[str, np.ndarray]:
    """Run Command executions of every day, and the Azure AD sign-ins planted around them."""
    w = world(spec.rows_per_day, spec.seed)
    rng = np.random.default_rng([spec.seed, 3])
    first_ns = int(np.datetime64(spec.first_day, "D").astype("datetime64[ns]").astype(np.int64))
    per_day = max(12, round(spec.rows_per_day / 4000 / 3))
    n = per_day * spec.days
    day = np.repeat(np.arange(spec.days), per_day)
    by_sp = rng.random(n) < 0.35
    caller = np.where(
        by_sp,
        w.n_users + rng.integers(0, w.n_sps, size=n),
        w.operators[rng.integers(0, len(w.operators), size=n)],
    )
    outcome = rng.choice(3, size=n, p=[0.80, 0.14, 0.06])  # success, failed, forbidden
    forbidden = outcome == 2
    # A developer without the permission: a single Failed event (Forbidden).
    caller = np.where(forbidden, rng.integers(0, w.n_users, size=n), caller)
    t0 = np.concatenate(
        [
            _times(rng, per_day, HOURLY["contoso"], first_ns + d * NS_DAY, 200 * NS_S)
            for d in range(spec.days)
        ]
    )
    vm_off, vm_n = w.segment["vm"]
    ss_off, ss_n = w.segment["vmss_inst"]
    on_ss = rng.random(n) < 0.12
    target = np.where(
        on_ss, ss_off + rng.integers(0, ss_n, size=n), vm_off + rng.integers(0, vm_n, size=n)
    )
    out = {
        "day": day,
        "t0": t0,
        "caller": caller,
        "target": target,
        "op_case": rng.choice(3, size=n, p=[0.6, 0.35, 0.05]),  # as written, UPPER, lower
        "new_family": rng.random(n) < 0.5,
        "failed": outcome == 1,
        "forbidden": forbidden,
        "n_events": np.where(forbidden, 1, 3),
        "offsets": np.stack(
            [
                np.zeros(n, np.int64),
                rng.integers(1, 9 * 10**6, n) * 100,
                rng.integers(2 * 10**7, 15 * 10**8, n) * 100,
            ],
            axis=1,
        ),
        "corr": guid_bytes(rng, n),
        "no_corr": rng.random(n) < 0.005,
        "bad_auth": rng.random(n) < 0.01,
        "ip": caller * 4 + rng.integers(0, 3, size=n),
    }
    # Planted sign-ins: for 30 % of the runs by users (any outcome), and for every run by a user
    # with a truncated Authorization or no CorrelationId (so those semantics reach the result),
    # one uncommon Azure AD sign-in at an offset from the run's first event
    # (UEBA time = t0 + delta).
    special = out["bad_auth"] | out["no_corr"]
    user_runs = np.flatnonzero(~by_sp & ~forbidden & ((rng.random(n) < 0.30) | special))
    k = len(user_runs)
    where = rng.choice(6, size=k, p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    where[special[user_runs]] = 0
    delta = np.select(
        [where == 0, where == 1, where == 2, where == 3, where == 4],
        [
            rng.integers(-6 * 36 * 10**9, 36 * 10**9, size=k) * 100,  # inside [-6h, +1h]
            np.full(k, -6 * NS_H),  # run exactly 6h after: in
            np.full(k, NS_H),  # run exactly 1h before: in
            np.full(k, -6 * NS_H - 100),  # 100 ns too late: out
            np.full(k, NS_H + 100),
        ],  # 100 ns too early: out
        rng.choice([-1, 1], size=k) * rng.integers(8 * 36, 20 * 36, size=k) * 10**11,
    )  # far
    out["planted"] = {
        "time": t0[user_runs] + delta,
        "user": caller[user_runs],
        "trap": np.where(
            special[user_runs], 0, rng.choice(6, size=k, p=[0.75, 0.05, 0.05, 0.05, 0.05, 0.05])
        ),
        "upn": rng.choice(3, size=k, p=[0.5, 0.3, 0.2]),
    }
    return out


# ================================================================================================
# AzureActivity
# ================================================================================================

ACTIVITY_STRING_COLUMNS = (
    "TenantId",
    "SourceSystem",
    "CallerIpAddress",
    "CategoryValue",
    "CorrelationId",
    "Authorization",
    "Claims",
    "Level",
    "OperationNameValue",
    "Properties",
    "Caller",
    "EventDataId",
    "HTTPRequest",
    "OperationId",
    "ResourceGroup",
    "ResourceProviderValue",
    "ActivityStatusValue",
    "ActivitySubstatusValue",
    "Hierarchy",
    "SubscriptionId",
    "OperationName",
    "ActivityStatus",
    "ActivitySubstatus",
    "Category",
    "ResourceId",
    "ResourceProvider",
    "Resource",
    "_ResourceId",
    "_SubscriptionId",
    "Type",
    "_IsBillable",
)
ACTIVITY_SCHEMA = pa.schema(
    [
        ("TimeGenerated", pa.timestamp("ns", tz="UTC")),
        ("EventSubmissionTimestamp", pa.timestamp("ns", tz="UTC")),
    ]
    + [(c, STR) for c in ACTIVITY_STRING_COLUMNS]
    + [("_BilledSize", pa.float64())]
)


def _activity_ops(spec: LakeSpec, d: int, rng) -> dict[str, np.ndarray]:
    """The day's operations (noise plus the planned Run Commands), at operation level."""
    w = world(spec.rows_per_day, spec.seed)
    p = plan(spec)
    mine = np.flatnonzero(p["day"] == d)
    rc_rows = int(p["n_events"][mine].sum())
    target_rows = spec.rows_per_day - rc_rows
    weights = _profile([o[4] for o in OPS])
    events = np.array([o[3] for o in OPS])
    est = int(target_rows / (weights @ events) * 1.05) + 10
    kind = rng.choice(len(OPS), size=est, p=weights)
    n_ev = events[kind]
    keep = np.cumsum(n_ev) <= target_rows
    kind, n_ev = kind[keep], n_ev[keep]
    short = target_rows - int(n_ev.sum())
    if short:  # top up with single-event Policy audits
        kind = np.concatenate([kind, np.zeros(short, dtype=kind.dtype)])
        n_ev = np.concatenate([n_ev, np.ones(short, dtype=n_ev.dtype)])
    m = len(kind)
    sp_share = np.array([o[6] for o in OPS])[kind]
    by_sp = rng.random(m) < sp_share
    caller = np.where(
        by_sp,
        w.n_users + rng.choice(w.n_sps, size=m, p=w.sp_weight),
        rng.choice(w.n_users, size=m, p=w.user_weight),
    )
    seg = [w.segment[o[2]] for o in OPS]
    seg_off = np.array([s[0] for s in seg])[kind]
    seg_n = np.array([s[1] for s in seg])[kind]
    target = seg_off + (rng.random(m) * seg_n).astype(np.int64)
    tenant = w.sub_tenant[w.target_sub[target]]
    t0 = np.empty(m, dtype=np.int64)
    day_ns = (
        int(np.datetime64(spec.first_day, "D").astype("datetime64[ns]").astype(np.int64))
        + d * NS_DAY
    )
    for name, sel in (
        ("sp", by_sp),
        ("contoso", ~by_sp & (tenant == 0)),
        ("fabrikam", ~by_sp & (tenant == 1)),
    ):
        idx = np.flatnonzero(sel)
        t0[idx] = _times(rng, len(idx), HOURLY[name], day_ns, 200 * NS_S)
    fail_rate = np.array([o[7] for o in OPS])[kind]
    offsets = np.stack(
        [
            np.zeros(m, np.int64),
            rng.integers(1, 9 * 10**6, m) * 100,
            rng.integers(2 * 10**7, 15 * 10**8, m) * 100,
        ],
        axis=1,
    )
    offsets[n_ev == 2, 1] = offsets[n_ev == 2, 2]  # 2 events: start, end
    ops = {
        "kind": kind,
        "n_events": n_ev,
        "caller": caller,
        "target": target,
        "t0": t0,
        "op_case": np.zeros(m, np.int64),
        "new_family": rng.random(m) < 0.3,
        "failed": rng.random(m) < fail_rate,
        "forbidden": np.zeros(m, bool),
        "offsets": offsets,
        "corr": guid_bytes(rng, m),
        "no_corr": np.zeros(m, bool),
        "bad_auth": np.zeros(m, bool),
        "ip": caller * 4 + rng.choice(4, size=m, p=[0.45, 0.25, 0.2, 0.1]),
    }
    rc = {k: p[k][mine] for k in ops if k != "kind"}
    rc["kind"] = np.full(len(mine), RC)
    return {k: np.concatenate([ops[k], rc[k]]) for k in ops}


def activity_batches(spec: LakeSpec, d: int):
    """The day's AzureActivity rows as Arrow tables of at most `row_group_rows`, time-ordered."""
    w = world(spec.rows_per_day, spec.seed)
    extra, extra_off = extra_pool(spec.seed)
    rng = np.random.default_rng([spec.seed, 10, d])
    ops = _activity_ops(spec, d, rng)
    n_ev = ops["n_events"]
    op_of = np.repeat(np.arange(len(n_ev)), n_ev)
    ev = np.arange(len(op_of)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    time = ops["t0"][op_of] + ops["offsets"][op_of, np.where(n_ev[op_of] == 2, ev * 2, ev)]
    order = np.argsort(time, kind="stable")
    op_of, ev, time = op_of[order], ev[order], time[order]
    del order

    op_values = [o[0] for o in OPS]
    op_value = _strings(op_values + [v.upper() for v in op_values] + [v.lower() for v in op_values])
    op_name = _strings(o[1] for o in OPS)
    category = np.array([0 if o[5] == "Administrative" else 1 for o in OPS])
    cat_pool = _strings(["Administrative", "Policy"])
    method_pool = _strings(["PUT", "POST", "DELETE"])
    method = np.array(
        [0 if v.endswith("/write") else 2 if v.endswith("/delete") else 1 for v in op_values]
    )
    is_write = np.array([v.endswith("/write") for v in op_values])
    statuses = _strings(list(_STATUS[False]) + list(_STATUS[True]))
    level_pool = _strings(["Informational", "Warning", "Error"])
    sub_pool = _strings(["", "Accepted", "OK", "Created"] + list(_FAIL) + ["Forbidden"])
    status_code = _strings(
        ["{", '{"statusCode":"Accepted",', '{"statusCode":"OK",', '{"statusCode":"Created",']
        + ['{"statusCode":"' + f + '",' for f in _FAIL]
        + ['{"statusCode":"Forbidden",']
    )
    kinds_table = np.zeros((4, 3), dtype=np.int64)
    for k, v in _KINDS.items():
        kinds_table[k, : len(v)] = v

    for lo in range(0, len(time), spec.row_group_rows):
        sl = slice(lo, lo + spec.row_group_rows)
        o, e, t = op_of[sl], ev[sl], time[sl]
        n = len(o)
        kind = ops["kind"][o]
        ne = n_ev[o]
        last = e == ne - 1
        ekind = kinds_table[ne, e]
        failed = ops["failed"][o] & last
        forbidden = ops["forbidden"][o]
        ekind = np.where(failed | forbidden, 3, ekind)
        status_idx = ekind + 4 * ops["new_family"][o]
        fail_reason = np.where(forbidden, 8, 4 + (o % 4))
        sub_idx = np.where(
            ekind == 0,
            0,
            np.where(
                ekind == 1, 1, np.where(ekind == 2, np.where(is_write[kind], 3, 2), fail_reason)
            ),
        )
        cat = category[kind]
        target = ops["target"][o]
        sub = w.target_sub[target]
        caller = ops["caller"][o]
        scope = _take(w.scope, target)
        action = _take(op_value, kind)  # the canonical action
        evidence = _take(w.evidence, np.where(cat == 1, w.no_evidence, caller))
        authorization = _join('{"action":"', action, '","scope":"', scope, '"', evidence, "}")
        bad = ops["bad_auth"][o]
        if bad.any():  # truncated blobs: invalid JSON, still `has "virtualMachines"`
            cut = pc.utf8_slice_codeunits(authorization, 0, 120)
            authorization = pc.if_else(pa.array(bad), cut, authorization)
        op_written = _take(op_value, kind + len(OPS) * ops["op_case"][o])
        extra_idx = np.where(
            (cat == 1) | ((ekind == 2) & (extra_off[kind] > 0)) | ((ekind == 0) & (ne > 1)),
            extra_off[kind] + (o % 48),
            0,
        )
        extra_idx = np.where(kind == RC, 0, extra_idx)
        properties = _join(
            _take(status_code, sub_idx),
            '"serviceRequestId":"',
            guids(guid_bytes(rng, n)),
            '","eventCategory":"',
            _take(cat_pool, cat),
            '","entity":"',
            scope,
            '","message":"',
            action,
            '","hierarchy":"',
            _take(w.hierarchy, sub),
            '"',
            _take(extra, extra_idx),
            "}",
        )
        ip = _take(w.ip, ops["ip"][o])
        http = _join(
            '{"clientRequestId":"',
            guids(guid_bytes(rng, n)),
            '","clientIpAddress":"',
            ip,
            '","method":"',
            _take(method_pool, method[kind]),
            '"}',
        )
        http = _choose((e == 0) & (cat == 0), http, "")
        corr = guids(ops["corr"][o])
        if ops["no_corr"][o].any():
            corr = pc.if_else(pa.array(ops["no_corr"][o]), pa.scalar(None, STR), corr)
        claims = _take(w.claims, caller * 4 + rng.integers(0, 4, size=n))
        status = _take(statuses, status_idx)
        substatus = _take(sub_pool, sub_idx)
        billed = (
            pc.binary_length(properties).to_numpy(zero_copy_only=False)
            + pc.binary_length(claims).to_numpy(zero_copy_only=False)
            + pc.binary_length(authorization).to_numpy(zero_copy_only=False)
            + 900
        ).astype(np.float64)
        cols = {
            "TimeGenerated": _ts(t),
            "EventSubmissionTimestamp": _ts(t + rng.integers(5 * 10**8, 9 * 10**10, size=n)),
            "TenantId": _take(w.tenant_of_sub, sub),
            "SourceSystem": pa.repeat(pa.scalar("Azure", STR), n),
            "CallerIpAddress": ip,
            "CategoryValue": _take(cat_pool, cat),
            "CorrelationId": corr,
            "Authorization": authorization,
            "Claims": claims,
            "Level": _take(level_pool, np.where(ekind == 3, 2, np.where(cat == 1, 1, 0))),
            "OperationNameValue": op_written,
            "Properties": properties,
            "Caller": _take(w.caller, caller),
            "EventDataId": guids(guid_bytes(rng, n)),
            "HTTPRequest": http,
            "OperationId": guids(ops["corr"][o][:, ::-1]),
            "ResourceGroup": _take(w.resource_group, target),
            "ResourceProviderValue": _take(w.provider_upper, target),
            "ActivityStatusValue": status,
            "ActivitySubstatusValue": substatus,
            "Hierarchy": _take(w.hierarchy, sub),
            "SubscriptionId": _take(w.sub_id, sub),
            "OperationName": _take(op_name, kind),
            "ActivityStatus": status,
            "ActivitySubstatus": substatus,
            "Category": _take(cat_pool, cat),
            "ResourceId": _take(w.resource_id, target),
            "ResourceProvider": _take(w.provider, target),
            "Resource": _take(w.resource, target),
            "_ResourceId": _take(w.resource_id_lower, target),
            "_SubscriptionId": _take(w.sub_id, sub),
            "Type": pa.repeat(pa.scalar("AzureActivity", STR), n),
            "_IsBillable": pa.repeat(pa.scalar("True", STR), n),
            "_BilledSize": pa.array(billed),
        }
        yield pa.Table.from_arrays([cols[f.name] for f in ACTIVITY_SCHEMA], schema=ACTIVITY_SCHEMA)


# ================================================================================================
# BehaviorAnalytics
# ================================================================================================

UEBA_STRING_COLUMNS = (
    "TenantId",
    "SourceRecordId",
    "EventSource",
    "EventVendor",
    "EventProductVersion",
    "ActionType",
    "ActivityType",
    "UserName",
    "UserPrincipalName",
    "ActorName",
    "ActorPrincipalName",
    "TargetName",
    "TargetPrincipalName",
    "SourceIPAddress",
    "SourceIPLocation",
    "SourceDevice",
    "DestinationIPAddress",
    "DestinationIPLocation",
    "DestinationDevice",
    "Device",
    "ActivityInsights",
    "UsersInsights",
    "DevicesInsights",
    "NativeTableName",
    "SourceSystem",
    "Type",
    "_IsBillable",
    "_ResourceId",
    "_SubscriptionId",
)
UEBA_SCHEMA = pa.schema(
    [
        ("TimeGenerated", pa.timestamp("ns", tz="UTC")),
        ("TimeProcessed", pa.timestamp("ns", tz="UTC")),
    ]
    + [(c, STR) for c in UEBA_STRING_COLUMNS]
    + [("InvestigationPriority", pa.int32()), ("_BilledSize", pa.float64())]
)

# UEBA insight keys per source: the demo data's.
AAD_KEYS, ACTIVITY_KEYS, DEVICE_KEYS = lakegen.AAD_KEYS, lakegen.ACTIVITY_KEYS, lakegen.DEVICE_KEYS
UNCOMMON = "ActionUncommonlyPerformedByUser"
# Ways the uncommon flag is written: the string "True"/"False" (0), "true" (1), JSON true (2),
# the key missing (3), the text truncated, invalid JSON (4).
_VARIANTS = 5


def _insight_pool() -> tuple[pa.Array, dict[int, int]]:
    """Every ActivityInsights text: per source, every flag combination, every variant."""
    entries, offset = [], {}
    for s, keys in enumerate((AAD_KEYS, ACTIVITY_KEYS, DEVICE_KEYS)):
        offset[s] = len(entries)
        u = keys.index(UNCOMMON)
        for variant in range(_VARIANTS):
            for bits in range(1 << len(keys)):
                parts = []
                for i, k in enumerate(keys):
                    on = bool(bits >> i & 1)
                    if i == u and variant == 3:
                        continue
                    if i == u and variant == 1:
                        value = '"true"' if on else '"false"'
                    elif i == u and variant == 2:
                        value = "true" if on else "false"
                    else:
                        value = '"True"' if on else '"False"'
                    parts.append(f'"{k}":{value}')
                text = "{" + ",".join(parts) + "}"
                entries.append(text[:60] if variant == 4 else text)
    return _strings(entries), offset


@lru_cache(maxsize=1)
def insight_pool():
    return _insight_pool()


def ueba_batches(spec: LakeSpec, d: int):
    w = world(spec.rows_per_day, spec.seed)
    pool, pool_off = insight_pool()
    rng = np.random.default_rng([spec.seed, 20, d])
    day_ns = (
        int(np.datetime64(spec.first_day, "D").astype("datetime64[ns]").astype(np.int64))
        + d * NS_DAY
    )
    n0 = spec.ueba_rows_per_day
    user = rng.choice(w.n_users, size=n0, p=w.user_weight)
    tenant = w.user_tenant[user]
    t = np.empty(n0, dtype=np.int64)
    for ti, name in enumerate(("contoso", "fabrikam")):
        idx = np.flatnonzero(tenant == ti)
        t[idx] = _times(rng, len(idx), HOURLY[name], day_ns)
    source = rng.choice(3, size=n0, p=[0.55, 0.25, 0.20])
    nkeys = np.array([len(AAD_KEYS), len(ACTIVITY_KEYS), len(DEVICE_KEYS)])[source]
    bits = np.zeros(n0, dtype=np.int64)
    for i in range(len(AAD_KEYS)):
        bits |= ((rng.random(n0) < 0.03) & (i < nkeys)).astype(np.int64) << i
    u_pos = np.array(
        [AAD_KEYS.index(UNCOMMON), ACTIVITY_KEYS.index(UNCOMMON), DEVICE_KEYS.index(UNCOMMON)]
    )[source]
    uncommon = rng.random(n0) < np.array([spec.uncommon_share, 0.01, 0.01])[source]
    bits = (bits & ~(1 << u_pos)) | (uncommon.astype(np.int64) << u_pos)
    variant = np.where(rng.random(n0) < 0.002, rng.integers(1, _VARIANTS, size=n0), 0)
    es_variant = np.where(rng.random(n0) < 0.001, rng.integers(1, 3, size=n0), 0)
    upn_variant = rng.choice(3, size=n0, p=[0.75, 0.15, 0.10])
    loc_kind = rng.choice(3, size=n0, p=[0.97, 0.02, 0.01])  # value, "", null
    away = uncommon & (rng.random(n0) < 0.6)

    # Planted sign-ins of this day.
    pl = plan(spec)["planted"]
    mine = np.flatnonzero((pl["time"] >= day_ns) & (pl["time"] < day_ns + NS_DAY))
    k = len(mine)
    trap = pl["trap"][mine]
    user = np.concatenate([user, pl["user"][mine]])
    t = np.concatenate([t, pl["time"][mine]])
    source = np.concatenate([source, np.zeros(k, np.int64)])
    u_aad = AAD_KEYS.index(UNCOMMON)
    bits = np.concatenate([bits, np.full(k, (1 << u_aad) | 0b100111, np.int64)])
    variant = np.concatenate([variant, np.select([trap == 1, trap == 2], [1, 2], 0)])
    es_variant = np.concatenate([es_variant, np.where(trap == 3, 1, 0)])
    upn_variant = np.concatenate([upn_variant, pl["upn"][mine]])
    loc_kind = np.concatenate([loc_kind, np.where(trap == 4, 1, 0)])
    away = np.concatenate([away, np.ones(k, bool)])
    upn_empty = np.concatenate([np.zeros(n0, bool), trap == 5])

    order = np.argsort(t, kind="stable")
    cols_all = dict(
        user=user,
        t=t,
        source=source,
        bits=bits,
        variant=variant,
        es_variant=es_variant,
        upn_variant=upn_variant,
        loc_kind=loc_kind,
        away=away,
        upn_empty=upn_empty,
    )
    cols_all = {c: v[order] for c, v in cols_all.items()}

    es_pool = _strings(["Azure AD", "AzureActivity", "Device logons", "AzureAD", "azure ad"])
    native = _strings(["SigninLogs", "AzureActivity", "SecurityEvent"])
    activity_type = _strings(["LogOn", "Administrative", "LogOn"])
    aad_actions = _strings(["Sign-in", "Sign-in", "Sign-in", "Non-interactive sign-in"])
    adm_actions = _strings([o[1] for o in OPS])
    dev_actions = _strings(["RemoteInteractive", "Network", "Interactive"])
    countries = _strings(list(_COUNTRIES) + list(_AWAY))
    isp_pool = _strings(_ISPS + ("Example Hosting Ltd",))
    browsers = _strings(_BROWSERS)
    product = _strings(["Azure Active Directory", "Azure Resource Manager", "Windows"])

    for lo in range(0, len(order), spec.row_group_rows):
        sl = slice(lo, lo + spec.row_group_rows)
        c = {k_: v[sl] for k_, v in cols_all.items()}
        n = len(c["t"])
        u, src = c["user"], c["source"]
        aad, adm, dev = src == 0, src == 1, src == 2
        insight_idx = (
            np.array([pool_off[0], pool_off[1], pool_off[2]])[src]
            + c["variant"]
            * (1 << np.array([len(AAD_KEYS), len(ACTIVITY_KEYS), len(DEVICE_KEYS)])[src])
            + c["bits"]
        )
        upn = _take(w.upn_variants, u * 3 + c["upn_variant"])
        upn = pc.if_else(
            pa.array(c["upn_empty"] | (dev & (rng.random(n) < 0.08))), pa.scalar("", STR), upn
        )
        home = w.home_country[u]
        country = np.where(c["away"], len(_COUNTRIES) + rng.integers(0, len(_AWAY), size=n), home)
        loc = _take(countries, country)
        loc = pc.if_else(pa.array(dev | (c["loc_kind"] == 1)), pa.scalar("", STR), loc)
        loc = pc.if_else(pa.array(c["loc_kind"] == 2), pa.scalar(None, STR), loc)
        ip_user = _take(w.ip, u * 4 + rng.integers(0, 3, size=n))
        away_ip = pc.cast(pa.array(rng.integers(100, 250, size=n)), pa.string()).cast(STR)
        src_ip = pc.if_else(pa.array(c["away"]), _join("198.51.100.", away_ip), ip_user)
        src_ip = pc.if_else(pa.array(dev), _take(w.internal_ip, u), src_ip)
        action = pc.if_else(
            pa.array(aad),
            _take(aad_actions, rng.integers(0, 4, size=n)),
            pc.if_else(
                pa.array(adm),
                _take(adm_actions, rng.integers(0, len(OPS), size=n)),
                _take(dev_actions, rng.integers(0, 3, size=n)),
            ),
        )
        isp = np.where(c["away"], len(_ISPS), w.home_isp[u])
        devices = _join(
            "{", _take(browsers, rng.integers(0, 4, size=n)), ',"ISP":"', _take(isp_pool, isp), '"}'
        )
        devices = pc.if_else(
            pa.array(dev),
            pa.scalar('{"DeviceFamily":"Windows","OperatingSystem":"Windows 11 Enterprise"}', STR),
            devices,
        )
        es = np.where(c["es_variant"] > 0, 2 + c["es_variant"], src)
        insights = _take(pool, insight_idx)
        user_name = _take(w.user_name, u)
        workstation = _take(w.workstation, u)
        empty = pa.repeat(pa.scalar("", STR), n)
        priority = np.clip(
            np.bitwise_count(c["bits"].astype(np.uint64)).astype(np.int32) * 2
            + rng.integers(0, 2, size=n).astype(np.int32),
            0,
            10,
        )
        tenant_id = _take(_strings(w.tenant_ids), w.user_tenant[u])
        cols = {
            "TimeGenerated": _ts(c["t"]),
            "TimeProcessed": _ts(c["t"] + rng.integers(60 * NS_S, 3 * NS_H, size=n)),
            "TenantId": tenant_id,
            "SourceRecordId": guids(guid_bytes(rng, n)),
            "EventSource": _take(es_pool, es),
            "EventVendor": pa.repeat(pa.scalar("Microsoft", STR), n),
            "EventProductVersion": _take(product, src),
            "ActionType": action,
            "ActivityType": _take(activity_type, src),
            "UserName": user_name,
            "UserPrincipalName": upn,
            "ActorName": user_name,
            "ActorPrincipalName": upn,
            "TargetName": pc.if_else(pa.array(dev), workstation, empty),
            "TargetPrincipalName": empty,
            "SourceIPAddress": src_ip,
            "SourceIPLocation": loc,
            "SourceDevice": pc.if_else(pa.array(dev), workstation, empty),
            "DestinationIPAddress": empty,
            "DestinationIPLocation": empty,
            "DestinationDevice": pc.if_else(pa.array(dev), workstation, empty),
            "Device": pc.if_else(pa.array(dev), workstation, empty),
            "ActivityInsights": insights,
            "UsersInsights": _take(w.users_insights, u),
            "DevicesInsights": devices,
            "NativeTableName": _take(native, src),
            "SourceSystem": pa.repeat(pa.scalar("", STR), n),
            "Type": pa.repeat(pa.scalar("BehaviorAnalytics", STR), n),
            "_IsBillable": pa.repeat(pa.scalar("True", STR), n),
            "_ResourceId": empty,
            "_SubscriptionId": empty,
            "InvestigationPriority": pa.array(priority, pa.int32()),
            "_BilledSize": pa.array(
                (pc.binary_length(insights).to_numpy(zero_copy_only=False) + 700).astype(np.float64)
            ),
        }
        yield pa.Table.from_arrays([cols[f.name] for f in UEBA_SCHEMA], schema=UEBA_SCHEMA)


# ================================================================================================
# Writing and caching
# ================================================================================================


def _write_file(args) -> dict:
    """Write one (table, day) file; runs in a worker process."""
    spec, table, d, root = args
    t0 = time.perf_counter()
    day = date.fromisoformat(spec.first_day) + timedelta(days=d)
    folder = Path(root) / table / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".part-0.parquet.tmp-{os.getpid()}"
    schema = ACTIVITY_SCHEMA if table == "AzureActivity" else UEBA_SCHEMA
    batches = activity_batches(spec, d) if table == "AzureActivity" else ueba_batches(spec, d)
    rows = 0
    with pq.ParquetWriter(
        tmp, schema, compression=spec.compression, store_schema=False, write_statistics=True
    ) as writer:
        for batch in batches:
            writer.write_table(batch, row_group_size=spec.row_group_rows)
            rows += batch.num_rows
    os.replace(tmp, folder / "part-0.parquet")
    return {
        "table": table,
        "date": day.isoformat(),
        "rows": rows,
        "bytes": (folder / "part-0.parquet").stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def read_manifest(lake: Path) -> dict | None:
    try:
        return json.loads((Path(lake) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def ensure_lake(root: Path, spec: LakeSpec, workers: int = 1, log=print) -> tuple[Path, dict]:
    """The lake for `spec` under `root` (generated unless cached); returns (path, manifest).

    The manifest's `generated` is True when this call generated the lake."""
    root = Path(root)
    lake = root / spec.name()
    manifest = read_manifest(lake)
    # a lake written before `uncommon_share` existed had the default share
    if manifest and {"uncommon_share": UNCOMMON_SHARE, **manifest.get("spec", {})} == asdict(spec):
        return lake, {**manifest, "generated": False}
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(f"{lake.name}.tmp-*"):
        pid = leftover.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = root / f"{lake.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    (
        world(spec.rows_per_day, spec.seed),
        extra_pool(spec.seed),
        insight_pool(),
        plan(spec),
    )  # shared by fork
    # Big files first, so parallel workers finish together.
    tasks = [(spec, table, d, str(tmp)) for table in TABLES for d in range(spec.days)]
    log(
        f"generating {lake.name} ({spec.rows_per_day:,} AzureActivity + {spec.ueba_rows_per_day:,} "
        f"BehaviorAnalytics rows/day x {spec.days} days) with {workers} worker(s) ..."
    )
    try:
        if workers > 1:
            import multiprocessing as mp

            with ProcessPoolExecutor(
                max_workers=workers, mp_context=mp.get_context("fork")
            ) as pool:
                files = list(pool.map(_write_file, tasks))
        else:
            files = [_write_file(t) for t in tasks]
        seconds = time.perf_counter() - t0
        manifest = {
            "spec": asdict(spec),
            "name": lake.name,
            "generation_seconds": round(seconds, 2),
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "rows": {t: sum(f["rows"] for f in files if f["table"] == t) for t in TABLES},
            "bytes": {t: sum(f["bytes"] for f in files if f["table"] == t) for t in TABLES},
            "files": files,
            "end": spec.end.isoformat().replace("+00:00", "Z"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if lake.exists():  # an incomplete or outdated lake of the same name
            shutil.rmtree(lake)
        os.rename(tmp, lake)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  generated in {seconds:.1f}s: {sum(manifest['bytes'].values()) / 2**20:,.0f} MiB")
    return lake, {**manifest, "generated": True}


def disk_usage(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
