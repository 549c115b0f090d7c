"""Unit tests for shared.validation: every reason code, the importer rules and the 10 KB line preview."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from shared.validation import LINE_PREVIEW_BYTES, MAX_NESTING, Accepted, LineValidator, Rejected

NOT_COLUMN = "is not a valid column name (letters, digits and _ only, not starting with a digit)"
DATA_FIELDS = ("text, inlineData, fileData, functionCall, functionResponse, executableCode, "
               "codeExecutionResult")


def line(obj: object, end: bytes = b"\n") -> bytes:
    return orjson.dumps(obj) + end


def request(text: str = "Hello", **extra: object) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def check(raw: bytes, row: int = 1, validator: LineValidator | None = None):
    return (validator or LineValidator()).validate(row, raw)


def rejected(raw: bytes, row: int = 1, validator: LineValidator | None = None) -> Rejected:
    verdict = check(raw, row, validator)
    assert isinstance(verdict, Rejected), verdict
    return verdict


def accepted(raw: bytes, row: int = 1, validator: LineValidator | None = None) -> Accepted:
    verdict = check(raw, row, validator)
    assert isinstance(verdict, Accepted), verdict
    return verdict


# -- API shape -------------------------------------------------------------------------------------

def test_constants():
    assert MAX_NESTING == 15
    assert LINE_PREVIEW_BYTES == 10240


def test_verdicts_are_frozen_slotted_dataclasses():
    ok = accepted(line({"key": "a", "request": request()}), row=3)
    bad = rejected(b"nope\n", row=4)
    for verdict in (ok, bad):
        assert dataclasses.is_dataclass(verdict)
        assert not hasattr(verdict, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            verdict.row = 9  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(Accepted)] == ["row", "request", "has_key", "key", "keys"]
    assert [f.name for f in dataclasses.fields(Rejected)] == [
        "row", "reason", "message", "request", "line", "has_key", "key"]


def test_accepted_carries_the_request_unchanged():
    req = request("Describe a cat", generationConfig={"temperature": 0.5})
    ok = accepted(line({"key": "k1", "request": req, "custom_id": "c1"}), row=7)
    assert ok == Accepted(row=7, request=req, has_key=True, key="k1")


# The paths whose type the request schema fixes before any line is read: what a fresh schema holds.
SCHEMA_FIXED = dict(LineValidator().schema)


def test_a_fresh_schema_holds_the_types_the_request_schema_fixes():
    texts = ["request.contents[].parts[].text", "request.systemInstruction.parts[].text",
             "request.system_instruction.parts[].text"]
    arrays = ["request.tools", "request.safetySettings", "request.safety_settings",
              "request.systemInstruction.parts", "request.system_instruction.parts",
              "request.tools[].functionDeclarations", "request.tools[].function_declarations"]
    arrays += [f"request.{holder}.{name}" for holder in ("generationConfig", "generation_config")
               for name in ("stopSequences", "stop_sequences", "responseModalities", "response_modalities")]
    fixed = dict(LineValidator().schema)
    assert fixed == {**dict.fromkeys(texts, "string"), **dict.fromkeys(arrays, "array")}


def test_schema_is_read_only():
    v = LineValidator()
    accepted(line({"request": request()}), validator=v)
    with pytest.raises(TypeError):
        v.schema["request.contents"] = "string"  # type: ignore[index]
    assert dict(v.schema) == {
        "request.contents": "array",
        "request.contents[]": "object",
        "request.contents[].role": "string",
        "request.contents[].parts": "array",
        "request.contents[].parts[]": "object",
        "request.contents[].parts[].text": "string",
        **SCHEMA_FIXED,
    }


# -- blank lines, BOM, CRLF ------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"", b"\n", b"\r\n", b"   \n", b"\t \r\n", b" \r"])
def test_blank_lines_are_not_rows(raw):
    v = LineValidator()
    assert v.validate(5, raw) is None
    assert dict(v.schema) == SCHEMA_FIXED


def test_bom_on_line_1_is_tolerated():
    raw = b"\xef\xbb\xbf" + line({"key": "first", "request": request("hi")})
    assert accepted(raw, row=1) == Accepted(1, request("hi"), True, "first")


def test_bom_only_line_1_is_blank():
    assert check(b"\xef\xbb\xbf\r\n", row=1) is None


def test_bom_on_a_later_line_is_invalid_json():
    bad = rejected(b"\xef\xbb\xbf" + line({"request": request()}), row=2)
    assert bad.reason == "invalid_json"
    assert bad.message == "line 2: invalid JSON (UTF-8 byte order mark (BOM) is not supported)"
    assert bad.line == '\ufeff{"request":{"contents":[{"role":"user","parts":[{"text":"Hello"}]}]}}'


def test_bom_line_1_rejection_preview_drops_the_bom():
    bad = rejected(b"\xef\xbb\xbf[1]\r\n", row=1)
    assert (bad.reason, bad.line) == ("not_object", "[1]")


def test_crlf_line_is_accepted_and_preview_drops_the_line_ending():
    assert accepted(line({"request": request()}, end=b"\r\n"), row=2).request == request()
    bad = rejected(b'{"request": 1}\r\n', row=3)
    assert bad.line == '{"request": 1}'


# -- not_utf8 / invalid_json / not_object / missing_request ----------------------------------------

def test_not_utf8():
    bad = rejected(b'{"key": "a", "request": "\xff"}\n', row=3)
    assert bad == Rejected(
        row=3, reason="not_utf8", message="line 3: not valid UTF-8 (byte 0xff at byte 26)",
        request=None, line='{"key": "a", "request": "\ufffd"}', has_key=False, key=None)


def test_utf8_encoded_surrogate_is_not_utf8():
    bad = rejected(b'{"request": "\xed\xa0\x80"}', row=1)
    assert bad.reason == "not_utf8"
    assert bad.message == "line 1: not valid UTF-8 (byte 0xed at byte 14)"


@pytest.mark.parametrize(("raw", "message", "preview"), [
    (b'{"request": \n', "line 2: invalid JSON (unexpected end of data)", '{"request": '),
    (b'{"a": 1}x\r\n', "line 2: invalid JSON (unexpected content after document at character 9)",
     '{"a": 1}x'),
    (b"NaN\n", "line 2: invalid JSON (unexpected character, expected a JSON value)", "NaN"),
    (b'"\\ud800"\n', "line 2: invalid JSON (no low surrogate in string at character 2)", '"\\ud800"'),
])
def test_invalid_json(raw, message, preview):
    assert rejected(raw, row=2) == Rejected(2, "invalid_json", message, None, preview, False, None)


@pytest.mark.parametrize(("raw", "got"), [
    (b"[1, 2]", "array"), (b'"text"', "string"), (b"42", "number"), (b"true", "bool"), (b"null", "null"),
])
def test_not_object(raw, got):
    assert rejected(raw + b"\n", row=4) == Rejected(
        4, "not_object", f"line 4: a line must be a JSON object, got {got}", None, raw.decode(), False, None)


def test_missing_request_absent():
    raw = line({"key": "k9", "contents": []})
    assert rejected(raw, row=5) == Rejected(
        5, "missing_request", 'line 5: "request" must be an object, it is missing',
        None, '{"key":"k9","contents":[]}', True, "k9")


@pytest.mark.parametrize(("value", "got"), [("hi", "string"), ([], "array"), (None, "null"), (3, "number")])
def test_missing_request_not_an_object(value, got):
    bad = rejected(line({"request": value}), row=6)
    assert (bad.reason, bad.message) == ("missing_request", f'line 6: "request" must be an object, got {got}')
    assert bad.request is None
    assert bad.line == orjson.dumps({"request": value}).decode()
    assert (bad.has_key, bad.key) == (False, None)


# -- bad_contents / bad_role -----------------------------------------------------------------------

@pytest.mark.parametrize(("req", "message"), [
    ({}, "request.contents is missing"),
    ({"contents": None}, "request.contents must be a non-empty array, got null"),
    ({"contents": {"parts": []}}, "request.contents must be a non-empty array, got object"),
    ({"contents": []}, "request.contents must be a non-empty array, got an empty array"),
    ({"contents": ["hello"]}, "request.contents[0] must be an object, got string"),
    ({"contents": [{"role": "user"}]}, "request.contents[0].parts is missing"),
    ({"contents": [{"parts": []}]},
     "request.contents[0].parts must be a non-empty array, got an empty array"),
    ({"contents": [{"parts": "hi"}]}, "request.contents[0].parts must be a non-empty array, got string"),
    ({"contents": [{"parts": [{"text": "a"}]}, {"parts": [{"text": "b"}, 7]}]},
     "request.contents[1].parts[1] must be an object, got number"),
    ({"contents": [{"parts": [{}]}]},
     f"request.contents[0].parts[0] is an empty object; a part needs one of {DATA_FIELDS}"),
    ({"contents": [{"parts": [{"thought": True}]}]},
     f"request.contents[0].parts[0] has none of the data fields {DATA_FIELDS}"),
    ({"contents": [{"parts": [{"text": None}]}]},
     f"request.contents[0].parts[0] has none of the data fields {DATA_FIELDS}"),
    ({"contents": [{"parts": [{"text": 5}]}]},
     "request.contents[0].parts[0].text must be a string, got number"),
    ({"contents": [{"parts": [{"text": ["a"]}]}]},
     "request.contents[0].parts[0].text must be a string, got array"),
    ({"contents": [{"parts": [{"fileData": "gs://b/cat.jpg"}]}]},
     "request.contents[0].parts[0].fileData must be an object, got string"),
    ({"contents": [{"parts": [{"inline_data": [1]}]}]},
     "request.contents[0].parts[0].inline_data must be an object, got array"),
])
def test_bad_contents(req, message):
    raw = line({"key": 12, "request": req})
    assert rejected(raw, row=8) == Rejected(8, "bad_contents", f"line 8: {message}", req, None, True, 12)


def test_bad_role_message():
    req = {"contents": [{"role": "tester", "parts": [{"text": "hi"}]}]}
    assert rejected(line({"request": req}), row=7) == Rejected(
        7, "bad_role", 'line 7: request.contents[0].role must be "user" or "model", got "tester"',
        req, None, False, None)


@pytest.mark.parametrize(("role", "got"), [
    ("system", '"system"'), ("User", '"User"'), (5, "5"), ({"r": 1}, '{"r":1}'), (["user"], '["user"]'),
])
def test_bad_role_values(role, got):
    req = {"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": role, "parts": [{"text": "b"}]}]}
    bad = rejected(line({"request": req}), row=2)
    assert bad.reason == "bad_role"
    assert bad.message == f'line 2: request.contents[1].role must be "user" or "model", got {got}'


@pytest.mark.parametrize("role", ["user", "model", None, "absent"])
def test_good_roles(role):
    content = {"parts": [{"text": "hi"}]}
    if role != "absent":
        content["role"] = role
    assert accepted(line({"request": {"contents": [content]}})).request == {"contents": [content]}


@pytest.mark.parametrize("part", [
    {"text": ""},
    {"text": "look", "thought": False},
    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
    {"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}},
    {"fileData": {"fileUri": "gs://b/cat.jpg", "mimeType": "image/jpeg"}},
    {"file_data": {"file_uri": "gs://b/cat.jpg", "mime_type": "image/jpeg"}},
    {"functionCall": {"name": "lookup", "args": {"q": "cats"}}},
    {"function_response": {"name": "lookup", "response": {"result": "ok"}}},
    {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
    {"code_execution_result": {"outcome": "OUTCOME_OK", "output": "1"}},
    {"text": None, "fileData": {"fileUri": "gs://b/a.pdf", "mimeType": "application/pdf"}},
    {"fileData": {"fileUri": "gs://b/v.mp4", "mimeType": "video/mp4"},
     "videoMetadata": {"startOffset": "1s"}},
])
def test_good_parts(part):
    req = {"contents": [{"role": "user", "parts": [part]}]}
    assert accepted(line({"request": req})).request == req


# -- type_conflict ---------------------------------------------------------------------------------

def test_type_conflict_string_then_number():
    v = LineValidator()
    accepted(line({"request": request(generationConfig={"temperature": "warm"})}), row=3, validator=v)
    req = request(generationConfig={"temperature": 0.5})
    bad = rejected(line({"key": "b", "request": req}), row=9, validator=v)
    assert bad == Rejected(
        9, "type_conflict",
        "line 9: type conflict at request.generationConfig.temperature: number here "
        "(request.generationConfig.temperature), but first seen as string on line 3; "
        "Vertex needs one type per key path for the whole file",
        req, None, True, "b")
    assert v.schema["request.generationConfig.temperature"] == "string"


def test_int_then_float_is_one_number_type():
    v = LineValidator()
    accepted(line({"request": request(generationConfig={"temperature": 1})}), row=1, validator=v)
    accepted(line({"request": request(generationConfig={"temperature": 0.7})}), row=2, validator=v)
    assert v.schema["request.generationConfig.temperature"] == "number"


def test_bool_and_number_conflict():
    v = LineValidator()
    accepted(line({"request": request(labels={"flag": True})}), row=1, validator=v)
    bad = rejected(line({"request": request(labels={"flag": 1})}), row=2, validator=v)
    assert bad.reason == "type_conflict"
    assert "request.labels.flag: number here" in bad.message
    assert "first seen as bool on line 1" in bad.message


def test_null_is_compatible_and_records_nothing():
    v = LineValidator()
    accepted(line({"request": request(generationConfig={"seed": None})}), row=1, validator=v)
    assert "request.generationConfig.seed" not in v.schema
    assert v.schema["request.generationConfig"] == "object"
    accepted(line({"request": request(generationConfig={"seed": "abc"})}), row=2, validator=v)
    accepted(line({"request": request(generationConfig={"seed": None})}), row=3, validator=v)
    assert v.schema["request.generationConfig.seed"] == "string"
    bad = rejected(line({"request": request(generationConfig={"seed": 7})}), row=4, validator=v)
    assert "first seen as string on line 2" in bad.message


def test_null_array_elements_record_nothing():
    v = LineValidator()
    accepted(line({"request": request(generationConfig={"stopSequences": [None]})}), validator=v)
    assert v.schema["request.generationConfig.stopSequences"] == "array"
    assert "request.generationConfig.stopSequences[]" not in v.schema


def test_type_conflict_inside_arrays_across_lines():
    v = LineValidator()
    accepted(line({"request": request(generationConfig={"stopSequences": ["END"]})}), row=1, validator=v)
    req = request(generationConfig={"stopSequences": ["x", 3]})
    bad = rejected(line({"request": req}), row=2, validator=v)
    assert bad.message == (
        "line 2: type conflict at request.generationConfig.stopSequences[]: number here "
        "(request.generationConfig.stopSequences[1]), but first seen as string on line 1; "
        "Vertex needs one type per key path for the whole file")


def test_type_conflict_between_array_items_of_one_line():
    req = {"contents": [{"role": "user", "parts": [{"text": "a"}]},
                        {"role": "model", "parts": [{"text": "b"}, {"text": "c", "thought": "yes"}]},
                        {"role": "user", "parts": [{"text": "d", "thought": True}]}]}
    v = LineValidator()
    bad = rejected(line({"request": req}), row=4, validator=v)
    assert bad.message == (
        "line 4: type conflict at request.contents[].parts[].thought: bool here "
        "(request.contents[2].parts[0].thought), but first seen as string earlier on this line; "
        "Vertex needs one type per key path for the whole file")
    assert dict(v.schema) == SCHEMA_FIXED


def test_type_conflict_object_versus_array():
    v = LineValidator()
    accepted(line({"request": request(extras=[{"googleSearch": {"x": 1}}])}), row=1, validator=v)
    bad = rejected(line({"request": request(extras={"googleSearch": {"x": 1}})}), row=2, validator=v)
    assert "type conflict at request.extras: object here (request.extras), but first seen as array on line 1" \
        in bad.message


def test_first_line_wins_even_against_the_majority():
    v = LineValidator()
    accepted(line({"request": request(labels={"team": "a1"})}), row=1, validator=v)
    verdicts = [v.validate(row, line({"request": request(labels={"team": 5})})) for row in range(2, 6)]
    assert [x.reason for x in verdicts] == ["type_conflict"] * 4
    assert v.schema["request.labels.team"] == "string"


def test_rejected_line_does_not_poison_the_schema():
    v = LineValidator()
    accepted(line({"request": request(generationConfig={"temperature": 0.1})}), row=1, validator=v)
    before = dict(v.schema)
    # New paths (topK, labels.*) come before the conflict: none of them may be committed.
    bad_req = request(generationConfig={"topK": "forty", "temperature": "hot"}, labels={"a": "b"})
    assert rejected(line({"request": bad_req}), row=2, validator=v).reason == "type_conflict"
    # Rejected for another rule after setting new paths.
    bad_req = request(generationConfig={"topP": "high"}, tools=[{"google_search": {}}])
    assert rejected(line({"request": bad_req}), row=3, validator=v).reason == "empty_struct"
    assert dict(v.schema) == before
    ok = accepted(line({"request": request(generationConfig={"topK": 40, "topP": 0.9},
                                           labels={"a": 1})}), row=4, validator=v)
    assert ok.row == 4
    assert v.schema["request.generationConfig.topK"] == "number"
    assert v.schema["request.generationConfig.topP"] == "number"
    assert v.schema["request.labels.a"] == "number"


def test_shape_rejection_does_not_touch_the_schema():
    v = LineValidator()
    req = {"contents": [{"role": "tester", "parts": [{"text": "a"}]}], "labels": {"x": "y"}}
    assert rejected(line({"request": req}), validator=v).reason == "bad_role"
    assert dict(v.schema) == SCHEMA_FIXED


def test_keys_outside_request_are_not_typed():
    v = LineValidator()
    accepted(line({"key": "a", "meta": {"n": 1}, "request": request()}), row=1, validator=v)
    accepted(line({"key": 2, "meta": {"n": "one"}, "request": request()}), row=2, validator=v)
    assert not any(path.startswith(("key", "meta")) for path in v.schema)


# -- too_deep --------------------------------------------------------------------------------------

def deep_request(level: int, through_arrays: bool = False) -> tuple[dict, str]:
    """A request whose deepest object sits at ``level`` (line = 1, request = 2, ..., args = 6), and the
    concrete path of that object."""
    assert level >= 6
    inner: dict = {"leaf": 1, "empty": []}
    path_tail = ""
    for _ in range(level - 6):
        inner = {"a": [inner]} if through_arrays else {"a": inner}
        path_tail += ".a[0]" if through_arrays else ".a"
    req = {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": inner}}]}]}
    return req, "request.contents[0].parts[0].functionCall.args" + path_tail


@pytest.mark.parametrize("through_arrays", [False, True])
def test_nesting_15_is_accepted(through_arrays):
    req, _ = deep_request(15, through_arrays)
    assert accepted(line({"request": req})).request == req


@pytest.mark.parametrize("through_arrays", [False, True])
def test_nesting_16_is_rejected(through_arrays):
    req, path = deep_request(16, through_arrays)
    bad = rejected(line({"request": req}), row=11)
    assert bad == Rejected(
        11, "too_deep",
        f"line 11: {path} is nested too deeply: level 16, the maximum is 15 "
        "(the line is level 1, request level 2; arrays do not count)",
        req, None, False, None)


def test_levels_counted_from_the_line():
    # request = 2, contents[0] = 3, parts[0] = 4, fileData = 5
    req = {"contents": [{"parts": [{"fileData": {"fileUri": "gs://b/x.png", "mimeType": "image/png"}}]}]}
    ok = check(line({"request": req}), validator=LineValidator(max_nesting=5))
    assert ok == Accepted(1, req, False, None)
    bad = rejected(line({"request": req}), validator=LineValidator(max_nesting=4))
    assert bad.reason == "too_deep"
    assert bad.message.startswith(
        "line 1: request.contents[0].parts[0].fileData is nested too deeply: level 5, the maximum is 4 ")


# -- bad_key_name ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "why"), [
    ("$schema", 'key "$schema" ' + NOT_COLUMN),
    ("$defs", 'key "$defs" ' + NOT_COLUMN),
    ("my key", 'key "my key" ' + NOT_COLUMN),
    ("1st", 'key "1st" ' + NOT_COLUMN),
    ("a-b", 'key "a-b" ' + NOT_COLUMN),
    ("café", 'key "café" ' + NOT_COLUMN),
    ("x\n", 'key "x\\n" ' + NOT_COLUMN),
    ("", "an empty key is not a valid column name"),
    ("k" * 301, f'key "{"k" * 56}... is longer than 300 characters'),
    ("_TABLE_x", 'key "_TABLE_x" starts with a prefix BigQuery reserves'),
    ("_file_name", 'key "_file_name" starts with a prefix BigQuery reserves'),
    ("_PARTITIONTIME", 'key "_PARTITIONTIME" starts with a prefix BigQuery reserves'),
])
def test_bad_key_names(key, why):
    schema = {"type": "OBJECT", "properties": {key: {"type": "STRING"}}}
    req = request(generationConfig={"responseSchema": schema})
    bad = rejected(line({"key": "r1", "request": req}), row=12)
    assert bad == Rejected(
        12, "bad_key_name", f"line 12: request.generationConfig.responseSchema.properties.{key}: {why}",
        req, None, True, "r1")


@pytest.mark.parametrize("key", ["_x", "x" * 300, "A1_b2", "_", "table_", "_tablex", "snake_case", "camel"])
def test_good_key_names(key):
    req = request(labels={key: "v"})
    v = LineValidator()
    accepted(line({"request": req}), validator=v)
    accepted(line({"request": req}), row=2, validator=v)  # second time: served from the schema tree
    assert v.schema[f"request.labels.{key}"] == "string"


def test_bad_key_name_inside_arrays_names_the_concrete_path():
    tools = [{"functionDeclarations": [
        {"name": "ok", "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}},
        {"name": "bad", "parameters": {"$schema": "x", "type": "OBJECT"}},
    ]}]
    bad = rejected(line({"request": request(tools=tools)}), row=3)
    assert bad.reason == "bad_key_name"
    assert bad.message == (
        f'line 3: request.tools[0].functionDeclarations[1].parameters.$schema: key "$schema" {NOT_COLUMN}')


def test_bad_key_names_outside_request_are_ignored():
    assert accepted(line({"my key": 1, "$meta": {}, "request": request()})).has_key is False


# -- empty_struct / empty arrays / nested arrays ---------------------------------------------------

def test_empty_struct():
    req = request(tools=[{"google_search": {}}])
    assert rejected(line({"key": "e", "request": req}), row=13) == Rejected(
        13, "empty_struct",
        "line 13: request.tools[0].google_search is an empty object; "
        "Vertex cannot store a struct with no fields",
        req, None, True, "e")


def test_empty_struct_directly_under_request():
    bad = rejected(line({"request": request(generationConfig={})}), row=2)
    assert bad.message == ("line 2: request.generationConfig is an empty object; "
                           "Vertex cannot store a struct with no fields")


def test_empty_object_outside_request_is_fine():
    assert accepted(line({"meta": {}, "request": request()})).request == request()


def test_empty_arrays_are_accepted_and_type_only_the_array():
    v = LineValidator()
    accepted(line({"request": request(tools=[], generationConfig={"stopSequences": []})}), validator=v)
    assert v.schema["request.tools"] == "array"
    assert "request.tools[]" not in v.schema
    accepted(line({"request": request(tools=[{"googleSearch": {"a": 1}}])}), row=2, validator=v)
    assert v.schema["request.tools[]"] == "object"
    bad = rejected(line({"request": request(tools="none")}), row=3, validator=v)
    assert "but the request schema makes this field an array" in bad.message


def test_nested_array():
    call = {"functionCall": {"name": "f", "args": {"m": [[1, 2]]}}}
    req = {"contents": [{"role": "model", "parts": [call]}]}
    assert rejected(line({"request": req}), row=14) == Rejected(
        14, "nested_array",
        "line 14: request.contents[0].parts[0].functionCall.args.m[0] is an array inside an array, "
        "which Vertex cannot store",
        req, None, False, None)


# -- the 10 KB preview -----------------------------------------------------------------------------

def test_preview_keeps_a_line_of_exactly_10_kb():
    raw = b"x" * (LINE_PREVIEW_BYTES - 2) + "é".encode() + b"\r\n"
    bad = rejected(raw)
    assert bad.reason == "invalid_json"
    assert bad.line == "x" * (LINE_PREVIEW_BYTES - 2) + "é"


def test_preview_cut_at_10_kb():
    bad = rejected(b"y" * (LINE_PREVIEW_BYTES + 500) + b"\n")
    assert bad.line == "y" * LINE_PREVIEW_BYTES


@pytest.mark.parametrize(("char", "offset"), [("é", 1), ("€", 1), ("€", 2), ("😀", 1), ("😀", 2), ("😀", 3)])
def test_preview_never_cuts_a_character(char, offset):
    encoded = char.encode()
    head = LINE_PREVIEW_BYTES - offset  # the character starts `offset` bytes before the cut
    raw = b"[" + b"z" * (head - 1) + encoded + b"tail]\n"
    bad = rejected(raw)
    assert bad.reason == "invalid_json"
    assert bad.line == "[" + "z" * (head - 1)
    assert len(bad.line.encode()) == head


def test_preview_of_a_long_non_utf8_line():
    raw = b"\xff" * (LINE_PREVIEW_BYTES + 10) + b"\n"
    bad = rejected(raw)
    assert bad.reason == "not_utf8"
    assert bad.line == "\ufffd" * LINE_PREVIEW_BYTES


def test_preview_of_a_long_missing_request_line():
    raw = line({"key": "long", "prompt": "€" * 5000})
    bad = rejected(raw)
    assert bad.reason == "missing_request"
    assert bad.line is not None
    assert len(bad.line.encode()) <= LINE_PREVIEW_BYTES
    assert raw.decode().startswith(bad.line)
    assert len(bad.line.encode()) == LINE_PREVIEW_BYTES - 1  # 25 ASCII bytes, then 3-byte characters


def test_rejected_with_a_request_carries_no_line():
    bad = rejected(line({"request": {"contents": []}}))
    assert bad.request == {"contents": []}
    assert bad.line is None


# -- key round trip --------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["row-1", 17, 2.5, {"id": "a", "n": [1]}, [1, "b"], True, None])
def test_key_round_trip(key):
    ok = accepted(line({"key": key, "request": request()}))
    assert (ok.has_key, ok.key) == (True, key)
    bad = rejected(line({"key": key, "request": {"contents": []}}))
    assert (bad.has_key, bad.key) == (True, key)


def test_absent_key():
    ok = accepted(line({"request": request()}))
    assert (ok.has_key, ok.key) == (False, None)


def test_keys_of_different_types_across_lines_are_fine():
    v = LineValidator()
    verdicts = [v.validate(i, line({"key": key, "request": request()}))
                for i, key in enumerate(["a", 1, {"x": 1}, None], start=1)]
    assert [type(x) for x in verdicts] == [Accepted] * 4
    assert [x.key for x in verdicts] == ["a", 1, {"x": 1}, None]


# -- realistic requests and a whole file -----------------------------------------------------------

MULTIMODAL = {
    "contents": [
        {"role": "user", "parts": [
            {"fileData": {"fileUri": "gs://my-bucket/images/cat.jpg", "mimeType": "image/jpeg"}},
            {"text": "What is in this picture? Answer in JSON."},
        ]},
        {"role": "model", "parts": [{"text": "{\"animal\": \"cat\"}"}]},
        {"role": "user", "parts": [{"text": "And the colour?"}]},
    ],
    "systemInstruction": {"parts": [{"text": "You are a careful image analyst."}]},
    "generationConfig": {
        "temperature": 0.2, "topP": 0.95, "maxOutputTokens": 1024, "candidateCount": 1,
        "stopSequences": ["END"], "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"colour": {"type": "STRING"}},
                           "required": ["colour"]},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    "tools": [{"googleSearch": {"excludeDomains": ["example.com"]}},
              {"functionDeclarations": [{"name": "lookup", "description": "Find a thing",
                                         "parameters": {"type": "OBJECT",
                                                        "properties": {"q": {"type": "STRING"}}}}]}],
    "labels": {"team": "vision"},
}


def test_realistic_multimodal_request_is_accepted():
    v = LineValidator()
    raw = line({"key": "img-001", "request": MULTIMODAL})
    assert v.validate(1, raw) == Accepted(1, MULTIMODAL, True, "img-001")
    schema = v.schema
    assert schema["request.contents[].parts[].fileData.fileUri"] == "string"
    assert schema["request.systemInstruction.parts[].text"] == "string"
    assert schema["request.generationConfig.maxOutputTokens"] == "number"
    assert schema["request.generationConfig.stopSequences[]"] == "string"
    assert schema["request.tools[].functionDeclarations[].parameters.properties.q.type"] == "string"
    assert schema["request.safetySettings[]"] == "object"
    # The same shape again, with different values, is still fine.
    again = line({"key": "img-002", "request": MULTIMODAL | {"labels": {"team": "audio"}}})
    assert v.validate(2, again) == Accepted(2, MULTIMODAL | {"labels": {"team": "audio"}}, True, "img-002")


def test_a_mixed_file():
    lines = [
        line({"key": "a", "request": request("one", generationConfig={"temperature": 0.1})}),
        b"\n",
        b"not json\n",
        line({"key": "b", "request": request("two", generationConfig={"temperature": "x"})}),
        b"   \r\n",
        line({"key": "c", "request": request("three", generationConfig={"temperature": 1})}),
        line({"key": "d", "request": {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}}),
    ]
    v = LineValidator()
    verdicts = [v.validate(row, raw) for row, raw in enumerate(lines, start=1)]
    summary = [None if x is None else (x.row, getattr(x, "reason", "ok"), x.key) for x in verdicts]
    assert summary == [
        (1, "ok", "a"), None, (3, "invalid_json", None), (4, "type_conflict", "b"), None, (6, "ok", "c"),
        (7, "bad_role", "d"),
    ]


# -- numeric-looking strings: the importer coerces them to numbers -----------------------------------

@pytest.mark.parametrize("value", ["0", "000000", "-7", "2.5", "-0.25"])
def test_numeric_looking_string_counts_as_a_number(value):
    v = LineValidator()
    accepted(line({"request": request(labels={"id": value})}), row=1, validator=v)
    assert v.schema["request.labels.id"] == "number"
    accepted(line({"request": request(labels={"id": 7})}), row=2, validator=v)
    bad = rejected(line({"request": request(labels={"id": "abc"})}), row=3, validator=v)
    assert bad.reason == "type_conflict"
    assert bad.message == (
        "line 3: type conflict at request.labels.id: string here (request.labels.id), but first seen as number "
        "on line 1 (numeric-looking strings count as numbers); Vertex needs one type per key path for the "
        "whole file")


@pytest.mark.parametrize("value", ["", "-", "1.", ".5", "1e5", "+1", " 1", "1 ", "0x1", "1,000", "12a", "١٢"])
def test_strings_that_do_not_look_numeric_stay_strings(value):
    v = LineValidator()
    accepted(line({"request": request(labels={"id": "abc"})}), row=1, validator=v)
    accepted(line({"request": request(labels={"id": value})}), row=2, validator=v)
    assert v.schema["request.labels.id"] == "string"


def test_string_path_rejects_a_numeric_looking_string():
    v = LineValidator()
    accepted(line({"request": request(labels={"id": "abc"})}), row=1, validator=v)
    bad = rejected(line({"request": request(labels={"id": "0042"})}), row=2, validator=v)
    assert bad.message == (
        'line 2: type conflict at request.labels.id: number (the string "0042", which Vertex\'s importer reads '
        "as a number) here (request.labels.id), but first seen as string on line 1; Vertex needs one type per "
        "key path for the whole file")


def test_numeric_string_inside_an_array_conflicts():
    v = LineValidator()
    bad = rejected(line({"request": request(generationConfig={"stopSequences": ["END", "42"]})}), validator=v)
    assert bad.reason == "type_conflict"
    assert "request.generationConfig.stopSequences[1]" in bad.message
    assert "earlier on this line" in bad.message


@pytest.mark.parametrize("first", [True, False])
def test_a_numeric_prompt_is_rejected_wherever_it_comes(first):
    """The prompt text is a string by the request schema, so a prompt that is only a number is the line that
    goes, even on line 1: the ordinary prompts after it still run."""
    v = LineValidator()
    rows = ["Describe a cat", "42", "Describe a dog"] if not first else ["42", "Describe a cat", "Describe a dog"]
    verdicts = [v.validate(i, line({"request": request(text)})) for i, text in enumerate(rows, 1)]
    bad = [x for x in verdicts if isinstance(x, Rejected)]
    assert len(bad) == 1 and bad[0].row == rows.index("42") + 1
    assert bad[0].message == (
        f"line {bad[0].row}: type conflict at request.contents[].parts[].text: number (the string \"42\", which "
        f"Vertex's importer reads as a number) here (request.contents[0].parts[0].text), but the request schema "
        "makes this field a string; Vertex needs one type per key path for the whole file (put a word beside the "
        "number)")


def test_numeric_system_instruction_is_rejected():
    v = LineValidator()
    req = request("hi", systemInstruction={"parts": [{"text": "3"}]})
    bad = rejected(line({"request": req}), validator=v)
    assert bad.reason == "type_conflict"
    assert "request.systemInstruction.parts[0].text" in bad.message


# -- repeated fields must be arrays ----------------------------------------------------------------

@pytest.mark.parametrize(("extra", "path", "where", "got"), [
    ({"tools": {"googleSearch": {"x": 1}}}, "request.tools", "request.tools", "object"),
    ({"safety_settings": "none"}, "request.safety_settings", "request.safety_settings", "string"),
    ({"systemInstruction": {"parts": {"text": "be brief"}}}, "request.systemInstruction.parts",
     "request.systemInstruction.parts", "object"),
    ({"generationConfig": {"stopSequences": "END"}}, "request.generationConfig.stopSequences",
     "request.generationConfig.stopSequences", "string"),
    ({"generation_config": {"response_modalities": "TEXT"}}, "request.generation_config.response_modalities",
     "request.generation_config.response_modalities", "string"),
    ({"tools": [{"functionDeclarations": {"name": "f"}}]}, "request.tools[].functionDeclarations",
     "request.tools[0].functionDeclarations", "object"),
])
def test_repeated_fields_must_be_arrays_even_on_the_first_line(extra, path, where, got):
    bad = rejected(line({"request": request(**extra)}), row=6)
    assert bad.reason == "type_conflict"
    assert bad.message == (
        f"line 6: type conflict at {path}: {got} here ({where}), but the request schema makes this field an "
        "array; Vertex needs one type per key path for the whole file")


def test_repeated_fields_as_arrays_or_null_pass():
    accepted(line({"request": request(tools=[{"functionDeclarations": [{"name": "f"}]}], safetySettings=None,
                                      systemInstruction={"parts": [{"text": "be brief"}]},
                                      generationConfig={"stopSequences": ["END"], "responseModalities": None})}))


# --- the importer's column limit bounds the schema ------------------------------------------------------------

def _labelled(i: int, n: int = 1) -> bytes:
    labels = {f"k{i}_{j}": "v" for j in range(n)}
    return orjson.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                                     "labels": labels}})


def test_lines_that_would_pass_the_importer_column_limit_are_rejected_one_by_one():
    from shared.validation import TOO_MANY_COLUMNS, LineValidator

    v = LineValidator(max_columns=40)
    verdicts = [v.validate(i, _labelled(i, 3)) for i in range(1, 30)]
    accepted = [x for x in verdicts if type(x).__name__ == "Accepted"]
    rejected = [x for x in verdicts if type(x).__name__ == "Rejected"]
    assert accepted and rejected and all(r.reason == TOO_MANY_COLUMNS for r in rejected)
    assert "at most 40 columns" in rejected[0].message and "labels.k" in rejected[0].message
    assert len(v.schema) <= 40
    # A line that adds no new key path still passes after the limit is reached.
    assert type(v.validate(99, _labelled(1, 3))).__name__ == "Accepted"


def test_a_rejected_line_leaves_no_key_path_behind():
    from shared.validation import LineValidator

    v = LineValidator()
    bad = orjson.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                                    "labels": {f"fresh{j}": "v" for j in range(50)}, "empty": {}}})
    assert type(v.validate(1, bad)).__name__ == "Rejected"
    assert v._columns == LineValidator()._columns


def test_validation_memory_is_bounded_whatever_the_per_row_keys():
    import tracemalloc

    from shared.validation import LineValidator

    v = LineValidator()
    tracemalloc.start()
    for i in range(1, 30_001):  # a new map key on every row: 30,000 distinct key paths asked for
        v.validate(i, _labelled(i))
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert v._columns <= 10_000 and current < 16 * 1024 * 1024
