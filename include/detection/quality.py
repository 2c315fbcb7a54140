"""The data-quality gate, with Great Expectations 1.x called directly (the GE Airflow provider
does not install with Airflow 3.3). GE is imported inside the functions: it costs ~2.5 s.

A run either says "the data for this window was valid, here are N alerts" or raises
DataQualityError naming the table, column, check and observed value.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

from .errors import DataQualityError

log = logging.getLogger(__name__)

CRITICAL, WARNING = "critical", "warning"


@dataclass
class TableQuality:
    table: str
    success: bool
    rows: int
    failures: list[dict] = field(default_factory=list)   # critical
    warnings: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {"table": self.table, "status": "passed" if self.success else "failed",
                "rows": self.rows, "critical": self.failures, "warnings": self.warnings}


def build_suite(table: str, columns: dict[str, str], start: pd.Timestamp, end: pd.Timestamp):
    """The expectations for one table's window; `meta.severity` says what a failure does."""
    import great_expectations as gx

    ex = gx.expectations
    suite = gx.ExpectationSuite(name=f"{table}_window")
    crit = {"severity": CRITICAL}
    suite.add_expectation(ex.ExpectTableRowCountToBeBetween(min_value=1, meta=crit))
    for column in columns:
        suite.add_expectation(ex.ExpectColumnToExist(column=column, meta=crit))
    suite.add_expectation(ex.ExpectColumnValuesToNotBeNull(column="TimeGenerated", meta=crit))
    # Bounds as tz-aware Timestamps in the column's zone: naive or date bounds fail silently.
    suite.add_expectation(ex.ExpectColumnValuesToBeBetween(
        column="TimeGenerated", min_value=start.tz_convert("UTC"), max_value=end.tz_convert("UTC"),
        strict_max=True, meta=crit))
    return suite


def validate(table: str, frame: pd.DataFrame, columns: dict[str, str], start, end,
             raise_on_failure: bool = True) -> TableQuality:
    """Validate one table's window; raise DataQualityError when a critical expectation fails."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    asset = _context().data_sources.add_or_update_pandas(f"{table}_source").add_dataframe_asset(
        f"{table}_{uuid.uuid4().hex[:8]}")
    batch = asset.add_batch_definition_whole_dataframe("window").get_batch(
        batch_parameters={"dataframe": frame})
    result = batch.validate(build_suite(table, columns, start, end))
    failures, warnings = [], []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        # A column check on a missing column is reported once, as the missing column.
        column = cfg.kwargs.get("column")
        if column and column not in frame.columns and cfg.type != "expect_column_to_exist":
            continue
        item = {"table": table, "column": column, "check": cfg.type,
                "observed": _observed(r.result or {}, cfg.type, column)}
        (failures if (cfg.meta or {}).get("severity") == CRITICAL else warnings).append(item)
    quality = TableQuality(table, not failures, len(frame), failures, warnings)
    if failures and raise_on_failure:
        raise DataQualityError(failures)
    return quality


def _observed(result: dict, check: str, column):
    if check == "expect_column_to_exist":
        return "column missing"
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        sample = [str(v) for v in (result.get("partial_unexpected_list") or [])[:3]]
        return f"{result['unexpected_count']} rows, e.g. {sample}"
    return None


@lru_cache(maxsize=1)
def _context():
    """One ephemeral GE context per process (each one creates a temp docs folder)."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    _quiet(context)
    return context


def _quiet(context) -> None:
    """No progress bars in task logs or on the CLI's stderr."""
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):  # older/newer GE: bars are cosmetic
        log.debug("could not disable GE progress bars")
