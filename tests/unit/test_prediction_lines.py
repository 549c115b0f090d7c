"""Collect decodes only the fields it reads (`shared/prediction_lines.py`): on a file of tricky lines its
results, errors and counts are byte for byte those of parsing every line in full with orjson. The faster staged
copy, result lines and batched writes of validate and collect are checked the same way, against the code they
replaced, from a tricky input through staged parts and predictions to results, errors and counts."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import orjson
import pytest

from batchctl import _files as files_module
from batchctl._context import Ops
from batchctl._exit import Failed
from batchctl._files import postprocess, validate
from shared import harvest, joining, known_shapes, lines, prediction_lines, raw_request, staging, validation, workers
from shared.rowsums import RowSums

OK = '{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}]}'
PREDICTIONS = [
    b'{"status":"","gbp_row":"r1","gbp_key":"k\\"a\\"","request":{"x":1},"response":' + OK.encode() + b'}',
    b'  { "gbp_row" : "r2" , "gbp_key":"k7", "status" : "", "response" : {"candidates" : [ {"content": {"parts":'
    b' [{"text": "caf\\u00e9 \\/ \\ud83d\\ude00", "thought": false}]}, "avgLogprobs": 1e-05}],'
    b' "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 1.0}, "modelVersion": "m"} }  ',
    b'{"gbp_row":"r3","gbp_row":"r4","status":"","response":' + OK.encode() + b'}',
    b'{"gbp_row":"r5","status":null,"response":{"a":1,"a":2,"candidates":[]}}',
    b'{"gbp_row":"r6","status":0,"response":' + OK.encode() + b',"request":{"big":123456789012345678901234567890}}',
    b'{"gbp_row":"r7","status":"Bad Request: {\\"error\\": {\\"code\\": 400, \\"message\\": \\"no\\", '
    b'\\"status\\": \\"INVALID_ARGUMENT\\"}}"}',
    b'{"gbp_row":"r8","status":"","response":{}}',
    b'{"gbp_row":"r9","status":"","response":[1]}',
    b'[1,2]',
    b'"just a string"',
    b'{"gbp_row":"r10","status":"","response":{"candidates":[],"t":"\xff"}}',
    b'{"gbp_row":"r11","status":"","gbp_key":"k\xed\xa0\x80","response":' + OK.encode() + b'}',
    b'{"gbp_row":"r12","status":"","response":' + OK.encode() + b',"request":{"t":"\xc3\xa9"}}',
    b'{"gbp_row":"x13","status":"","response":' + OK.encode() + b'}',
    b'{"status":"","response":' + OK.encode() + b'}',
    b'{"gbp_row":"r14","status":"","response":' + OK.encode() + b'',
    b'',
    b'   \r',
    b'{"gbp_row":"r15","status":"Too Many Requests: {\\"error\\": {\\"code\\": 429}}"}',
    b'{"gbp_row":"r15","status":"","gbp_key":"k{\\"n\\":[1,2.5,null]}","response":' + OK.encode() + b'}',
    b'{"gbp_row":"r16","status":"","response":' + OK.encode() + b'}',
    b'{"gbp_row":"r16","status":"oops"}',
    b'{"gbp_row":"r17","gbp_key":"nokey","status":"","response":' + OK.encode() + b'}',
]
STAGED = [b'{"gbp_row":"r%d","gbp_key":"k%d","request":{"contents":[{"parts":[{"text":"q%d"}]}]}}' % (i, i, i)
          for i in range(1, 21)]
STAGED[2] = b' {"gbp_row": "r3", "request": {"contents": []}}'  # not in the staged prefix form
STAGED[5] = b'{"gbp_row":"r6","request":{"gbp_row":"r18","x":"\\"gbp_row\\":\\"r19\\""}}'  # nested: not the row
STAGED[6] = b'{"gbp_row":"r07","request":{"k":"\\u00e9"}}'


def _postprocess(tmp_path: Path, name: str) -> dict[str, bytes]:
    pred, staged = tmp_path / "pred.jsonl", tmp_path / "staged.jsonl"
    pred.write_bytes(b"\n".join(PREDICTIONS) + b"\n")
    staged.write_bytes(b"\n".join(STAGED) + b"\n")
    out = tmp_path / name
    # Rows answered that were never staged (r4, r12...) make the counts not add up: the command says so
    # after writing every file, which is all this compares.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Failed):
        postprocess.main([str(pred), "--staged", str(staged), "--out", str(out), "--json", "--name", "t"],
                         obj=Ops({}), standalone_mode=False)
    report = json.loads((out / "reports/t.json").read_text())
    return {"results": (out / "results/t.jsonl").read_bytes(), "errors": (out / "errors/t.jsonl").read_bytes(),
            "rows": orjson.dumps(report["rows"]), "tokens": orjson.dumps(report["tokens"])}


def _whole_line(raw: bytes) -> dict:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise prediction_lines.Undecodable(str(exc)) from None


def _parse_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prediction_lines, "decode_prediction", _whole_line)
    monkeypatch.setattr(prediction_lines, "staged_row", lambda raw: None)


# 0: every line's fields skipped to as a long line's are; the default: a short line read whole where orjson can.
WHOLE_LINE_MAX = [0, prediction_lines.WHOLE_LINE_MAX]


@pytest.mark.parametrize("whole_line_max", WHOLE_LINE_MAX)
def test_collect_writes_the_same_bytes_as_parsing_every_line_in_full(tmp_path: Path, whole_line_max: int,
                                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(prediction_lines, "WHOLE_LINE_MAX", whole_line_max)
    fast = _postprocess(tmp_path, "fast")
    _parse_every_line(monkeypatch)
    full = _postprocess(tmp_path, "full")
    assert fast == full
    assert fast["results"].count(b"\n") >= 6 and fast["errors"].count(b"\n") >= 8


@pytest.mark.parametrize("whole_line_max", WHOLE_LINE_MAX)
@pytest.mark.parametrize("raw", PREDICTIONS)
def test_a_prediction_line_decodes_to_the_fields_orjson_gives_or_fails_where_orjson_fails(
        raw: bytes, whole_line_max: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(prediction_lines, "WHOLE_LINE_MAX", whole_line_max)
    try:
        whole = orjson.loads(raw)
    except orjson.JSONDecodeError:
        with pytest.raises(prediction_lines.Undecodable):
            prediction_lines.decode_prediction(raw)
        return
    if type(whole) is not dict:
        with pytest.raises(prediction_lines.Undecodable):
            prediction_lines.decode_prediction(raw)
        return
    fields = ("gbp_row", "gbp_key", "status", "response")
    wanted = {k: v for k, v in whole.items() if k in fields}
    got = prediction_lines.decode_prediction(raw)
    assert {k: v for k, v in got.items() if k in fields} == wanted
    assert got == wanted or (got == whole and len(raw) <= whole_line_max)  # others only with the whole object


@pytest.mark.parametrize("raw", STAGED + [b'{"gbp_row":"r","x":1}', b'{"gbp_row":"r\xd9\xa1\xd9\xa2"}',
                                          b'{"gbp_row":"r5"  ,"x":1}', b'{"gbp_row":"r5\\u0031"}'])
def test_a_staged_row_is_read_from_the_prefix_only_when_the_full_parse_agrees(raw: bytes):
    row = prediction_lines.staged_row(raw)
    if row is not None:
        assert f"r{row}" == "r" + str(int(orjson.loads(raw)["gbp_row"][1:]))


@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc3"])
def test_a_prediction_line_is_joined_when_only_bytes_collect_never_reads_are_not_utf8(bad: bytes):
    # orjson refuses the whole line; the row's fields are those of the same line with a readable request echo.
    raw = b'{"gbp_row":"r10","status":"","response":%b,"request":{"t":"%b"},"more":["%b"]}' % (OK.encode(), bad, bad)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    readable = orjson.loads(raw.replace(bad, b"?"))
    assert prediction_lines.decode_prediction(raw) == {k: readable[k] for k in ("gbp_row", "status", "response")}


def test_a_staged_line_is_read_by_its_prefix():
    # Only a tampered staged file names the row id twice at the top level: the prefix is what counts.
    assert prediction_lines.staged_row(b'{"gbp_row":"r6","request":{},"gbp_row":"r18"}') == 6


@pytest.mark.parametrize("seed", range(150))
def test_a_staged_file_is_linked_only_when_copying_it_would_change_nothing(seed: int, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch):
    rng = random.Random(seed)
    monkeypatch.setattr(files_module, "READ_SIZE", rng.randint(1, 300))
    monkeypatch.setattr(lines, "LINES_PROBE", rng.choice([8, 64, 4096]))
    monkeypatch.setattr(files_module, "MAX_LINE_BYTES", 200)
    width = rng.choice([3, 40, 150, 250])
    dirty = rng.random() < 0.5  # a file with lines that start with whitespace (blank or not), now and then

    def line() -> bytes:
        if dirty and rng.random() < 0.05:
            return rng.choice([b"", b" ", b"\t", b"\r", b"\x0b", b"\x0c", b" " + b"x" * rng.randint(1, width)])
        text = b"x" * rng.randint(1, width)
        if rng.random() < 0.5:  # a staged line's row id, which the row sums count, or a near miss they do not
            head = rng.choice([b'{"gbp_row":"r%d",', b'{"gbp_row":"r%d"}', b'{"gbp_row":"r%d"x', b'{"gbp_row":"r%d'])
            text = head % rng.choice([rng.randint(0, 999), 10 ** 19 - 1, 10 ** 19]) + text
        return text[:width]

    body = b"\n".join(line() for _ in range(rng.randint(0, 60)))
    body += rng.choice([b"", b"\n"])
    path = tmp_path / "staged.jsonl"
    path.write_bytes(body)
    copied = _counted(files_module._combined([path], tmp_path / "copy.jsonl"))
    clean = files_module._clean_lines(path)
    if clean is not None:
        assert _counted(clean) == copied and (tmp_path / "copy.jsonl").read_bytes() == body
    else:
        # Copied when copying changes the file, or could: a line longer than the limit, or one that starts with
        # whitespace (blank, or not: that is not looked into).
        assert (tmp_path / "copy.jsonl").read_bytes() != body or not body or \
            max(map(len, body.split(b"\n"))) > 200 or any(line[:1].isspace() for line in body.split(b"\n"))


# --- the faster staged copy, result lines and batched writes, against the code they replaced -----------------

def _old_first_text(response):
    candidates = response.get("candidates") or []
    if not candidates or not isinstance(candidates[0], dict):
        return ""
    parts = ((candidates[0].get("content") or {}).get("parts")) or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
                   and not p.get("thought"))


def _old_result_line(row, has_key, key, response, attempts):
    record = {"row": row}
    if has_key:
        record["key"] = key
    record.update({"text": _old_first_text(response), "finishReason": joining.finish_reason(response),
                   "usage": response.get("usageMetadata") or {}, "modelVersion": response.get("modelVersion"),
                   "attempts": attempts, "response": response})
    return orjson.dumps(record) + b"\n"


def _old_staged_line(row, request, has_key, key):
    record = {joining.ROW_FIELD: f"r{row}"}
    if has_key:
        record[joining.KEY_FIELD] = "k" + orjson.dumps(key).decode()
    record["request"] = request
    return orjson.dumps(record) + b"\n"


def _counted(got):
    """(lines, bytes, row count, row sums) of what `_combined` or `_clean_lines` returns."""
    rows, size, sums = got
    return rows, size, sums.count, sums.value()


def _old_combined(paths, out):
    """`batchctl._files._combined` as it was (a line at a time, no row sums: collect then reads every line)."""
    rows = size = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as sink:
        for path in paths:
            with open(path, "rb") as f:
                for raw in lines.iter_lines(f, files_module.MAX_LINE_BYTES, files_module.READ_SIZE):
                    if raw.strip():
                        sink.write(raw + b"\n")
                        rows += 1
                        size += len(raw) + 1
    return rows, size, RowSums()


@pytest.mark.parametrize("read_size", [1, 5, 16, 1000])
def test_copying_staged_files_keeps_the_lines_and_counts_of_copying_line_by_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_size: int):
    monkeypatch.setattr(files_module, "READ_SIZE", read_size)
    monkeypatch.setattr(files_module, "MAX_LINE_BYTES", 40)
    bodies = [b"", b"\n", b"a", b"a\nb", b"{}\n{}\n", b" \n\t\n\r\n\x0b\n\x0c\nx\n", b"  x  \n\ny\r\n\n",
              b"x" * 100 + b"\nshort\n" + b"y" * 45 + b"\n\nz", b'{"gbp_row":"r1"}\n' * 9, b"\xff\xfe\n \xff\n"]
    paths = []
    for n, body in enumerate(bodies):
        paths.append(tmp_path / f"in{n}.jsonl")
        paths[-1].write_bytes(body)
        new = files_module._combined([paths[-1]], tmp_path / "new")
        assert new[:2] == _old_combined([paths[-1]], tmp_path / "old")[:2]
        assert (tmp_path / "new").read_bytes() == (tmp_path / "old").read_bytes()
        assert new[2].count == body.startswith(b'{"gbp_row"') * 9
    assert files_module._combined(paths, tmp_path / "new")[:2] == _old_combined(paths, tmp_path / "old")[:2]
    assert (tmp_path / "new").read_bytes() == (tmp_path / "old").read_bytes()


RESPONSES = [
    {}, {"candidates": []}, {"candidates": "ab"}, {"candidates": [1]}, {"candidates": [{}]},
    {"candidates": [{"content": None}]}, {"candidates": [{"content": {"parts": []}}]},
    {"candidates": [{"content": {"parts": [{"text": "one"}]}, "finishReason": "STOP"}], "modelVersion": "m"},
    {"candidates": [{"content": {"parts": [{"text": "t", "thought": True}]}}]},
    {"candidates": [{"content": {"parts": [{"text": "t", "thought": 0}]}}]},
    {"candidates": [{"content": {"parts": [{"text": 5}]}}]},
    {"candidates": [{"content": {"parts": [{"inlineData": {}}]}}]},
    {"candidates": [{"content": {"parts": ["text"]}}]}, {"candidates": [{"content": {"parts": [None]}}]},
    {"candidates": [{"content": {"parts": "abc"}}]},
    {"candidates": [{"content": {"parts": [{"text": "a", "thought": True}, {"text": "b"}, {"text": "c"}]}}]},
    {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}},
]


@pytest.mark.parametrize("response", RESPONSES)
def test_a_result_line_is_the_bytes_it_was(response: dict):
    for has_key, key in ((False, None), (True, None), (True, "k"), (True, {"n": [1, 2.5]})):
        assert joining.result_line(3, has_key, key, response, 2) == _old_result_line(3, has_key, key, response, 2)


def _outcome_of(call, *args):
    """What `call(*args)` returns, or the type and text of what it raises."""
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return type(exc), str(exc)


def _joined_the_old_way(record: dict, attempts: int):
    """Collect's pass 1 before `success_line`: classify, then key_of, result_line and usage_tokens for a success."""
    outcome = joining.classify(record)
    if type(outcome) is not joining.Success:
        return outcome
    has_key, key = joining.key_of(record)
    return (outcome.row, joining.result_line(outcome.row, has_key, key, outcome.response, attempts),
            joining.usage_tokens(outcome.response))


