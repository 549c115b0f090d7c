"""Collect decodes only the fields it reads (`shared/prediction_lines.py`): on a file of tricky lines its
results, errors and counts are byte for byte those of parsing every line in full with orjson."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import orjson
import pytest

from batchctl._context import Ops
from batchctl._exit import Failed
from batchctl._files import postprocess
from shared import prediction_lines

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
    b'{"gbp_row":"r10","status":"","response":' + OK.encode() + b',"request":{"t":"\xff"}}',
    b'{"gbp_row":"r11","status":"","response":' + OK.encode() + b',"request":{"t":"\xed\xa0\x80"}}',
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
STAGED[5] = b'{"gbp_row":"r6","request":{},"gbp_row":"r18"}'  # its row id twice: the last counts
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


def test_collect_writes_the_same_bytes_as_parsing_every_line_in_full(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    fast = _postprocess(tmp_path, "fast")
    monkeypatch.setattr(prediction_lines, "decode_prediction", _whole_line)
    monkeypatch.setattr(prediction_lines, "staged_row", lambda raw: None)
    full = _postprocess(tmp_path, "full")
    assert fast == full
    assert fast["results"].count(b"\n") >= 6 and fast["errors"].count(b"\n") >= 8


@pytest.mark.parametrize("raw", PREDICTIONS)
def test_a_prediction_line_decodes_to_the_fields_orjson_gives_or_fails_where_orjson_fails(raw: bytes):
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
    wanted = {k: v for k, v in whole.items() if k in ("gbp_row", "gbp_key", "status", "response")}
    assert prediction_lines.decode_prediction(raw) == wanted


@pytest.mark.parametrize("raw", STAGED + [b'{"gbp_row":"r","x":1}', b'{"gbp_row":"r\xd9\xa1\xd9\xa2"}',
                                          b'{"gbp_row":"r5"  ,"x":1}', b'{"gbp_row":"r5\\u0031"}'])
def test_a_staged_row_is_read_from_the_prefix_only_when_the_full_parse_agrees(raw: bytes):
    row = prediction_lines.staged_row(raw)
    if row is not None:
        assert f"r{row}" == "r" + str(int(orjson.loads(raw)["gbp_row"][1:]))
