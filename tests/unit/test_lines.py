"""`shared/lines.py`: whatever the read size, the lines are the file's physical lines."""

from __future__ import annotations

import io
import random

import pytest

from shared.lines import TooLong, iter_lines, newlines


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


def _old_iter_lines(stream, max_line, read_size):
    """`iter_lines` as it was, each read joined to the line begun before it."""
    pending = b""
    skipping = None
    while True:
        chunk = stream.read(read_size)
        if not chunk:
            break
        if skipping is not None:
            cut = chunk.find(b"\n")
            if cut < 0:
                skipping.length += len(chunk)
                continue
            skipping.length += cut
            yield skipping
            skipping = None
            chunk = chunk[cut + 1:]
        data = pending + chunk if pending else chunk
        start = 0
        while True:
            cut = data.find(b"\n", start)
            if cut < 0:
                break
            yield data[start:cut]
            start = cut + 1
        pending = data[start:]
        if len(pending) > max_line:
            skipping = TooLong(pending[:16 * 1024])
            skipping.length = len(pending)
            pending = b""
    if skipping is not None:
        yield skipping
    elif pending:
        yield pending


@pytest.mark.parametrize("seed", range(300))
def test_lines_and_overlong_previews_are_what_joining_each_read_gave(seed: int):
    rng = random.Random(seed)
    lines = [rng.choice([b"", b"x" * rng.randint(1, 40), b"y" * rng.randint(30, 20000)])
             for _ in range(rng.randint(0, 12))]
    data = b"\n".join(lines) + rng.choice([b"", b"\n"])
    max_line, size = rng.choice([10, 50, 100, 17000]), rng.choice([1, 3, 64, 1000, 30000])
    new = list(iter_lines(io.BytesIO(data), max_line, size))
    old = list(_old_iter_lines(io.BytesIO(data), max_line, size))
    assert new == old
    assert [type(line) for line in new] == [type(line) for line in old]
    assert [line.length for line in new if type(line) is TooLong] == \
        [line.length for line in old if type(line) is TooLong]


@pytest.mark.parametrize("seed", range(20))
def test_newlines_counts_what_bytes_count_counts(seed: int):
    """Long lines are walked newline to newline, short ones counted at once: the count is the same either way,
    whatever the lengths, wherever the file starts and ends (a newline first or last, none at all)."""
    rnd = random.Random(seed)
    longest = rnd.choice([3, 200, 5000, 70_000])
    data = b"\n".join(b"x" * rnd.randint(0, longest) for _ in range(rnd.randint(0, 300)))
    data = rnd.choice([b"", b"\n"]) + data + rnd.choice([b"", b"\n", b"\n\n"])
    for chunk in (data, bytearray(data), data[rnd.randint(0, len(data)):]):
        assert newlines(chunk) == chunk.count(b"\n")
