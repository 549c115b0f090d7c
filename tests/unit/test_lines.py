"""`shared/lines.py`: whatever the read size, the lines are the file's physical lines, and the blocks of whole
lines cover the file exactly."""

from __future__ import annotations

import io
import random

import pytest

from shared.lines import TooLong, iter_blocks, iter_lines


def _random_file(rng: random.Random) -> bytes:
    lines = [rng.choice([b"", b" ", b"\r", b"{}", b"x" * rng.randint(1, 40), b"\xc3\xa9" * rng.randint(1, 5)])
             for _ in range(rng.randint(0, 30))]
    data = b"\n".join(lines)
    return data + b"\n" if lines and rng.random() < 0.5 else data


@pytest.mark.parametrize("seed", range(200))
def test_lines_and_blocks_match_splitting_the_whole_file(seed: int):
    rng = random.Random(seed)
    data = _random_file(rng)
    size = rng.randint(1, 64)
    wanted = data.split(b"\n")
    if wanted and wanted[-1] == b"":
        wanted.pop()  # no empty remainder after a final newline
    assert list(iter_lines(io.BytesIO(data), read_size=size)) == wanted
    blocks = [data[:end] for data, end in iter_blocks(io.BytesIO(data), read_size=size)]
    assert all(block.endswith(b"\n") for block in blocks)
    assert b"".join(blocks) == b"".join(line + b"\n" for line in wanted)


def test_an_overlong_line_comes_alone_in_blocks_too():
    data = b"ok\n" + b"y" * 5000 + b"\nafter"
    blocks = list(iter_blocks(io.BytesIO(data), max_line=1000, read_size=300))
    long = [data for data, end in blocks if end < 0]
    assert len(long) == 1 and isinstance(long[0], TooLong) and long[0].length == 5000
    assert b"".join(data[:end] for data, end in blocks if end >= 0) == b"ok\nafter\n"
