"""Runs of lines of known shapes, staged side by side, write and count what staging each line alone writes.

`KnownShapes.staged_run` takes a run only when `staged_line` would stage every line of it by the shape of its first
line (`shared/known_shapes.py`, `_Columns`); any other run is tried again halved, and at the shortest its lines go
one by one (`shared/staging.py`, `_Runs`). These tests stage the same file three ways, with runs, with lines one by
one (by a known shape or in full), and in full only, and compare everything staging wrote (every part file, the
errors file) and counted. The files repeat a shape for dozens of lines, as real files do, with lines among them
that must not be taken: every kind of string tests/unit/test_known_shapes.py tries in every slot, bytes put in or
taken out, blank lines, BOMs, CRLF ends, numeric-looking values, staged lines over the part's byte limit. Runs are
made short (hundreds of bytes) and reads small, so a file has many runs, many fail, and lines run across reads.
Files whose every line is of one of a few shapes, in any order, have runs of several shapes, which are taken by
groups of lines of one count of quotes.
"""

from __future__ import annotations

import json
import random

import pytest

from shared import staging
from shared.rowsums import RowSums
from tests.unit.test_known_shapes import COMMON, MUTATIONS, STRINGS, TEMPLATES, _fill, _stage

# Keys whose JSON holds strings kept whole (key names, escapes among them), spelled again inside the staged line's
# string of the key.
KEYED = [b'{"key":{"K":"S","K":["S",1]},"request":{"contents":[{"role":"R","parts":[{"text":"S"}]}]}}',
         b'{"key": {"K": {"K": "S"}}, "request": {"contents": [{"parts": [{"text": "S"}]}]}}']


def _runs_file(rnd: random.Random, rows: int, hostile: float, in_turn: int = 0) -> bytes:
    """Lines that keep one shape for a while (a new one now and then), a share of them hostile; with `in_turn`,
    each line of one of that many shapes, drawn anew for every line (shapes with the same count of quotes among
    them now and then)."""
    templates = TEMPLATES + KEYED
    if in_turn:
        templates = rnd.sample(templates, in_turn)
    lines, template = [], rnd.choice(templates)
    for _ in range(rows):
        if in_turn or rnd.random() < 0.03:
            template = rnd.choice(templates)
        if rnd.random() < hostile / 4:
            lines.append(rnd.choice([b"", b"  ", b"\t", b"{}", b"not json"]))
            continue
        line = _fill(template, rnd, STRINGS if rnd.random() < hostile else COMMON, [b"user", b"model"])
        if rnd.random() < hostile / 2:
            at = rnd.randrange(len(line))
            line = line[:at] + (rnd.choice(MUTATIONS) if rnd.random() < 0.7 else b"") + line[at + 1:]
        lines.append(line)
    if rnd.random() < 0.3:
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    return b"\n".join(lines) + rnd.choice([b"", b"\n", b"\n\n"])


def _in_runs(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, int]:
    """What staging `data` with runs of 500 bytes to 8 KB wrote and counted (`_stage`), and how many of its lines
    runs took."""
    taken = []
    real = staging.KnownShapes.staged_run

    def counted(self, row, run, max_bytes):
        staged = real(self, row, run, max_bytes)
        taken.append(len(staged[1]) if staged is not None else 0)
        return staged
    with monkeypatch.context() as m:
        m.setattr(staging.KnownShapes, "staged_run", counted)
        staged, _ = _stage(data, m, known=True, max_bytes=1 << 20, run_bytes=(8000, 500))
    return staged, sum(taken)


