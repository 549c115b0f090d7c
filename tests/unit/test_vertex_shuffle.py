"""The order of a Vertex emulator shard's lines (`local.vertex._output.shuffled`): every line once, never the input
order from two lines on, the same for the same seed, and neighbours moved apart."""

from __future__ import annotations

import pytest

from local.vertex._output import STRIPED_FROM, shuffled


@pytest.mark.parametrize("count", [*range(2, 140), 999, 1000, 10_000])
def test_a_shard_is_a_permutation_never_in_input_order(count):
    lines = [b"%d" % i for i in range(count)]
    for seed in ("job:0", "job:1", "other:7"):
        out = shuffled(lines, seed)
        assert sorted(out, key=int) == lines
        assert out != lines
        assert out == shuffled(list(lines), seed)


def test_one_line_and_none():
    assert shuffled([b"a"], "s") == [b"a"]
    assert shuffled([], "s") == []


@pytest.mark.parametrize("count", [STRIPED_FROM, 10_000])
def test_input_neighbours_are_rarely_output_neighbours(count):
    lines = [b"%d" % i for i in range(count)]
    for seed in ("job:0", "job:1", "job:2"):
        out = [int(x) for x in shuffled(lines, seed)]
        kept = sum(1 for a, b in zip(out, out[1:], strict=False) if b == a + 1)
        assert kept <= count // 4