RECORD_ROWS = ["r7", "r07", "r", "x7", "r\u0661", "r\u00b2", "7", 7, None]  # an Arabic-Indic one, a superscript two
RECORD_KEYS = [None, 'k"a"', "k7", "knull", 'k{"n":[1,2.5]}', "k", "knot json", "x1", 5]
RECORD_STATUSES = [None, "", 0, False, "oops", 'Bad Request: {"error": {"code": 400}}', {"code": 400}, [], "0"]
RECORD_RESPONSES = [*RESPONSES, None, [], "text", {"usageMetadata": {"promptTokenCount": "x"}, "a": 1},
                    {"usageMetadata": [1]}, {"usageMetadata": {"totalTokenCount": 2.5, "candidatesTokenCount": 1}}]


@pytest.mark.parametrize("seed", range(40))
def test_a_success_line_is_what_classifying_and_joining_it_gave(seed: int):
    rng = random.Random(seed)
    for _ in range(60):
        record = {"gbp_row": rng.choice(RECORD_ROWS)}
        for field, values in (("gbp_key", RECORD_KEYS), ("status", RECORD_STATUSES), ("response", RECORD_RESPONSES)):
            if rng.random() < 0.9:
                record[field] = rng.choice(values)
        new = _outcome_of(joining.success_line, record, 2)
        old = _outcome_of(_joined_the_old_way, record, 2)
        if new is None:  # not a success: classify says what the line is
            new = _outcome_of(joining.classify, record)
            assert type(new) is not joining.Success
        assert new == old, record


