"""A line staged from its known shape gets the verdict and the bytes the full path gives it.

Each test stages the same file twice, with `KnownShapes` and with the full path only (parse, validate, splice
or serialise), and compares everything staging wrote and counted. The files mix shapes that repeat with
strings that should not pass (control bytes, escapes, bad UTF-8, numeric-looking prompts and values, other
roles, bad key names), byte mutations, spaces, CRLF line ends and a BOM; a test also checks that most lines of a
plain file did take the known path, so the comparison is not between two full paths.
"""

from __future__ import annotations

import random

import pytest

from shared import known_shapes, layout, staging
from shared.known_shapes import KnownShapes
from tests.unit.fakes import make_pipeline

STRINGS = [
    b"plain text", b"", b"caf\xc3\xa9 \xe2\x80\xa8 \x7f", b"123", b"-2.5", b"007", b"1e5", b"-", b"1.", b"0.5.1",
    b"user", b"model", b"assistant", b"User", b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"a\tb", b"a\x00b",
    b"a\x1fb", b"a\\nb", b'a\\"b', b"\\u00e9", b"\\\\", b"x" * 300, b"}", b"],", b",", b":", b"r5", b"k1",
    b"\xf0\x9f\x98\x80", b"\xe2\x82", b"a b",
]
COMMON = [b"plain text", b"caf\xc3\xa9 \xe2\x80\xa8 \x7f", b"x" * 300, b"k1", b"r5", b"", b"a b"]
KEYS = [b"team", b"team", b"1a", b"_TABLE_x", b"a-b", b"a" * 301, b"_ok", b"user"]
ROLES = [b"user", b"user", b"model", b"assistant", b"", b"123"]
# Shapes, with S a string, R a role, K a key name. Each keeps its bytes between strings from line to line.
TEMPLATES = [
    b'{"key":"S","request":{"contents":[{"role":"R","parts":[{"text":"S"}]}]}}',
    b'{"request":{"contents":[{"parts":[{"text":"S"}]}],"generationConfig":{"temperature":0.5,'
    b'"stopSequences":["S","S"]}},"key":"S"}',
    b'{"request":{"contents":[{"role":"R","parts":[{"text":"S"},{"text":"S"}]}],"labels":{"K":"S"}}}',
    b'{"key":7,"request":{"contents":[{"parts":[{"text":"S"}]}],"x":{"y":"S"}}}\r',
    b'{"key":{"a":"S","b":[1,"S"]},"request":{"contents":[{"parts":[{"text":"S"}]}]}}',
    b'{"key": "S", "request": {"contents": [{"parts": [{"text": "S"}]}]}}',
    b'{"key":"S","request":{"contents":[{"parts":[{"text":"S"}]}],"x":"S"}}',
    b'{"request":{"contents":[{"role":"R","parts":[{"inlineData":{"mimeType":"S","data":"S"}}]}]}}',
    b'{"request":{"contents":[{"parts":[{"text":"S"}]}],"K":{"n":1}},"key":null}',
    b'{"key":"S","request":{"contents":[{"parts":[{"text":"S","thought":false}]}],"n":[1.5,"S"]}}\r',
    b'{"key":"S","request":{"contents":[{"parts":[{"text":"S"}]}],"systemInstruction":{"role":"R",'
    b'"parts":[{"text":"S"}]}}}',
    b'{"request":{"contents":[{"role":"R","parts":[{"text":"S"}]}]},"key":["S",2]}\r',
]
MUTATIONS = [b"\x00", b"\t", b"\\", b'"', b"\xff", b" ", b"\r", b"1", b"}", b"\xc3"]


def _fill(template: bytes, rnd: random.Random, strings: list[bytes], roles: list[bytes] = ROLES) -> bytes:
    out = template
    for mark, pool in ((b'"R"', roles), (b'"K"', KEYS), (b'"S"', strings)):
        while mark in out:
            out = out.replace(mark, b'"%b"' % rnd.choice(pool), 1)
    return out


