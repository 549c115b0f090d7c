"""The Vertex emulator's importer rules, judged two ways that must agree.

`SchemaChecker` skips the walk of a line its typed decoder accepts (a line that fits the schema as
it is). Here a plain reference walk of the same rules, one path string per value as the rules are
written, judges thousands of random files too: both must pass the same files and fail the others
at the same line with the same message. The files are mostly consistent with a few deviations, so
most lines take the decoder and every rule is still met somewhere.
"""

from __future__ import annotations

import json
import random

import orjson
import pytest

from local.vertex import _importer
from local.vertex._importer import (
    _COLUMN,
    _KINDS,
    _NUMBER_START,
    _NUMERIC_STRING,
    _STRING,
    MAX_LEVEL,
    ImportRuleError,
    SchemaChecker,
    _coerced,
)


class ReferenceChecker:
    """The importer rules walked plainly: a dict of path -> first type, every value every time."""

    def __init__(self):
        self.types: dict[str, tuple] = {}
        self.rows = 0

    def check_line(self, raw: bytes, line: int) -> None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ImportRuleError(f"Invalid JSON: {exc}", line) from None
        if not isinstance(obj, dict):
            raise ImportRuleError("Each line must be a JSON object", line)
        self.rows += 1
        self.record(obj, "", 0, line)

    def record(self, obj: dict, path: str, level: int, line: int) -> None:
        if not obj:
            raise ImportRuleError(f"Cannot store struct '{path or '<root>'}' with no fields", line)
        if level + 1 > MAX_LEVEL:
            raise ImportRuleError(f"Schema nested too deeply, at least {level + 1} compared to the maximum allowed "
                                  f"level of {MAX_LEVEL} (at '{path}')", line)
        for key, value in obj.items():
            if not _COLUMN.match(key):
                raise ImportRuleError(
                    f"Invalid field name \"{key}\" at '{path or '<root>'}'. Fields must contain only letters, "
                    "numbers, and underscores, start with a letter or underscore", line)
            self.value(value, f"{path}.{key}" if path else key, level + 1, line)

    def value(self, value, path: str, level: int, line: int) -> None:
        if value is None:
            return
        if type(value) is str:
            numeric = value[:1] in _NUMBER_START and _NUMERIC_STRING.fullmatch(value)
            kind = ("NUMERIC", "FLOAT" if "." in value else "INTEGER", value) if numeric else _STRING
        else:
            kind = _KINDS[type(value)]
        seen = self.types.setdefault(path, kind)
        if seen[0] != kind[0]:
            why = "; ".join(x for x in (_coerced(seen), _coerced(kind)) if x)
            raise ImportRuleError(
                f"Field {path} has changed type from {seen[1]} to {kind[1]}"
                + (f" ({why}; start such values with a letter to keep them strings)" if why else ""), line)
        if kind[0] == "RECORD":
            self.record(value, path, level, line)
        elif kind[0] == "REPEATED":
            for item in value:
                self.value(item, path + "[]", level, line)


KEYS = ["id", "request", "a", "b", "contents", "parts", "text", "n", "tags", "x_1", "_y", "class"]
BAD_KEYS = ["1a", "a b", "$defs", "", "é", "ab\n"]
STRINGS = ["", "abc", "000000", "-3", "2.5", "1.", ".5", "-", "12a", "٣", "1e5", "{}", "{ }", " 7", "7\n", "-0",
           "über", 'a"b', "\\", "\u2028", "0.0", "--1", "q\\u0030"]
NUMERIC_STRINGS = ["000000", "-3", "2.5", "0", "-0.0", "12345678901234567890", 5, 1.5]
KINDS = ["str", "str", "num", "numstr", "bool", "rec", "rec", "list"]