@pytest.mark.parametrize("in_turn", [False, True], ids=["shapes-for-a-while", "shapes-in-any-order"])
@pytest.mark.parametrize("seed", range(40))
def test_runs_stage_what_lines_one_by_one_stage(seed: int, in_turn: bool, monkeypatch: pytest.MonkeyPatch):
    # Shapes that keep for dozens of lines, or of 2-4 shapes drawn anew for every line: a run of lines of several
    # shapes is grouped by each line's count of quotes, each group staged as a run, and the staged lines put back in
    # order (`KnownShapes._staged_by_shape`).
    rnd = random.Random(seed)
    data = _runs_file(rnd, 600, hostile=rnd.choice([0.0, 0.01, 0.05, 0.3]),
                      in_turn=rnd.choice([2, 3, 4]) if in_turn else 0)
    max_bytes = rnd.choice([1024, 1400, 1 << 20])
    run_bytes = rnd.choice([(300, 40), (2000, 200), (8000, 100), (1 << 18, 1 << 14)])
    read_size = rnd.choice([None, 64, 333, 4096])
    runs, _ = _stage(data, monkeypatch, known=True, max_bytes=max_bytes, run_bytes=run_bytes, read_size=read_size)
    one_by_one, _ = _stage(data, monkeypatch, known=True, max_bytes=max_bytes, runs=False, read_size=read_size)
    full, _ = _stage(data, monkeypatch, known=False, max_bytes=max_bytes)
    assert runs == one_by_one == full


@pytest.mark.parametrize("templates,in_turn", [([0, 1, 5, 6, 10], False), ([20], False), ([21], False),
                                               ([20, 21, 0, 5], False), ([0, 1, 5, 7, 10], True),
                                               ([20, 1, 13], True), ([0, 6, 16], True)],
                         ids=["strings", "integer-key", "integer-key-last", "mixed-keys", "in-any-order",
                              "in-any-order-integer-key", "in-any-order-one-count"])
def test_most_lines_of_a_file_of_few_shapes_are_staged_in_runs(templates: list[int], in_turn: bool,
                                                               monkeypatch: pytest.MonkeyPatch):
    # So the comparisons above are between runs and lines one by one, not between two ways of one by one. Compact
    # and spaced shapes, with and without a role, keys that are strings or integers (row numbers, also in the line's
    # last piece); shapes that follow each other for a while, or a shape drawn for every line (each with its own
    # count of quotes, or all with one).
    rnd = random.Random(5)
    lines, template = [], TEMPLATES[templates[0]]
    for row in range(3000):
        if in_turn or rnd.random() < 0.03:
            template = TEMPLATES[rnd.choice(templates)]
        line = template.replace(b"<N>", b"%d" % (row * 7 - 300))  # negative ones too
        lines.append(_fill(line, rnd, COMMON, [b"user"]))  # (a run of one role: the role is in the shape)
    data = b"\n".join(lines)
    runs, taken = _in_runs(data, monkeypatch)
    assert runs[0] == 3000 and not runs[2]
    assert taken > 2500
    assert runs == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0]


def test_lines_whose_strings_read_as_numbers_are_staged_in_runs(monkeypatch: pytest.MonkeyPatch):
    # A string such as "00042" reads as a number to the importer: the shape says so of each value, and a run of the
    # shape is taken when each line's value there reads as a number too. Here the keys and a field of the request
    # do; lines with a system instruction are of another shape among them; now and then a value of that field that
    # does not read as a number sits in the middle of a run (refused: the file's are numbers, one type a key path).
    rnd = random.Random(8)
    lines = []
    for row in range(3000):
        key = rnd.choice([b"%05d" % row, b"-%d.5" % row, b"q-%d" % row])
        n = b"%d" % row if rnd.random() < 0.99 else \
            rnd.choice([b"q-7", b"", b"1e5", b"0x10", b"1.", b" 1", b"1 ", b"+1", b"\xd9\xa1", b"1.5.2", b"--1"])
        system = b',"systemInstruction":{"parts":[{"text":"1 line"}]}' if rnd.random() < 0.1 else b""
        lines.append(b'{"key":"%b","request":{"contents":[{"role":"user","parts":[{"text":"a prompt"}]}],'
                     b'"x":{"n":"%b"}%b}}' % (key, n, system))
    data = b"\n".join(lines)
    runs, taken = _in_runs(data, monkeypatch)
    assert runs[0] == 3000 and 0 < sum(runs[2].values()) < 60
    assert taken > 2500
    assert runs == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0]


