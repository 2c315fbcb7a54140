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

#### No silent gaps

- **Every interval runs.** `start_date` is `DETECTION_START_DATE` (default 2026-10-27, the demo
  lake's first complete window) and `catchup=True` with `max_active_runs=1`: after the scheduler
  was down, it runs each missed interval, in order. Intervals before the start date are run by
  back-fills (`airflow backfill create` is not clipped to it); `make run` refuses a date before
  it (Airflow would create that run without a task and call it a success).
- **No data yet is a skip, said out loud.** When neither table has a row at or after the start
  of the run's own interval (the demo lake after its last day, a source that stopped), the
  extract tasks skip the run with the reason "no data yet for [start, end)": the older day of
  its window was examined whole by the run before, so nothing is lost *as the data stands*, and a
  failure would only wait 6 h and say the same. The skip is not silent: the run shows as skipped
  (not examined) in the grid, no alerts-asset event is recorded for it, the on-call is notified
  (`run.skipped`), and clearing the run examines the interval once data arrives. As soon as any
  row of the interval exists, the window is judged as always: incomplete waits then fails, an
  empty table fails.
- **The on-call hears of it.** A task that fails for good notifies (`run.failed`, the reason and
  the run id) through the webhook destination's receiver (signed like its alerts) and/or e-mail
  (`DETECTION_NOTIFY_EMAIL`, SMTP provider); a run not finished 6 h after it was queued (for a
  scheduled run: 6 h after its interval ended) raises a deadline alert to the same channels.
- **Every examined interval is on record.** `build_alerts` updates the asset
  `detection://runcommand_ueba_breach/alerts`; each event's extra holds the window, the alert
  counts and both tables' data-quality status (Assets view).
"""

from __future__ import annotations

import logging

from airflow.sdk import (Asset, CronDataIntervalTimetable, DeadlineAlert, DeadlineReference,
                         SyncCallback, dag, task)

from include.airflow_connections import airflow_connection, alert_store_url
from include.dag_defaults import DEFAULT_ARGS, EXTRACT_ARGS, START_DATE, run_deadline
from include.detection.rule import load_rule
from include.notifiers import DetectionNotifier, deadline_missed

RULE = load_rule("runcommand_ueba_breach")
log = logging.getLogger(__name__)
ALERTS = Asset(name=f"{RULE.id}.alerts", uri="detection://runcommand_ueba_breach/alerts",
               group="detections")
# Not finished 6 h after being queued (a scheduled run is queued when its interval ends): a
# deadline from the logical date would fire at once for every back-fill of history.
_late = run_deadline()
LATE = _late and DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=_late,
                               callback=SyncCallback(deadline_missed),
                               name=f"not finished {_late.total_seconds() / 3600:g} h "
                                    "after it was queued")


def _window(context) -> tuple[str, str]:
    end = context["data_interval_end"]
    return (end - RULE.query_period).isoformat(), end.isoformat()


def _has_rows_since(staged: dict, context) -> bool:
    """Whether the staged table has a row in the run's own interval (its window's newest day)."""
    import json
    from pathlib import Path

    import pandas as pd

    newest = json.loads(Path(staged["stats"]).read_text()).get("newest")
    return newest is not None and pd.Timestamp(newest) >= context["data_interval_start"]


def _skip_if_no_data_yet(context) -> None:
    """Skip, saying why, when neither table has a row at or after the interval's start."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.detection import config
    from include.intervals import no_data_yet
    from include.notifiers import SKIP_REASON_KEY

    reason = no_data_yet(config.source(), context["data_interval_start"],
                         context["data_interval_end"])
    if reason:
        log.warning(reason)
        context["ti"].xcom_push(key=SKIP_REASON_KEY, value=reason)
        raise AirflowSkipException(reason)


@dag(
    dag_id="runcommand_ueba_breach",
    description=RULE.name,
    doc_md=f"{__doc__}\n\n**Rule description:** {RULE.description}\n\n"
           f"Severity **{RULE.severity}**; tactics {', '.join(RULE.tactics)}; "
           f"techniques {', '.join(RULE.techniques)}.",
    schedule=CronDataIntervalTimetable(RULE.cron, timezone="UTC"),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "on_failure_callback": DetectionNotifier("run.failed")},
    deadline=LATE,
    tags=["detection", f"severity:{RULE.severity}", *RULE.tags],
)
def runcommand_ueba_breach():
    @task(**EXTRACT_ARGS)
    def extract(table: str, **context) -> dict:
        """Waits (retries with delay) while the window is incomplete (judged against the table's
        rhythm in the alert store's run history), then fails as such; skips the run when no data
        has arrived for its interval yet (include/intervals.py)."""
        from include.detection import config, pipeline, store
        from include.detection.errors import IncompleteDataError

        start, end = _window(context)
        try:
            with store.open_store(alert_store_url()) as s:
                staged = pipeline.extract_to_stage(config.source(), table, start, end,
                                                   config.staging(), RULE, store=s)
        except IncompleteDataError:
            _skip_if_no_data_yet(context)
            raise
        if not staged["rows_in_window"] or not _has_rows_since(staged, context):
            _skip_if_no_data_yet(context)
        return staged

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

    @task(trigger_rule="none_skipped", retries=0)
    def data_docs(**context) -> dict:
        """HTML for people, off the alerts' path: runs once both validations are done, passed or
        failed (not in a run skipped for no data yet), from this run's staged files (a table whose
        scan failed has none). Rendering
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

    @task(outlets=[ALERTS])
    def build_alerts(correlated: dict, activity: dict, ueba: dict, **context) -> dict:
        """UPSERT one alert per Run Command execution (grouping: the rule's
        eventGroupingSettings) into the alert store, by a deterministic id. The alerts asset's
        event records that this interval was examined: window, counts, data quality."""
        from include.detection import alerts, results, store

        start, end = _window(context)
        status = alerts.worst_quality(activity.get("status"), ueba.get("status"))
        built = alerts.build_alerts(results.load(correlated["path"]), RULE, start, end, status)
        with store.open_store(alert_store_url()) as s:
            counts = s.upsert(built, run={"run_id": context["run_id"], "dag_id": context["dag"].dag_id,
                                          "window_start": start, "window_end": end})
        log.info("alerts: %s", counts)
        context["outlet_events"][ALERTS].extra = {
            "window": [start, end], "results": correlated["results"], "alerts": len(built),
            **counts, "data_quality": status,
            "tables": {t["table"]: t["status"] for t in (activity, ueba)}}
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

    # One notice per skipped run: both extracts skip on the same finding.
    activity = validate.override(task_id="validate_azure_activity")(
        extract.override(task_id="extract_azure_activity",
                         on_skipped_callback=DetectionNotifier("run.skipped"))("AzureActivity"))
    ueba = validate.override(task_id="validate_behavior_analytics")(
        extract.override(task_id="extract_behavior_analytics")("BehaviorAnalytics"))
    [activity, ueba] >> data_docs()
    correlated = correlate(activity, ueba)
    deliver(build_alerts(correlated, activity, ueba))


runcommand_ueba_breach()
