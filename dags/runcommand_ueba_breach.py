"""
### Azure VM Run Command operation executed during suspicious login window

Sentinel analytics rule `11bda520-a965-4654-9a45-d09f372f71aa` as a daily batch pipeline.

Every day at 00:00 UTC the run covers the rule's query period ending at `data_interval_end`
(2 days: `[end - 2d, end)`):

0. **partitions**: the source's workspaces (`loganalytics://<id1>,<id2>`: an MSSP's tenants), each
   running steps 1-4 in its own mapped group, or the whole source as one partition (a folder,
   object storage, `kusto://`). Only workspace ids go to XCom, never the source URL;
1. **extract** AzureActivity and BehaviorAnalytics in parallel from `DETECTION_SOURCE` (a folder of
   JSONL / Parquet / CSV exports, Azure Monitor's data export, a Log Analytics workspace or an
   Azure Data Explorer database; default the demo lake), only the columns and rows the query
   reads, into Parquet under `DETECTION_STAGING/<rule id>/<interval>/[workspace=<id>/]`. A remote
   source signs in as the Airflow connection of type `azure` named by `DETECTION_AZURE_CONN_ID`
   (default `azure_default`: service principal, managed or workload identity), when it exists;
2. **validate** each table with Great Expectations: a failed critical check stops the run here,
   so "no data" is never reported as "no alerts"; **data_docs** renders the GE Data Docs of
   both tables beside the rest of the run (failed validations included);
3. **correlate**: the KQL query, step by step (`include/detection/correlation.py`);
4. **build_alerts**: one alert per Run Command execution, UPSERTed by a deterministic id into the
   alert store (`DETECTION_ALERT_STORE`), so re-runs and overlapping windows never duplicate;
   With workspaces, each alert's id includes its workspace (two tenants never merge);
5. **deliver** pending alerts to the ticketing destinations (`DETECTION_DESTINATIONS`), once any
   partition stored its alerts: a workspace that does not answer holds back no other's;
6. **examined**: the run's verdict; fails naming each workspace that was not examined.

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

from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    DeadlineAlert,
    DeadlineReference,
    SyncCallback,
    dag,
    task,
    task_group,
)

from include.airflow_connections import airflow_connection, alert_store_url
from include.dag_defaults import DEFAULT_ARGS, EXTRACT_ARGS, START_DATE, run_deadline
from include.detection.rule import load_rule
from include.notifiers import DetectionNotifier, deadline_missed

RULE = load_rule("runcommand_ueba_breach")
log = logging.getLogger(__name__)
ALERTS = Asset(
    name=f"{RULE.id}.alerts", uri="detection://runcommand_ueba_breach/alerts", group="detections"
)
# Not finished 6 h after being queued (a scheduled run is queued when its interval ends): a
# deadline from the logical date would fire at once for every back-fill of history.
_late = run_deadline()
LATE = _late and DeadlineAlert(
    reference=DeadlineReference.DAGRUN_QUEUED_AT,
    interval=_late,
    callback=SyncCallback(deadline_missed),
    name=f"not finished {_late.total_seconds() / 3600:g} h after it was queued",
)


def _window(context) -> tuple[str, str]:
    end = context["data_interval_end"]
    return (end - RULE.query_period).isoformat(), end.isoformat()


def _has_rows_since(staged: dict, context) -> bool:
    """Whether the staged table has a row in the run's own interval (its window's newest day)."""
    import pandas as pd

    newest = staged.get("newest")
    return newest is not None and pd.Timestamp(newest) >= context["data_interval_start"]


def _skip_if_no_data_yet(context) -> None:
    """Skip, saying why, when neither table has a row at or after the interval's start."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.detection import config
    from include.intervals import no_data_yet
    from include.notifiers import SKIP_REASON_KEY

    reason = no_data_yet(
        config.source(), context["data_interval_start"], context["data_interval_end"]
    )
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
    @task
    def partitions() -> list:
        """The workspaces of DETECTION_SOURCE, one mapped group each (ids only: no URL, which
        may carry a credential, goes to XCom); [None] for any other source."""
        from include.detection import config, pipeline

        return pipeline.partitions(config.source())

    @task(**EXTRACT_ARGS)
    def extract(table: str, workspace: str | None, **context) -> dict:
        """Waits (retries with delay) while the window is incomplete (judged against the table's
        rhythm in the alert store's run history), then fails as such; skips the run when no data
        has arrived for its interval yet (include/intervals.py)."""
        from include.airflow_connections import azure_credential
        from include.detection import config, pipeline, remote, store
        from include.detection.errors import IncompleteDataError

        start, end = _window(context)
        source = config.source()
        # a remote source signs in as the Airflow connection of type azure, when there is one
        credential = azure_credential() if remote.is_remote(source) else None
        try:
            with store.open_store(alert_store_url()) as s:
                staged = pipeline.extract_to_stage(
                    source,
                    table,
                    start,
                    end,
                    config.staging(),
                    RULE,
                    store=s,
                    workspace=workspace,
                    credential=credential,
                )
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

        # ~2.5 s of this task is GE's import unless the worker preloaded it
        # (include/detection/preload.py)
        log.info(
            "Great Expectations preloaded by the worker: %s", "great_expectations" in sys.modules
        )

        from include.detection import pipeline, store
        from include.detection.errors import DataQualityError

        with store.open_store(alert_store_url()) as s:
            try:
                checked = pipeline.validate_stage(extracted, s, RULE)
            except DataQualityError as exc:
                where = extracted.get("workspace")
                raise AirflowFailException(
                    (f"workspace {where}: " if where else "") + str(exc)
                ) from exc
        log.info("data quality: %s", checked["summary"])
        return checked

    @task(trigger_rule="none_skipped", retries=0)
    def data_docs(workspace: str | None, **context) -> dict:
        """HTML for people, off the alerts' path: runs once both validations are done, passed or
        failed (not in a run skipped for no data yet), from this run's staged files (a table whose
        scan failed has none). Rendering
        again gives the same pages, so a failure is not retried; it fails the run visibly."""
        from include.detection import config, pipeline, store

        start, end = _window(context)
        with store.open_store(alert_store_url()) as s:
            pages = pipeline.render_docs(config.staging(), start, end, s, RULE, workspace)
        for table, page in pages.items():
            log.info("Data Docs for %s: %s", table, page)
        return pages

    @task
    def correlate(activity: dict, ueba: dict) -> dict:
        from include.detection import pipeline

        return pipeline.correlate_stage(activity, ueba)

    @task(outlets=[ALERTS])
    def build_alerts(
        correlated: dict, activity: dict, ueba: dict, workspace: str | None, **context
    ) -> dict:
        """UPSERT one alert per Run Command execution (grouping: the rule's
        eventGroupingSettings) into the alert store, by a deterministic id (with the workspace
        in it when the source has workspaces: two tenants never merge). The alerts asset's
        event records that this interval was examined: window, counts, data quality."""
        from include.detection import alerts, pipeline, store

        start, end = _window(context)
        status = alerts.worst_quality(activity.get("status"), ueba.get("status"))
        built = alerts.build_alerts(
            pipeline.load_result(correlated["path"]), RULE, start, end, status, workspace=workspace
        )
        with store.open_store(alert_store_url()) as s:
            counts = s.upsert(
                built,
                run={
                    "run_id": context["run_id"],
                    "dag_id": context["dag"].dag_id,
                    "window_start": start,
                    "window_end": end,
                },
            )
        log.info("alerts: %s", counts)
        context["outlet_events"][ALERTS].extra = {
            "window": [start, end],
            "results": correlated["results"],
            "alerts": len(built),
            **counts,
            "data_quality": status,
            **({"workspace": workspace} if workspace else {}),
            "tables": {t["table"]: t["status"] for t in (activity, ueba)},
        }
        return {**counts, "workspace": workspace, "alert_ids": [a["id"] for a in built]}

    @task_group(prefix_group_id=False)
    def partition(workspace: str | None):
        """One workspace (or the whole source) from extract to its alerts in the store; mapped,
        so each workspace runs on its own and a failing one holds back no other's alerts."""
        # One notice per skipped run: both extracts skip on the same finding.
        activity = validate.override(task_id="validate_azure_activity")(
            extract.override(
                task_id="extract_azure_activity",
                on_skipped_callback=DetectionNotifier("run.skipped"),
            )("AzureActivity", workspace)
        )
        ueba = validate.override(task_id="validate_behavior_analytics")(
            extract.override(task_id="extract_behavior_analytics")("BehaviorAnalytics", workspace)
        )
        [activity, ueba] >> data_docs(workspace)
        return build_alerts(correlate(activity, ueba), activity, ueba, workspace)

    def _outcomes(planned: list, ti) -> dict[str, list]:
        """Each partition's fate from XCom: its alerts built, skipped for no data yet, or not
        (failed: its failed task says why)."""
        from include.notifiers import SKIP_REASON_KEY

        outcome: dict[str, list] = {"examined": [], "skipped": [], "failed": []}
        for index, workspace in enumerate(planned):
            if ti.xcom_pull(task_ids="build_alerts", map_indexes=index) is not None:
                kind = "examined"
            elif ti.xcom_pull(
                task_ids="extract_azure_activity", key=SKIP_REASON_KEY, map_indexes=index
            ):
                kind = "skipped"
            else:
                kind = "failed"
            outcome[kind].append(workspace)
        return outcome

    @task(trigger_rule="all_done")
    def deliver(planned: list, **context) -> dict:
        """Deliver every pending alert (this run's and any left by an earlier outage) to each
        destination; fails (DeliveryError) while any stays pending, so retries deliver them.
        Runs once any partition stored its alerts, whatever became of the others: one workspace
        failing must not hold back the alerts of the rest."""
        from airflow.sdk.exceptions import AirflowSkipException

        from include.detection import config, destinations, store

        if not _outcomes(planned, context["ti"])["examined"]:
            raise AirflowSkipException("no partition of the source was examined in this run")
        names = config.destinations()
        connections = {
            n: airflow_connection(destinations.conn_id(n)) for n in names if destinations.conn_id(n)
        }
        with store.open_store(alert_store_url()) as s:
            report = destinations.deliver_pending(s, names, connections=connections)
        log.info("deliveries: %s", report)
        return report

    # Its failure adds no notice: each partition's failed task has sent its own, with the reason.
    @task(trigger_rule="all_done", retries=0, on_failure_callback=[])
    def examined(planned: list, **context) -> dict:
        """The run's verdict over its partitions: fails naming each workspace whose alerts were
        not built, skips when every partition was skipped for no data yet, succeeds when all
        were examined."""
        from airflow.exceptions import AirflowFailException
        from airflow.sdk.exceptions import AirflowSkipException

        outcome = _outcomes(planned, context["ti"])
        log.info("partitions: %s", outcome)
        named = {
            k: [f"workspace {w}" if w else "the source" for w in v] for k, v in outcome.items()
        }
        if outcome["failed"]:
            raise AirflowFailException(
                f"not examined: {', '.join(named['failed'])}; their failed tasks say why"
                + (f" (examined: {', '.join(named['examined'])})" if outcome["examined"] else "")
            )
        if not outcome["examined"]:
            raise AirflowSkipException("no data yet: no partition was examined")
        return outcome

    planned = partitions()
    # Both leaves: a delivery that fails fails the run, and so does a partition not examined.
    partition.expand(workspace=planned) >> [deliver(planned), examined(planned)]


runcommand_ueba_breach()