def test_lines_with_escaped_quotes_and_backslashes_take_the_known_path(monkeypatch: pytest.MonkeyPatch):
    # orjson writes `\\"` and `\\\\` back as they are, so such lines are staged from their bytes too, split at
    # their quotes with those escapes set aside (`_set_aside`): in runs, and one by one; in prompts, in keys (whose
    # JSON the staged line spells once more inside a string), in the line that taught the shape or not.
    rnd = random.Random(12)
    strings = [b"plain", b'say \\"hi\\"', b"C:\\\\dir\\\\", b'\\\\\\"', b'a\\nb \\"q\\"\\t', b"\\\\n"]
    lines = []
    for _ in range(3000):
        template = TEMPLATES[0] if rnd.random() < 0.9 else TEMPLATES[4]
        lines.append(_fill(template, rnd, strings, [b"user"]))
    data = b"\n".join(lines)
    runs, taken = _in_runs(data, monkeypatch)
    assert runs[0] == 3000 and not runs[2]
    assert taken > 2500
    one_by_one, hits = _stage(data, monkeypatch, known=True, max_bytes=1 << 20, runs=False)
    assert hits > 2900
    assert runs == one_by_one == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0]


def test_lines_written_with_unicode_escapes_take_the_known_path(monkeypatch: pytest.MonkeyPatch):
    # Python's json.dumps writes every character past ASCII as a `\\u` escape (a pair of them past the BMP), with a
    # space after each comma and colon; orjson writes those characters as they are, so such a line is split with
    # them as the characters (`_characters`). A `\\u` escape orjson writes as an escape (a quote, a backslash, a
    # control character), a lone surrogate (which orjson refuses) and raw UTF-8 beside escapes take the full path.
    rnd = random.Random(13)
    texts = ["plain", "caf\u00e9 \u00fcber", "emoji \U0001f600 \u2028", 'say "hi" C:\\dir', "line\nbreak \u00e9"]
    odd = [b'"\\u0022"', b'"\\u005c"', b'"a\\u001fb"', b'"\\ud800"', b'"\\udc00\\ud83d"', b'"\xc3\xa9 \\u00e9"',
           b'"\\u00E9"', b'"\\u0031"']
    lines = []
    for row in range(3000):
        strange = rnd.random() < 0.02  # a prompt of odd escapes (spelled by hand) in a known shape's slot
        record = {"key": rnd.choice(texts) + str(row % 7),
                  "request": {"contents": [{"role": "user", "parts": [{"text": "ODD" if strange else
                                                                        rnd.choice(texts)}]}]}}
        if rnd.random() < 0.1:
            record["request"]["systemInstruction"] = {"parts": [{"text": rnd.choice(texts)}]}
        lines.append(json.dumps(record).encode().replace(b'"ODD"', rnd.choice(odd)))
    data = b"\n".join(lines)
    runs, taken = _in_runs(data, monkeypatch)
    assert runs[0] == 3000
    assert taken > 2500
    one_by_one, hits = _stage(data, monkeypatch, known=True, max_bytes=1 << 20, runs=False)
    assert hits > 2800
    assert runs == one_by_one == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0]


@pytest.mark.parametrize("string", STRINGS)
def test_a_string_in_the_middle_of_a_run_gets_the_verdict_it_gets_alone(string: bytes,
                                                                       monkeypatch: pytest.MonkeyPatch):
    # Each slot of each shape, in the middle of a run of the shape long enough to be tried whole.
    for template in TEMPLATES:
        rnd = random.Random(4)
        taught = [_fill(template, rnd, [b"plain text", b"more"], [b"user"]) for _ in range(12)]
        slots = template.count(b'"S"')
        for slot in range(slots):
            line = template
            for n in range(slots):
                line = line.replace(b'"S"', b'"%b"' % (string if n == slot else b"plain text"), 1)
            data = b"\n".join([*taught, _fill(line, rnd, [b"plain text"], [b"user"]), *taught])
            runs, _ = _stage(data, monkeypatch, known=True, max_bytes=1 << 20, run_bytes=(1 << 16, 64))
            assert runs == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0], (template, slot)


