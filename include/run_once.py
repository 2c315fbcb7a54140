"""`make run DATE=...`: one daily interval through `airflow dags test`, and never a silent
success. `python -m include.run_once DATE [--log FILE]`, with the Airflow configuration in the
environment (the Makefile's).

- A DATE before DETECTION_START_DATE is refused (exit 2) before Airflow starts: `dags test` would
  create that run without a task and call it a success. The message says how to run it.
- An incomplete window fails at once (DETECTION_COMPLETENESS_TIMEOUT defaults to 0 here), naming
  the gap. With a timeout set, the terminal says that it waits, for what and until when.
- The outcome comes from the metadata DB, not from the exit status alone: every task succeeded
  (exit 0), the run was skipped for no data yet (exit 3, with the reason), or it failed (exit 1,
  with each failed task's reason from the log). A run without any task is a failure.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

DAG_ID = "runcommand_ueba_breach"
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$")
TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\w+)")
RETRY = re.compile(r"new_state=up_for_retry")
SKIPPED = re.compile(r"Skipping task\.\s.*reason='(.*?)'(?: \[|$)")


def _logical_date(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (
        parsed.replace(tzinfo=timezone.utc)
        if parsed.tzinfo is None
        else parsed.astimezone(timezone.utc)
    )


def _say(text: str = "") -> None:
    print(text, flush=True)


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


class LogWatch:
    """Follows the `dags test` log: the last exception per task, skip reasons, and retries (said
    on the terminal as they happen, so a wait is never silent)."""

    def __init__(self, path: Path, extract: dict, default: dict, give_up: datetime):
        self.path, self.extract, self.default, self.give_up = path, extract, default, give_up
        self.task: str | None = None
        self.errors: dict[str, str] = {}
        self.skips: list[str] = []
        self.waits: dict[str, int] = {}
        self.done = threading.Event()

    def _retry(self, task: str) -> None:
        n = self.waits[task] = self.waits.get(task, 0) + 1
        _say(f"  {task}: {self.errors.get(task, 'failed')}")
        if task.startswith("extract_"):
            at = datetime.now(timezone.utc) + self.extract["retry_delay"]
            _say(
                f"  waiting for the data: attempt {n + 1} of {self.extract['retries'] + 1} at "
                f"about {_when(at)}; gives up at about {_when(self.give_up)} "
                "(DETECTION_COMPLETENESS_TIMEOUT=0 fails at once)"
            )
            return
        args = self.default
        wait = args["retry_delay"] * (2 ** (n - 1) if args.get("retry_exponential_backoff") else 1)
        wait = min(wait, args.get("max_retry_delay") or wait)
        _say(
            f"  Airflow tries it again (attempt {n + 1} of {args['retries'] + 1}) at about "
            f"{_when(datetime.now(timezone.utc) + wait)}; Ctrl-C stops the run"
        )

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if m := TASK_START.search(line):
            self.task = m.group(1)
        elif m := EXCEPTION_LINE.match(line):
            if self.task:
                self.errors[self.task] = f"{m.group(1)}: {m.group(2)}"
        elif m := SKIPPED.search(line):
            self.skips.append(m.group(1))
        elif RETRY.search(line) and self.task:
            self._retry(self.task)

    def follow(self) -> None:
        with open(self.path, errors="replace") as fh:
            while True:
                line = fh.readline()
                if line:
                    self.feed(line)
                elif self.done.is_set():
                    return
                else:
                    time.sleep(0.2)


def _run_states(logical: datetime) -> tuple[str | None, dict[str, str]]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == DAG_ID, DagRun.logical_date == logical)
            .order_by(DagRun.id.desc())
            .limit(1)
        ).first()
        if run is None:
            return None, {}
        # a mapped task's instances past the first (a second workspace) by index
        return str(run.state), {
            ti.task_id if ti.map_index <= 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
            for ti in run.get_task_instances(session=session)
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.run_once",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("date", help="the interval's end (its logical date), e.g. 2026-10-31")
    parser.add_argument(
        "--log",
        type=Path,
        help="where the `dags test` output goes (default: $AIRFLOW_HOME/last-run.log)",
    )
    args = parser.parse_args(argv)
    logical = _logical_date(args.date)
    if logical is None:
        _say(f"make run: DATE={args.date!r} is not a date (use YYYY-MM-DD, e.g. DATE=2026-10-31)")
        return 2
    log_path = args.log or Path(os.environ.get("AIRFLOW_HOME", ".")) / "last-run.log"

    # The child's configuration: fail an incomplete window at once unless the user asked to
    # wait; no deadline (`dags test` crashes on one, apache/airflow#73428).
    env = {**os.environ, "DETECTION_RUN_DEADLINE": "0"}
    env.setdefault("DETECTION_COMPLETENESS_TIMEOUT", "0")
    # the task and skip lines this reads from the log are INFO
    if env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO").upper() not in ("INFO", "DEBUG"):
        env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
    os.environ.update(env)
    from include.detection.errors import UsageError

    try:
        from include import dag_defaults  # reads the configuration when imported

        start = dag_defaults.start_date()
        extract = dag_defaults.extract_args()
    except UsageError as exc:
        _say(f"make run: {exc}")
        return 2
    interval = (logical - timedelta(days=1), logical)
    shown = f"[{interval[0]:%Y-%m-%d %H:%M}, {interval[1]:%Y-%m-%d %H:%M}) UTC"
    if logical < start:
        day = interval[0].date().isoformat()
        _say(
            f"make run DATE={args.date}: the interval {shown} is before DETECTION_START_DATE="
            f"{start.date().isoformat()}, so Airflow would create its run without any task and "
            "call it a success. Nothing was run. To examine it:\n"
            f"  DETECTION_START_DATE={day} make run DATE={args.date}\n"
            "or back-fill it with the scheduler running (`make airflow`; back-fills are not "
            "limited by the start date):\n"
            f"  airflow backfill create --dag-id {DAG_ID} --from-date {day} --to-date {day}"
        )
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the child's clean-up
    retries, delay = extract["retries"], extract["retry_delay"]
    give_up = datetime.now(timezone.utc) + retries * delay
    _say(
        f"Running {DAG_ID} for the interval {shown} (its 2-day window ends "
        f"{interval[1]:%Y-%m-%d %H:%M} UTC); log: {log_path}"
    )
    if retries:
        _say(
            f"An incomplete window is waited for: extract tries again every {delay} up to "
            f"{retries} times, until about {_when(give_up)} "
            f"(DETECTION_COMPLETENESS_TIMEOUT={env['DETECTION_COMPLETENESS_TIMEOUT']})."
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    watch = LogWatch(log_path, extract, dag_defaults.DEFAULT_ARGS, give_up)
    with open(log_path, "w") as out:
        child = subprocess.Popen(
            [airflow, "dags", "test", DAG_ID, logical.isoformat()],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        follower = threading.Thread(target=watch.follow, daemon=True)
        follower.start()
        try:
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted: `dags test` outlives a plain SIGTERM
                child.kill()
                child.wait()
            watch.done.set()
    follower.join()
    return _report(logical, code, watch, log_path)


def _report(logical: datetime, code: int, watch: LogWatch, log_path: Path) -> int:
    state, tasks = _run_states(logical)
    if state is None or not tasks:
        tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-40:])
        _say(
            f"{tail}\nmake run: the DAG run {'ran no task' if state else 'was not created'} "
            f"(`airflow dags test` exit status {code}); nothing was examined. Log: {log_path}"
        )
        return 1
    failed = {t: s for t, s in tasks.items() if s in ("failed", "upstream_failed")}
    if failed or state == "failed" or code != 0:
        _say(f"DAG run failed ({state}; `airflow dags test` exit status {code}):")
        for task, s in sorted(failed.items()):
            if s == "failed":
                _say(f"  {task}: {watch.errors.get(task, 'failed (see the log)')}")
        blocked = sorted(t for t, s in failed.items() if s == "upstream_failed")
        if blocked:
            _say(f"  not run (upstream failed): {', '.join(blocked)}")
        _say(f"Full log: {log_path}")
        return 1
    if all(s == "skipped" for s in tasks.values()) or tasks.get("build_alerts") == "skipped":
        reason = watch.skips[0] if watch.skips else "skipped (see the log)"
        _say(f"Nothing examined: {reason}\nFull log: {log_path}")
        return 3
    not_done = sorted(t for t, s in tasks.items() if s != "success")
    if not_done:
        _say(
            f"DAG run {state}, but these tasks did not succeed: {', '.join(not_done)}. "
            f"Full log: {log_path}"
        )
        return 1
    _say(f"DAG run succeeded: all {len(tasks)} tasks ran.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
