"""The row accounting of the output contract, checked from the outside: every input row exactly once in
the results or the errors file, under its physical line number, and a report whose counts agree with those
files; and, for the Vertex jobs of a run, exactly one job per part, the one the report names.

One checker for the demo, `make chaos`, the tests and `batchctl verify`, so "every row once" means the same
everywhere. Pure: it takes bytes or iterables of lines (or of parsed lines) and returns the problems as
sentences, an empty list when the books balance. Row numbers are counted in a bytearray (one byte per row
number), so checking a file of millions of rows holds a few megabytes, never the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

# A row is a non-blank physical line; blank means only JSON whitespace, as the validator has it (a test keeps
# the two definitions equal), and line 1 may start with a byte order mark.
_BLANK = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
# Longest list of row numbers a problem spells out; the rest are counted.
_SHOWN = 20

Lines = bytes | Iterable[bytes | Mapping[str, Any]]


def is_blank(row: int, line: bytes) -> bool:
    """Whether physical line `row` (1-based) is not a row."""
    if row == 1 and line.startswith(_BOM):
        line = line[len(_BOM):]
    return not line.strip(_BLANK)


def input_rows(lines: Iterable[bytes]) -> Iterator[int]:
    """The row numbers of an input given as its physical lines (`shared.lines.iter_lines` of the object)."""
    for row, line in enumerate(lines, 1):
        if not is_blank(row, line):
            yield row


def expected_rows(data: bytes) -> list[int]:
    """1-based physical line numbers of the non-blank lines of a whole input: the pipeline's rows."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the remainder after a final newline is no line
    return list(input_rows(lines))


class _Rows:
    """How often each row number up to `limit` was seen, one byte per row number (saturating at 255); other
    values (past the limit, not a positive integer) are kept aside, the first few of them by value."""

    def __init__(self, limit: int) -> None:
        self.counts = bytearray(limit + 1)
        self.aside: list[Any] = []
        self.aside_more = 0

    def add(self, row: Any) -> None:
        if type(row) is int and 0 < row < len(self.counts):
            if self.counts[row] < 255:
                self.counts[row] += 1
        elif len(self.aside) <= _SHOWN:
            self.aside.append(row)
        else:
            self.aside_more += 1


def _bitmap(expected: Iterable[int]) -> tuple[_Rows, int]:
    """The expected rows as a `_Rows` sized to the largest, and how many there are (streamed: an input's
    row numbers are never all held as Python ints)."""
    want = _Rows(0)
    total = 0
    for row in expected:
        if row >= len(want.counts):
            want.counts.extend(bytes(max(row + 1 - len(want.counts), len(want.counts))))
        want.add(row)
        total += 1
    return want, total


def _lines(data: Lines) -> Iterator[bytes | Mapping[str, Any]]:
    if isinstance(data, bytes | bytearray):
        return (line for line in bytes(data).split(b"\n") if line.strip())
    return (line for line in data if not isinstance(line, bytes | bytearray) or line.strip())


def _shown(rows: list[Any], more: int = 0) -> str:
    if len(rows) <= _SHOWN and not more:
        return str(rows)
    return f"{rows[:_SHOWN]} and {len(rows) - _SHOWN + more} more"


def check(rel: str, expected: Iterable[int], report: Mapping[str, Any], results: Lines, errors: Lines) -> list[str]:
    """Problems with one file's accounting; an empty list means every row is there exactly once.

    `expected`: the input's row numbers (`expected_rows`, `input_rows`); `results` and `errors`: the output
    files, as bytes or as lines (raw or parsed); `report`: the parsed report."""
    want, total = _bitmap(expected)
    problems: list[str] = []
    seen = _Rows(len(want.counts) - 1)
    counts = {}
    for kind, data in (("results", results), ("errors", errors)):
        n = 0
        for n, line in enumerate(_lines(data), 1):  # noqa: B007 - n is the count after the loop
            try:
                value = line if isinstance(line, Mapping) else orjson.loads(line)
                seen.add(value["row"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                shown = line[:200] if isinstance(line, bytes) else line
                problems.append(f"{rel}: {kind} line {n} has no row number: {shown!r}")
        counts[kind] = n
    missing = [row for row in range(1, len(want.counts)) if want.counts[row] and not seen.counts[row]]
    duplicated = [row for row in range(1, len(seen.counts)) if seen.counts[row] > 1]
    unexpected = sorted((row for row in range(1, len(seen.counts)) if seen.counts[row] and not want.counts[row]),
                        key=str) + seen.aside
    if missing:
        problems.append(f"{rel}: rows missing from results and errors: {_shown(missing)}")
    if duplicated:
        problems.append(f"{rel}: rows written more than once: {_shown(duplicated)}")
    if unexpected:
        problems.append(f"{rel}: rows that are not input rows: {_shown(unexpected, seen.aside_more)}")
    rows = report.get("rows", {})
    reported, ok, failed = rows.get("total"), rows.get("succeeded"), rows.get("failed")
    if not (reported == total and isinstance(ok, int) and isinstance(failed, int) and ok + failed == reported):
        problems.append(f"{rel}: report rows {rows} do not add up to the {total} input rows")
    if (ok, failed) != (counts["results"], counts["errors"]):
        problems.append(f"{rel}: report says {ok} succeeded / {failed} failed but the files hold "
                        f"{counts['results']} results / {counts['errors']} errors")
    return problems


def check_jobs(rel: str, report: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems with one run's Vertex jobs: exactly one job per part, the one the report names.

    `jobs` are the Vertex jobs labelled with the report's run, each with its `name` and its `labels` (the
    label `part` is `<run>-<part>`)."""
    problems: list[str] = []
    run = report.get("run")
    by_part: dict[str, list[str]] = {}
    for job in jobs:
        by_part.setdefault((job.get("labels") or {}).get("part", "?"), []).append(job.get("name", "?"))
    parts = {f"{run}-{j.get('part')}": j.get("name") for j in report.get("jobs", [])}
    extra = {p: names for p, names in by_part.items() if len(names) > 1}
    if extra:
        problems.append(f"{rel}: more than one Vertex job for a part: {extra}")
    unreported = sorted(set(by_part) - set(parts))
    if unreported:
        problems.append(f"{rel}: Vertex jobs of run {run} for parts the report does not name: {unreported}")
    missing = sorted(p for p, name in parts.items() if name and p not in by_part)  # no name: refused at create
    if missing:
        problems.append(f"{rel}: parts in the report without a Vertex job: {missing}")
    wrong = sorted(p for p, name in parts.items() if p in by_part and by_part[p] != [name])
    if wrong:
        problems.append(f"{rel}: the report names another job than Vertex holds for parts {wrong}")
    return problems
