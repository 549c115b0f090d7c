"""Reading prediction and staged lines without building what collect only passes through.

A prediction line echoes its whole staged line (the request, often most of its bytes) beside Vertex's
`status` and `response`; collect reads four fields of it. `decode_prediction` decodes only those (msgspec
skips the rest at C speed, nothing built for it) and returns the same dict `orjson.loads` would give for
them, so `joining.classify` / `joining.key_of` and every output byte stay as they were. A short line, whose
echo is too small for skipping it to pay, is read whole by orjson (its other fields come along). A staged line is
ours (`joining.staged_line` writes the row id first): `staged_row` reads the row id from its first bytes.

Against `orjson.loads` on the whole line: a line parses to a dict of the same four values, or raises
`Undecodable` where orjson would, with three exceptions, all in bytes collect neither reads nor writes (the
request echo, fields it does not know): bytes there that are not UTF-8, and a number there beyond the float
range (orjson refuses such a line; here its row is joined to its response); and arrays or objects nested there
1,000 to 1,023 deep, which orjson reads and msgspec refuses (its limit is lower): the line is Undecodable, and its
row counts as not come back (no staged request nests that deep: validation refuses it). Every field that is read
is checked as orjson checks it. Checking the whole line's UTF-8 cost 0.065 s of pass 1's 0.40 s on one core (195 MB),
for bytes no Vertex output carries and no output of ours contains.

Measured (one core, 37,000 prediction lines of ~5 KB, 195 MB): `orjson.loads` per line ~0.23 s, this decode
~0.05 s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import msgspec
import orjson

from shared.joining import ROW_FIELD
from shared.lines import short_lines
from shared.rowsums import RowSums

__all__ = ["SEARCH_READ", "StagedRowSums", "Undecodable", "decode_prediction", "lines_of_rows", "newlines_unless_blank",
           "staged_row"]


class Undecodable(ValueError):
    """The line is not JSON orjson would read, or not an object."""


class _Prediction(msgspec.Struct):
    gbp_row: msgspec.Raw = msgspec.Raw()
    gbp_key: msgspec.Raw = msgspec.Raw()
    status: msgspec.Raw = msgspec.Raw()
    response: msgspec.Raw = msgspec.Raw()


_FIELDS = tuple(_Prediction.__struct_fields__)
assert _FIELDS[0] == ROW_FIELD
_decode = msgspec.json.Decoder(_Prediction).decode
_loads = orjson.loads
_PREFIX = b'{"' + ROW_FIELD.encode() + b'":"r'


# A line up to this long is read whole by orjson: for a short line the request echo is too small for skipping
# it to pay for msgspec's pass and the four small parses after it (a ~900-byte prediction: ~1.8 us whole against
# ~2.8; even at ~3.9 KB of ASCII request, ~3.9 us either way).
WHOLE_LINE_MAX = 2048


def decode_prediction(raw: bytes) -> dict[str, Any]:
    """The fields collect reads (row id, key, status, response) that the line has, decoded as orjson would; a
    short line's other fields may come with them (the whole object, when that was the cheaper read).

    Raises Undecodable where `orjson.loads(raw)` raises (except for what the module's docstring says), or when
    the line is not a JSON object."""
    if len(raw) <= WHOLE_LINE_MAX:
        try:
            whole = _loads(raw)
        except orjson.JSONDecodeError:
            pass  # read again below: refused here for bytes collect does not read, or undecodable
        else:
            if type(whole) is dict:
                return whole
    try:
        found = _decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:  # (msgspec's nesting limit is ~1,000, orjson's 1,024)
        raise Undecodable(str(exc)) from None
    # _FIELDS unrolled: a getattr loop costs more than the small fields' decoding. orjson checks their UTF-8.
    record: dict[str, Any] = {}
    try:
        if value := found.gbp_row:
            record["gbp_row"] = _loads(memoryview(value))
        if value := found.gbp_key:
            record["gbp_key"] = _loads(memoryview(value))
        if value := found.status:
            record["status"] = _loads(memoryview(value))
        if value := found.response:
            record["response"] = _loads(memoryview(value))
    except orjson.JSONDecodeError as exc:
        raise Undecodable(str(exc)) from None
    return record


def staged_row(raw: bytes) -> int | None:
    """The row of a staged line that starts `{"gbp_row":"r<digits>",` (or `}`); None for any other line (the
    caller parses it in full).

    The prefix is trusted: a staged line is written only by `joining.staged_line(_raw)`, which puts the row id
    first and nowhere else at the top level (the request is nested under "request"). Looking for a second
    top-level row id meant searching every line's bytes: collect's pass over a 174 MB staged part took 0.165 s
    with that search and takes 0.11 s without it, for a line only a tampered file has; and a tampered file could
    as well carry a wrong row number that no search finds."""
    start = len(_PREFIX)
    if not raw.startswith(_PREFIX):
        return None
    end = raw.find(b'"', start)
    if end <= start or raw[end + 1:end + 2] not in (b",", b"}"):
        return None
    digits = raw[start:end]
    return int(digits) if digits.isdigit() and digits.isascii() else None


SEARCH_READ = 1 << 20  # bytes read at a time by lines_of_rows
_ROW_START = b'{"' + ROW_FIELD.encode() + b'":"r%d",'


def lines_of_rows(stream: IO[bytes], rows: list[int], again: Callable[[], Iterable[bytes]]) -> Iterator[bytes]:
    """The lines of a staged part that hold `rows` (ascending), each found by searching for its row id.

    Collect's pass 2 wants the staged lines of the rows that failed, often a few in a hundred; stepping
    through every line in Python to find them took 0.21 s for 200,000 short rows (5% failed) on a local file,
    where bytes.find goes through a block's lines in C: 0.06 s. A staged part lists its rows in ascending
    order, one line each, starting `{"gbp_row":"r<row>",`. Searched for right after a newline (or at a block's
    first line), that text is the row's line: a line holds no raw newline, and a nested object with such a
    key is never at a line's start. When a row is not where that order puts it (a part staged some other
    way: `batchctl postprocess` rebuilds one from predictions, in their order), the rest comes from
    `again()`, every line of the part, less those already given."""
    found: set[int] = set()
    todo = iter(rows)
    want = next(todo, None)
    in_order = True

    def scan(data: bytes, at: int, end: int) -> Iterator[bytes]:
        """The wanted lines among the whole lines of data[at:end], in order; stops at one out of order."""
        nonlocal want, in_order
        before = data.rfind(b"\n", at, end - 1)  # the newline before the last line, if it is not the first
        last = staged_row(data[before + 1 if before >= 0 else at:end])  # their highest row, in order
        in_order = last is not None
        while in_order and want is not None and want <= last:
            needle = _ROW_START % want
            if not data.startswith(needle, at):
                at = data.find(b"\n" + needle, at, end) + 1
                in_order = at > 0
                if not in_order:
                    return
            line_end = data.index(b"\n", at)
            yield data[at:line_end]
            found.add(want)
            at = line_end + 1
            want = next(todo, None)

    # A line that runs across reads is put together alone; joining each read to it copied every byte again.
    carry = b""
    while want is not None and in_order:
        block = stream.read(SEARCH_READ)
        if not block:
            break
        start = 0
        if carry:
            cut = block.find(b"\n")
            if cut < 0:
                carry += block
                continue
            start = cut + 1
            line, carry = carry + block[:start], b""
            yield from scan(line, 0, len(line))
            if want is None or not in_order:
                break
        end = block.rfind(b"\n") + 1  # whole lines only; the rest waits for the next block
        carry = block[max(end, start):]
        if end > start:
            yield from scan(block, start, end)
    if want is None:
        return
    for raw in again():
        if staged_row(raw) not in found:
            yield raw


# A line that may be blank (only the whitespace bytes.strip removes) starts with one of these, right after a newline.
# One regex search of a 1 MB read takes ~0.25 ms, six two-byte substring searches ~5 ms (Python 3.11).
BLANK_FIRST = b"\n \t\r\x0b\x0c"
BLANK_START = re.compile(rb"\n[\n \t\r\x0b\x0c]")


def newlines_unless_blank(chunk: bytes) -> int | None:
    """The newlines in `chunk`, or None when a blank line starts after one of them.

    Long lines (a staged part's are ~5 KB) are walked newline to newline, each found by memchr: 174 MB in
    0.03 s, where counting and searching the whole chunk (each a byte-by-byte C loop) took 0.11 s. Short lines
    take the two whole-chunk calls, cheaper than a Python step per line."""
    if short_lines(chunk):
        return None if BLANK_START.search(chunk) else chunk.count(b"\n")
    find, last = chunk.find, len(chunk) - 1
    newlines = 0
    cut = find(b"\n")
    while cut >= 0:
        newlines += 1
        if cut < last and chunk[cut + 1] in BLANK_FIRST:
            return None
        cut = find(b"\n", cut + 1)
    return newlines


# A staged line's start, after the newline that ends the line before it: the row id `staged_row` reads. A regex
# led by a literal newline is searched for at memchr speed; `(?m)^` in its place made the scan ~10x slower.
_LINE_ROW = re.compile(rb'\n\{"' + ROW_FIELD.encode() + rb'":"r([0-9]{1,19})"[,}]')
_HEAD = 64  # bytes of a line's start kept across reads: more than its row id takes


class StagedRowSums:
    """The row sums (`shared/rowsums.py`) of a staged part's lines, fed the part in reads of any size.

    A part staged by submit has its sums in its record; one put together elsewhere (`batchctl postprocess`
    links or copies the parts `batchctl validate` wrote) gets them here, so collect's pass 2 can search for
    the few lines it needs instead of stepping through every line (`lines_of_rows`). Each line counts once,
    from its first bytes, whichever reads it falls across. A line `staged_row` would not read (no row id first,
    a row of more than 19 digits) adds nothing: the sums then fail to match the rows that came back, and
    collect reads every line, as without sums. One regex search per read, no Python step per line: 174 MB of
    ~5 KB lines in ~0.07 s, 69 MB of 200,000 short ones in ~0.07 s."""

    __slots__ = ("sums", "_head")

    def __init__(self) -> None:
        self.sums = RowSums()
        self._head = bytearray(b"\n")  # a newline and the first bytes of the line the last read ended in

    def feed(self, data: bytes) -> None:
        first = self._begin(data)
        if first >= 0:
            last = data.rfind(b"\n")
            # The lines that start after `first` and end by `last`, whole in this read; the one after `last` waits.
            self._end(data, last, [int(row) for row in _LINE_ROW.findall(data, first, last)])

    def feed_unless_blank(self, data: bytes) -> int | None:
        """`feed`, for a reader that also wants to know the part's lines are clean: the newlines in `data`, or None
        when a line that starts after one of them starts with whitespace (it may be blank), in which case what was
        fed is not to be used.

        Long lines (a staged part's are ~5 KB) are walked newline to newline (each found by memchr), their row ids
        read where the walk is: 174 MB in ~0.05 s, against ~0.1 s for the regex search of `feed` and ~0.04 s more
        for the walk that looked for blank lines. Short lines take whole-read calls, cheaper than a Python step per
        line."""
        if short_lines(data):
            newlines = newlines_unless_blank(data)  # short lines: whole-read calls
            if newlines is not None:
                self.feed(data)
            return newlines
        first = self._begin(data)
        if first < 0:
            return 0
        last = data.rfind(b"\n")
        find, match, rows = data.find, _LINE_ROW.match, []
        newlines, at = 0, first
        while at >= 0:
            newlines += 1
            if at < last:
                found = match(data, at)
                if found is not None:
                    rows.append(int(found[1]))
                    at = find(b"\n", found.end())
                    continue
            if at + 1 < len(data) and data[at + 1] in BLANK_FIRST:
                return None
            at = find(b"\n", at + 1)
        self._end(data, last, rows)
        return newlines

    def _begin(self, data: bytes) -> int:
        """The first newline in `data` (-1: none). The line the last read ended in takes its start from `data`
        first, and counts when it ends there."""
        first = data.find(b"\n")
        room = _HEAD + 1 - len(self._head)
        if room > 0:
            self._head += data[:room if first < 0 else min(first, room)]
        if first >= 0:
            self._count_head()
        return first

    def _end(self, data: bytes, last: int, rows: list[int]) -> None:
        """Count `rows`, the lines whole in `data` after its first newline; the one after `last` waits."""
        self.sums.update(rows)
        self._head = bytearray(b"\n") + data[last + 1:last + 1 + _HEAD]

    def close(self) -> RowSums:
        """The sums, once every read was fed (a last line without a newline counts too)."""
        self._count_head()
        self._head = bytearray(b"\n")
        return self.sums

    def _count_head(self) -> None:
        found = _LINE_ROW.match(self._head)
        if found:
            self.sums.add(int(found[1]))
