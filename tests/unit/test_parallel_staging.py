"""Staging in blocks validated side by side writes and counts exactly what one pass over the lines writes.

A block is validated against the file's schema as it stood when the block was sent, which may be older than the
schema its first line meets in one pass (`shared/staging.py`). These tests stage the same file in one pass and in
blocks of a few lines, and compare everything staging wrote (every part file, the errors file) and counted
(parts, rows, reasons, samples). The blocks run in this process through a stand-in for the worker team that
behaves as the real one does where it matters: tasks are drawn (and pickled, as the pipe carries them) several
ahead of the reply being read, so later blocks see a schema earlier blocks have not yet changed, and each reply
comes back through a pickle too. The files are made to defeat it: keys that appear late and with other types in
later blocks, columns only null fills, numeric-looking strings, a small column limit, lines too long for a block,
and the hostile files of tests/unit/test_known_shapes.py. tests/functional/test_staging_workers.py runs the real
worker processes.
"""

from __future__ import annotations

import functools
import pickle
import random
from collections import Counter, deque

import orjson
import pytest

from shared import layout, staging, validation, workers
from tests.unit.fakes import make_pipeline
from tests.unit.test_known_shapes import _file


class _Team:
    """`workers.Team.map` in this process: `ahead` tasks drawn and pickled before the first reply is read."""

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead
        self.tasks = 0

    def map(self, tasks):
        todo = iter(tasks)
        window: deque[bytes] = deque()
        for task in todo:
            window.append(pickle.dumps(task, protocol=5))  # the snapshot is taken when the task is drawn
            if len(window) >= self.ahead:
                break
        while window:
            function, args = pickle.loads(window.popleft())
            self.tasks += 1
            yield pickle.loads(pickle.dumps(function(*args), protocol=5))
            task = next(todo, None)
            if task is not None:
                window.append(pickle.dumps(task, protocol=5))


def _written(data: bytes, monkeypatch: pytest.MonkeyPatch, *, team: _Team | None, block_bytes: int = 300,
             max_columns: int | None = None, long_line: int | None = None, redone: list | None = None) -> tuple:
    """What staging `data` wrote and counted: in one pass (team None), or in blocks through `team`."""
    with monkeypatch.context() as m:
        if max_columns is not None:
            m.setattr(staging, "LineValidator", functools.partial(validation.LineValidator, max_columns=max_columns))
        if team is not None:
            m.setattr(staging, "PARALLEL_MIN_BYTES", 0)
            m.setattr(staging, "RUNS_TAKE_SHARE", 2.0)  # the blocks go to the team, whatever runs would take
            m.setattr(staging, "SHORT_LINE_BYTES", 1 << 30)
            m.setattr(staging, "BLOCK_BYTES", block_bytes)
            m.setattr(workers, "team", lambda size, preload: team)
            if long_line is not None:
                m.setattr(staging, "LONG_LINE_BYTES", long_line)
            if redone is not None:
                real = staging._stage_lines
                def spy(numbered, validator, shapes, max_bytes, sink):  # lines staged here, not by a worker
                    if isinstance(sink, staging._Direct):
                        redone.append(1)
                    return real(numbered, validator, shapes, max_bytes, sink)
                m.setattr(staging, "_stage_lines", spy)
        p, store, _, _ = make_pipeline(MAX_BYTES_PER_JOB=2048, MAX_ROWS_PER_JOB=37, SUBMIT_WORKERS=2)
        generation = store.write_bytes("in-bucket", "incoming/q.jsonl", data)
        staged = staging.stage(p, "r1", "in-bucket", "incoming/q.jsonl", generation, len(data))
    names = [layout.validation_errors_name("r1"), *(layout.staged_name("r1", part) for part in staged.parts)]
    written = {name: store.read_bytes(p.work_bucket, name) for name in names}
    return staged.total, staged.parts, dict(staged.failed_by_reason), staged.samples, written


OPTIONAL = [  # (key path under "request", values): keys that appear late, some with more than one type
    (("generationConfig", "temperature"), [0.2, 1, "0.5", None]),
    (("generationConfig", "topK"), [3, "three", None]),
    (("generationConfig", "stopSequences"), [["a"], [], "a", None]),
    (("labels", "team"), ["a", "007", 7, None]),
    (("labels", "tier"), [None]),
    (("cachedContent",), ["c", None, {"x": 1}]),
    (("toolConfig", "mode"), ["AUTO", {"m": True}, None]),
    (("extra",), [{"a": {"b": [1, 2]}}, {"a": {"b": "x"}}, {"a": None}, {}]),
]


