"""One error family: every exception the library defines derives from DetectionError and carries
a stable exit code, so the CLI maps errors to exit codes in one place (cli.main)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import include.detection as package
from include.detection import cli
from include.detection.errors import DetectionError

# Control flow inside one module, never raised out of it (each is caught and re-raised as a
# DetectionError by the module that defines it).
INTERNAL = {"include.detection.remote.base.QueryFailed"}


def library_exceptions():
    found = {}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


EXCEPTIONS = library_exceptions()
RAISED = sorted(set(EXCEPTIONS) - INTERNAL)


@pytest.mark.parametrize("name", RAISED, ids=RAISED)
def test_every_library_error_is_a_detection_error_with_an_exit_code(name):
    cls = EXCEPTIONS[name]
    assert issubclass(cls, DetectionError), f"{name} is outside the error family"
    assert isinstance(cls.exit_code, int) and cls.exit_code in (1, 2, 3, 4)


def test_the_internal_allow_list_names_existing_classes_only():
    assert INTERNAL <= set(EXCEPTIONS)


def test_the_family_is_found_at_all():
    assert {
        "include.detection.errors.SourceError",
        "include.detection.destinations.base.DestinationError",
    } <= set(EXCEPTIONS)


def test_the_cli_maps_any_family_error_to_its_exit_code(monkeypatch, capsys):
    class Custom(DetectionError):
        exit_code = 4

    def boom(args):
        raise Custom("the printer is on fire")

    monkeypatch.setattr(cli, "_alerts", boom)
    assert cli.main(["alerts"]) == 4
    assert "error: the printer is on fire" in capsys.readouterr().err
