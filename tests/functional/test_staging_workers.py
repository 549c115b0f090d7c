"""Submit's worker processes, for real: an input staged in blocks by two `shared.worker_process` processes writes
and counts what one pass writes; a worker that dies fails the staging retryably and the next one starts new
workers; a second staging while the workers are busy runs in its own thread; long lines are validated here; an
input whose stored bytes are damaged partway is staged up to the damage as one pass stages it."""

from __future__ import annotations

import json
import os
import random
import signal
import threading

import orjson
import pytest

from shared import layout, staging, workers
from shared.config import Config
from shared.pipeline import Pipeline
from shared.storage.gcs import GcsStore
from tests.unit.fakes import make_pipeline
from tests.unit.test_known_shapes import _file
from tests.unit.test_parallel_staging import _evolving_file
from tests.unit.test_unreadable_input import _damaging


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(staging, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(staging, "BLOCK_BYTES", 2000)
    monkeypatch.setattr(staging, "RUNS_TAKE_SHARE", 2.0)  # workers, whatever runs would take (tested apart below)
    workers.discard()  # an earlier test in this process may have left the instance's workers (they are kept)
    yield
    workers.discard()


def _staged(data: bytes, processes: int, run: str = "r1") -> tuple:
    p, store, _, _ = make_pipeline(MAX_BYTES_PER_JOB=4096, MAX_ROWS_PER_JOB=90, SUBMIT_WORKERS=processes)
    generation = store.write_bytes("in-bucket", "incoming/q.jsonl", data)
    staged = staging.stage(p, run, "in-bucket", "incoming/q.jsonl", generation, len(data))
    names = [layout.validation_errors_name(run), *(layout.staged_name(run, part) for part in staged.parts)]
    return staged.total, staged.parts, dict(staged.failed_by_reason), staged.samples, \
        [store.read_bytes(p.work_bucket, name) for name in names]


def _input(seed: int) -> bytes:
    rnd = random.Random(seed)
    return _evolving_file(rnd, 1500) + b"\n" + _file(rnd, 500, hostile=0.1)


@pytest.mark.parametrize("seed", [1, 2])
def test_two_workers_stage_what_one_pass_stages(seed: int):
    data = _input(seed)
    one = _staged(data, 1)
    assert workers._TEAM is None
    assert _staged(data, 2) == one
    team = workers._TEAM
    assert team is not None and all(proc.poll() is None for proc in team.procs)  # kept for the next input
    assert _staged(data, 2) == one
    assert workers._TEAM is team


def test_two_workers_stage_from_and_to_the_local_cloud_storage_what_one_pass_stages(storage_client, bucket):
    data = _input(5)
    p, _, vertex, publisher = make_pipeline()
    store = GcsStore(storage_client)
    generation = store.write_bytes(bucket.name, "incoming/q.jsonl", data)

    def staged(processes: int, run: str) -> tuple:
        config = Config.from_env({"GOOGLE_CLOUD_PROJECT": "p", "INPUT_BUCKET": bucket.name,
                                  "OUTPUT_BUCKET": bucket.name, "MAX_ROWS_PER_JOB": "90",
                                  "SUBMIT_WORKERS": str(processes)})
        here = Pipeline(config, store, vertex, publisher)
        got = staging.stage(here, run, bucket.name, "incoming/q.jsonl", generation, len(data))
        names = [layout.validation_errors_name(run), *(layout.staged_name(run, part) for part in got.parts)]
        return got.total, got.failed_by_reason, got.samples, [store.read_bytes(bucket.name, n) for n in names]

    one = staged(1, "r1")
    assert staged(2, "r2") == one and workers._TEAM is not None


def test_a_worker_that_dies_fails_the_staging_retryably_and_new_workers_take_over(monkeypatch: pytest.MonkeyPatch):
    data = _input(3)
    one = _staged(data, 1)
    real = staging._Direct.block

    def block_then_kill(self, block):
        real(self, block)
        for proc in workers._TEAM.procs:
            os.kill(proc.pid, signal.SIGKILL)

    with monkeypatch.context() as m:
        m.setattr(staging._Direct, "block", block_then_kill)
        with pytest.raises(workers.WorkerLost):
            _staged(data, 2)
    assert workers._TEAM is None and not workers.team_lock.locked()
    assert _staged(data, 2) == one


def test_a_second_staging_while_the_workers_are_busy_runs_in_its_own_thread(monkeypatch: pytest.MonkeyPatch):
    data = _input(4)
    one = _staged(data, 1)
    inside, leave = threading.Event(), threading.Event()
    real = staging._Direct.block

    def held(self, block):
        inside.set()
        assert leave.wait(30)
        real(self, block)

    monkeypatch.setattr(staging._Direct, "block", held)
    got: list = []
    first = threading.Thread(target=lambda: got.append(_staged(data, 2, "r2")))
    first.start()
    assert inside.wait(30) and workers.team_lock.locked()
    monkeypatch.setattr(staging._Direct, "block", lambda self, block: pytest.fail("the second takes no block"))
    assert _staged(data, 2) == one  # meanwhile, in one pass
    monkeypatch.setattr(staging._Direct, "block", real)
    leave.set()
    first.join(60)
    assert got and got[0][0] == one[0] and got[0][2:4] == one[2:4]


def test_long_lines_are_validated_here():
    line = orjson.dumps({"key": "k", "request": {"contents": [{"parts": [{"text": "x" * 3000}]}]}})
    data = b"\n".join([line] * 200)
    assert _staged(data, 2) == _staged(data, 1)
    assert workers._TEAM is None


@pytest.mark.parametrize(("shapes", "counted", "spelling", "team"),
                         [(1, True, "plain", False), (3, True, "plain", False), (3, False, "plain", False),
                          (1, True, "quotes", False), (1, True, "unicode", False), (1, True, "slashes", True)],
                         ids=["one-shape", "shapes-in-turn", "shapes-of-one-count-in-turn", "quotes-in-prompts",
                              "unicode-escapes", "escaped-slashes"])
def test_short_lines_go_to_the_workers_unless_runs_take_them(shapes: int, counted: bool, spelling: str, team: bool,
                                                             monkeypatch: pytest.MonkeyPatch):
    # Lines of one shape, and of several shapes in turn (with their own counts of quotes, or one count and a
    # different key in each), are taken in runs, with escaped quotes in their prompts, or written with `\u` escapes
    # (json.dumps's default), faster here than handed out; lines with escaped slashes (`\/`, which orjson writes
    # as `/`, so known shapes do not take them) go to the workers, which pay for lines staged one by one.
    monkeypatch.setattr(staging, "RUNS_TAKE_SHARE", 0.5)
    monkeypatch.setattr(staging, "READ_SIZE", 64 * 1024)
    rnd = random.Random(3)

    def extra(row: int) -> dict:
        if counted:
            return {"systemInstruction": {"parts": [{"text": "be brief"}]}} if row % shapes == 1 else \
                {"generationConfig": {"temperature": 0.5}} if row % shapes == 2 else {}
        return {"generationConfig": {["temperature", "topP", "topK"][row % shapes]: 0.5}}

    words = [{"quotes": '"a"', "unicode": "\u00e9", "slashes": "a/b"}.get(spelling, "a"), "b", "c"]

    def dumps(line: dict) -> bytes:
        if spelling == "unicode":
            return json.dumps(line, separators=(",", ":")).encode()
        return orjson.dumps(line).replace(b"/", b"\\/")  # (no slash but in the prompts)

    data = b"\n".join(dumps({"key": f"q-{row}", "request": {
        "contents": [{"role": "user", "parts": [{"text": " ".join(rnd.choices(words, k=20))}]}],
        **extra(row)}}) for row in range(3000))
    one = _staged(data, 1)
    assert _staged(data, 2) == one and (workers._TEAM is not None) == team


def test_workers_already_running_take_short_lines_that_runs_take_too(monkeypatch: pytest.MonkeyPatch):
    # Started for an input whose lines go one by one, the instance's workers stay; a later input of short lines of
    # one shape, which runs take and a fresh instance stages here, goes to them (each keeping the shapes it learnt
    # from block to block), and writes what one pass writes. Lines of several shapes in turn, after it, too.
    monkeypatch.setattr(staging, "RUNS_TAKE_SHARE", 0.5)
    monkeypatch.setattr(staging, "READ_SIZE", 64 * 1024)
    rnd = random.Random(4)
    one_shape = b"\n".join(orjson.dumps({"key": f"q-{row}", "request": {"contents": [
        {"role": "user", "parts": [{"text": " ".join(rnd.choices("abcdef", k=20))}]}]}}) for row in range(3000))
    shapes = b"\n".join(orjson.dumps({"key": f"q-{row}", "request": {"contents": [
        {"role": "user", "parts": [{"text": " ".join(rnd.choices("abcdef", k=20))}]}],
        "generationConfig": {["temperature", "topP", "topK"][row % 3]: 0.5}}}) for row in range(3000))
    expected = [_staged(data, 1) for data in (one_shape, shapes)]
    assert _staged(one_shape, 2) == expected[0] and workers._TEAM is None  # no workers running: runs, here
    _staged(_input(7), 2)  # lines one by one: the workers start
    team = workers._TEAM
    assert team is not None
    taken = []
    real = staging._Direct.block
    monkeypatch.setattr(staging._Direct, "block", lambda self, block: taken.append(block.rows) or real(self, block))
    assert [_staged(data, 2) for data in (one_shape, shapes)] == expected
    assert workers._TEAM is team and sum(map(len, taken)) == 6000  # every row through a worker's block


def test_an_input_damaged_partway_is_staged_by_the_workers_as_in_one_pass():
    data = _input(6)
    good = data.index(b"\n", len(data) // 2) + 40  # the damage falls inside a line, past many blocks

    def staged(processes: int) -> tuple:
        p, store, _, _ = make_pipeline(MAX_BYTES_PER_JOB=4096, MAX_ROWS_PER_JOB=90, SUBMIT_WORKERS=processes)
        _damaging(store, good)
        generation = store.write_bytes("in-bucket", "incoming/z.jsonl", data)
        got = staging.stage(p, "r1", "in-bucket", "incoming/z.jsonl", generation, len(data))
        names = [layout.validation_errors_name("r1"), *(layout.staged_name("r1", part) for part in got.parts)]
        return got.total, dict(got.failed_by_reason), got.unreadable, [store.read_bytes(p.work_bucket, n)
                                                                       for n in names]

    one = staged(1)
    assert staged(2) == one and workers._TEAM is not None
    last = orjson.loads(one[3][0].splitlines()[-1])
    assert last["row"] == data[:good].count(b"\n") + 2 and one[1]["unreadable_input"] == 1 and one[2]