def _evolving_file(rnd: random.Random, rows: int) -> bytes:
    """Lines of one plain shape, each with a few of OPTIONAL's keys, more of them further down the file, and
    per-row label keys now and then (a column each)."""
    lines = []
    for row in range(rows):
        request: dict = {"contents": [{"role": rnd.choice(["user", "model"]), "parts": [{"text": f"item {row}"}]}]}
        for path, values in rnd.sample(OPTIONAL, rnd.randint(0, min(len(OPTIONAL), row * 4 // rows + 1))):
            node = request
            for key in path[:-1]:
                node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
            node[path[-1]] = rnd.choice(values)
        if rnd.random() < 0.05:
            request.setdefault("labels", {})[f"k{rnd.randrange(60)}"] = "v"
        line = orjson.dumps({"key": rnd.choice([f"q{row}", row, None]), "request": request})
        if rnd.random() < 0.03:
            line = line[:-2]  # not JSON
        lines.append(line + rnd.choice([b"", b"\r"]) if rnd.random() < 0.1 else line)
        if rnd.random() < 0.03:
            lines.append(b"  ")
    return b"\n".join(lines) + rnd.choice([b"", b"\n"])


@pytest.mark.parametrize("ahead", [1, 2, 6])
@pytest.mark.parametrize("seed", range(12))
def test_blocks_stage_what_one_pass_stages_while_the_schema_changes(seed: int, ahead: int,
                                                                    monkeypatch: pytest.MonkeyPatch):
    rnd = random.Random(seed)
    data = _evolving_file(rnd, 400)
    columns = rnd.choice([None, 30])  # a small column limit: lines past it are refused, by count
    one = _written(data, monkeypatch, team=None, max_columns=columns)
    team = _Team(ahead)
    assert _written(data, monkeypatch, team=team, block_bytes=rnd.choice([200, 900, 5000]), max_columns=columns) == one
    assert team.tasks > 3


@pytest.mark.parametrize("seed", range(20))
def test_blocks_stage_what_one_pass_stages_on_hostile_files(seed: int, monkeypatch: pytest.MonkeyPatch):
    rnd = random.Random(100 + seed)
    data = _file(rnd, 300, hostile=rnd.choice([0.02, 0.1, 0.4]))
    assert _written(data, monkeypatch, team=_Team(rnd.choice([1, 4])), block_bytes=rnd.choice([150, 1500])) == \
        _written(data, monkeypatch, team=None)


def test_a_block_that_saw_an_older_schema_is_taken_when_the_file_has_what_it_added(monkeypatch: pytest.MonkeyPatch):
    # Every block adds the same keys to the schema it was sent with; only the first one's are news to the file.
    line = orjson.dumps({"key": "k", "request": {"contents": [{"parts": [{"text": "hi"}]}],
                                                 "generationConfig": {"temperature": 0.5}}})
    data = b"\n".join([line] * 200)
    redone: list = []
    team = _Team(6)
    assert _written(data, monkeypatch, team=team, redone=redone) == _written(data, monkeypatch, team=None)
    assert team.tasks > 6 and not redone


def test_a_block_that_saw_an_older_schema_and_conflicts_with_the_file_is_validated_again(
        monkeypatch: pytest.MonkeyPatch):
    # The key's type comes from line 1 in one pass; blocks sent before line 1's block came back fix it otherwise.
    first = orjson.dumps({"request": {"contents": [{"parts": [{"text": "a"}]}], "x": "text"}})
    later = orjson.dumps({"request": {"contents": [{"parts": [{"text": "b"}]}], "x": 7}})
    data = b"\n".join([first] + [later] * 100)
    redone: list = []
    one = _written(data, monkeypatch, team=None)
    assert one[2] == {"type_conflict": 100} and "first seen as string on line 1" in one[3][0]
    assert _written(data, monkeypatch, team=_Team(6), redone=redone) == one
    assert redone


def test_a_line_too_long_for_a_block_has_the_rest_of_the_file_staged_in_one_pass(monkeypatch: pytest.MonkeyPatch):
    rnd = random.Random(9)
    lines = _evolving_file(rnd, 300).split(b"\n")
    lines[150] = orjson.dumps({"request": {"contents": [{"parts": [{"text": "x" * 3000}]}]}})
    lines[151] = b"y" * 5000  # no newline for a long way, and not JSON
    data = b"\n".join(lines)
    redone: list = []
    team = _Team(2)
    got = _written(data, monkeypatch, team=team, block_bytes=400, long_line=2500, redone=redone)
    assert got == _written(data, monkeypatch, team=None)
    assert team.tasks > 5 and redone  # blocks up to line 150, then one pass


def test_a_block_crosses_the_pipe_with_its_lines_out_of_band():
    good = b'{"request":{"contents":[{"parts":[{"text":"a"}]}]}}\n'
    block = staging.stage_block(5, bytearray(good + b"\nnot json\n" + good * 200), validation.LineValidator(), 1 << 20)
    assert list(block.rows) == [5, *range(8, 208)] and block.by_reason == Counter(invalid_json=1)
    assert block.validator is not None and block.samples[0].startswith("line 7: ")
    buffers: list = []
    data = pickle.dumps(block, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < len(block.staged)  # the staged lines follow the pickle
    got = pickle.loads(data, buffers=[bytearray(b.raw()) for b in buffers])
    assert (got.staged, list(got.rows), got.errors, got.by_reason, got.added) == \
        (block.staged, list(block.rows), block.errors, block.by_reason, block.added)
    assert got.validator.schema == block.validator.schema


def test_a_validator_crosses_the_pipe_and_compares_types_as_the_one_it_came_from():
    v = validation.LineValidator()
    assert isinstance(v.validate(1, orjson.dumps({"request": {"contents": [{"parts": [{"text": "a"}]}],
                                                             "x": {"y": 1, "z": None}}})), validation.Accepted)
    got = pickle.loads(pickle.dumps(v, protocol=5))
    assert got.schema == v.schema and got.changes == v.changes and got.added() == []
    verdict = got.validate(2, orjson.dumps({"request": {"contents": [{"parts": [{"text": "b"}]}], "x": {"y": 2}}}))
    assert isinstance(verdict, validation.Accepted) and got.added() == []  # same types: nothing new
    assert isinstance(got.validate(3, orjson.dumps({"request": {"contents": [{"parts": [{"text": "b"}]}],
                                                               "x": {"y": "no"}}})), validation.Rejected)
    assert got.validate(4, orjson.dumps({"request": {"contents": [{"parts": [{"text": "c"}]}],
                                                     "w": None}})).row == 4
    assert got.added() == [("request.w", None)] and got.changes == v.changes + 1
    assert v.holds([("request.x.z", None), ("request.x.y", "number")]) and not v.holds(got.added())
    assert not v.holds([("request.x.y", "string")])


def test_submit_hands_the_uploads_size_on_and_a_run_staged_in_blocks_accounts_for_every_row(
        monkeypatch: pytest.MonkeyPatch):
    from shared import submit
    from shared.events import StorageObjectEvent
    from tests.unit.flows import assert_accounting, settle

    team = _Team(4)
    monkeypatch.setattr(staging, "PARALLEL_MIN_BYTES", 1000)
    monkeypatch.setattr(staging, "SHORT_LINE_BYTES", 1 << 30)
    monkeypatch.setattr(staging, "RUNS_TAKE_SHARE", 2.0)
    monkeypatch.setattr(staging, "BLOCK_BYTES", 500)
    monkeypatch.setattr(workers, "team", lambda size, preload: team)
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=40, SUBMIT_WORKERS=2)
    body = _evolving_file(random.Random(3), 150)
    generation = store.put("in-bucket", "incoming/blocks.jsonl", body)
    event = StorageObjectEvent(bucket="in-bucket", name="incoming/blocks.jsonl", generation=generation,
                               size=len(body))
    assert submit.handle_upload(p, event) == "staged"
    assert team.tasks > 10
    settle(p, vertex, publisher)
    rows = [row for row, line in enumerate(body.split(b"\n"), 1) if line.strip()]
    report = assert_accounting(store, "blocks", rows)
    assert report["rows"]["total"] == len(rows)


def _lines_with(value: object, rows: range) -> bytes:
    return b"".join(orjson.dumps({"request": {"contents": [{"parts": [{"text": f"question {row}"}]}],
                                              "x": {"y": value}}}) + b"\n" for row in rows)


def _schema_with(value: object) -> validation.LineValidator:
    """A file's schema once a line with `value` at request.x.y was accepted."""
    schema = validation.LineValidator()
    assert isinstance(schema.validate(1, _lines_with(value, range(1)).rstrip()), validation.Accepted)
    return schema


def test_a_worker_keeps_the_shapes_of_a_pass_for_its_next_block_only_where_that_block_schema_allows(monkeypatch):
    """Shapes a worker learnt from one block serve the pass's next blocks whose schema has every key path they were
    learnt within. A block sent with a schema that fixed a path another way (an earlier block taken first, the one
    the shapes came from validated again in the parent) is staged with shapes of its own, and refuses what the
    full path refuses."""
    monkeypatch.setattr(staging, "_kept", None)
    fresh = functools.partial(staging.stage_block, max_bytes=1 << 20)
    numbers = _lines_with(7, range(300))
    learnt = fresh(1, numbers, validation.LineValidator(), pass_id="p")
    assert len(learnt.rows) == 300 and learnt.added
    shapes = staging._kept[1]

    # The same pass, a schema that holds what the shapes were learnt within: they are used, and stage the same.
    again = fresh(301, numbers, _schema_with(8), pass_id="p")
    assert staging._kept[1] is shapes
    alone = staging.stage_block(301, numbers, _schema_with(8), 1 << 20)
    assert (again.staged, list(again.rows), again.errors) == (alone.staged, list(alone.rows), alone.errors)

    # The same pass, request.x.y a string in the block's schema: the kept shapes would accept its lines.
    conflict = fresh(601, numbers, _schema_with("seven"), pass_id="p")
    assert staging._kept[1] is not shapes
    assert not conflict.rows and conflict.by_reason == Counter({validation.TYPE_CONFLICT: 300})

    # Another pass never meets this one's shapes.
    shapes = staging._kept[1]
    fresh(1, numbers, _schema_with(8), pass_id="q")
    assert staging._kept[1] is not shapes and staging._kept[0] == "q"


def test_a_block_that_fails_leaves_no_shapes_behind(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(staging, "_kept", None)
    staging.stage_block(1, _lines_with(7, range(50)), validation.LineValidator(), 1 << 20, "p")
    assert staging._kept is not None
    with pytest.raises(TypeError):
        staging.stage_block(51, None, validation.LineValidator(), 1 << 20, "p")
    assert staging._kept is None
