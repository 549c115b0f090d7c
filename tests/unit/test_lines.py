"""`shared/lines.py`: whatever the read size, the lines are the file's physical lines."""

from __future__ import annotations

import io
import random

import pytest

from shared.lines import iter_lines


def _random_file(rng: random.Random) -> bytes:
    lines = [rng.choice([b"", b" ", b"\r", b"{}", b"x" * rng.randint(1, 40), b"\xc3\xa9" * rng.randint(1, 5)])
             for _ in range(rng.randint(0, 30))]
    data = b"\n".join(lines)
    return data + b"\n" if lines and rng.random() < 0.5 else data


@pytest.mark.parametrize("seed", range(200))
def test_lines_match_splitting_the_whole_file(seed: int):
    rng = random.Random(seed)
    data = _random_file(rng)
    size = rng.randint(1, 64)
    wanted = data.split(b"\n")
    if wanted and wanted[-1] == b"":
        wanted.pop()  # no empty remainder after a final newline
    assert list(iter_lines(io.BytesIO(data), read_size=size)) == wanted
