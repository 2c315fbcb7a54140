"""The alert store's schema is versioned and migrated in place (include/detection/schema.py,
Alembic): a store written by the code before versioning is upgraded keeping every alert and
delivery; a store newer than the code is refused; two processes open a new store at once."""

from __future__ import annotations

import importlib.util
import multiprocessing
import subprocess
import sys
import types

import pytest

from include.detection import schema
from include.detection.errors import UsageError
from include.detection.store import AlertStore
from tests.conftest import REPO
from tests.detection.test_store_postgres import W1, W2, executions
from tests.factories import ueba_row

UNVERSIONED = "b33f3ed"  # the last commit whose store had no schema version


def old_store_module():
    """include/detection/store.py as it was at UNVERSIONED, importable beside today's modules."""
    source = subprocess.run(
        ["git", "show", f"{UNVERSIONED}:include/detection/store.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("include.detection._store_unversioned", loader=None)
    module = types.ModuleType(spec.name)
    module.__package__ = "include.detection"
    sys.modules[spec.name] = module
    exec(compile(source, f"{UNVERSIONED}:store.py", "exec"), module.__dict__)
    return module


def test_a_store_made_before_versioning_is_upgraded_keeping_every_alert_and_delivery(store_url):
    old = old_store_module()
    first, second = (
        executions(3, [ueba_row()]),
        executions(3, [ueba_row(SourceIPLocation="Peru")], W2),
    )
    with old.AlertStore(store_url) as store:
        store.upsert(first)
        store.upsert(second)  # revision 2: merged evidence
        for alert in first[:2]:
            claim = store.claim(alert["id"], "file", "old-worker", 60)
            store.mark_delivered(
                alert["id"],
                "file",
                f"{alert['id']}.json",
                claim.revision,
                claim.fingerprint,
                "old-worker",
                "created",
            )
        store.mark_failed(first[2]["id"], "jira", "HTTP 503")
        store.record_run("rule", "AzureActivity", W1[1], 42, "passed")
        before = store.alerts(["file", "jira"])
        log = store.delivery_log()
    with AlertStore(store_url) as store:  # today's code: migrates on open
        after = store.alerts(["file", "jira"])
        assert after == before, "every alert, revision, ticket and error as it was"
        assert store.delivery_log() == log
        assert store.trailing_runs("rule", "AzureActivity", W2[1], 7) == [42]
        total, page = store.search({"ticket": "delivered"}, destinations=["file"])
        assert total == 2 and {a["id"] for a in page} == {a["id"] for a in first[:2]}
        assert store.search({"ticket": "failing"}, destinations=["file", "jira"])[0] == 1
        caller = first[0]["caller"].upper()
        assert store.search({"user": caller[:5]})[0] == 3, "the index columns were filled"
        with store._tx(write=False) as cur:
            assert schema.current(cur, store.is_postgres) == schema.HEAD


def test_a_store_newer_than_the_code_is_refused_with_a_message(store_url):
    with AlertStore(store_url) as store:
        with store._tx() as cur:
            cur.execute(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'")
    with pytest.raises(UsageError, match="schema version 9999, newer than this code"):
        AlertStore(store_url)


def test_head_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [schema.HEAD]
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == list(schema.KNOWN)


def _open(url, barrier):
    barrier.wait(10)
    with AlertStore(url) as store:
        store.upsert(executions(1, [ueba_row()]))


def test_two_processes_opening_a_new_store_migrate_it_once(store_url):
    fork = multiprocessing.get_context("fork")
    barrier = fork.Barrier(2)
    procs = [fork.Process(target=_open, args=(store_url, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with AlertStore(store_url) as store:
        assert len(store.alerts()) == 1
        with store._tx(write=False) as cur:
            cur.execute(f"SELECT count(*) FROM {schema.VERSION_TABLE}")
            assert cur.fetchone()[0] == 1
