"""What the Kusto-speaking sources share: the window cut into slices, a truncated answer split
and asked again, retries, one log line per query, and the answers turned into a `sources.Scan`.

A subclass says how one query reaches its service (`execute`), who it runs as (`identity`) and
how a target is named in messages (`describe`). Every failure leaves as a `SourceError` that
names the table, the target (workspace or database) and, for a slice, its time range; a partial
answer is never returned as a smaller scan.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, ClassVar, Iterable, Sequence

import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .. import kusto
from ..connections import redact
from ..correlation import PUSHDOWN
from ..errors import SourceError, UsageError
from ..rule import parse_timespan
from ..sources import DATETIME, DYNAMIC, Scan, _newest, _ticks, _typed

log = logging.getLogger("include.detection.remote")

# Errors inside a partial answer that a smaller time range avoids (result too large, query too
# heavy). Any other partial answer fails at once: splitting would only multiply it.
SPLIT_ON = ("E_QUERY_RESULT_SET_TOO_LARGE", "E_RUNAWAY_QUERY")


@dataclass
class Answer:
    """One query's result table as it came over the wire (values not yet converted)."""

    columns: list[tuple[str, str]]  # (name, Kusto type)
    rows: list[list] = field(default_factory=list)
    nbytes: int | None = None
    truncated: str | None = None  # the service's reason when the rows are incomplete


