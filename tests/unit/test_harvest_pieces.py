"""Collect's pass 1 in pieces: any cut of the predictions into spans, merged in order, gives exactly what one
pass over every line gives (result bytes, rows seen, failures, counts, tokens, unjoinable lines)."""

from __future__ import annotations

import io
import json
import random
from array import array

import orjson
import pytest

from shared import harvest, joining, workers
from shared.lines import iter_lines
from shared.storage.memory import MemoryStore

OK = {"candidates": [{"content": {"parts": [{"text": "hi \u00e9"}]}, "finishReason": "STOP"}],
      "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}}
FAILED = 'Too Many Requests: {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}'
BAD = 'Bad Request: {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}'


def _line(rnd: random.Random, row: int) -> bytes:
    kind = rnd.random()
    if kind < 0.04:
        return rnd.choice([b"not json", b"", b"   ", b'{"status":""}', b"[1]", b'{"gbp_row":"x1"}'])
    text = "x" * rnd.randint(0, 300)
    record = {"status": "", "gbp_row": f"r{row}", "request": {"contents": [{"parts": [{"text": text}]}]}}
    if rnd.random() < 0.5:
        record["gbp_key"] = "k" + orjson.dumps(rnd.choice(["a", 7, None, {"n": [1, 2.5]}])).decode()
    if kind < 0.25:
        record["status"] = rnd.choice([FAILED, BAD])
    else:
        record["response"] = OK | {"modelVersion": f"m{row % 3}"}
    return orjson.dumps(record)


def _predictions(seed: int, rows: int = 300) -> bytes:
    """Rows in random order; about a third of them exported again (success or failure, before or after)."""
    rnd = random.Random(seed)
    order = [rnd.randint(1, rows) for _ in range(rows + rows // 3)]
    ending = rnd.choice([b"\n", b"\r\n"])
    body = ending.join(_line(rnd, row) for row in order)
    return body + (ending if rnd.random() < 0.5 else b"")  # with and without a newline at the end


def _merged(store: MemoryStore, cuts: list[harvest.Span]) -> tuple:
    out: list[bytes] = []
    merged = harvest.Harvest(out.append)
    unjoinable = [m for piece in harvest.pieces(store, "b", cuts, 2, workers=1) for m in merged.add(piece)]
    return b"".join(out), merged.seen, merged.failures, merged.succeeded, merged.tokens, unjoinable


@pytest.mark.parametrize("seed", range(8))
def test_any_cut_into_pieces_gives_what_one_pass_gives(seed):
    body = _predictions(seed)
    store = MemoryStore()
    store.write_bytes("b", "vertex/p.jsonl", body)
    whole = _merged(store, [harvest.Span("vertex/p.jsonl", 0, len(body))])
    assert whole[3] > 0 and whole[2] and whole[5]  # the case has successes, failures and unjoinable lines
    rnd = random.Random(seed)
    for piece_bytes in (97, 331, rnd.randint(500, 5000), len(body) - 1):
        cuts = harvest.spans([("vertex/p.jsonl", len(body))], piece_bytes)
        assert _merged(store, cuts) == whole, piece_bytes


def _respelled(raw: bytes, rnd: random.Random, long: bool) -> tuple[bytes, bytes]:
    """One prediction line two ways: as orjson writes it, and as another writer may (a space after commas and
    colons as in the reference's official lines, non-ASCII as \\u escapes or not). With `long`, the
    request echo is long enough for the line to be read field by field."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, raw
    if long and isinstance(record, dict) and isinstance(record.get("request"), dict):
        record["request"]["pad"] = "\u00e9" * 3000
    other = json.dumps(record, ensure_ascii=rnd.random() < 0.5).encode()
    return orjson.dumps(record), other


@pytest.mark.parametrize("seed", range(4))
def test_how_the_predictions_are_spelled_does_not_change_what_collect_writes(seed):
    # Our Vertex emulator writes orjson's compact lines; the reference's official lines have spaces after commas
    # and colons. Whitespace and escapes are the writer's (key order is not: a result line keeps the response's):
    # the same rows give the same result bytes, failures, counts and tokens, in one pass and in pieces.
    rnd = random.Random(seed)
    pairs = [_respelled(raw, rnd, rnd.random() < 0.3) for raw in _predictions(seed).splitlines()]
    wholes = []
    for body in (b"\n".join(p[0] for p in pairs), b"\n".join(p[1] for p in pairs)):
        store = MemoryStore()
        store.write_bytes("b", "vertex/p.jsonl", body)
        for piece_bytes in (len(body), 997):
            got = _merged(store, harvest.spans([("vertex/p.jsonl", len(body))], piece_bytes))
            wholes.append(got[:5] + (len(got[5]),))  # an unjoinable line's message may say where it broke
    assert wholes[0][3] > 0 and wholes[0][2] and wholes[0][5]
    assert wholes[1:] == wholes[:1] * 3


def test_one_pass_keeps_the_first_success_and_lets_a_success_replace_a_failure():
    ok = {"status": "", "response": OK}
    lines = [orjson.dumps(r) for r in ({"gbp_row": "r1", "status": FAILED}, {"gbp_row": "r2"} | ok,
                                       {"gbp_row": "r1"} | ok, {"gbp_row": "r2", "status": BAD},
                                       {"gbp_row": "r3", "status": BAD}, {"gbp_row": "r3", "status": FAILED},
                                       {"gbp_row": "r2"} | ok)]
    piece = harvest.harvest_lines(lines, 1, "p")
    assert list(piece.succeeded) == [2, 1] and b"".join(piece.results).count(b"\n") == 2
    assert list(piece.failures) == [3] and piece.failures[3].code == 400  # the first failure is kept
    assert piece.tokens == (6, 4, 10)


def test_result_lines_are_those_of_joining():
    line = {"gbp_row": "r9", "gbp_key": 'k"a"', "status": "", "response": OK}
    piece = harvest.harvest_lines([orjson.dumps(line)], 3, "p")
    assert b"".join(piece.results) == joining.result_line(9, True, "a", OK, 3)


@pytest.mark.parametrize("seed", range(6))
def test_every_line_belongs_to_exactly_one_span(seed):
    rnd = random.Random(seed)
    body = b"\n".join(b"x" * rnd.choice([0, 1, 2, 50, 3000]) for _ in range(60)) + rnd.choice([b"", b"\n", b"\n\n"])
    lines = list(iter_lines(io.BytesIO(body)))
    for piece_bytes in (1, 2, 3, 64, 2999, 3001, len(body)):
        got = []
        for span in harvest.spans([("x", len(body))], piece_bytes):
            stream = io.BytesIO(body)
            stream.seek(max(span.start - 1, 0))
            got += list(harvest.span_lines(stream, span))
        assert got == lines, piece_bytes


def test_an_empty_object_is_one_empty_span():
    assert harvest.spans([("a", 0), ("b", 5)], 2) == [harvest.Span("a", 0, 0), harvest.Span("b", 0, 2),
                                                       harvest.Span("b", 2, 4), harvest.Span("b", 4, 5)]
    assert list(harvest.span_lines(io.BytesIO(b""), harvest.Span("a", 0, 0))) == []


def test_without_a_store_another_process_can_open_or_enough_bytes_pieces_are_made_here(monkeypatch):
    monkeypatch.setattr(harvest, "_team", lambda size, opener: pytest.fail("no worker is needed"))
    store = MemoryStore()
    body = _predictions(1)
    store.write_bytes("b", "p.jsonl", body)
    cuts = harvest.spans([("p.jsonl", len(body))], 500)
    assert len(list(harvest.pieces(store, "b", cuts, 1, workers=2))) == len(cuts)  # memory: no opener


def test_available_cpus_is_at_least_one():
    assert workers.available_cpus() >= 1


def test_a_row_set_holds_any_rows_as_a_set_would():
    rnd = random.Random(3)
    rows = [rnd.randint(0, 300_000) for _ in range(5000)] + [0, 7, 8, 1 << 27, (1 << 27) - 1, 10**15, -1, -10**12]
    got, want = harvest.RowSet(rows[:100]), set(rows[:100])
    for row in rows[100:]:
        assert (row in got) == (row in want)
        got.add(row)
        want.add(row)
    assert len(got) == len(want) and sorted(got) == sorted(want) and got == want
    assert "7" not in got and 3.0 not in got and 300_001 not in got
    assert len(harvest.RowSet(range(200_000))._bits) <= 200_000 // 8 * 2  # a bitmap, not a set of ints


def test_a_row_set_update_says_which_rows_it_held_already():
    rnd = random.Random(4)
    got, want = harvest.RowSet(), set()
    for n in range(60):
        batch = [rnd.choice([rnd.randint(0, 3000), rnd.randint(-5, 5), (1 << 27) - 1, 1 << 27, 10**15])
                 for _ in range(rnd.randint(0, 40))]
        expected = []
        for i, row in enumerate(batch):
            if row in want:
                expected.append(i)
            want.add(row)
        assert got.update(array("q", batch) if n % 2 else batch) == expected
    assert got == want


@pytest.mark.parametrize("odd", [
    b'{"gbp_row":"r2","gbp_key":"k{not json","status":"","response":{"candidates":[]}}',
    b'{"gbp_row":"r2","status":"","response":{"candidates":[{"content":"not an object"}]}}',
    b'{"gbp_row":"r2","status":"","response":{"promptFeedback":"blocked"}}',
    b'{"gbp_row":"r2","status":"","response":{"usageMetadata":["x"]}}',
    b'{"gbp_row":"r2","status":"","response":{"usageMetadata":{"promptTokenCount":"many"}}}',
    b'{"gbp_row":"r2","status":"","response":{"usageMetadata":{"promptTokenCount":{"n":1}}}}',
    b'{"gbp_row":"r2","status":"","response":{"x":1e400}}',
])
def test_a_line_no_result_can_be_made_of_is_left_out_and_the_others_are_kept(odd):
    ok = orjson.dumps({"gbp_row": "r1", "status": "", "response": OK})
    piece = harvest.harvest_lines([ok, odd, ok.replace(b'"r1"', b'"r3"')], 1, "p")
    assert list(piece.succeeded) == [1, 3] and not piece.failures  # row 2 counts as not come back
    assert len(piece.unjoinable) == 1 and "cannot be joined" in piece.unjoinable[0]


_ANY = [None, True, 0, -3, 2.5, 1e300, "", "x", "r7", "k1", [], [1], ["a", "b"], {}, {"0": 1}, {"a": {"b": []}}]


def _any(rnd: random.Random, plausible, depth: int = 0):
    """A value in a slot of a prediction line: usually the plausible one (built further down), else anything."""
    if depth > 6 or rnd.random() < 0.25:
        return rnd.choice(_ANY + [[rnd.choice(_ANY)], {"text": rnd.choice(_ANY)}])
    return plausible(rnd, depth + 1) if callable(plausible) else plausible


def _part(rnd, d):
    return {"text": _any(rnd, "an answer", d), **({"thought": _any(rnd, True, d)} if rnd.random() < 0.2 else {})}


def _candidate(rnd, d):
    return {"content": _any(rnd, lambda r, d: {"parts": _any(r, lambda r, d: [_any(r, _part, d)
                                                                           for _ in range(r.randint(0, 3))], d),
                                                "role": "model"}, d),
            "finishReason": _any(rnd, "STOP", d)}


def _response(rnd, d):
    usage = {name: _any(rnd, rnd.randint(0, 50), d)
             for name in ("promptTokenCount", "candidatesTokenCount", "totalTokenCount") if rnd.random() < 0.8}
    out = {"candidates": _any(rnd, lambda r, d: [_any(r, _candidate, d) for _ in range(r.randint(0, 2))], d),
           "usageMetadata": _any(rnd, usage, d), "modelVersion": _any(rnd, "gemini-x", d)}
    if rnd.random() < 0.2:
        out["promptFeedback"] = _any(rnd, {"blockReason": _any(rnd, "SAFETY", d)}, d)
    return out


def test_a_prediction_line_of_any_shape_is_joined_or_left_out_never_fatal():
    # The class of line `test_a_line_no_result_can_be_made_of...` samples: any JSON in any slot collect reads
    # (row id, key, status, the response and everything in it it looks into) gives a result line, a failure or
    # an unjoinable line, and never an exception that would fail the part's every delivery.
    rnd = random.Random(11)
    lines = []
    for row in range(1, 3001):
        # Short lines are read whole, long ones (a long request echo) field by field: both ways are tried.
        record = {"gbp_row": _any(rnd, f"r{row}"), "status": _any(rnd, rnd.choice(["", "", FAILED, BAD])),
                  "request": {"contents": [{"parts": [{"text": "q" * rnd.choice([1, 3000])}]}]},
                  "response": _any(rnd, _response)}
        if rnd.random() < 0.5:
            record["gbp_key"] = _any(rnd, "k" + orjson.dumps(rnd.choice(["a", 7, None])).decode())
        if rnd.random() < 0.1:
            del record[rnd.choice(["status", "response", "gbp_row"])]
        lines.append(orjson.dumps(record))
    for depth in (990, 1000, 1023, 1030, 5000):  # nested past msgspec's limit (~1,000) and orjson's (1,024)
        for where in ("request", "response"):
            deep = b'{"gbp_row":"r%d","status":"","%b":%b%b%b}' % (len(lines) + 1, where.encode(), b"[" * depth,
                                                                   b"1", b"]" * depth)
            lines.append(deep.replace(b'"status":""', b'"status":"","response":{"candidates":[]}')
                         if where == "request" else deep)
    piece = harvest.harvest_lines(lines, 1, "p")
    results = b"".join(piece.results).splitlines()
    assert len(results) == len(piece.succeeded)
    assert all(type(orjson.loads(line)) is dict for line in results)
    joined = len(set(piece.succeeded) | set(piece.failures))
    assert joined + len(piece.unjoinable) <= len(lines)
    assert min(len(piece.unjoinable), len(piece.succeeded), len(piece.failures)) > 200  # all three outcomes met


def test_a_piece_crosses_the_worker_pipe_with_its_results_out_of_band():
    piece = harvest.harvest_lines(iter_lines(io.BytesIO(_predictions(5))), 2, "p.jsonl")
    assert len(piece.results) == 1 and len(piece.results[0]) > 10_000
    pipe = io.BytesIO()
    workers.send(pipe, ("piece", piece))
    workers.send(pipe, ("task", 7))  # a value with no buffer to hand out
    size, buffers = workers._FRAME.unpack_from(pipe.getvalue())
    assert buffers == 1 and size < len(piece.results[0]) // 4  # the results follow the pickle, not inside it
    pipe.seek(0)
    assert workers.receive(pipe) == ("piece", piece)
    assert workers.receive(pipe) == ("task", 7)
    with pytest.raises(EOFError):
        workers.receive(pipe)
    pipe = io.BytesIO()
    workers.send(pipe, piece)
    cut = io.BytesIO(pipe.getvalue()[:-1])  # the pipe closed mid-way (the worker died)
    with pytest.raises(EOFError):
        workers.receive(cut)


def test_a_piece_in_many_blocks_crosses_the_pipe_and_merges_as_one(monkeypatch: pytest.MonkeyPatch):
    data = _predictions(6)
    whole = harvest.harvest_lines(iter_lines(io.BytesIO(data)), 1, "p.jsonl")
    monkeypatch.setattr(harvest, "_RESULT_BLOCK", 700)
    piece = harvest.harvest_lines(iter_lines(io.BytesIO(data)), 1, "p.jsonl")
    assert len(piece.results) > 10 and all(len(block) >= 700 for block in piece.results[:-1])
    assert b"".join(piece.results) == b"".join(whole.results)
    pipe = io.BytesIO()
    workers.send(pipe, piece)
    assert workers._FRAME.unpack_from(pipe.getvalue())[1] == len(piece.results)
    pipe.seek(0)
    got = workers.receive(pipe)
    assert got == piece
    written = io.BytesIO()
    harvest.Harvest(written.write).add(got)
    assert written.getvalue() == b"".join(whole.results)
