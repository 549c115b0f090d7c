"""A line staged from its known shape gets the verdict and the bytes the full path gives it.

Each test stages the same file twice, with `KnownShapes` and with the full path only (parse, validate, splice
or serialise), and compares everything staging wrote and counted. The files mix shapes that repeat with
strings that should not pass (control bytes, escapes other than line breaks, bad UTF-8, numeric-looking prompts
and values, other roles, bad key names), row-number keys orjson spells otherwise, byte mutations, spaces, CRLF
line ends and BOMs; a test also checks that most lines of a plain file (compact, spaced, or with row-number keys)
did take the known path, so the comparison is not between two full paths.
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
    b"\xf0\x9f\x98\x80", b"\xe2\x82", b"a b", b"a\xc3", b"\xa9b", b"a\\rb\\t", b"\\n1", b"\\\\n", b"a\\/b",
    b"a\\", b"\\u0031", b"1\\n", b"\\n" * 40, b"\\n" * 40 + b"\\u00e9", b"\\t" * 40 + b'\\"',
]
COMMON = [b"plain text", b"caf\xc3\xa9 \xe2\x80\xa8 \x7f", b"x" * 300, b"k1", b"r5", b"", b"a b",
          b"line one\\nline two\\n\\tthree"]
KEYS = [b"team", b"team", b"1a", b"_TABLE_x", b"a-b", b"a" * 301, b"_ok", b"user", b"a\\nb", b"t\\u0065am"]
NUMBERS = [b"0", b"7", b"-3", b"123456789012345678", b"1234567890123456789", b"-0", b"007", b"1.5", b"1e3",
           b"18446744073709551616", b"-", b"7 8", b"#", b"-#"]
ROLES = [b"user", b"user", b"model", b"assistant", b"", b"123", b"us\\ner", b"\\u0075ser"]
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
    # spaced, as json.dumps writes by default, or more; numbers orjson spells otherwise; duplicate keys
    b'{"request": {"contents": [{"role": "R", "parts": [{"text": "S"}]}], "generationConfig": {"temperature": '
    b'0.50, "topK": 1e1}}, "key": "S"}',
    b'\t{ "key" : [ "S" , 2 ] , "request" : {"contents":[{"parts":[{"text":"S"}]}]} } \r',
    b'{"key": {"a": "S", "a": "S"}, "request": {"contents": [{"parts": [{"text": "S"}]}]}}',
    b'{"request": {"contents": [{"parts": [{"text": "S"}]}], "x": {"K": "S", "K": "S"}}}',
    b'{"other": {"request": "S"}, "request": {"contents": [{"parts": [{"text": "S"}]}]}, "key": null}',
    b'{"request": {"contents": [{"parts": [{"text": "S"}]}]}, "request": {"contents": [{"parts": [{"text": "S"}]}]}}',
    b'{"key": "S", "key": 1, "request": {"contents": [{"parts": [{"text": "S"}]}]}}',
    b'{"request":{"contents":[{"parts":[{"text":"S"}]}],"stop":["S","S"]}}\r',
    # a row number as the key
    b'{"key":<N>,"request":{"contents":[{"role":"R","parts":[{"text":"S"}]}]}}',
    b'{"request": {"contents": [{"parts": [{"text": "S"}]}]}, "key": <N>}\r',
    b'{"key": [<N>], "request": {"contents": [{"parts": [{"text": "S"}]}]}}',
]
MUTATIONS = [b"\x00", b"\t", b"\\", b'"', b"\xff", b" ", b"\r", b"1", b"}", b"\xc3"]


def _fill(template: bytes, rnd: random.Random, strings: list[bytes], roles: list[bytes] = ROLES) -> bytes:
    out = template.replace(b"<N>", b"%d" % rnd.randrange(-5, 10**6) if rnd.random() < 0.8 else rnd.choice(NUMBERS))
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
    for row in rnd.sample(range(rows), rnd.choice([0, 1, 5])):  # a BOM is skipped on line 1 only
        lines[row] = b"\xef\xbb\xbf" + lines[row]
    return b"\n".join(lines) + rnd.choice([b"", b"\n"])


def _stage(data: bytes, monkeypatch: pytest.MonkeyPatch, *, known: bool, max_bytes: int,
           runs: bool = True, run_bytes: tuple[int, int] = (600, 100), read_size: int | None = None) -> tuple:
    """What staging `data` wrote and counted; and how many lines took the known path (one by one, or in runs of
    lines side by side unless `runs` is false; `run_bytes`: the longest and shortest run tried, short here so
    that the files of these tests have many runs, and runs that fail)."""
    hits = []
    with monkeypatch.context() as m:
        m.setattr(staging, "RUN_BYTES", run_bytes[0])
        m.setattr(staging, "RUN_MIN_BYTES", run_bytes[1])
        if read_size is not None:
            m.setattr(staging, "READ_SIZE", read_size)
        real, real_run = KnownShapes.staged_line, KnownShapes.staged_run
        if known:
            def spy(self: KnownShapes, row: int, raw: bytes) -> bytes | None:
                line = real(self, row, raw)
                hits.append(line is not None)
                return line

            def spy_run(self: KnownShapes, row: int, run: bytes, max_bytes: int) -> tuple | None:
                staged = real_run(self, row, run, max_bytes) if runs else None
                hits.extend([True] * (len(staged[1]) if staged is not None else 0))
                return staged
            m.setattr(KnownShapes, "staged_line", spy)
            m.setattr(KnownShapes, "staged_run", spy_run)
        else:
            m.setattr(KnownShapes, "staged_line", lambda self, row, raw: None)
            m.setattr(KnownShapes, "staged_run", lambda self, row, run, max_bytes: None)
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


@pytest.mark.parametrize("templates", [[0, 1], [5, 12], [20, 21]], ids=["compact", "spaced", "row-number-keys"])
def test_most_lines_of_a_plain_file_take_the_known_path(templates: list[int], monkeypatch: pytest.MonkeyPatch):
    # Two shapes, two roles, ordinary prompts and keys; a few lines broken.
    rnd = random.Random(7)
    lines = [_fill(TEMPLATES[rnd.choice(templates)].replace(b"<N>", b"%d" % row), rnd, COMMON, [b"user", b"model"])
             for row in range(2000)]
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


def test_a_character_cut_between_two_strings_is_not_taken_for_one(monkeypatch: pytest.MonkeyPatch):
    # "a\xc3" then "\xa9b" in two slots side by side: each string is bad UTF-8, though the two together would
    # spell a valid "é".
    for template in TEMPLATES:
        rnd = random.Random(2)
        taught = [_fill(template, rnd, [b"plain text"]) for _ in range(3)]
        slots = template.count(b'"S"')
        for slot in range(slots - 1):
            line = template
            for n in range(slots):
                line = line.replace(b'"S"', b'"%b"' % {slot: b"a\xc3", slot + 1: b"\xa9b"}.get(n, b"plain"), 1)
            data = b"\n".join([*taught, _fill(line, rnd, [b"plain text"]), *taught])
            known, _ = _stage(data, monkeypatch, known=True, max_bytes=1 << 20)
            assert known == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0], (template, slot)


def test_a_bom_is_skipped_on_the_first_line_only(monkeypatch: pytest.MonkeyPatch):
    # Files put together with `cat` carry a BOM on later lines too: those lines are invalid JSON.
    line = b'{"key":"a","request":{"contents":[{"role":"user","parts":[{"text":"hello"}]}]}}'
    data = b"\n".join([b"\xef\xbb\xbf" + line, line, b"\xef\xbb\xbf" + line, line])
    known, _ = _stage(data, monkeypatch, known=True, max_bytes=1 << 20)
    assert known == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0]
    assert known[2] == {"invalid_json": 1}


@pytest.mark.parametrize("number", NUMBERS)
def test_each_row_number_key_gets_the_full_paths_staged_line(number: bytes, monkeypatch: pytest.MonkeyPatch):
    for template in TEMPLATES:
        if b"<N>" not in template:
            continue
        rnd = random.Random(3)
        taught = [_fill(template.replace(b"<N>", b"%d" % n), rnd, [b"plain text"], [b"user"]) for n in (1, 22, 333)]
        line = _fill(template.replace(b"<N>", number), rnd, [b"plain text"], [b"user"])
        data = b"\n".join([*taught, line, *taught])
        known, hits = _stage(data, monkeypatch, known=True, max_bytes=1 << 20)
        assert known == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0], template
        assert hits >= 5 or b"[<N>]" in template  # (a key that holds an integer is not one)


def test_a_line_in_another_buffer_type_takes_the_full_path():
    shapes = KnownShapes()
    raw = b'{"key":"a","request":{"contents":[{"parts":[{"text":"hello"}]}]}}'
    assert shapes.staged_line(1, raw) is None
    shapes.learn(raw, True, "a", {"contents": [{"parts": [{"text": "hello"}]}]})
    assert shapes.staged_line(2, raw) is not None
    assert shapes.staged_line(3, bytearray(raw)) is None
