"""A part's rows in two numbers, so collect can tell that a job gave back every row of its part, each one
succeeded, without reading the part's staged input again.

Collect's second pass streams the staged part (often the largest object of a run) only to find the lines of
rows that failed or never came back. When the rows that succeeded are as many as the part's and have the same
sum and sum of squares, they are the part's rows: two distinct sets of integers with equal count, sum and sum
of squares differ in at least three members each, never in one or two wrong rows. Both sums are kept modulo
2**53, so they are exact JSON numbers in any reader (the run record is read by tools too).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

__all__ = ["RowSums"]

_MOD = 1 << 53


class RowSums:
    """The count, sum and sum of squares of a set of row numbers, added to one row or a batch at a time."""

    __slots__ = ("count", "total", "squares")

    def __init__(self) -> None:
        self.count = self.total = self.squares = 0

    def add(self, row: int) -> None:
        self.count += 1
        self.total += row
        self.squares += row * row

    def update(self, rows: Iterable[int]) -> None:
        if type(rows) is range and rows.step == 1 and rows.start >= 0:
            # Consecutive rows (a run of lines staged at once): their sums in closed form, not a step per row.
            first, stop = rows.start, max(rows.start, rows.stop)
            self.count += stop - first
            self.total += (first + stop - 1) * (stop - first) // 2
            self.squares += _squares_below(stop) - _squares_below(first)
            return
        rows = rows if isinstance(rows, list | tuple | array) else list(rows)
        self.count += len(rows)
        self.total += sum(rows)
        self.squares += sum(row * row for row in rows)

    def plus(self, rows: Iterable[int]) -> RowSums:
        """A new RowSums of these rows and `rows` (a set disjoint from them)."""
        both = RowSums()
        both.count, both.total, both.squares = self.count, self.total, self.squares
        both.update(rows)
        return both

    def value(self) -> list[int]:
        """What a part record keeps (`rowSums`): [sum, sum of squares], each modulo 2**53."""
        return [self.total % _MOD, self.squares % _MOD]

    def matches(self, rows: int, stored: list[int] | None) -> bool:
        """Whether these are the rows of a part of `rows` rows whose record keeps `stored` (None: not known)."""
        return stored is not None and self.count == rows and self.value() == list(stored)


def _squares_below(n: int) -> int:
    """0² + 1² + ... + (n - 1)²."""
    return (n - 1) * n * (2 * n - 1) // 6
