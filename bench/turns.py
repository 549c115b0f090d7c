"""Cases measured side by side take turns.

A host's speed drifts (neighbours, frequency, caches): measured case after case, a ratio of two cases compares two
moments of the host as much as two programs. Taking turns, round by round, each round in the other order than the
one before, lets a drift weigh on every case alike; the best run of each case counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def in_turns(cases: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, case) for `rounds` rounds over `cases`: A B C, then C B A, then A B C, ..."""
    for round_ in range(rounds):
        for case in cases if round_ % 2 == 0 else cases[::-1]:
            yield round_, case
