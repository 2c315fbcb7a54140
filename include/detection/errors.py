"""Error types a SOC engineer can act on at 3 a.m.: each names the table, the column and the
check."""


class DetectionError(Exception):
    """Base class; `exit_code` is what the CLI returns for it."""

    exit_code = 1


class UsageError(DetectionError):
    """Bad arguments or configuration (CLI exit 2)."""

    exit_code = 2


class SourceError(DetectionError):
    """A table cannot be found or read at all (CLI exit 2: the source is misconfigured)."""

    exit_code = 2

    def __init__(self, table: str, problem: str, column: str | None = None):
        self.table, self.column, self.problem = table, column, problem
        where = f"{table}.{column}" if column else table
        super().__init__(f"{where}: {problem}")


class DataQualityError(DetectionError):
    """A critical data-quality check failed: the rule must not run on this data (CLI exit 3).

    `summary` is a small list of dicts (table, column, check, observed) - what the GE Airflow
    provider puts in its exception - so the task log and the CLI show the same thing.
    """

    exit_code = 3

    def __init__(self, failures: list[dict]):
        self.failures = failures
        lines = [
            f"{f['table']}{'.' + f['column'] if f.get('column') else ''}: {f['check']} failed"
            + (f" (observed: {f['observed']})" if f.get("observed") is not None else "")
            for f in failures
        ]
        super().__init__("data-quality gate failed: " + "; ".join(lines))


class IncompleteDataError(DataQualityError):
    """The window is not complete yet (a gap, or the newest rows not ingested): waiting may fix
    it."""


class DeliveryError(DetectionError):
    """A destination could not take every pending alert; they stay pending for the next attempt."""

    exit_code = 4
