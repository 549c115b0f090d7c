"""Bench inputs, written to files so every measured path reads the same bytes.

`input_file` writes a batch input of about `mb` MB: Gemini request lines of ~5 KB (a prompt of a few hundred
words, a generationConfig and a "key"), so 1 GB is about 200,000 rows, the size the functions must handle.
The predictions a Vertex job would write for those rows come from `bench/predictions.py`.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

WORDS = ("summarise", "the", "report", "in", "three", "bullet", "points", "about", "quarterly", "sales",
         "translate", "into", "french", "explain", "why", "sky", "is", "blue", "write", "haiku", "über", "naïve")
LINE_BYTES = 5_000


def request_line(rnd: random.Random, i: int, words: int) -> bytes:
    prompt = " ".join(rnd.choice(WORDS) for _ in range(words))
    line = {"key": f"q-{i}", "request": {
        "contents": [{"role": "user", "parts": [{"text": f"Item {i}: {prompt}"}]}],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256, "topP": 0.95}}}
    return orjson.dumps(line) + b"\n"


def input_file(path: Path, mb: float, seed: int = 7) -> int:
    """Write about `mb` MB of request lines to `path`; returns the number of rows."""
    rnd = random.Random(seed)
    limit = int(mb * 1e6)
    words = max(8, LINE_BYTES // 7)
    size = rows = 0
    with open(path, "wb") as out:
        while size < limit:
            line = request_line(rnd, rows, rnd.randint(words // 2, words * 3 // 2))
            out.write(line)
            size += len(line)
            rows += 1
    return rows


def shapes_in_turn(source: Path, path: Path) -> int:
    """`source`'s lines, every second and third of each three given another shape: a system instruction, or two
    more turns of the conversation. Runs of such lines are staged by groups of lines of one shape
    (`KnownShapes.staged_run`): one line at a time, they took submit's workers. Returns the rows."""
    rows = 0
    with open(source, "rb") as lines, open(path, "wb") as out:
        for rows, raw in enumerate(lines, 1):
            line = orjson.loads(raw)
            request = line["request"]
            if rows % 3 == 2:
                request["systemInstruction"] = {"parts": [{"text": "Answer briefly."}]}
            elif rows % 3 == 0:
                request["contents"] += [{"role": "model", "parts": [{"text": "Noted."}]},
                                        {"role": "user", "parts": [{"text": "And in one sentence?"}]}]
            out.write(orjson.dumps(line) + b"\n")
    return rows