class QueryFailed(Exception):
    """A query that did not answer. kind: throttled | transient (retried), denied | rejected
    (not retried). Messages are the service's words, never a credential."""

    RETRIED = ("throttled", "transient")

    def __init__(
        self, kind: str, message: str, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(redact(message))
        self.kind, self.status, self.retry_after = kind, status, retry_after


def is_loopback(host: str | None) -> bool:
    host = (host or "").strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _setting(prefix: str, key: str, default: str) -> str:
    return os.environ.get(f"DETECTION_{prefix}_{key}") or default


def _span(value, what: str) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return timedelta(seconds=float(value))
    except (TypeError, ValueError):
        pass
    try:
        return parse_timespan(str(value))
    except UsageError:
        raise UsageError(f"{what}: not a duration: {value!r} (e.g. 6h, 30m, 90s)") from None


def _number(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what}: not a number: {value!r}") from None


def _source_type(kusto_type: str) -> str:
    """A Kusto column type in the vocabulary of `Scan.source_types` (what the quality gate's
    `column_types` check reads): text that arrives as a string is "string"."""
    kind = (kusto_type or "").lower()
    if kind == "datetime":
        return "timestamp"
    if kind in ("string", "dynamic", "guid"):
        return "string"
    return kind


def _text(value, dynamic: bool):
    """A value as the frame holds it: null stays null, dynamic values are JSON text, other
    non-strings are written as Kusto's tostring() writes them."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)) or dynamic:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _times(values: Sequence, what: str) -> pd.Series:
    """Kusto datetimes (ISO 8601 text, up to 7 fractional digits) to datetime64[ns, UTC] on the
    100 ns grid, parsed from the text so the 7th digit is kept."""
    series = pd.Series(list(values), dtype=object)
    parsed = pd.to_datetime(series, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna() & series.notna()
    if bad.any():
        raise ValueError(f"{what}: not a Kusto datetime: {series[bad].iloc[0]!r}")
    return _ticks(parsed.astype("datetime64[ns, UTC]"))


class RemoteSource(ABC):
    """A source whose tables live in a Kusto engine. `targets` are workspaces or databases."""

    name: ClassVar[str]  # the URL scheme
    env: ClassVar[str]  # settings are DETECTION_<env>_<KEY>
    target_kind: ClassVar[str] = "target"

    def __init__(
        self,
        targets: Sequence[str],
        *,
        slice=None,
        min_slice=None,
        attempts=None,
        backoff=None,
        max_wait=None,
        server_timeout=None,
        sleep: Callable[[float], None] | None = None,
    ):
        if not targets:
            raise UsageError(f"{self.name}: no {self.target_kind} given")
        self.targets = list(targets)
        env = self.env
        self.slice = _span(slice or _setting(env, "SLICE", "6h"), f"DETECTION_{env}_SLICE")
        self.min_slice = _span(
            min_slice or _setting(env, "MIN_SLICE", "1s"), f"DETECTION_{env}_MIN_SLICE"
        )
        self.attempts = int(
            _number(attempts or _setting(env, "ATTEMPTS", "5"), f"DETECTION_{env}_ATTEMPTS")
        )
        self.backoff = _number(backoff or _setting(env, "BACKOFF", "2"), f"DETECTION_{env}_BACKOFF")
        self.max_wait = _number(
            max_wait or _setting(env, "MAX_WAIT", "120"), f"DETECTION_{env}_MAX_WAIT"
        )
        self.server_timeout = int(
            _number(server_timeout or _setting(env, "TIMEOUT", "180"), f"DETECTION_{env}_TIMEOUT")
        )
        if self.slice <= timedelta(0) or self.min_slice <= timedelta(0) or self.attempts < 1:
            raise UsageError(f"{self.name}: slice, minimum slice and attempts must be positive")
        self.sleep = sleep or time.sleep
        self.queries = 0  # sent, retries included: for the caller's summary and the tests

    # --- what a subclass provides ---------------------------------------------------------------

    @abstractmethod
    def execute(self, target: str, query: str) -> Answer:
        """Send one query; an Answer (possibly truncated) or QueryFailed."""

    @abstractmethod
    def identity(self) -> str:
        """Who the queries run as, for a refusal's message (never a secret)."""

    def describe(self, target: str) -> str:
        return f"{self.target_kind} {target}"

    @property
    def url(self) -> str:
        return f"{self.name}://{','.join(self.targets)}"

    # --- the scan -------------------------------------------------------------------------------

    def scan(self, table: str, start, end, columns: dict[str, str], prefilter: bool = True) -> Scan:
        """Rows of `table` with TimeGenerated in [start, end), restricted to `columns` (name ->
        rule type), as `sources.read_table` returns them. With `prefilter`, the service applies
        the rule's first `where` of this side (correlation.PUSHDOWN) exactly; the profile
        (rows_in_window, hourly, newest) always covers every row in the window."""
        kusto.ident(table)
        for column in columns:
            kusto.ident(column)
        start, end = kusto.ticks(start), kusto.ticks(end)
        if end <= start:
            raise UsageError(f"{table}: empty window [{start}, {end})")
        frames, hourly, newest = [], Counter(), []
        types: dict[str, str] = {}
        missing: list[str] = []
        for target in self.targets:
            schema = self._schema(target, table, start, end)
            if not schema:  # 204 / empty body: the workspace holds no data at all
                continue
            present = [c for c in columns if c in schema]
            missing += [c for c in columns if c not in schema and c not in missing]
            types.update({c: _source_type(schema[c]) for c in present})
            for answer in self._answers(
                target, table, "profile", start, end, lambda s, e: kusto.profile_query(table, s, e)
            ):
                self._profile_into(answer, hourly, newest, target, table)
            where = (
                kusto.pushdown(PUSHDOWN.get(table), {c: schema[c] for c in present})
                if prefilter
                else None
            )
            for answer in self._answers(
                target,
                table,
                "rows",
                start,
                end,
                lambda s, e: kusto.rows_query(table, s, e, present, where),
            ):
                frames.append(self._frame(answer, present, columns, target, table))
        # A column one workspace lacks is missing for the scan (as a file lacking it would be)
        present = [c for c in columns if c not in missing]
        frame = (
            pd.concat([f[present] for f in frames], ignore_index=True)
            if frames
            else self._frame(Answer([(c, "string") for c in present]), present, columns, "", table)
        )
        frame = frame.sort_values("TimeGenerated", kind="stable", ignore_index=True)
        in_window = sum(hourly.values())
        newest_iso = _newest(_times(newest, f"{table}.newest")) if newest else None
        return Scan(
            table,
            frame,
            redact(self.url),
            self.name,
            in_window,
            in_window,
            missing,
            [],
            dict(sorted(hourly.items())),
            newest_iso,
            types,
        )

    def _schema(self, target: str, table: str, start, end) -> dict[str, str]:
        answer = self._ask(
            target, table, "schema", start, end, kusto.schema_query(table, start, end)
        )
        if answer.truncated:  # no rows were asked for: a service fault, not a size problem
            raise SourceError(
                table,
                f"{self.describe(target)}: partial answer to the schema query ({answer.truncated})",
            )
        return dict(answer.columns)

    def _profile_into(self, answer: Answer, hourly: Counter, newest: list, target, table) -> None:
        index = {name: i for i, (name, _) in enumerate(answer.columns)}
        if not {"TimeGenerated", "rows", "newest"} <= set(index) and answer.rows:
            raise SourceError(
                table,
                f"{self.describe(target)}: the profile answer lacks "
                f"TimeGenerated/rows/newest (got {sorted(index)})",
            )
        if not answer.rows:
            return
        hours = _times([r[index["TimeGenerated"]] for r in answer.rows], f"{table}.TimeGenerated")
        for hour, row in zip(hours, answer.rows):
            hourly[hour.strftime("%Y-%m-%dT%H")] += int(row[index["rows"]])
        newest += [r[index["newest"]] for r in answer.rows if r[index["newest"]] is not None]

    def _frame(
        self, answer: Answer, present: list[str], columns: dict[str, str], target, table
    ) -> pd.DataFrame:
        index = {name: i for i, (name, _) in enumerate(answer.columns)}
        lacking = [c for c in present if c not in index]
        if lacking:
            raise SourceError(
                table,
                f"{self.describe(target)}: the answer lacks the projected "
                f"column(s) {', '.join(lacking)}",
            )
        data = {}
        for column in present:
            values = [row[index[column]] for row in answer.rows]
            if columns[column] == DATETIME:
                try:
                    data[column] = _times(values, f"{table}.{column}")
                except ValueError as exc:
                    raise SourceError(table, str(exc), column) from None
            else:
                dynamic = columns[column] == DYNAMIC
                data[column] = pd.Series([_text(v, dynamic) for v in values], dtype=object)
        return _typed(pd.DataFrame(data), {c: columns[c] for c in present})

    # --- slices, splitting, retries -------------------------------------------------------------

    def _slices(self, start: pd.Timestamp, end: pd.Timestamp) -> Iterable[tuple]:
        step = pd.Timedelta(self.slice)
        s = start
        while s < end:
            e = min(s + step, end)
            yield s, e
            s = e

    def _middle(self, s: pd.Timestamp, e: pd.Timestamp) -> pd.Timestamp | None:
        """Where to split [s, e): on a whole second when there is one inside (boundaries stay
        readable and exact for every engine), else on the 100 ns grid; None below the minimum."""
        if e - s <= pd.Timedelta(self.min_slice):
            return None
        mid = s + (e - s) / 2
        for grid in ("1s", "100ns"):
            candidate = mid.floor(grid)
            if s < candidate < e:
                return candidate
        return None

    def _answers(
        self, target: str, table: str, what: str, start, end, render: Callable
    ) -> list[Answer]:
        """Every slice's answer, splitting a truncated slice in half until it fits."""
        pending = list(self._slices(start, end))[::-1]
        answers = []
        while pending:
            s, e = pending.pop()
            answer = self._ask(target, table, what, s, e, render(s, e))
            if answer.truncated is None:
                answers.append(answer)
                continue
            mid = self._middle(s, e)
            if mid is None:
                raise SourceError(
                    table,
                    (
                        f"{self.describe(target)}: the {what} query for the slice "
                        f"[{_iso(s)}, {_iso(e)}) does not fit in one answer ({answer.truncated}), "
                        "and "
                        f"the slice is already at the minimum of {self.min_slice} "
                        f"(DETECTION_{self.env}_MIN_SLICE): more rows share this time than the "
                        f"service returns in one answer"
                    ),
                )
            log.info(
                "%s %s %s: %s answer for [%s, %s) truncated (%s); splitting at %s",
                self.name,
                self.describe(target),
                table,
                what,
                _iso(s),
                _iso(e),
                answer.truncated,
                _iso(mid),
            )
            pending += [(mid, e), (s, mid)]
        return answers

    def _ask(self, target: str, table: str, what: str, s, e, query: str) -> Answer:
        """One query with retries; one log line for its answer."""

        def once() -> Answer:
            self.queries += 1
            return self.execute(target, query)

        began = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=self.sleep,
            before_sleep=self._before_sleep(target, table, what),
            reraise=True,
        )
        try:
            answer = retrying(once)
        except QueryFailed as exc:
            raise self._error(exc, target, table, what, s, e) from None
        log.info(
            "%s %s %s %s [%s, %s): %d rows, %s bytes, %.2f s%s",
            self.name,
            self.describe(target),
            table,
            what,
            _iso(s),
            _iso(e),
            len(answer.rows),
            "?" if answer.nbytes is None else answer.nbytes,
            time.monotonic() - began,
            " (truncated)" if answer.truncated else "",
        )
        log.debug("query: %s", query)
        return answer

    def _retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, QueryFailed) or exc.kind not in QueryFailed.RETRIED:
            return False
        return exc.retry_after is None or exc.retry_after <= self.max_wait

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception()
        if getattr(exc, "retry_after", None) is not None:
            return exc.retry_after
        return wait_exponential_jitter(
            initial=self.backoff, max=self.max_wait, jitter=self.backoff
        )(state)

    def _before_sleep(self, target, table, what):
        def before(state: RetryCallState) -> None:
            log.warning(
                "%s %s %s %s: %s (attempt %d/%d); retrying in %.2f s",
                self.name,
                self.describe(target),
                table,
                what,
                state.outcome.exception(),
                state.attempt_number,
                self.attempts,
                state.next_action.sleep,
            )

        return before

    def _error(self, exc: QueryFailed, target, table, what, s, e) -> SourceError:
        where = self.describe(target)
        slice_ = f"the {what} query for [{_iso(s)}, {_iso(e)})"
        if exc.kind == "denied":
            return SourceError(
                table,
                (
                    f"{where} refused access (HTTP {exc.status or '-'}: {exc}) to "
                    f"{self.identity()}; "
                    f"{self.permission_hint()}"
                ),
            )
        if exc.kind == "rejected":
            return SourceError(
                table, f"{where} rejected {slice_} (HTTP {exc.status or '-'}: {exc})"
            )
        if exc.retry_after is not None and exc.retry_after > self.max_wait:
            return SourceError(
                table,
                (
                    f"{where} throttled {slice_} and asks to wait {exc.retry_after:g} s, more than "
                    f"DETECTION_{self.env}_MAX_WAIT={self.max_wait:g} s"
                ),
            )
        return SourceError(
            table,
            f"{where} did not answer {slice_} after {self.attempts} "
            f"attempt(s) (HTTP {exc.status or '-'}: {exc})",
        )

    def permission_hint(self) -> str:
        return "check the identity's role on the target"


def _iso(ts: pd.Timestamp) -> str:
    """A slice boundary for messages: the literal's text, without a zero fraction."""
    return kusto.datetime(ts)[len("datetime(") : -1].replace(".0000000Z", "Z")
