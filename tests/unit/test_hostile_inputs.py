"""Staging takes any bytes a user can upload: lines mutated at random (bytes flipped, cut, doubled; control
bytes, lone surrogates and bad escapes; numbers past the float range; nesting past every parser's limit; BOMs
mid-file) never fail the upload, and every non-blank line is a row exactly once, staged or in the errors file
with its reason."""

from __future__ import annotations

import random

import orjson
import pytest

from shared import layout, staging, verify
from tests.unit.fakes import make_pipeline

_INSERTS = [b"\x00", b"\xff", b"\\", b'"', b"{", b"}", b"[", b"]", b",", b":", b"1e999", b"-", b"\xe9", b"\r",
            b"\t", b"[" * 1010, b'{"a":' * 1010, b"\\u0000", b"\\ud800", b"\\u00e9", b"\xef\xbb\xbf", b"null",
            b'"role":"x"', b'"key":', b" " * 50]


def _lines(rnd: random.Random, n: int) -> list[bytes]:
    base = [orjson.dumps({"key": rnd.choice(["a", 7, None, {"x": 1}, [1]]),
                          "request": {"contents": [{"role": rnd.choice(["user", "model"]),
                                                    "parts": [{"text": "q é " * rnd.choice([1, 30, 400])}]}],
                                      "generationConfig": {"temperature": 0.5}}}) for _ in range(30)]
    out = []
    for _ in range(n):
        line = bytearray(rnd.choice(base))
        if rnd.random() < 0.5:
            for _ in range(rnd.randint(1, 4)):
                if not line:
                    break
                at, op = rnd.randrange(len(line)), rnd.random()
                if op < 0.3:
                    line[at] = rnd.randrange(256)
                elif op < 0.5:
                    del line[at:at + rnd.randint(1, 20)]
                elif op < 0.8:
                    line[at:at] = rnd.choice(_INSERTS)
                else:
                    line = line[:at]
        out.append(bytes(line).replace(b"\n", b" "))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_mutated_lines_never_fail_the_upload_and_each_is_a_row_once(seed):
    rnd = random.Random(seed)
    lines = _lines(rnd, 300)
    data = b"\n".join(lines) + b"\n"
    p, store, _, _ = make_pipeline(MAX_ROWS_PER_JOB=40)
    generation = store.write_bytes("in-bucket", "incoming/q.jsonl", data)
    staged = staging.stage(p, "r1", "in-bucket", "incoming/q.jsonl", generation, len(data))
    expected = verify.expected_rows(data)
    rows = [orjson.loads(line)["row"] for line in store.read_bytes(p.work_bucket,
                                                                   layout.validation_errors_name("r1")).splitlines()]
    for part in staged.parts:
        rows += [int(orjson.loads(line)["gbp_row"][1:])
                 for line in store.read_bytes(p.work_bucket, layout.staged_name("r1", part)).splitlines()]
    assert sorted(rows) == expected and staged.total == len(expected)
    assert 0 < staged.failed < staged.total  # both kinds met