class RandomFile:
    """Lines whose paths mostly keep one kind each (chosen per file), deviating with probability `deviate`."""

    def __init__(self, rnd: random.Random, deviate: float):
        self.rnd, self.deviate, self.kinds = rnd, deviate, {}

    def kind(self, path: tuple) -> str:
        if path not in self.kinds or self.rnd.random() < self.deviate:
            return self.kinds.setdefault(path, self.rnd.choice(KINDS if len(path) < 12 else KINDS[:5]))
        return self.kinds[path]

    def value(self, path: tuple):
        rnd = self.rnd
        if rnd.random() < 0.08:
            return None
        kind = self.kind(path)
        if kind == "str":
            return rnd.choice(STRINGS) if rnd.random() < 0.2 else f"s{rnd.randint(0, 99)} x"
        if kind == "num":
            return rnd.choice([0, 1, -7, 2.5, -0.0, 10**20, 1e300])
        if kind == "numstr":
            return rnd.choice(NUMERIC_STRINGS)
        if kind == "bool":
            return rnd.random() < 0.5
        if kind == "rec":
            return self.record(path)
        return [self.value(path + ("[]",)) for _ in range(rnd.choice([0, 1, 1, 2, 3]))]

    def record(self, path: tuple) -> dict:
        rnd = self.rnd
        out = {}
        for _ in range(rnd.choice([1, 1, 2, 2, 3]) if rnd.random() > 0.01 else 0):
            key = rnd.choice(BAD_KEYS) if rnd.random() < 0.003 else rnd.choice(KEYS[: 3 + len(path) % 7])
            out[key] = self.value(path + (key,))
        return out

    def line(self) -> bytes:
        rnd = self.rnd
        obj = self.record(())
        raw = json.dumps(obj, separators=(",", ":") if rnd.random() < 0.5 else None, ensure_ascii=rnd.random() < 0.5)
        raw = raw.encode("utf-8", "surrogatepass")
        r = rnd.random()
        if r < 0.03:  # digits spelled as \u escapes
            raw = raw.replace(b'"0', b'"\\u0030', 1).replace(b'"-', b'"\\u002D', 1).replace(b'.5"', b'\\u002e5"', 1)
        elif r < 0.04:  # a duplicate key
            raw = raw.replace(b"{", b'{"a":1,' if rnd.random() < 0.5 else b'{"a":"q",', 1)
        elif r < 0.045:  # broken JSON
            cut = rnd.randrange(len(raw) + 1)
            raw = raw[:cut] + rnd.choice([b"x", b",", b"\xff", b"\\ud800", b"}", b"]", b" "]) + raw[cut:]
        elif r < 0.047:
            raw = rnd.choice([b"[]", b"1", b"null", b'"x"', b"{}", b"{ }", b"nul", b'{"a":NaN}', b'{"a":1e400}'])
        return raw


def _judge(checker, lines: list[bytes]):
    try:
        for number, raw in enumerate(lines, 1):
            checker.check_line(raw, number)
    except ImportRuleError as exc:
        return "fails", exc.line, exc.detail
    return "passes", checker.rows


@pytest.mark.parametrize("block", range(4))
def test_the_fast_importer_judges_random_files_like_the_plain_walk(block):
    outcomes = set()
    for seed in range(block * 600, (block + 1) * 600):
        rnd = random.Random(seed)
        gen = RandomFile(rnd, rnd.choice([0.0, 0.001, 0.01, 0.05]))
        lines = [gen.line() for _ in range(rnd.choice([1, 3, 10, 40, 200]))]
        expected = _judge(ReferenceChecker(), lines)
        assert _judge(SchemaChecker(), lines) == expected, f"seed {seed}"
        outcomes.add(expected[0])
    assert outcomes == {"passes", "fails"}


def test_most_lines_of_one_shape_skip_the_walk(monkeypatch):
    walked = []
    walk = SchemaChecker._walk_record

    def counted(self, obj, node, level, line):
        if level == 0:
            walked.append(line)
        return walk(self, obj, node, level, line)

    monkeypatch.setattr(SchemaChecker, "_walk_record", counted)
    checker = SchemaChecker()
    for i in range(1, 1001):
        line = {"key": f"q-{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"Item {i}"}]}],
                                             "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256}}}
        if i == 500:
            line["request"]["generationConfig"]["topP"] = 0.9  # a new key: walked, then known
        checker.check_line(orjson.dumps(line), i)
    assert checker.rows == 1000 and walked == [1, 500]


def test_a_schema_that_keeps_growing_stops_rebuilding_and_stays_right(monkeypatch):
    monkeypatch.setattr(_importer, "_MAX_BUILDS", 3)
    lines = [orjson.dumps({f"k{i}": i, "common": "x"}) for i in range(20)]
    lines += [orjson.dumps({"k1": 5, "common": None}), orjson.dumps({"k15": 2.5}), orjson.dumps({"k19": "19"}),
              orjson.dumps({"k2": "two"})]
    assert _judge(SchemaChecker(), lines) == _judge(ReferenceChecker(), lines) == (
        "fails", 24, "Field k2 has changed type from INTEGER to STRING")


def test_a_key_the_decoder_cannot_name_leaves_those_lines_to_the_walk():
    """A trailing newline passes the column rule (`$` matches before it) but cannot be a decoder field."""
    lines = [orjson.dumps({"a": 1}), orjson.dumps({"a\n": 2}), orjson.dumps({"a": 3, "a\n": 4}),
             orjson.dumps({"a\n": "x"})]
    assert _judge(SchemaChecker(), lines) == _judge(ReferenceChecker(), lines) == (
        "fails", 4, "Field a\n has changed type from INTEGER to STRING")
