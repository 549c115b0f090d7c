"""A large job's rows answered by the emulator's worker processes (`local/vertex/_answers.py`) are the rows its
own thread answers: every recorded job of tests/unit/test_vertex_rows.py, sent to the pool whatever its size and
in chunks of three rows (so chunks end mid-export, at a fault and at a cancel), outputs and decides what was
recorded, rows that need the job's storage (`fileData` objects) included."""

from __future__ import annotations

import json

import pytest

from local.vertex import _answers, _runner
from local.vertex._answers import AnswerPool
from tests.unit.test_vertex_rows import GOLDEN, _run, _scenarios

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def pool():
    answers = AnswerPool(2)
    yield answers
    answers.close()


@pytest.mark.parametrize("name", sorted(_scenarios()))
def test_a_job_answered_by_worker_processes_outputs_and_decides_what_was_recorded(
        golden, pool: AnswerPool, monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.setattr(_runner, "POOL_MIN_ROWS", 0)
    monkeypatch.setattr(_answers, "CHUNK_ROWS", 3)
    used, here = [], []
    answered, answer_here = pool.answered, _runner._JobRun.answer
    monkeypatch.setattr(pool, "answered", lambda *args: used.append(True) or answered(*args))
    monkeypatch.setattr(_runner._JobRun, "answer", lambda *args: here.append(args[2]) or answer_here(*args))
    assert _run(*_scenarios()[name], pool=pool) == golden[name]
    assert bool(used) == bool(golden[name]["shards"])  # every job that exported rows had them from the pool
    assert len(here) <= 3  # but the rows whose fileData object is looked up (three, in the awkward jobs)
