"""What a function logs, and answers, for each kind of exception its core raises (`shared/handlers.py`): every
exception class of the pipeline, found by walking the hierarchy, so a class added later is covered too.

A transient error heals by itself on redelivery, so it is a WARNING; an operator alerting on ERROR hears only of
bad input, bugs and outages."""

from __future__ import annotations

import importlib
import pkgutil

import orjson
import pytest

import shared
from shared import handlers
from shared.errors import ConfigError, PermanentError, PipelineError, TransientError


def _every_subclass(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_every_subclass(sub)]
    return found


def _pipeline_errors() -> list[type]:
    for module in pkgutil.walk_packages(shared.__path__, "shared."):
        importlib.import_module(module.name)
    return sorted(set(_every_subclass(PipelineError)) | {PipelineError}, key=lambda c: (c.__module__, c.__name__))


def _raised(cls: type) -> BaseException:
    exc = cls.__new__(cls)
    Exception.__init__(exc, "boom")
    return exc


def _logged(out: str) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]


def _answer(exc: BaseException, capsys) -> tuple[str, dict]:
    """("raised" or "acknowledged", the one log entry)."""
    capsys.readouterr()

    def fail():
        raise exc

    try:
        handlers._guard("collect", fail)
        answer = "acknowledged"
    except type(exc):
        answer = "raised"
    entries = _logged(capsys.readouterr().out)
    assert len(entries) == 1, entries
    return answer, entries[0]


@pytest.mark.parametrize("cls", _pipeline_errors(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_each_pipeline_error_gets_its_answer_and_severity(cls, capsys):
    answer, entry = _answer(_raised(cls), capsys)
    assert entry["error"] == cls.__name__
    if issubclass(cls, ConfigError):
        assert (answer, entry["severity"], entry["event"]) == ("raised", "CRITICAL", "collect.misconfigured")
    elif issubclass(cls, PermanentError):
        assert (answer, entry["severity"], entry["event"]) == ("acknowledged", "ERROR", "collect.rejected")
    elif issubclass(cls, TransientError):
        assert (answer, entry["severity"], entry["event"]) == ("raised", "WARNING", "collect.failed")
        assert "will be retried" in entry["message"]
    else:  # a base class no code raises as it is: unexpected
        assert (answer, entry["severity"], entry["event"]) == ("raised", "ERROR", "collect.failed")


def test_the_transient_classes_include_what_the_pipeline_meets():
    names = {c.__name__ for c in _pipeline_errors() if issubclass(c, TransientError)}
    assert {"TransientError", "StateConflictError", "VertexTransientError", "OutputsBusy", "WorkerLost"} <= names


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("k"), ValueError("v"), OSError("disk")],
                         ids=lambda e: type(e).__name__)
def test_an_unexpected_exception_is_an_error_and_is_redelivered(exc, capsys):
    answer, entry = _answer(exc, capsys)
    assert (answer, entry["severity"], entry["event"]) == ("raised", "ERROR", "collect.failed")