TRICKY_INPUT = b"\n".join([
    b'\xef\xbb\xbf{"key": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "caf\\u00e9 \\/"}]}]}}',
    b'{"request":{"contents":[{"parts":[{"text":"no key"}]}],"generationConfig":{"temperature":2E-1}}}',
    b'',
    b'  {"key":7,"key":8,"request":{"contents":[{"parts":[{"text":"dup key"}]}],"x":{"y":1.50}}}  \r',
    b'{"key":null,"request":{"contents":[{"parts":[{"text":"null key \\ud83d\\ude00"}]}]},"other":[1]}',
    b'{"key":{"n":[1,-0,1e2]},"request":{"contents":[{"parts":[{"text":"obj key","thought":false}]}]}}',
    b'not json', b'[1]', b'{"key":"nr"}', b'{"request":{"contents":[]}}',
    b'{"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"y":"a string now"}}}',
    b'{"key":"b","request":{"contents":[{"role":"model","parts":[{"text":"\xc3\xa9\\n\\t\\"q\\""}]}]}}',
    b'{"key":"c","request":{"contents":[{"parts":[{"text":"\xff"}]}]}}',
    *(b'{"key":%d, "request":{"contents":[{"parts":[{"text":"row %d \\u00e9"}]}],"x":{"y":%d.25}}}' % (i, i, i)
      for i in range(20)),
    *(b'{"key":%d,"request":{"contents":[{"parts":[{"text":"row %d \xc3\xa9"}]}],"x":{"y":%d.25}}}' % (i, i, i)
      for i in range(20, 40)),  # spliced
    *(b'{"key":"s%d","request":{"contents":[{"parts":[{"text":"one shape %d \xc3\xa9"}]}]}}' % (i, i)
      for i in range(10)),  # staged from the first one's shape (known_shapes)
    b'\t{"key":"d","request":{"contents":[{"parts":[{"text":"last, no newline"}]}]}}',
])


