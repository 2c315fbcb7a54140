"""Issue #14 point 4: `make test` lints and checks formatting first (ruff, pyproject.toml), so a
long line, an unsorted import or an unformatted file fails the build."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

RUFF = Path(sys.executable).with_name("ruff")


def _make_dry_run(target: str) -> str:
    return subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_make_test_runs_ruff_check_and_format_check_before_pytest():
    commands = _make_dry_run("test").splitlines()
    ruff = [i for i, c in enumerate(commands) if "ruff" in c]
    pytest_at = next(i for i, c in enumerate(commands) if "pytest" in c)
    assert any(re.search(r"ruff check \.$", commands[i]) for i in ruff)
    assert any(re.search(r"ruff format --check \.$", commands[i]) for i in ruff)
    assert ruff and max(ruff) < pytest_at


BAD = {  # source, the command that must refuse it
    "a line past 100 columns": ('X = "' + "x" * 120 + '"\n', "check"),
    "imports out of order": ("import sys\nimport os\n\nprint(os, sys)\n", "check"),
    "an unused import": ("import os\n", "check"),
    "unformatted code": ("x = {  'a':1 }\n", "format"),
}


@pytest.mark.parametrize("source, refused_by", BAD.values(), ids=BAD.keys())
def test_the_projects_ruff_settings_refuse(tmp_path, source, refused_by):
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "bad.py").write_text(source)
    args = ["check", "bad.py"] if refused_by == "check" else ["format", "--check", "bad.py"]
    assert subprocess.run([RUFF, *args], cwd=tmp_path, capture_output=True).returncode == 1


def test_a_clean_file_passes(tmp_path):
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "good.py").write_text('import os\nimport sys\n\nprint(os, sys, "ok")\n')
    for args in (["check", "good.py"], ["format", "--check", "good.py"]):
        assert subprocess.run([RUFF, *args], cwd=tmp_path).returncode == 0
