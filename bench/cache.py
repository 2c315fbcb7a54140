"""The scan cache's figures (issue #13 point 4; include/detection/sources/cache.py):

* the daily run with the previous day cached: the cache is filled by the previous day's run
  (`detect --end <end - 1d>`, not timed), then `detect --end <end>` reads the new day and
  serves the day before from the cache; against the DuckDB query over the same window, both
  from a page cache holding the lake;
* the back-fill with the cache: `detect --from --to` with an empty cache (each file decoded
  once), with a full one (nothing decoded), and 14 separate `detect`s sharing one cache, beside
  the DuckDB query looped in one process and 14 DuckDB processes;
* the cache's size on disk as a fraction of the lake's (after the daily run: the pieces of the
  days it covered; after the back-fill: of every day).

Every `ours` run of the other scenarios runs with DETECTION_CACHE=off (cold single windows).
Each cached measurement starts from its own empty cache folder under the run's work folder.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from . import harness

# Issue #13's targets for the daily run with the previous day cached (ours / DuckDB wall).
DAILY_TARGETS = {"M": 1.0, "L": 0.75}
BACKFILL_CACHED_TARGET = 0.75
CACHE_SHARE_TARGET = 0.02  # of the lake's size on disk, at M


def _label(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _env(code, cache: Path | None):
    return harness.child_env({"DETECTION_CACHE": str(cache) if cache else "off"}, code=code)


def bench_daily_cached(
    name: str,
    rows_per_day: int,
    data_dir: Path,
    out_dir: Path,
    repeat: int = 1,
    timeout: float | None = None,
    warm: bool = True,
    workers: int = 1,
    compression: str = "zstd",
    log=print,
    code: Path | None = None,
    uncommon_share: float | None = None,
) -> dict:
    """`detect --end E` with the pieces of E - 1d's run cached, vs the DuckDB query over
    [E - 2d, E); results compared; cache size against the lake."""
    from . import lake as lakes

    share = lakes.UNCOMMON_SHARE if uncommon_share is None else uncommon_share
    spec = lakes.LakeSpec(rows_per_day=rows_per_day, compression=compression, uncommon_share=share)
    lake, _ = lakes.ensure_lake(data_dir, spec, workers=workers, log=log)
    end = spec.end
    label, previous = _label(end), _label(end - timedelta(days=1))
    warmed = harness.warm_page_cache(lake) if warm else {"warmed": False}
    work = out_dir / "runs" / f"{name}-daily-cached"
    work.mkdir(parents=True, exist_ok=True)
    cwd = code or harness.REPO
    runs: dict[str, list[dict]] = {"ours_cached": [], "ours_fill": [], "duckdb": []}
    cache_bytes = 0
    for i in range(repeat):
        cache = work / f"cache-{i}"
        shutil.rmtree(cache, ignore_errors=True)
        fill = harness.run_child(
            harness.engine_command("ours", lake, previous, work / f"fill-{i}.parquet"),
            work / f"fill-{i}.log",
            env=_env(code, cache),
            timeout=timeout,
            cwd=cwd,
        )
        runs["ours_fill"].append(fill)
        order = ("ours_cached", "duckdb") if i % 2 == 0 else ("duckdb", "ours_cached")
        for mode in order:
            engine = "ours" if mode == "ours_cached" else "duckdb"
            out = work / f"{mode}-{i}.parquet"
            out.unlink(missing_ok=True)
            r = harness.run_child(
                harness.engine_command(engine, lake, label, out),
                work / f"{mode}-{i}.log",
                env=_env(code, cache) if engine == "ours" else harness.child_env(),
                timeout=timeout,
                cwd=cwd if engine == "ours" else harness.REPO,
            )
            r["repeat"] = i
            if r["exit_code"] != 0:
                r["log_tail"] = harness._tail(r["log"], 20)
            runs[mode].append(r)
            log(
                f"  {name} daily, previous day cached: {mode:11} run {i + 1}/{repeat}: wall "
                f"{r['wall_s']:.2f}s  cpu {r['cpu_s']:.2f}s  peak RSS "
                f"{r['peak_rss_mib']:,.0f} MiB  exit {r['exit_code']}"
            )
        cache_bytes = lakes.disk_usage(cache)
        if i + 1 < repeat:
            shutil.rmtree(cache, ignore_errors=True)
    summary = {m: harness._summary(v) for m, v in runs.items()}
    ok = all(runs[m][0]["exit_code"] == 0 for m in ("ours_cached", "duckdb"))
    comparison = (
        harness.compare(work / "ours_cached-0.parquet", work / "duckdb-0.parquet")
        if ok
        else {"agree": False, "error": "a run failed; see runs"}
    )
    lake_bytes = lakes.disk_usage(lake)
    ratios = {
        k: round(summary["ours_cached"][k] / summary["duckdb"][k], 2)
        for k in ("wall_s", "cpu_s", "peak_rss_mib")
    }
    target = DAILY_TARGETS.get(name.split("-")[0])
    return {
        "scale": name,
        "rows_per_day": rows_per_day,
        "uncommon_share": share,
        "window": {"start": _label(end - timedelta(days=2)), "end": label},
        "previous_run_end": previous,
        "lake": {
            "path": str(lake),
            "bytes_on_disk": lake_bytes,
            "page_cache_warmed": warmed["warmed"],
        },
        "cache": {
            "bytes_on_disk": cache_bytes,
            "share_of_lake": round(cache_bytes / lake_bytes, 5) if lake_bytes else None,
            "days_cached": 3,
        },
        **summary,
        "ratios": ratios,
        "target": None
        if target is None
        else {"max": target, "ratio": ratios["wall_s"], "met": ratios["wall_s"] <= target},
        "commands": {
            "fill": harness.engine_command("ours", lake, previous, Path("prev.parquet")),
            "ours_cached": harness.engine_command("ours", lake, label, Path("out.parquet")),
            "duckdb": harness.engine_command("duckdb", lake, label, Path("out.parquet")),
            "env": "DETECTION_CACHE=<empty folder per repeat>",
        },
        "comparison": comparison,
        "runs": runs,
    }


CACHED_BACKFILL_MODES = (
    "ours_range_cold_cache",
    "ours_range_warm_cache",
    "ours_separate_shared_cache",
)


def bench_backfill_cached(
    backfill: dict,
    out_dir: Path,
    repeat: int = 1,
    timeout: float | None = None,
    log=print,
    code: Path | None = None,
) -> dict:
    """The back-fill's cached modes, over the lake and windows `backfill` (harness.
    bench_backfill's report) measured uncached; ratios against its DuckDB runs."""
    from . import lake as lakes

    lake = Path(backfill["lake"]["path"])
    first, last = backfill["first_end"], backfill["last_end"]
    work = out_dir / "runs" / "backfill-cached"
    work.mkdir(parents=True, exist_ok=True)
    cwd = code or harness.REPO
    from datetime import datetime

    start = datetime.fromisoformat(first.replace("Z", "+00:00"))
    labels = [_label(start + timedelta(days=k)) for k in range(backfill["windows"])]
    runs: dict[str, list[dict]] = {m: [] for m in CACHED_BACKFILL_MODES}
    cache_bytes = 0
    for i in range(repeat):
        cache = work / f"cache-{i}"
        shutil.rmtree(cache, ignore_errors=True)
        for mode in ("ours_range_cold_cache", "ours_range_warm_cache"):
            out = work / f"{mode}-{i}.parquet"
            out.unlink(missing_ok=True)
            r = harness.run_child(
                harness.range_command("ours", lake, first, last, out),
                work / f"{mode}-{i}.log",
                env=_env(code, cache),
                timeout=timeout,
                cwd=cwd,
            )
            r["repeat"] = i
            runs[mode].append(r)
            log(
                f"  back-fill {mode:26} run {i + 1}/{repeat}: wall {r['wall_s']:.2f}s  "
                f"cpu {r['cpu_s']:.2f}s  peak RSS {r['peak_rss_mib']:,.0f} MiB  "
                f"exit {r['exit_code']}"
            )
        cache_bytes = lakes.disk_usage(cache)
        shutil.rmtree(cache, ignore_errors=True)
        each = []
        for k, label in enumerate(labels):
            out = work / f"ours_separate_shared_cache-{i}-{k:02d}.parquet"
            out.unlink(missing_ok=True)
            each.append(
                harness.run_child(
                    harness.engine_command("ours", lake, label, out),
                    work / f"ours_separate_shared_cache-{i}-{k:02d}.log",
                    env=_env(code, cache),
                    timeout=timeout,
                    cwd=cwd,
                )
            )
        r = harness._runs_summary(each)
        r["repeat"] = i
        runs["ours_separate_shared_cache"].append(r)
        log(
            f"  back-fill ours_separate_shared_cache run {i + 1}/{repeat}: wall "
            f"{r['wall_s']:.2f}s  cpu {r['cpu_s']:.2f}s  peak RSS {r['peak_rss_mib']:,.0f} MiB"
            f"  exit {r['exit_code']}"
        )
        shutil.rmtree(cache, ignore_errors=True)
    summary = {m: harness._summary(v) for m, v in runs.items()}
    loop = harness.rows_by_window(out_dir / "runs" / "backfill" / "duckdb_loop-0.parquet")
    comparison = {}
    for mode in ("ours_range_cold_cache", "ours_range_warm_cache"):
        comparison[mode] = harness.compare_windows(
            harness.rows_by_window(work / f"{mode}-0.parquet"), loop
        )
    from collections import Counter

    each = {
        label: Counter(
            harness.normalized_rows(work / f"ours_separate_shared_cache-0-{k:02d}.parquet")
        )
        for k, label in enumerate(labels)
    }
    comparison["ours_separate_shared_cache"] = harness.compare_windows(
        {k: v for k, v in each.items() if v}, loop
    )
    comparison["agree"] = all(v["agree"] for v in comparison.values() if isinstance(v, dict))
    lake_bytes = lakes.disk_usage(lake)

    def ratio(mode, peer, key):
        return round(summary[mode][key] / backfill[peer][key], 2)

    ratios = {
        m: {
            k: ratio(m, "duckdb_separate" if "separate" in m else "duckdb_loop", k)
            for k in ("wall_s", "cpu_s", "peak_rss_mib")
        }
        for m in CACHED_BACKFILL_MODES
    }
    cold = ratios["ours_range_cold_cache"]["wall_s"]
    return {
        **summary,
        "ratios": ratios,
        "target": {
            "max": BACKFILL_CACHED_TARGET,
            "ratio": cold,
            "met": cold <= BACKFILL_CACHED_TARGET,
        },
        "cache": {
            "bytes_on_disk": cache_bytes,
            "share_of_lake": round(cache_bytes / lake_bytes, 5) if lake_bytes else None,
        },
        "comparison": comparison,
        "runs": runs,
    }


