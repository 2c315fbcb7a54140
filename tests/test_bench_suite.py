"""The benchmark suites (bench/suites) and their runner: the suite classes' shape (parameters,
measures, the order of runs), a toy suite's measures each in its own process, and the runner
end to end at a tiny scale (2,000 rows a day): every measure is a figure, the report carries
`make bench`'s tables, and ours and DuckDB return the same rows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import harness
from bench.suites import SUITES, runner
from bench.suites.__main__ import main
from bench.suites.base import Child, Context, Suite

pytestmark = pytest.mark.slow

ROWS = 2000
CORE = "single_window,flagged,daily_cached,backfill,dag"


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("suite")
    out = base / "out" / "suite.json"
    argv = [
        "--scale",
        f"T={ROWS}",
        "--only",
        CORE,
        "--set",
        f"backfill.rows_per_day={ROWS}",
        "--set",
        "backfill.days=4",
        "--set",
        "dag.scale=T",
        "--set",
        "dag.mode=warm",
        "--no-warm",
        "--data-dir",
        str(base / "data"),
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.suites", *argv],
        capture_output=True,
        text=True,
        cwd=harness.REPO,
        env=harness.child_env(),
        timeout=600,
    )
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report


def test_the_runner_exits_zero_and_prints_make_bench_tables(suite_run):
    proc, _ = suite_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in (
        "time_ours ",  # the suites' own view, one line a measure
        "peakmem_duckdb ",
        "ours/duckdb wall",  # harness.format_table's
        "T-1in8",
        "Daily run at T, previous day cached",
        "Back-fill: 3 daily 2-day windows",
        "Back-fill with the scan cache",
        "DAG-equivalent at T, warm",
    ):
        assert text in proc.stdout, text


def test_every_measure_of_every_suite_is_a_figure(suite_run):
    _, report = suite_run
    ran = {(s["suite"], tuple(s["params"].values())): s["figures"] for s in report["suites"]}
    assert set(ran) == {
        ("single_window", ("T", 0.003)),
        ("flagged", ("T", 0.125)),
        ("daily_cached", ("T",)),
        ("backfill", (ROWS, 4, 0.125)),
        ("dag", ("T", "warm")),
    }
    classes = {cls.name: cls for cls in runner.load()}
    for (name, _), figures in ran.items():
        methods = {m for m in dir(classes[name]) if m.startswith(("time_", "peakmem_"))}
        assert set(figures) == methods
        for measure, f in figures.items():
            assert f["failed_runs"] == 0 and f["value"] > 0, (name, measure)
            assert f["unit"] == ("MiB" if measure.startswith("peakmem_") else "s")


def test_ours_and_duckdb_return_the_same_rows(suite_run):
    _, report = suite_run
    for scale in ("T", "T-1in8"):
        c = report["scales"][scale]["comparison"]
        assert c["agree"] and c["rows_ours"] == c["rows_duckdb"] > 0, c
    daily = report["daily_cached"]["T"]["comparison"]
    assert daily["agree"] and daily["rows_ours"] > 0, daily
    b = report["backfill"]
    assert b["comparison"]["agree"], b["comparison"]
    assert sum(b["comparison"]["rows_per_window"]) > 0
    assert b["cached"]["comparison"]["agree"], b["cached"]["comparison"]


def test_measures_are_the_harness_figures_of_their_own_processes(suite_run):
    _, report = suite_run
    scale = report["scales"]["T"]
    figures = next(s["figures"] for s in report["suites"] if s["suite"] == "single_window")
    # time_ and peakmem_ of one name read one process: the harness's wall and peak RSS
    assert figures["time_ours"]["value"] == scale["ours"]["wall_s"]
    assert figures["peakmem_ours"]["value"] == scale["ours"]["peak_rss_mib"]
    logs = {scale["runs"][e][0]["log"] for e in harness.ENGINES}
    assert len(logs) == 2  # each engine its own process
    b = report["backfill"]
    assert b["runs"]["ours_separate"][0]["processes"] == b["windows"] == 3
    assert b["cached"]["cache"]["bytes_on_disk"] > 0
    dag = report["dag"]["warm"]
    assert dag["to_delivery_s"] < dag["wall_s"] and dag["steps"]["steps"]
    assert dag["vs_detect"]["to_delivery"] > 0  # against single_window's `detect`


# --- the runner on a toy suite: no lake ----------------------------------------------------------

ALLOCATE = "import sys; b = bytearray(int(sys.argv[1]) << 20); open(sys.argv[2], 'a').write('x')"


class Toy(Suite):
    name = "toy"
    params = [["a", "b"], [1, 2]]
    param_names = ["scale", "size"]

    def setup(self, scale, size):
        self.calls = self.ctx.out_dir / f"calls-{scale}-{size}"

    def _child(self, mib, code=ALLOCATE):
        cmd = [sys.executable, "-c", code, str(mib), str(self.calls)]
        log = self.ctx.out_dir / f"toy-{mib}-{self.i}.log"
        return Child([cmd], harness.child_env(), harness.REPO, log)

    def time_big(self, scale, size):
        return self._child(200)

    def peakmem_big(self, scale, size):
        return self._child(200)

    def peakmem_small(self, scale, size):
        return self._child(1)

    def time_fails(self, scale, size):
        return self._child(0, code="raise SystemExit(3)")


def test_a_suites_measures_params_and_order():
    assert Toy.measures() == ["big", "small", "fails"]
    assert Toy.combinations() == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    toy = Toy(Context(data_dir=None, out_dir=None))
    assert toy.order(0) == ["big", "small", "fails"]
    assert toy.order(1) == ["fails", "small", "big"]  # who goes first alternates
    # --scale sets every suite's `scale`; --set <suite>.<param> one suite's
    assert runner.with_params(Toy, {"scale": ["T"], "toy.size": [9]}).params == [["T"], [9]]
    assert runner.with_params(Toy, {"size": [3]}).params == [["a", "b"], [3]]
    dag = runner.with_params(runner.load(["dag"])[0], {"scale": ["S"]})
    assert dag.params[0] == ["M"]  # the DAG keeps its one scale unless set by name
    assert list(SUITES) == [cls.name for cls in runner.load()]


def test_the_runner_measures_each_name_in_its_own_process_and_keeps_failures(tmp_path):
    ctx = Context(data_dir=tmp_path, out_dir=tmp_path, repeat=2, log=lambda *a: None)
    report = {"scales": {}, "suites": []}
    result = runner.run_suite(Toy, ("a", 1), ctx, report)
    report["suites"].append(result)
    f = result["figures"]
    assert set(f) == {"time_big", "peakmem_big", "peakmem_small", "time_fails"}
    # the 200 MiB child reports its own peak, the small one not the test process's
    assert f["peakmem_big"]["value"] > 200
    assert f["peakmem_small"]["value"] < 100
    assert f["time_big"]["value"] > 0
    # time_big and peakmem_big read one process a repeat; small its own: 2 x 2 children ran
    assert (tmp_path / "calls-a-1").read_text() == "x" * 4
    assert f["time_fails"]["failed_runs"] == 2
    assert runner.failures(report) == ["toy time_fails (scale=a, size=1)"]


def test_an_unknown_suite_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--only", "single_window,nope"])
    assert e.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_parameter_values_are_typed():
    assert [runner.parse_value(v) for v in ("2000", "0.125", "warm")] == [2000, 0.125, "warm"]
