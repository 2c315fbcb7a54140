"""
### Azure VM Run Command operation executed during suspicious login window

Sentinel analytics rule `11bda520-a965-4654-9a45-d09f372f71aa` as a daily batch pipeline.

Every day at 00:00 UTC the run covers the rule's query period ending at `data_interval_end`
(2 days: `[end - 2d, end)`):

1. **extract** AzureActivity and BehaviorAnalytics in parallel from `DETECTION_SOURCE` (a folder of
   JSONL / Parquet / CSV exports; default the demo lake), only the columns the query reads, into
   Parquet under `DETECTION_STAGING/<rule id>/<interval>/`;
2. **validate** each table with Great Expectations: a failed critical check stops the run here,
   so "no data" is never reported as "no alerts";
3. **correlate**: the KQL query, step by step (`include/detection/correlation.py`);
4. **build_alerts**: one alert per Run Command execution, UPSERTed by a deterministic id into the
   alert store (`DETECTION_ALERT_STORE`), so re-runs and overlapping windows never duplicate;
5. **deliver** pending alerts to the ticketing destinations (`DETECTION_DESTINATIONS`).

XCom carries paths and counts only. Back-fill with `airflow backfill create`.
"""

from __future__ import annotations

from datetime import datetime, timezone


from airflow.sdk import CronDataIntervalTimetable, dag, task

from include.dag_defaults import DEFAULT_ARGS
from include.detection.rule import load_rule

RULE = load_rule("runcommand_ueba_breach")


def _window(context) -> tuple[str, str]:
    end = context["data_interval_end"]
    return (end - RULE.query_period).isoformat(), end.isoformat()


@dag(
    dag_id="runcommand_ueba_breach",
    description=RULE.name,
    doc_md=f"{__doc__}\n\n**Rule description:** {RULE.description}\n\n"
           f"Severity **{RULE.severity}**; tactics {', '.join(RULE.tactics)}; "
           f"techniques {', '.join(RULE.techniques)}.",
    schedule=CronDataIntervalTimetable(RULE.cron, timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["detection", f"severity:{RULE.severity}", *RULE.tags],
    params={"rule": "runcommand_ueba_breach"},
)
def runcommand_ueba_breach():
    @task
    def extract(table: str, **context) -> dict:
        from include.detection import config, pipeline

        start, end = _window(context)
        scan = pipeline.extract(config.source(), table, start, end, RULE)
        folder = pipeline.run_folder(config.staging(), RULE, start, end)
        path = pipeline.stage(scan.frame, folder / f"{table}.parquet")
        from include.detection import quarantine
        qpath = quarantine.write([scan], folder / "quarantine", end)
        return {**scan.summary(), "path": str(path), "quarantine": str(qpath) if qpath else None,
                "window": [start, end]}

    @task
    def validate(extracted: dict) -> dict:
        from include.detection import pipeline, quality

        start, end = extracted["window"]
        frame = pipeline.load_stage(extracted["path"])
        table = extracted["table"]
        result = quality.validate(table, frame, RULE.inputs[table], start, end)
        return {**result.summary(), "path": extracted["path"]}

    @task
    def correlate(activity: dict, ueba: dict, **context) -> dict:
        from pathlib import Path

        from include.detection import correlation, pipeline, results

        result = correlation.correlate(pipeline.load_stage(activity["path"]),
                                       pipeline.load_stage(ueba["path"]))
        out = Path(activity["path"]).with_name("result.parquet")
        results.write(result, out, correlation.OUTPUT_COLUMNS + correlation.CONTEXT_COLUMNS)
        return {"path": str(out), "results": len(result)}

    @task
    def build_alerts(correlated: dict, activity: dict, ueba: dict, **context) -> dict:
        from include.detection import alerts, results, store

        start, end = _window(context)
        status = "passed" if activity["status"] == ueba["status"] == "passed" else "failed"
        built = alerts.build_alerts(results.load(correlated["path"]), RULE, start, end, status)
        with store.open_store() as s:
            counts = s.upsert(built)
        return {**counts, "alert_ids": [a["id"] for a in built]}

    @task
    def deliver(stored: dict) -> dict:
        from include.detection import sinks, store

        with store.open_store() as s:
            return sinks.deliver_pending(s)

    activity = validate.override(task_id="validate_azure_activity")(
        extract.override(task_id="extract_azure_activity")("AzureActivity"))
    ueba = validate.override(task_id="validate_behavior_analytics")(
        extract.override(task_id="extract_behavior_analytics")("BehaviorAnalytics"))
    correlated = correlate(activity, ueba)
    deliver(build_alerts(correlated, activity, ueba))


runcommand_ueba_breach()