def format_cached(report: dict) -> list[str]:
    """Lines for harness.format_table."""
    lines = []
    for name, d in (report.get("daily_cached") or {}).items():
        t, c = d.get("target"), d["cache"]
        lines.append(
            f"Daily run at {name}, previous day cached ({d['window']['start']} .. "
            f"{d['window']['end']}; medians of {d['ours_cached']['runs']}):"
        )
        for mode, label in (
            ("ours_cached", "detect --end (day before cached)"),
            ("duckdb", "DuckDB query over the window"),
            ("ours_fill", "(the previous day's run, filling)"),
        ):
            m = d[mode]
            lines.append(
                f"    {label:34} wall {m['wall_s']:>7.2f}s  cpu {m['cpu_s']:>7.2f}s  "
                f"peak RSS {m['peak_rss_mib']:>6,.0f} MiB"
            )
        r = d["ratios"]
        tt = f" [target <= {t['max']}x: {'met' if t['met'] else 'NOT met'}]" if t else ""
        lines.append(
            f"    ours/duckdb wall {r['wall_s']:.2f}x  cpu {r['cpu_s']:.2f}x  peak RSS "
            f"{r['peak_rss_mib']:.2f}x{tt}; cache {c['bytes_on_disk'] / 2**20:,.1f} MiB"
            f" = {100 * (c['share_of_lake'] or 0):.2f}% of the lake; results agree: "
            f"{'yes' if d['comparison'].get('agree') else 'NO'}"
        )
    b = (report.get("backfill") or {}).get("cached")
    if b:
        lines.append("Back-fill with the scan cache (same lake and windows):")
        what = {
            "ours_range_cold_cache": "detect --from --to, empty cache",
            "ours_range_warm_cache": "detect --from --to, full cache",
            "ours_separate_shared_cache": "14 x detect --end, one cache",
        }
        for mode, label in what.items():
            m, r = b[mode], b["ratios"][mode]
            peer = "separate" if "separate" in mode else "loop"
            lines.append(
                f"    {label:34} wall {m['wall_s']:>7.2f}s  cpu {m['cpu_s']:>7.2f}s  "
                f"peak RSS {m['peak_rss_mib']:>6,.0f} MiB  | vs DuckDB {peer}: wall "
                f"{r['wall_s']:.2f}x  peak RSS {r['peak_rss_mib']:.2f}x"
            )
        t, c = b["target"], b["cache"]
        lines.append(
            f"    [range, empty cache / loop wall target <= {t['max']}x: "
            f"{'met' if t['met'] else 'NOT met'}]; cache of the whole lake "
            f"{c['bytes_on_disk'] / 2**20:,.1f} MiB = "
            f"{100 * (c['share_of_lake'] or 0):.2f}% of it; results agree window by "
            f"window: {'yes' if b['comparison'].get('agree') else 'NO'}"
        )
    return lines