def test_lines_longer_than_a_block_are_staged_one_by_one_after_the_runs(monkeypatch: pytest.MonkeyPatch):
    rnd = random.Random(9)
    short = [_fill(TEMPLATES[0], rnd, COMMON, [b"user"]) for _ in range(40)]
    long = TEMPLATES[0].replace(b'"S"', b'"%b"' % (b"y" * 5000), 1)
    data = b"\n".join([*short, _fill(long, rnd, COMMON, [b"user"]), *short, b"", b"{"])
    monkeypatch.setattr(staging, "LONG_LINE_BYTES", 3000)
    for read_size in (100, 1000, 1 << 20):
        runs, _ = _stage(data, monkeypatch, known=True, max_bytes=1 << 20, read_size=read_size)
        assert runs == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0], read_size


@pytest.mark.parametrize("rows", [range(0), range(5, 5), range(0, 1), range(0, 7), range(3, 1000), range(10 ** 12,
                                                                                                       10 ** 12 + 9)])
def test_row_sums_of_consecutive_rows_are_the_sums_of_each_row(rows: range):
    closed, each = RowSums(), RowSums()
    closed.update(rows)
    each.update(list(rows))
    assert (closed.count, closed.total, closed.squares) == (each.count, each.total, each.squares)


# One count of quotes, several shapes: a key name, a role or the bytes between strings tell them apart.
ONE_COUNT = [b'{"key":"S","request":{"contents":[{"role":"R","parts":[{"text":"S"}]}],"generationConfig":{"%b":0.5}}}',
             b'{"key": "S", "request": {"contents": [{"role": "R", "parts": [{"text": "S"}]}], '
             b'"generationConfig": {"%b": 0.5}}}']


@pytest.mark.parametrize("hostile", [0.0, 0.02, 0.2])
@pytest.mark.parametrize("seed", range(6))
def test_lines_of_one_count_of_quotes_and_several_shapes_are_grouped_by_what_tells_them_apart(
        seed: int, hostile: float, monkeypatch: pytest.MonkeyPatch):
    """Lines of several shapes with one count of quotes, in any order, are grouped by the places their shapes differ
    at (`KnownShapes._staged_by_columns`), not by looking each line up, and stage what the full path stages: also
    with lines among them that differ somewhere else, are of no known shape, or are not JSON."""
    rnd = random.Random(seed)
    names = rnd.sample([b"temperature", b"topP", b"topK", b"seed", b"maxOutputTokens"], rnd.choice([2, 3, 5]))
    spellings = rnd.choice([ONE_COUNT[:1], ONE_COUNT])
    roles = rnd.choice([[b"user"], [b"user", b"model"]])
    lines = []
    for _ in range(2000):
        line = _fill(rnd.choice(spellings) % rnd.choice(names), rnd, COMMON, roles)
        if rnd.random() < hostile:
            at = rnd.randrange(len(line))
            line = line[:at] + rnd.choice(MUTATIONS + [b'"', b'x"y"']) + line[at + 1:]
        lines.append(line)
    data = b"\n".join(lines) + b"\n"
    looked_up = []
    real = staging.KnownShapes._line_shape

    def counted(self, raw):
        looked_up.append(1)
        return real(self, raw)
    monkeypatch.setattr(staging.KnownShapes, "_line_shape", counted)
    runs, taken = _in_runs(data, monkeypatch)
    assert runs == _stage(data, monkeypatch, known=False, max_bytes=1 << 20)[0]
    if not hostile:
        assert taken > 1800 and len(looked_up) < 1000  # (a lookup a line: ~2,100; here one a group of a run)
