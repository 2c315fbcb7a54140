# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DATE ?= 2026-10-31

# The embedded default: Airflow state (SQLite metadata DB) and data under the repo, git-ignored.
export PYTHONPATH := $(CURDIR)
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM := 4
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN ?= sqlite:///$(CURDIR)/.airflow/airflow.db
export DETECTION_HOME ?= $(CURDIR)/.data
# Scheduler workers come from a forkserver that imports pandas/pyarrow/DuckDB/GE (include/detection/
# preload.py) and Airflow's task runner once, so a task process doesn't pay GE's ~2.5 s import
# or the runner's ~0.3 s (the list is bench/airflow_stack.py's PRELOAD; a test holds them equal).
export AIRFLOW__SCHEDULER__MP_START_METHOD := forkserver
export AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD := include.detection.preload,airflow.sdk.execution_time.task_runner,airflow.dag_processing.dagbag,airflow.plugins_manager,fastapi.responses,airflow.api_fastapi.core_api.security
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: install run test lint lint-fix bench bench-suite demo clean env airflow

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

demo: install
	@$(PY) -c "from include.detection import config; from detection_tools import lakegen; \
	lakegen.ensure_demo_lake(config.home() / 'lake')"

$(AIRFLOW_HOME)/airflow.db: | install
	@mkdir -p $(AIRFLOW_HOME)
	$(VENV)/bin/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)

# One daily interval: [DATE - 1d, DATE) scheduled at DATE 00:00 UTC; the rule looks back 2 days.
# `airflow dags test` through include/run_once.py: a DATE before DETECTION_START_DATE, a skipped or
# failed run exits non-zero saying why; an incomplete window fails at once (or, with
# DETECTION_COMPLETENESS_TIMEOUT set, the terminal says what it waits for and until when).
run: install demo $(AIRFLOW_HOME)/airflow.db
	@$(PY) -m include.run_once $(DATE) --log $(AIRFLOW_HOME)/last-run.log
	$(PY) -m include.detection alerts --format table

# Scheduled runs, back-fills (`airflow backfill create`) and the UI on http://127.0.0.1:8080
# (loopback only; AIRFLOW__API__HOST=0.0.0.0 make airflow to serve other hosts): API server,
# scheduler, DAG processor and triggerer on the embedded default, in the foreground. The login is
# Airflow's (simple auth manager: users and generated passwords in $(AIRFLOW_HOME)).
airflow: install demo $(AIRFLOW_HOME)/airflow.db
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash deploy/airflow-local.sh

# Lint and format first (pyproject.toml): `make lint-fix` repairs what ruff can.
test: install lint
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint-fix: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Issue #5's measurement: detect vs one DuckDB SQL query at S/M/L, the DAG at M (one process,
# cold and warm) and a back-fill through the real scheduler. First run generates ~12 GB of lakes.
# Then the alerts console's page time with 100,000 alerts in PostgreSQL (target < 300 ms).
BENCH_ARGS ?= --scales S,M,L --repeat 5 --dag --airflow
bench: install
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench.console --alerts 100000 --repeat 10

# The same measures as a suite (bench/suites: one class per concern, parameters, setup, one
# time_/peakmem_ method per figure), each in its own process, medians, the same tables; all of
# `make bench` but the back-fill through a real scheduler (--airflow), hence beside it.
SUITE_ARGS ?= --scale S,M,L --repeat 5
bench-suite: install
	$(PY) -m bench.suites $(SUITE_ARGS)

clean:
	rm -rf $(AIRFLOW_HOME) $(DETECTION_HOME) .pytest_cache

# `export $(make -s env)` puts the embedded Airflow configuration in your shell.
env:
	@for v in PYTHONPATH AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER AIRFLOW__CORE__PLUGINS_FOLDER \
	  AIRFLOW__CORE__LOAD_EXAMPLES AIRFLOW__CORE__PARALLELISM AIRFLOW__DATABASE__SQL_ALCHEMY_CONN DETECTION_HOME \
	  AIRFLOW__SCHEDULER__MP_START_METHOD AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD; \
	  do echo "$$v=$${!v}"; done
