"""A part whose staged input is gone (a lifecycle rule expired it, someone deleted it) still ends every row.

The part's rows are the input rows of its chunk (`firstRow`..`lastRow`, recorded at staging) that neither
failed validation nor were settled by an earlier attempt of the same chunk. When the original input still
exists, those lines are staged again from it (same bytes as staging made), so the part is collected as if
nothing had happened, retries included. When the input is gone too, the rows go to errors, naming why.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import orjson

from shared import joining, layout
from shared.lines import TooLong, UpToDamage, iter_lines
from shared.pipeline import Pipeline
from shared.storage.base import ObjectMissing


def _rows_in(p: Pipeline, name: str, first: int, last: int) -> Iterator[int]:
    """Row numbers of an output-format file (results or errors lines) within first..last."""
    try:
        with p.store.open_read(p.work_bucket, name) as stream:
            for raw in iter_lines(stream):
                if raw.strip() and not isinstance(raw, TooLong):
                    row = orjson.loads(raw).get("row")
                    if isinstance(row, int) and first <= row <= last:
                        yield row
    except ObjectMissing:
        return


def settled_elsewhere(p: Pipeline, record: dict[str, Any], part: str) -> set[int]:
    """Rows of the part's chunk that are not the part's: failed validation, or settled by an earlier attempt."""
    entry = record["parts"][part]
    first, last = entry["firstRow"], entry["lastRow"]
    run = record["run"]
    names = [layout.validation_errors_name(run)]
    for other_name, other in record["parts"].items():
        if other["chunk"] == entry["chunk"] and other["attempt"] < entry["attempt"]:
            names += [layout.part_results_name(run, other_name), layout.part_errors_name(run, other_name)]
    return {row for name in names for row in _rows_in(p, name, first, last)}


def restaged_lines(p: Pipeline, record: dict[str, Any], part: str, stack: ExitStack) -> Iterator[bytes] | None:
    """The part's staged lines rebuilt from the original input, or None when the part's rows cannot be
    known (a record from before rows were recorded) or the input is gone as well."""
    entry = record["parts"][part]
    if "firstRow" not in entry:
        return None
    source = record["input"]
    try:
        stream = stack.enter_context(p.store.open_read(source["bucket"], source["name"],
                                                       int(source["generation"])))
    except ObjectMissing:
        return None
    skip = settled_elsewhere(p, record, part)
    first, last = entry["firstRow"], entry["lastRow"]

    def lines() -> Iterator[bytes]:
        # Staging read the input up to its damage, if any (ObjectUnreadable): every staged row lies before it.
        for row, raw in enumerate(iter_lines(UpToDamage(stream)), 1):
            if row > last:
                return
            if row < first or row in skip or isinstance(raw, TooLong) or not raw.strip():
                continue
            value = orjson.loads(raw)  # it passed validation once: a JSON object with a request
            has_key = "key" in value
            yield joining.staged_line(row, value.get("request"), has_key, value.get("key")).rstrip(b"\n")

    return lines()


def unknown_rows(p: Pipeline, record: dict[str, Any], part: str) -> Iterator[bytes]:
    """Placeholder staged lines (row id only) for a part whose input is gone too: its rows can still be
    named in the errors file, without their requests. Blank lines of the chunk cannot be told apart any
    more, so a chunk with blank lines may name a blank line as a row; the report's note says so."""
    entry = record["parts"][part]
    if "firstRow" not in entry:
        return iter(())
    skip = settled_elsewhere(p, record, part)
    return (orjson.dumps({joining.ROW_FIELD: f"r{row}"})
            for row in range(entry["firstRow"], entry["lastRow"] + 1) if row not in skip)