def _round_trip(tmp_path: Path, name: str) -> dict[str, bytes]:
    """Input -> `batchctl validate` (parts of 3 rows) -> predictions (some failed, one twice, one missing, varied
    responses) -> `batchctl postprocess`: every file either writes."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(TRICKY_INPUT)
    out = tmp_path / name
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        validate.main([str(source), "--out", str(out / "v"), "--json", "--max-rows", "3"], obj=Ops({}),
                      standalone_mode=False)
    staged = json.loads(printed.getvalue())
    files = {"validation": Path(staged["errors"]).read_bytes()}
    predictions = []
    for n, part in enumerate(staged["parts"]):
        files[f"part{n}"] = Path(part["file"]).read_bytes()
        for i, raw in enumerate(files[f"part{n}"].splitlines()):
            line = orjson.loads(raw)
            k = (n * 3 + i) % (len(RESPONSES) + 3)
            if k == len(RESPONSES):
                continue  # never came back
            if k == len(RESPONSES) + 1:
                line["status"] = 'Too Many Requests: {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}'
            else:
                line.update(status="", response=RESPONSES[k % len(RESPONSES)] or {"a": 1})
            predictions.append(orjson.dumps(line))
            if k == 2:
                predictions.append(orjson.dumps(line))
    pred = tmp_path / f"{name}.pred.jsonl"
    pred.write_bytes(b"\n".join(predictions) + b"\n")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Failed):
        postprocess.main([str(pred), "--out", str(out / "p"), "--json", "--name", "t", "--validation-errors",
                          staged["errors"], *[a for part in staged["parts"] for a in ("--staged", part["file"])]],
                         obj=Ops({}), standalone_mode=False)
    report = json.loads((out / "p/reports/t.json").read_text())
    files.update(results=(out / "p/results/t.jsonl").read_bytes(), errors=(out / "p/errors/t.jsonl").read_bytes(),
                 rows=orjson.dumps(report["rows"]), tokens=orjson.dumps(report["tokens"]))
    return files


staged_line_raw = joining.staged_line_raw


def test_validate_and_postprocess_write_the_bytes_the_code_they_replaced_wrote(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch):
    # Collect's pass 1 in pieces of a few lines, by two worker processes; the old code in one pass, here.
    monkeypatch.setattr(harvest, "PIECE_BYTES", 900)
    monkeypatch.setattr(harvest, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(workers, "available_cpus", lambda: 2)
    monkeypatch.setattr(staging, "_WRITE_BATCH", 300)
    spliced = []
    monkeypatch.setattr(joining, "staged_line_raw", lambda *args: spliced.append(args[0]) or staged_line_raw(*args))
    new = _round_trip(tmp_path, "new")
    assert len(spliced) >= 20
    monkeypatch.setattr(files_module, "_combined", _old_combined)
    monkeypatch.setattr(joining, "result_line", _old_result_line)
    monkeypatch.setattr(joining, "staged_line", _old_staged_line)
    monkeypatch.setattr(raw_request, "request_bytes", lambda *args: None)
    monkeypatch.setattr(known_shapes.KnownShapes, "staged_line", lambda *args: None)
    _parse_every_line(monkeypatch)
    monkeypatch.setattr(harvest, "PIECE_BYTES", 1 << 30)
    old = _round_trip(tmp_path, "old")
    assert new == old
    assert new["results"].count(b"\n") >= 30 and new["errors"].count(b"\n") >= 10 and "part9" in new
    workers.discard()  # its workers stay with this process otherwise, as an instance keeps them


SPLICE_LINES = [
    b'{"key":"a","request":{"contents":[{"role":"user","parts":[{"text":"caf\xc3\xa9 \xe2\x80\xa8 \x7f: 1.50"}]}]}}',
    b'{"request":{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"temperature":0.2,"topK":40}}}',
    b'{"request":{"contents":[{"parts":[{"text":"x"}]}]},"key":{"n":[1,2.5,null]}}',
    b'{"key":null,"request":{"contents":[{"parts":[{"text":"x"}]}]}}\r',
    b'{"key":-0,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"b":true,"c":false,"d":null,"e":[]}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":1.50}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":1e5}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":1E-7}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":1e-7}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":-0}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":-0.0}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":123456789012345678901234}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":18446744073709551615}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}],"x":{"n":1,"n":2}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x","text":"y"}]}]}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"a \\"q\\" \\n b"}]}]}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"\\u00e9\\/"}]}]}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}], "x":{"n":1}}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}]} }',
    b'{"key": 1,"request":{"contents":[{"parts":[{"text":"x"}]}]}}',
    b' {"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}]}}',
    b'{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}]},"other":2}',
    b'{"other":2,"request":{"contents":[{"parts":[{"text":"x"}]}]}}',
    b'{"key":1,"key":2,"request":{"contents":[{"parts":[{"text":"x"}]}]}}',
    b'{"request":{"contents":[{"parts":[{"text":"x"}]}]},"request":{"contents":[{"parts":[{"text":"y"}]}]}}',
    b'\xef\xbb\xbf{"key":1,"request":{"contents":[{"parts":[{"text":"x"}]}]}}',
    b'{"key":"k:\\"","request":{"contents":[{"parts":[{"text":"x"}]}]}}',
    b'{"key":"}","request":{"contents":[{"parts":[{"text":"\\\\"}]}]}}',
]
SPLICED = 8  # how many of SPLICE_LINES are orjson's own spelling (the key -0 is not: orjson writes 0)


def test_a_request_is_spliced_only_when_its_bytes_are_what_staging_would_write():
    validator = validation.LineValidator()
    spliced = 0
    for row, raw in enumerate(SPLICE_LINES + TRICKY_INPUT.split(b"\n"), 1):
        verdict = validator.validate(row, raw)
        if not isinstance(verdict, validation.Accepted):
            continue
        body = raw_request.request_bytes(raw, verdict.has_key, verdict.key, verdict.keys)
        if body is not None:
            spliced += row <= len(SPLICE_LINES)
            assert joining.staged_line_raw(row, body, verdict.has_key, verdict.key) == \
                _old_staged_line(row, verdict.request, verdict.has_key, verdict.key)
    assert spliced == SPLICED


_NUMBERS = ["0.2", "0.20", "2e-1", "256", "0256", "-0", "-0.0", "1E5", "1e5", "100000.0", "0.95",
            "18446744073709551616"]


@pytest.mark.parametrize("seed", range(40))
def test_the_structure_cache_gives_the_verdicts_the_checks_give(seed: int, monkeypatch: pytest.MonkeyPatch):
    # Lines that share structures, with numbers spelled orjson's way or not, spaces and duplicate keys; each
    # verdict is taken with the cache warm (from the lines before it) and with no cache at all.
    rnd = random.Random(seed)
    monkeypatch.setattr(raw_request, "_SPELLED", {})
    monkeypatch.setattr(raw_request, "_SPELLED_MAX", rnd.choice([1, 3, 1024]))
    monkeypatch.setattr(raw_request, "_SPELLED_LONGEST", rnd.choice([0, 40, 512]))
    validator = validation.LineValidator()
    spliced = 0
    for row in range(1, 300):
        config = ",".join(f'"{name}":{rnd.choice(_NUMBERS)}' for name in rnd.sample(["temperature", "topP", "topK"],
                                                                                  rnd.randint(0, 3)))
        if rnd.random() < 0.1:
            config += (',' if config else '') + '"topK":1'  # a duplicate key, or the only one
        gap = rnd.choice(["", "", " "])
        raw = (b'{"key":%d,"request":{"contents":[{"role":"user","parts":[{"text":"%b"}]}]%b}}'
               % (row, rnd.choice([b"a", b"x" * 60]), (f',{gap}"generationConfig":{{{config}}}' if config else "")
                  .encode()))
        verdict = validator.validate(row, raw)
        if not isinstance(verdict, validation.Accepted):
            continue
        got = raw_request.request_bytes(raw, verdict.has_key, verdict.key, verdict.keys)
        with monkeypatch.context() as cold:
            cold.setattr(raw_request, "_SPELLED", {})
            cold.setattr(raw_request, "_SPELLED_LONGEST", -1)  # nothing cached
            assert raw_request.request_bytes(raw, verdict.has_key, verdict.key, verdict.keys) == got
        assert len(raw_request._SPELLED) <= raw_request._SPELLED_MAX
        if got is not None:
            spliced += 1
            assert joining.staged_line_raw(row, got, verdict.has_key, verdict.key) == \
                _old_staged_line(row, verdict.request, verdict.has_key, verdict.key)
    assert spliced >= 20
