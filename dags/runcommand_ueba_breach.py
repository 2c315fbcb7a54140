"""
### Azure VM Run Command operation executed during suspicious login window

Sentinel analytics rule `11bda520-a965-4654-9a45-d09f372f71aa` as a daily batch pipeline.

Every day at 00:00 UTC the run covers the rule's query period ending at `data_interval_end`
(2 days: `[end - 2d, end)`):

1. **extract** AzureActivity and BehaviorAnalytics in parallel from `DETECTION_SOURCE` (a folder of
   JSONL / Parquet / CSV exports; default the demo lake), only the columns the query reads, into
   Parquet under `DETECTION_STAGING/<rule id>/<interval>/`;
2. **validate** each table with Great Expectations: a failed critical check stops the run here,
   so "no data" is never reported as "no alerts"; **data_docs** renders the GE Data Docs of
   both tables beside the rest of the run (failed validations included);
3. **correlate**: the KQL query, step by step (`include/detection/correlation.py`);
4. **build_alerts**: one alert per Run Command execution, UPSERTed by a deterministic id into the
   alert store (`DETECTION_ALERT_STORE`), so re-runs and overlapping windows never duplicate;
5. **deliver** pending alerts to the ticketing destinations (`DETECTION_DESTINATIONS`).

XCom carries paths and counts only. Back-fill with `airflow backfill create`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from airflow.sdk import CronDataIntervalTimetable, dag, task

from include.airflow_connections import airflow_connection, alert_store_url
from include.dag_defaults import DEFAULT_ARGS, EXTRACT_ARGS
from include.detection.rule import load_rule

RULE = load_rule("runcommand_ueba_breach")
log = logging.getLogger(__name__)


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
)
def runcommand_ueba_breach():
    @task(**EXTRACT_ARGS)
    def extract(table: str, **context) -> dict:
        """Waits (retries with delay) while the window is incomplete (judged against the table's
        rhythm in the alert store's run history), then fails as such."""
        from include.detection import config, pipeline, store

        start, end = _window(context)
        with store.open_store(alert_store_url()) as s:
            return pipeline.extract_to_stage(config.source(), table, start, end, config.staging(),
                                             RULE, store=s)

    @task
    def validate(extracted: dict) -> dict:
        """Re-validating the same staged data gives the same answer: fail without retrying."""
        import sys

        from airflow.exceptions import AirflowFailException

        # ~2.5 s of this task is GE's import unless the worker preloaded it (include/detection/preload.py)
        log.info("Great Expectations preloaded by the worker: %s", "great_expectations" in sys.modules)

        from include.detection import pipeline, store
        from include.detection.errors import DataQualityError

        with store.open_store(alert_store_url()) as s:
            try:
                checked = pipeline.validate_stage(extracted, s, RULE)
            except DataQualityError as exc:
                raise AirflowFailException(str(exc)) from exc
        log.info("data quality: %s", checked["summary"])
        return checked

    @task(trigger_rule="all_done", retries=0)
    def data_docs(**context) -> dict:
        """HTML for people, off the alerts' path: runs once both validations are done, passed or
        failed, from this run's staged files (a table whose scan failed has none). Rendering
        again gives the same pages, so a failure is not retried; it fails the run visibly."""
        from include.detection import config, pipeline, store

        start, end = _window(context)
        with store.open_store(alert_store_url()) as s:
            pages = pipeline.render_docs(config.staging(), start, end, s, RULE)
        for table, page in pages.items():
            log.info("Data Docs for %s: %s", table, page)
        return pages

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
        """UPSERT one alert per Run Command execution (grouping: the rule's
        eventGroupingSettings) into the alert store, by a deterministic id."""
        from include.detection import alerts, results, store

        start, end = _window(context)
        status = alerts.worst_quality(activity.get("status"), ueba.get("status"))
        built = alerts.build_alerts(results.load(correlated["path"]), RULE, start, end, status)
        with store.open_store(alert_store_url()) as s:
            counts = s.upsert(built)
        log.info("alerts: %s", counts)
        return {**counts, "alert_ids": [a["id"] for a in built]}

    @task
    def deliver(stored: dict) -> dict:
        """Deliver every pending alert (this run's and any left by an earlier outage) to each
        destination; fails (DeliveryError) while any stays pending, so retries deliver them."""
        from include.detection import config, destinations, store

        names = config.destinations()
        connections = {n: airflow_connection(destinations.conn_id(n))
                       for n in names if destinations.conn_id(n)}
        with store.open_store(alert_store_url()) as s:
            report = destinations.deliver_pending(s, names, connections=connections)
        log.info("deliveries: %s", report)
        return report

    activity = validate.override(task_id="validate_azure_activity")(
        extract.override(task_id="extract_azure_activity")("AzureActivity"))
    ueba = validate.override(task_id="validate_behavior_analytics")(
        extract.override(task_id="extract_behavior_analytics")("BehaviorAnalytics"))
    [activity, ueba] >> data_docs()
    correlated = correlate(activity, ueba)
    deliver(build_alerts(correlated, activity, ueba))


runcommand_ueba_breach()