def _file(rnd: random.Random, rows: int, hostile: float) -> bytes:
    lines = []
    for _ in range(rows):
        line = _fill(rnd.choice(TEMPLATES), rnd, STRINGS if rnd.random() < hostile else COMMON)
        if rnd.random() < hostile / 2:  # a byte put in or taken out anywhere
            at = rnd.randrange(len(line))
            line = line[:at] + (rnd.choice(MUTATIONS) if rnd.random() < 0.7 else b"") + line[at + 1:]
        lines.append(line)
    if rnd.random() < 0.3:
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    return b"\n".join(lines) + rnd.choice([b"", b"\n"])


def _stage(data: bytes, monkeypatch: pytest.MonkeyPatch, *, known: bool, max_bytes: int) -> tuple:
    """What staging `data` wrote and counted; and how many lines took the known path."""
    hits = []
    with monkeypatch.context() as m:
        real = KnownShapes.staged_line
        if known:
            def spy(self: KnownShapes, row: int, raw: bytes) -> bytes | None:
                line = real(self, row, raw)
                hits.append(line is not None)
                return line
            m.setattr(KnownShapes, "staged_line", spy)
        else:
            m.setattr(KnownShapes, "staged_line", lambda self, row, raw: None)
        p, store, _, _ = make_pipeline(MAX_BYTES_PER_JOB=max_bytes, MAX_ROWS_PER_JOB=50)
        generation = store.write_bytes("in-bucket", "incoming/q.jsonl", data)
        staged = staging.stage(p, "r1", "in-bucket", "incoming/q.jsonl", generation)
    names = [layout.validation_errors_name("r1"), *(layout.staged_name("r1", part) for part in staged.parts)]
    written = {name: store.read_bytes(p.work_bucket, name) for name in names}
    return (staged.total, staged.parts, dict(staged.failed_by_reason), staged.samples, written), sum(hits)


@pytest.mark.parametrize("seed", range(60))
def test_known_shapes_stage_what_the_full_path_stages(seed: int, monkeypatch: pytest.MonkeyPatch):
    rnd = random.Random(seed)
    data = _file(rnd, 400, hostile=rnd.choice([0.02, 0.1, 0.4]))
    max_bytes = rnd.choice([1024, 1400, 1 << 20])  # some staged lines too large, by either path
    known, _ = _stage(data, monkeypatch, known=True, max_bytes=max_bytes)
    full, _ = _stage(data, monkeypatch, known=False, max_bytes=max_bytes)
    assert known == full


def test_most_lines_of_a_plain_file_take_the_known_path(monkeypatch: pytest.MonkeyPatch):
    # Two shapes, two roles, ordinary prompts and keys; a few lines broken.
    rnd = random.Random(7)
    lines = [_fill(TEMPLATES[rnd.choice([0, 1])], rnd, COMMON, [b"user", b"model"]) for _ in range(2000)]
    for row in rnd.sample(range(2000), 20):
        lines[row] = lines[row].replace(b"e", b"\\e", 1)
    (total, _, failed, _, _), hits = _stage(b"\n".join(lines), monkeypatch, known=True, max_bytes=1 << 20)
    assert total == 2000 and failed == {"invalid_json": 20}
    assert hits > 1900


@pytest.mark.parametrize("string", STRINGS)
def test_each_string_in_a_known_shape_gets_the_full_paths_verdict(string: bytes, monkeypatch: pytest.MonkeyPatch):
    # Every slot of every shape, one at a time, after lines that taught the shape with ordinary strings.
    for template in TEMPLATES:
        rnd = random.Random(1)
        taught = [_fill(template, rnd, [b"plain text"]) for _ in range(3)]
        slots = template.count(b'"S"')
        for slot in range(slots):
            line = template
            for n in range(slots):
                line = line.replace(b'"S"', b'"%b"' % (string if n == slot else b"plain text"), 1)
            line = _fill(line, rnd, [b"plain text"])
            data = b"\n".join([*taught, line, *taught])
            known, _ = _stage(data, monkeypatch, known=True, max_bytes=1 << 20)
            assert known == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0], (template, slot)


def test_a_file_of_shapes_that_never_repeat_stops_looking(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(known_shapes, "_GIVE_UP_MISSES", 50)
    shapes = KnownShapes()
    for row in range(1, 200):
        raw = b'{"request":{"contents":[{"parts":[{"text":"x"}]}],"k%d":1}}' % row
        assert shapes.staged_line(row, raw) is None
        shapes.learn(raw, len(b'{"request":'), len(raw) - 1, False)
    assert not shapes._on and shapes._misses == 50
