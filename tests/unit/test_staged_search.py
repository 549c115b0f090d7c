"""Collect's pass 2 finds the staged lines of the rows that failed by searching for their row ids
(`prediction_lines.lines_of_rows`) when every row came back: it gives exactly those lines, in order, whatever
the lines hold and however they fall across reads; a part whose rows are not in order is read in full
instead, with no line given twice; and collect writes the same files either way."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import orjson
import pytest

from batchctl._context import Ops
from batchctl._files import postprocess, validate
from shared import joining, layout, prediction_lines, submit
from shared.lines import iter_lines
from shared.rowsums import RowSums
from tests.unit.fakes import make_pipeline, retryable
from tests.unit.flows import assert_accounting, lines, settle, upload


def _request(rnd: random.Random, row: int) -> dict:
    text = rnd.choice([
        "plain", "x" * rnd.randint(0, 400),
        f'{{"gbp_row":"r{row + 1}","request":{{}}}}',  # the row id text inside a string: escaped there
        f'\n{{"gbp_row":"r{row + 2}",',
    ])
    request = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if rnd.random() < 0.3:  # a nested object whose first key is the row id field: inside a line, never after \n
        request["x"] = {"gbp_row": f"r{row + 3}", "y": 1}
    return request


def _part(rnd: random.Random) -> tuple[list[int], list[bytes]]:
    rows = sorted(rnd.sample(range(1, 400), rnd.randint(1, 60)))
    staged = [joining.staged_line(row, _request(rnd, row), rnd.random() < 0.5, rnd.choice(["k", 7, None]))
              for row in rows]
    return rows, staged


def _search(data: bytes, wanted: list[int]) -> tuple[list[bytes], list[str]]:
    calls: list[str] = []

    def again():
        calls.append("again")
        return iter_lines(io.BytesIO(data))

    return list(prediction_lines.lines_of_rows(io.BytesIO(data), wanted, again)), calls


@pytest.mark.parametrize("seed", range(200))
def test_the_search_gives_exactly_the_lines_of_the_rows_asked_for(seed: int, monkeypatch: pytest.MonkeyPatch):
    rnd = random.Random(seed)
    monkeypatch.setattr(prediction_lines, "SEARCH_READ", rnd.choice([1, 7, 64, 300, 5000, 1 << 20]))
    rows, staged = _part(rnd)
    wanted = sorted(rnd.sample(rows, rnd.randint(0, len(rows))))
    got, calls = _search(b"".join(staged), wanted)
    assert got == [line.rstrip(b"\n") for row, line in zip(rows, staged, strict=True) if row in wanted]
    assert calls == []


@pytest.mark.parametrize("seed", range(100))
def test_a_part_out_of_order_or_without_a_row_asked_for_is_read_in_full_with_no_line_twice(
        seed: int, monkeypatch: pytest.MonkeyPatch):
    rnd = random.Random(seed)
    monkeypatch.setattr(prediction_lines, "SEARCH_READ", rnd.choice([1, 64, 5000, 1 << 20]))
    rows, staged = _part(rnd)
    wanted = sorted(rnd.sample(rows, rnd.randint(1, len(rows))))
    if len(rows) > 1 and rnd.random() < 0.7:
        order = list(zip(rows, staged, strict=True))
        while [r for r, _ in order] == rows:
            rnd.shuffle(order)
        rows, staged = [r for r, _ in order], [s for _, s in order]
    else:
        wanted = sorted({*wanted, 400 + rnd.randint(0, 5)})  # a row the part does not have
    got, _ = _search(b"".join(staged), wanted)
    got_rows = [prediction_lines.staged_row(line) for line in got]
    assert len(got_rows) == len(set(got_rows))  # no line twice
    assert set(got) <= {line.rstrip(b"\n") for line in staged}
    assert set(wanted) & set(rows) <= set(got_rows)


def _spy(monkeypatch: pytest.MonkeyPatch, search: bool) -> list[int]:
    """How many rows each pass 2 searched for; with `search` False, each reads every line instead."""
    searched: list[int] = []
    find = prediction_lines.lines_of_rows

    def spy(stream, rows, again):
        searched.append(len(rows))
        return find(stream, rows, again) if search else again()

    monkeypatch.setattr(prediction_lines, "lines_of_rows", spy)
    return searched


def _run(monkeypatch: pytest.MonkeyPatch, search: bool) -> tuple[dict, int]:
    """A file whose rows fail for good, or once and then succeed: every row comes back each attempt."""
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=2, MAX_ROWS_PER_JOB=30)
    searched = _spy(monkeypatch, search)
    bad = b'{"key":"bad","request":{"contents":[{"role":"tester","parts":[{"text":"x"}]}]}}'
    submit.handle_upload(p, upload(store, "incoming/s.jsonl", b"\n".join(lines(70) + [bad])))
    fails_once = {f"q{i}" for i in range(1, 71, 3)}

    def outcome(line):
        text = line["request"]["contents"][0]["parts"][0]["text"]
        if text in fails_once:
            fails_once.discard(text)
            return retryable()
        if text.endswith("7"):
            return 'Bad Request: {"error": {"code": 400, "message": "no", "status": "INVALID_ARGUMENT"}}'
        return None

    settle(p, vertex, publisher, outcome=outcome)
    assert_accounting(store, "s", list(range(1, 72)))
    files = {name: store.read_bytes("out-bucket", name) for name in store.list_names("out-bucket", "")
             if name.startswith(("results/", "errors/", "staging/"))}
    report = orjson.loads(store.read_bytes("out-bucket", layout.report_name("s")))
    files["rows"] = orjson.dumps(report["rows"])
    return files, sum(searched)


def test_collect_writes_the_same_files_searching_as_reading_every_line(monkeypatch: pytest.MonkeyPatch):
    searched, rows_searched = _run(monkeypatch, search=True)
    every, _ = _run(monkeypatch, search=False)
    assert searched == every
    assert rows_searched >= 20  # the failed rows of attempt 1 (permanent and retryable), part by part


# --- the row sums of a staged part put together outside submit (`batchctl postprocess`) --------------------------

@pytest.mark.parametrize("seed", range(150))
def test_staged_row_sums_count_each_line_once_however_it_falls_across_reads(seed: int):
    rnd = random.Random(seed)
    rows, staged = _part(rnd)
    others = [b'{"x":1}\n', b'{"gbp_row":"r%d",\n' % (10 ** 20), b'{"gbp_row":"r12"x\n', b' {"gbp_row":"r13",}\n',
              b'{"gbp_row":"r14"}\n', b'{"gbp_row":"r015","request":{}}\n']  # what staged_row reads or not
    for line in rnd.sample(others, rnd.randint(0, len(others))):
        staged.insert(rnd.randint(0, len(staged)), line)
    data = b"".join(staged)
    if rnd.random() < 0.3:
        data = data.rstrip(b"\n")  # a last line without a newline counts too
    expected = RowSums()
    for line in data.split(b"\n"):
        row = prediction_lines.staged_row(line)
        if row is not None and row < 10 ** 19:
            expected.add(row)
    sums = prediction_lines.StagedRowSums()
    at = 0
    while at < len(data):
        step = rnd.choice([1, 2, 13, 64, 65, 300, 5000])
        sums.feed(data[at:at + step])
        at += step
    got = sums.close()
    assert (got.count, got.value()) == (expected.count, expected.value())


def _postprocess(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, search: bool, parts: int) -> dict:
    """`batchctl validate` then `batchctl postprocess` of predictions where every row came back, a quarter
    failed: the files written, and how many rows pass 2 searched for."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines(40)) + b"\n")
    out = tmp_path / name
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        validate.main([str(source), "--out", str(out / "v"), "--json", "--max-rows", str(40 // parts)],
                      obj=Ops({}), standalone_mode=False)
    files = [Path(part["file"]) for part in json.loads(printed.getvalue())["parts"]]
    predictions = []
    for raw in b"".join(f.read_bytes() for f in files).splitlines():
        line = orjson.loads(raw)
        if line["gbp_row"].endswith(("3", "7")):
            line["status"] = 'Bad Request: {"error": {"code": 400, "message": "no", "status": "INVALID_ARGUMENT"}}'
        else:
            line.update(status="", response={"candidates": [{"content": {"parts": [{"text": "ok"}]}}]})
        predictions.append(orjson.dumps(line))
    random.Random(parts).shuffle(predictions)
    pred = tmp_path / f"{name}.jsonl"
    pred.write_bytes(b"\n".join(predictions) + b"\n")
    searched = _spy(monkeypatch, search)
    with contextlib.redirect_stdout(io.StringIO()):
        postprocess.main([str(pred), "--out", str(out / "p"), "--json", "--name", "t",
                          *[a for f in files for a in ("--staged", str(f))]], obj=Ops({}), standalone_mode=False)
    return {"searched": searched, **{d: (out / "p" / d / ("t.json" if d == "reports" else "t.jsonl")).read_bytes()
                                     for d in ("results", "errors", "reports")}}


@pytest.mark.parametrize("parts", [1, 2])
def test_postprocess_searches_for_the_failed_rows_and_writes_what_reading_every_line_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: int):
    # One staged part is linked into place, two are copied into one: both give the part's row sums.
    searched = _postprocess(tmp_path, "search", monkeypatch, True, parts)
    every = _postprocess(tmp_path, "every", monkeypatch, False, parts)
    assert searched.pop("searched") == [8] == every.pop("searched")
    searched["reports"], every["reports"] = _counts(searched["reports"]), _counts(every["reports"])
    assert searched == every
    assert searched["errors"].count(b"\n") == 8 and searched["results"].count(b"\n") == 32


def _counts(report: bytes) -> tuple:
    doc = orjson.loads(report)
    return doc["rows"], doc["tokens"]
