"""What a suite is made of: `Suite` (parameters, setup, one method per measure) and `Child`
(the process a measure times), in the shape of pandas' asv suites.

A measure method is named `time_<name>` or `peakmem_<name>` and returns the `Child` to run; the
runner (bench/suites/runner.py) runs it in its own process through `harness.run_child` (launcher,
`os.wait4`: the figures are that process's alone, with its own imports and the page cache the
suite's setup left), `repeat` times, and takes the median. `time_<name>` reports the child's wall
time (or the figure `Child.time` names), `peakmem_<name>` its peak RSS; both of one name measure
the same runs, as `make bench` reads wall and peak RSS off one process.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import harness

PREFIXES = ("time_", "peakmem_")


@dataclass
class Context:
    """What every suite shares: the lake cache, the output folder, the code measured as `ours`,
    the scale names (name -> AzureActivity rows per day) and the harness's options."""

    data_dir: Path
    out_dir: Path
    code: Path = harness.REPO
    scales: dict[str, int] = field(default_factory=lambda: dict(harness.SCALES))
    repeat: int = 1
    timeout: float | None = None
    warm: bool = True
    workers: int = 1
    compression: str = "zstd"
    log: Callable = print

    def rows(self, scale: str) -> int:
        if scale in self.scales:
            return self.scales[scale]
        if scale in harness.SCALES:
            return harness.SCALES[scale]
        raise ValueError(f"unknown scale {scale!r}: pass it as NAME=ROWS")


@dataclass
class Child:
    """The process (or processes, run one after the other, figures summed and the largest peak
    RSS kept, as `harness._runs_summary`) one measure times."""

    cmds: list[list[str]]
    env: dict
    cwd: Path
    log: Path  # the child's output; several processes get -00, -01, ... suffixes
    # Untimed, in the runner, just before the child starts (e.g. empty a cache folder).
    before: Callable[[], None] | None = None
    # Untimed, after the child ends: extra figures for its run (e.g. read from a timings file).
    after: Callable[[dict], dict] | None = None
    time: str = "wall_s"  # the figure `time_<name>` reports


class Suite:
    """One concern's benchmarks. `params` is a list of value lists, one per name in
    `param_names`; the runner builds one instance per combination, calls `setup(*values)`
    (untimed: lakes, page cache), then every measure once per repeat, in `order(i)`, and finally
    `report(report, runs, summary, *values)`, which puts the figures where `make bench`'s report
    (harness.format_table) has them."""

    name: str = ""
    params: list[list] = [[]]
    param_names: list[str] = []
    repeat: int | None = None  # runs per measure; None: the runner's --repeat
    follows_scale = True  # the runner's --scale sets `scale` (else only --set <suite>.scale)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.i = 0  # the repeat being run: outputs and logs are named after it

    @classmethod
    def measures(cls) -> list[str]:
        """Measure names (time_/peakmem_ stripped), in the order the class defines them."""
        names = []
        for klass in reversed(cls.__mro__):
            for attr in vars(klass):
                prefix = next((p for p in PREFIXES if attr.startswith(p)), None)
                if prefix and attr[len(prefix) :] not in names:
                    names.append(attr[len(prefix) :])
        return names

    @classmethod
    def combinations(cls) -> list[tuple]:
        return list(itertools.product(*cls.params)) if cls.param_names else [()]

    def child(self, measure: str, *values) -> Child:
        method = getattr(self, f"time_{measure}", None) or getattr(self, f"peakmem_{measure}")
        return method(*values)

    def setup(self, *values) -> None:
        pass

    def order(self, i: int) -> list[str]:
        """Measures in the order repeat `i` runs them: as defined, reversed every other repeat
        (who goes first alternates, as in the harness)."""
        names = self.measures()
        return names if i % 2 == 0 else names[::-1]

    def report(self, report: dict, runs: dict, summary: dict, *values) -> None:
        pass

    # --- helpers shared by the suites ---------------------------------------------------------

    def work(self, *parts: str) -> Path:
        path = Path(self.ctx.out_dir, "runs", *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def detect(self, engine: str, lake: Path, end: str, out: Path, cache: Path | None = None):
        """One engine over the window ending `end`; `ours` without a scan cache unless given."""
        return self.engine(harness.engine_command(engine, lake, end, out), engine, cache)

    def engine(self, cmd: list[str], engine: str, cache: Path | None = None, **kw) -> Child:
        ours = engine == "ours"
        extra = {"DETECTION_CACHE": str(cache) if cache else "off"} if ours else None
        log = Path(cmd[cmd.index("--out") + 1]).with_suffix(".log") if "--out" in cmd else None
        return Child(
            [cmd],
            harness.child_env(extra, code=self.ctx.code if ours else None),
            (self.ctx.code or harness.REPO) if ours else harness.REPO,
            kw.pop("log", log),
            **kw,
        )

    def lake(self, rows_per_day: int, share: float, days: int = 3):
        """The bench lake (bench/lake.py, generated once and cached) and its page cache warmed
        as the harness warms it; returns (spec, path, manifest, warmed)."""
        from .. import lake as lakes

        spec = lakes.LakeSpec(
            rows_per_day=rows_per_day,
            days=days,
            compression=self.ctx.compression,
            uncommon_share=share,
        )
        path, manifest = lakes.ensure_lake(
            self.ctx.data_dir, spec, workers=self.ctx.workers, log=self.ctx.log
        )
        warmed = harness.warm_page_cache(path) if self.ctx.warm else {"warmed": False, "bytes": 0}
        return spec, path, manifest, warmed
