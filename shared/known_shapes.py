"""Staging a line whose shape an accepted line of the same file already had, without parsing or walking it.

The lines of an input file mostly share one shape: the same keys, the same JSON between the strings, the same
kind of value in each string, one prompt and one "key" (a string or a row number) differing from line to line.
Validation's verdict on a line depends only on that shape (the keys, the types, numeric-looking strings, the
`role` values) and on the file's schema, which an accepted line fixes for every path it uses. So a line of a
known shape gets the verdict its shape got, and the staged line the full path would write, from its bytes.

A line's shape is `raw.split(b'"')` (with no escaped quote in the line, the odd pieces are exactly its strings'
contents; a line with escaped quotes or backslashes is split with those escapes set aside, `_set_aside`, and orjson
writes both back as they are) with each string that is a value reduced to whether the importer reads it as a number,
except a `role` value, which is kept whole. Keys and the bytes between strings stay as they are, but for a "key"
that is an integer, which the shape holds as `#`. A shape is learnt from an accepted line whose only escapes are
`\\n`, `\\t`, `\\r`, `\\"` and `\\\\`, so a line of the same shape is valid JSON exactly when its strings are: valid
UTF-8 with no control character and no other escape. Its staged line is orjson's spelling of its request and key:
orjson writes such strings back as they are, so that spelling is the line's strings between the bytes orjson wrote
between the learnt line's strings (spaces gone, numbers spelled its way). Verdicts and staged bytes are the full
path's, byte for byte; tests/unit/test_known_shapes.py checks this against the full path on generated and hostile
lines, compact and spaced, with string and integer keys.

What a known line costs is a few passes over its bytes (the split, msgspec's check of its JSON and a UTF-8 decode,
the copy into the staged line) and a few dict and tuple operations: on the bench's ~4.6 KB lines ~11-12 us, against
~16 us for parsing, validating and splicing it (~6.5-7 us of which is `orjson.loads` alone), and more against a line
orjson must write again. Counted in instructions (valgrind's callgrind, 2,000 of those lines, the count for 10
taken off): ~122,000 a line, ~144,000 when the check mapped control bytes with `bytes.translate` and decoded that,
~89,000 for `orjson.loads` alone. `python -m bench.measure validate INPUT WORK`, side by side with the code before this
module, two runs each, the same bytes written: the bench's 200 MB input 1.04-1.06 s -> 0.74 s; the same rows
as `json.dumps` writes them (spaces, a line break in each prompt) 1.06-1.07 s -> 0.79-0.81 s; its 200,000 short
lines 2.31-2.32 s -> 1.29 s. A file whose lines all differ in shape (per-row keys) gets nothing from this, so it
stops looking after `_GIVE_UP_MISSES` misses with fewer hits than misses.

Most of what is left is Python steps, a few per string of a line, so consecutive lines of one shape are taken
side by side (`staged_run`, `_Columns`): a run of lines split at its quotes at once is the lines' pieces one after
another, so each string of the shape is one slice of them, checked with one C call (a count, a min) and written with
one slice assignment; the JSON, UTF-8 and escape checks run once over the run's bytes. A run is taken only when
`staged_line` would stage each of its lines by the same shape, byte for byte; tests/unit/test_known_shape_runs.py
checks runs against lines one by one and against the full path. One core, the bench's lines (`python -m
bench.measure validate-1`, interleaved with the code before runs): 200 MB of ~4.6 KB lines 0.83-0.85 s -> 0.55-0.60
s; 200,000 short lines 1.67-2.01 s -> 0.64-0.83 s; on the ~4.6 KB lines, ~8.6 us a line against ~10.9 one by one
(in memory), of which splitting at quotes ~2.8, msgspec's check ~1.7 and the UTF-8 decode ~1.8. A shape whose key is
an integer (a row number) is taken in runs too, its key matched by one pattern a line: 200,000 short lines with
row-number keys 1.97-3.01 s one by one -> 0.52-0.54 s.

A run of lines of several known shapes in any order (a system instruction on some lines, more turns on others) is
grouped by each line's count of quotes, each group staged as a run of its own with its rows, and the staged lines
put back in the run's order, all by C calls (`_staged_by_shape`); lines of several shapes with one count of quotes
(a different key, a different role) are grouped again by the places those shapes differ at, read as columns of the
lines split at their quotes at once (`_staged_by_columns`), where a lookup a line took ~6 us: 200,000 short lines
with one of three generationConfig keys each, one core, 2.46-2.59 s -> 1.50-1.67 s. The bench's 200,000
short lines in three shapes in turn, one core: 1.66-2.84 s -> 0.87-0.88 s, the same bytes written. A shape with
values that read as numbers (a key such as "00042") is taken in runs too, each such value's column matched by one
pattern. Lines whose prompts hold escaped quotes or backslashes (`say \\"hi\\"`, `C:\\\\dir`) are staged from
their bytes too, split with those escapes set aside, in runs and one by one: 200,000 short lines, half of them with
both, one core, 3.00-3.35 s -> 0.93-0.98 s, the same bytes written. So are lines written with `\\u` escapes
(Python's `json.dumps` by default, for every character past ASCII), split with those escapes as the characters in
UTF-8, as orjson writes them (`_characters`): the bench's short lines written so, one core, 4.17-5.84 s -> 1.49-1.75
s, the same bytes written. What takes the full path: `\\u` escapes of a quote, a backslash or a control character,
lone surrogates, raw UTF-8 beside `\\u` escapes, and other escapes orjson writes otherwise (`\\/`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import groupby
from operator import itemgetter, methodcaller
from typing import Any

import msgspec
import orjson

from shared import joining, validation

__all__ = ["KnownShapes"]

_NUMERIC = re.compile(validation._NUMERIC_RE.pattern.encode())  # the importer's numeric strings, as bytes
_NUMERIC_LINES = re.compile(b"(?:%b)(?:\n(?:%b))*" % (_NUMERIC.pattern, _NUMERIC.pattern))  # such strings, one a line
# An escape orjson may write otherwise (`\\u00e9` as the character), or a quote or backslash escaped (a `"` that
# does not end a string: found in a line as it is, or in one split with those two set aside, `_set_aside`, where
# they are no longer escapes). `\\\\n` is refused too: its first backslash is followed by another.
_OTHER_ESCAPE = re.compile(rb"\\[^ntr]")
_LINE_BREAKS = (b"n", b"t", b"r")
_FEW_ESCAPES = 32  # found one by one (a regex search costs ~3 us on 4.6 KB, a find a tenth of that); then the regex
# A "key" that is an integer (a row number) sits between strings: lines of one shape differ there too. The shape
# is kept with the integer as `#`, and a line's integer is taken when orjson spells it the same way (no `-0`, up to
# 18 digits: within its 64-bit range).
_INTEGER = re.compile(rb"-?[0-9]+")
_ORJSON_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,17}")
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_ROW_HEAD = b'{"' + joining.ROW_FIELD.encode() + b'":"r%d",'  # a staged line's start, as joining writes it
_KEY_DIGITS = -1  # in a `_Columns` template: where each line's integer key goes
_QUOTE_COUNT = methodcaller("count", b'"')
# An escaped backslash and an escaped quote, set aside while a line is split at its quotes (`_set_aside`): bytes no
# line holds that a JSON check passes (a control byte outside an escape is refused), and orjson writes both escapes
# back as they are.
_BACKSLASH, _QUOTE = b"\x00\x01", b"\x00\x02"
_MAX_SHAPES = 256  # forgotten all at once past this: a file has a few shapes, or too many to keep
_MAX_ALIKE = 8  # shapes kept with the same bytes between strings (each is tried in turn)
_MAX_SHAPE_BYTES = 4096  # of strings kept whole: a shape with more (long keys) is not kept
_GIVE_UP_MISSES = 1000
_MAX_INTEGER_KEYS = 4  # places an integer key is looked for (each a lookup more for a line of no known shape)


class _Anything(msgspec.Struct):
    """An object whose members are all skipped: decoding into it checks a line's JSON and builds nothing."""


# msgspec's skip refuses what orjson refuses in a line of a known shape (bad syntax, a control byte in a string, an
# invalid escape) but for bad UTF-8, which `bytes.decode` finds: ~1.4 + ~0.8 us on a ~4.8 KB line, against ~2.9 +
# ~0.8 us for mapping control bytes to one UTF-8 never has (bytes.translate) and decoding that.
_json_checked = msgspec.json.Decoder(_Anything).decode
_lines_checked = msgspec.json.Decoder(_Anything).decode_lines  # a run's lines at once (a blank one gives none)


def _picker(indexes: list[int]) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """pieces -> the tuple of pieces[i] for i in `indexes` (one C call for two or more)."""
    if len(indexes) >= 2:
        return itemgetter(*indexes)
    if indexes:
        i = indexes[0]
        return lambda pieces: (pieces[i],)
    return lambda pieces: ()


class _Value:
    """A top-level member's value: it starts in pieces[first] and ends in pieces[last] (pieces between strings),
    and orjson writes it as its strings between `between`."""

    __slots__ = ("first", "last", "between")

    def __init__(self, first: int, last: int, between: list[bytes]) -> None:
        self.first, self.last, self.between = first, last, between

    def spelled(self, pieces: list[bytes]) -> bytes:
        out = pieces[self.first:self.last + 1]
        out[0::2] = self.between
        return b'"'.join(out)


def _value(pieces: list[bytes], first: int, value: Any, depths: dict[int, int]) -> _Value | None:
    """The _Value of `value` (parsed), which starts in pieces[first]; None when orjson does not write its strings
    as they are in the line (a duplicate key, a string orjson would escape)."""
    try:
        # Copied: a piece may be the whole of what orjson returned, which keeps a work buffer of ~1 KB or more.
        spelled = bytes(memoryview(orjson.dumps(value)))
        compact = (_set_aside(spelled, unicode=False) or spelled).split(b'"')
    except orjson.JSONEncodeError:
        return None
    last = first + len(compact) - 1
    if last >= len(pieces) or compact[1::2] != pieces[first + 1:last:2]:
        return None
    if depths.get(last + 1, 1) != 1:
        return None  # the line's value goes on past the strings orjson wrote: a key it left out
    return _Value(first, last, compact[0::2])


class _IntegerKey:
    """The "key" of a line of the shape: an integer in pieces[piece] (-1: the last piece)."""

    __slots__ = ("piece",)

    def __init__(self, piece: int) -> None:
        self.piece = piece

    def spelled(self, pieces: list[bytes]) -> bytes | None:
        """orjson's spelling of the integer, when the line spells it that way; else None."""
        found = _INTEGER.search(pieces[self.piece])  # none in a line that has the shape's `#` itself
        return found[0] if found is not None and _ORJSON_INTEGER.fullmatch(found[0]) else None


class _Shape:
    """One learnt shape: the strings it keeps whole (keys, `role` values) and what they hold; its values, and
    which of them the importer reads as numbers; its request and key."""

    __slots__ = ("whole", "strings", "values", "numeric", "plain", "request", "key", "columns")

    def __init__(self, pieces: list[bytes], keys: list[int], request: _Value, key: _Value | _IntegerKey | None) \
            -> None:
        is_key = set(keys)
        whole = [i for i in range(1, len(pieces) - 1, 2)
                 if i in is_key or (i - 2 in is_key and pieces[i - 2] == b"role")]
        kept = set(whole)
        values = [i for i in range(1, len(pieces) - 1, 2) if i not in kept]
        self.whole = _picker(whole)
        self.strings = self.whole(pieces)
        self.values = _picker(values)
        self.numeric = tuple(_is_numeric(text) for text in self.values(pieces))
        self.plain = bool(self.numeric) and not any(self.numeric)  # values, none of them read as a number
        self.request, self.key = request, key
        # Runs of lines of the shape are staged side by side (`_Columns`).
        self.columns = _Columns(pieces, whole, self.strings, values, self.numeric, request, key)

    def matches(self, pieces: list[bytes]) -> bool:
        """Whether a line with the same bytes between strings has this shape."""
        if self.whole(pieces) != self.strings:
            return False
        values = self.values(pieces)
        # A value that sorts from ":" on starts with no digit, "-" or other byte below ":", so the importer does
        # not read it as a number; every value does when the least does. One C call for the common shape, where a
        # step per value cost ~3,300 instructions (a short line's key and prompt: ~6,600 of its ~45,000).
        if self.plain and min(values) >= b":":
            return True
        numeric = _NUMERIC.fullmatch
        for text, was in zip(values, self.numeric, strict=True):
            if (text[:1] < b":" and numeric(text) is not None) is not was:
                return False
        return True


class _Columns:
    """A shape's lines side by side: `staged` checks a run of lines (joined by newlines) against the shape and
    writes their staged lines with a few C calls per string of the shape, not a Python step per line and string.

    A run split at its quotes is its lines' pieces one after another, K to a line (K: the shape's quotes), the
    piece between two lines being the last piece of one, a newline and the first of the next (the seam). So
    piece j of line i is at i * K + j, and each string (or piece between strings) of the shape is one slice of
    the run's pieces, checked with one count or min and written with one slice assignment. A run of N lines split
    into N * K + 1 pieces whose N - 1 seams are the shape's holds its N - 1 newlines in the seams only (the
    shape's own pieces hold none), so each line has its K quotes where the shape has them.

    A "key" that is an integer sits between strings, so that piece differs from line to line (and, when it is the
    line's last, so do the seams): each line's piece there is matched whole by a pattern of the shape's piece with
    the integer as orjson spells it, one match a line."""

    __slots__ = ("quotes", "head", "tail", "seam", "between", "whole", "values", "template", "key_strings",
                 "integer", "fixed")

    def __init__(self, pieces: list[bytes], whole: list[int], strings: tuple[bytes, ...], values: list[int],
                 numeric: tuple[bool, ...], request: _Value, key: _Value | _IntegerKey | None) -> None:
        quotes = self.quotes = len(pieces) - 1
        self.head, self.tail = pieces[0], pieces[-1]
        self.seam = pieces[-1] + b"\n" + pieces[0]
        self.between = [(j, pieces[j]) for j in range(2, quotes, 2)]
        # (where the integer key is: its piece, and the pattern each line's piece there matches whole)
        self.integer: tuple[int, re.Pattern[bytes]] | None = None
        if isinstance(key, _IntegerKey):
            at = quotes if key.piece < 0 else key.piece
            found = _INTEGER.search(pieces[at])
            pattern = re.escape(pieces[at][:found.start()]) + rb"(" + _ORJSON_INTEGER.pattern + rb")" + \
                re.escape(pieces[at][found.end():])
            self.integer = (at, re.compile(pattern + (re.escape(b"\n" + pieces[0]) if at == quotes else b"")))
            self.between = [(j, piece) for j, piece in self.between if j != at]
            if at == quotes:
                self.tail = self.seam = None  # matched by the pattern instead
        self.whole = list(zip(whole, strings, strict=True))
        self.values = list(zip(values, numeric, strict=True))
        # What the shape holds at each place of a line split at its quotes, where it is the same on every line (not
        # the first and last pieces, which a run's seams join): shapes of one count of quotes are told apart there.
        self.fixed = {j: piece for j, piece in [*self.between, *self.whole] if 0 < j < quotes}
        # A staged line as `joining.staged_line_spliced` writes it: the row id, then fixed bytes (the shape's bytes
        # between strings as orjson spells them, and the strings it keeps whole) and the line's other strings in
        # turn. The key's JSON sits in a string, as orjson spells it: its quotes and backslashes escaped (here, once,
        # in its fixed bytes; in `staged`, in its strings that differ from line to line, where a run has any).
        constant = dict(self.whole)
        template: list[bytes | int] = []
        if isinstance(key, _IntegerKey):
            template += [b'"gbp_key":"k', _KEY_DIGITS, b'",']
        elif key is not None:
            template += [b'"gbp_key":"k', *_spelled(key, constant, escaped=True), b'",']
        template += [b'"request":', *_spelled(request, constant, escaped=False), b"}\n"]
        merged: list[bytes | int] = []
        for item in template:  # adjacent fixed bytes as one
            if merged and type(item) is bytes and type(merged[-1]) is bytes:
                merged[-1] += item
            else:
                merged.append(item)
        self.template = merged
        self.key_strings = [j for j in range(key.first + 1, key.last, 2) if j not in constant] \
            if isinstance(key, _Value) else []

    def staged(self, first_row: int, run: bytes, max_bytes: int, rows: Sequence[int] | None = None) \
            -> tuple[bytes, Sequence[int]] | None:
        """The staged lines of `run` (lines joined by newlines, the first of them row `first_row`, or rows `rows`)
        and their rows; None unless `staged_line` would stage every one of them by this shape. A run whose strings
        hold escaped quotes or backslashes is split again with them set aside (`_set_aside`)."""
        staged = self._staged(first_row, run, None, max_bytes, rows)
        if staged is None and b"\\" in run:
            aside = _set_aside(run)
            if aside is not None:
                staged = self._staged(first_row, run, aside, max_bytes, rows)
        return staged

    def _staged(self, first_row: int, run: bytes, aside: bytes | None, max_bytes: int,
                rows: Sequence[int] | None) -> tuple[bytes, Sequence[int]] | None:
        """`staged`, the run split at the quotes of `aside` (the run with its escaped quotes and backslashes set
        aside) when given, else at its own."""
        quotes = self.quotes
        split = run if aside is None else aside
        if not _only_line_breaks(split):  # (first: a run that needs its escapes set aside fails here at once)
            return None
        pieces = split.split(b'"')
        lines, odd = divmod(len(pieces) - 1, quotes)
        # (No newline is left elsewhere: the shape's pieces hold none, and a string that does fails the JSON check.)
        if odd or pieces[0] != self.head or (rows is not None and len(rows) != lines):
            return None
        digits = None
        if self.integer is not None:  # each line's integer key, as orjson spells it, where the shape has it
            at, pattern = self.integer
            column = pieces[at::quotes] if at < quotes else [*pieces[quotes:-1:quotes], pieces[-1] + b"\n" + self.head]
            found = list(map(pattern.fullmatch, column))
            if None in found:
                return None
            digits = [match[1] for match in found]
        if self.seam is not None and \
                (pieces[-1] != self.tail or pieces[quotes:-1:quotes].count(self.seam) != lines - 1):
            return None
        for j, fixed in self.between:
            if pieces[j::quotes].count(fixed) != lines:
                return None
        for j, text in self.whole:
            if pieces[j::quotes].count(text) != lines:
                return None
        for j, numeric in self.values:  # as `_Shape.matches`: each value reads as a number where the shape's did
            column = pieces[j::quotes]
            if numeric:  # (a raw newline in a value fails the JSON check below)
                if _NUMERIC_LINES.fullmatch(b"\n".join(column)) is None:
                    return None
            elif min(column) < b":" and any(map(_is_numeric, column)):  # one that sorts from ":" on does not
                return None
        escaped = {}  # a key's strings whose backslashes (of escapes) orjson escapes again in the staged line
        for j in self.key_strings:
            column = pieces[j::quotes]
            joined = b"".join(column)
            if b"\\" in joined or (aside is not None and b"\x00" in joined):
                escaped[j] = list(map(_key_spelling, column))
        # What `staged_line` checks of each line: JSON orjson reads (no control byte in a string), UTF-8, escapes.
        try:
            if len(_lines_checked(run)) != lines:
                return None
            if not run.isascii():
                run.decode()
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        if rows is None:
            rows = range(first_row, first_row + lines)
        width = len(self.template) + 1
        out = [b""] * (lines * width)
        out[0::width] = map(_ROW_HEAD.__mod__, rows)
        for at, item in enumerate(self.template, 1):
            if type(item) is bytes:
                out[at::width] = [item] * lines
            else:
                out[at::width] = digits if item == _KEY_DIGITS else escaped.get(item) or pieces[item::quotes]
        staged = b"".join(out) if aside is None else _put_back(b"".join(out))
        # Each line is within max_bytes when all of them are (a part's limit, far above a run's bytes).
        if len(staged) > max_bytes and max(map(len, staged.split(b"\n"))) + 1 > max_bytes:
            return None
        return staged, rows


def _spelled(value: _Value, constant: dict[int, bytes], *, escaped: bool) -> list[bytes | int]:
    """`value.spelled` as a template: fixed bytes (those between its strings, and the strings in `constant`) and,
    between them, the index of each other string; `escaped`: as in a JSON string (quotes and backslashes)."""
    def fixed(text: bytes) -> bytes:
        return text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') if escaped else text
    quote = fixed(b'"')
    out: list[bytes | int] = [fixed(value.between[0])]
    for n, j in enumerate(range(value.first + 1, value.last, 2), 1):
        out += [quote, fixed(constant[j]) if j in constant else j, quote, fixed(value.between[n])]
    return out


def _set_aside(raw: bytes, *, unicode: bool = True) -> bytes | None:
    """`raw` with each escaped backslash and escaped quote set aside (`_BACKSLASH`, `_QUOTE`), so that its quotes
    are those that start and end its strings, and (`unicode`) with its `\\u` escapes as the characters, in UTF-8, as
    orjson writes them; None when it has none of these, or a `\\u` escape orjson writes otherwise. Pairs of
    backslashes first, left to right, as a reader takes them: in `\\\\"` the quote ends a string, in `\\\\\\"` it
    does not."""
    pairs, quotes = b"\\\\" in raw, b'\\"' in raw
    if pairs:
        raw = raw.replace(b"\\\\", _BACKSLASH)
    if quotes:
        raw = raw.replace(b'\\"', _QUOTE)
    if unicode and b"\\u" in raw:
        return _characters(raw)
    return raw if pairs or quotes else None


# A `\\u` escape orjson writes as an escape (a quote, a backslash, a control character), or one of a surrogate pair.
_ESCAPED_BY_ORJSON = re.compile(rb"\\u00(?:[01][0-9a-fA-F]|22|5[cC])")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _characters(raw: bytes) -> bytes | None:
    """`raw` (its escaped backslashes set aside) with each `\\u` escape as its character in UTF-8, as orjson writes
    a string (Python's `json.dumps` writes every character past ASCII so by default); None unless `raw` is ASCII
    and every such escape stands for a character orjson writes as it is (a surrogate pair joined)."""
    if not raw.isascii() or _ESCAPED_BY_ORJSON.search(raw) is not None:
        return None
    try:
        text = raw.decode("raw_unicode_escape")  # only `\\u` and `\\U` escapes: a line with `\\U` is not JSON
        if _SURROGATE.search(raw) is not None:
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")  # pairs joined; a lone one stays
        return text.encode()  # (a lone surrogate fails here)
    except UnicodeError:
        return None


def _put_back(spelled: bytes) -> bytes:
    """What `_set_aside` set aside, written back as orjson writes it in a string."""
    return spelled.replace(_QUOTE, b'\\"').replace(_BACKSLASH, b"\\\\") if b"\x00" in spelled else spelled


def _key_spelling(text: bytes) -> bytes:
    """A string of a key's JSON as it is spelled inside the staged line's key string (`"k..."`): its backslashes
    escaped again, and what `_set_aside` set aside with them."""
    return text.replace(b"\\", b"\\\\").replace(_BACKSLASH, b"\\\\\\\\").replace(_QUOTE, b'\\\\\\"')


def _is_numeric(text: bytes) -> bool:
    return text[:1] < b":" and _NUMERIC.fullmatch(text) is not None


def _only_line_breaks(raw: bytes) -> bool:
    """Whether every escape in `raw` is `\\n`, `\\t` or `\\r`."""
    at = raw.find(b"\\")
    for _ in range(_FEW_ESCAPES):
        if at < 0:
            return True
        if raw[at + 1:at + 2] not in _LINE_BREAKS:
            return False
        at = raw.find(b"\\", at + 2)
    return at < 0 or _OTHER_ESCAPE.search(raw, at) is None


class KnownShapes:
    """The shapes of one file's accepted lines, and the staged lines of later lines of those shapes.

    `staged_line(row, raw)` first; when it gives None, the caller validates the line in full and, when it is
    accepted and staged, calls `learn(raw, has_key, key, request)` with what validation parsed."""

    __slots__ = ("_shapes", "_count", "_integer_keys", "_last", "_hits", "_misses", "_on", "_grouped")

    def __init__(self) -> None:
        self._shapes: dict[tuple[bytes, ...], list[_Shape]] = {}  # by the bytes between strings
        self._count = 0
        self._integer_keys: list[int] = []  # where shapes have an integer key: an index in pieces[0::2]
        self._last: tuple | None = None  # (raw, pieces, set aside or None) of the line staged_line last missed
        self._hits = self._misses = 0
        self._on = True
        self._grouped = False  # the last run taken was of several shapes: the next is tried so first

    def staged_line(self, row: int, raw: bytes) -> bytes | None:
        """The line `raw` (line `row` of the file) staged, when a line of its shape was learnt; else None."""
        self._last = None
        if not self._on or type(raw) is not bytes:  # (shapes are dict keys: a bytearray's pieces are not hashable)
            return None
        pieces, shape, aside = self._line_shape(raw)
        if shape is None:
            self._misses += 1
            if self._misses >= _GIVE_UP_MISSES and self._hits < self._misses:
                self._on = False
            self._last = (raw, pieces, aside)
            return None
        # The line must be JSON orjson reads (its strings valid UTF-8, with no control byte), and its strings must
        # have no other escape than orjson writes back.
        try:
            _json_checked(raw)
            if not raw.isascii():
                raw.decode()
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None  # the full path says how the line is invalid
        if not _only_line_breaks(raw if aside is None else aside):
            return None
        key = shape.key
        if key is not None:
            key = key.spelled(pieces)
            if key is None:
                return None  # an integer orjson spells otherwise
        self._hits += 1
        request = shape.request.spelled(pieces)
        if aside is not None:
            request, key = _put_back(request), key if key is None else _put_back(key)
        return joining.staged_line_spliced(row, request, key)

    def _line_shape(self, raw: bytes) -> tuple[list[bytes], _Shape | None, bytes | None]:
        """The line split at its quotes, its learnt shape (None: none), and the line with its escaped quotes and
        backslashes set aside when it was split so (`_set_aside`: tried only when the line as it is has no shape,
        or has escapes other than line breaks)."""
        pieces = raw.split(b'"')
        shape = self._shape_of(pieces)
        if (shape is None or not _only_line_breaks(raw)) and b"\\" in raw:
            aside = _set_aside(raw)
            if aside is not None:
                pieces = aside.split(b'"')
                return pieces, self._shape_of(pieces), aside
        return pieces, shape, None

    def _shape_of(self, pieces: list[bytes]) -> _Shape | None:
        """The first learnt shape the line split into `pieces` has (None: none)."""
        between = pieces[0::2]
        alike = self._shapes.get(tuple(between))
        if alike is None:
            for at in self._integer_keys:
                if -len(between) <= at < len(between):
                    trial = between.copy()
                    trial[at] = _INTEGER.sub(b"#", trial[at], 1)
                    alike = self._shapes.get(tuple(trial))
                    if alike is not None:
                        break
        for shape in alike or ():
            if shape.matches(pieces):
                return shape
        return None

    @property
    def on(self) -> bool:
        """Whether lines are still looked up (a file whose lines all differ in shape stops it)."""
        return self._on

    def staged_run(self, first_row: int, run: bytes, max_bytes: int) -> tuple[bytes, range] | None:
        """`staged_line` for each line of `run` (lines joined by newlines, the first of them row `first_row`) at
        once, when every one of them has the shape of the first, or of the first of its group of lines with its
        count of quotes (`_staged_by_shape`), and `staged_line` would stage it (within `max_bytes`): their staged
        lines one after another, and their rows. Else None, and the caller takes the lines one by one."""
        self._last = None
        if not self._on or type(run) is not bytes:
            return None
        end = run.find(b"\n")
        shape = self._line_shape(run if end < 0 else run[:end])[1]
        if shape is None:
            return None
        # A run of several shapes fails as one only after it is split at its quotes: where the last run taken was of
        # several, the next is grouped first (a run of one shape then costs a count of each line's quotes more).
        staged = self._staged_by_shape(first_row, run, max_bytes) if self._grouped and end >= 0 else None
        if staged is None:
            staged = shape.columns.staged(first_row, run, max_bytes)
            if staged is None and end >= 0 and not self._grouped:
                staged = self._staged_by_shape(first_row, run, max_bytes)
                self._grouped = staged is not None
            else:
                self._grouped = False
        if staged is not None:
            self._hits += len(staged[1])
        return staged

    def _staged_by_shape(self, first_row: int, run: bytes, max_bytes: int) -> tuple[bytes, range] | None:
        """`staged_run` for a run of lines of several known shapes in any order (a system instruction on some
        lines, more turns on others): its lines grouped by their count of quotes, each group staged as a run of
        its own (`_Columns.staged`, with the group's rows), and the staged lines put back in the run's order. None
        unless every group is of known shapes that stage each of its lines.

        The groups are made and undone by C calls (a sort by each line's count, another for the inverse order),
        with a Python step per group, not per line. A group of lines with one count but several shapes (a key or a
        role that differs) is grouped again by the places those shapes differ at (`_staged_by_columns`), or, where
        that does not take it, by each line's shape, a lookup a line (`_shape_of`)."""
        lines = run.split(b"\n")
        counts = list(map(_QUOTE_COUNT, lines))
        order = sorted(range(len(lines)), key=counts.__getitem__)  # stable: each group in the run's order
        groups = [list(group) for _, group in groupby(order, counts.__getitem__)]
        staged: list[bytes] = []
        placed: list[int] = []  # the line of the run each of `staged` is
        for members in groups:
            # (A run of one count is grouped by shape at once: it failed as one shape already, or, taken grouped
            # first after a grouped run, it is tried as one shape when this finds it all of one.)
            got = self._staged_group(lines, members, first_row, max_bytes) if len(groups) > 1 else None
            if got is not None:
                staged += got
                placed += members
                continue
            if len(members) == 1:
                return None
            got_all = self._staged_by_columns(lines, members, counts[members[0]], first_row, max_bytes)
            if got_all is not None:
                staged += got_all[0]
                placed += got_all[1]
                continue
            shapes = [self._line_shape(lines[i])[1] for i in members]
            if None in shapes or shapes.count(shapes[0]) == len(shapes):
                return None  # a line of no known shape, or of one shape that failed as one
            ids = list(map(id, shapes))
            by_shape = sorted(range(len(members)), key=ids.__getitem__)
            for _, subgroup in groupby(by_shape, ids.__getitem__):
                which = list(subgroup)
                alike = list(map(members.__getitem__, which))
                got = self._staged_group(lines, alike, first_row, max_bytes, shapes[which[0]])
                if got is None:
                    return None
                staged += got
                placed += alike
        back = sorted(range(len(placed)), key=placed.__getitem__)  # where each line of the run went in `staged`
        return b"\n".join(itemgetter(*back)(staged)) + b"\n", range(first_row, first_row + len(lines))

    def _staged_by_columns(self, lines: list[bytes], members: list[int], quotes: int, first_row: int,
                           max_bytes: int) -> tuple[list[bytes], list[int]] | None:
        """`_staged_group` for lines of one count of quotes but several known shapes, grouped by the strings and
        bytes between them that tell those shapes apart (a key name, a role), read as columns of the lines split
        at their quotes at once: a few C calls, where looking up each line's shape took ~6 us a line. Each group
        is then checked whole against the shape of its first line, as any run is, so a grouping that puts two
        shapes together only fails. Their staged lines and the lines they are, or None (the caller then looks
        each line up)."""
        fixed = [shape.columns.fixed for alike in self._shapes.values() for shape in alike
                 if shape.columns.quotes == quotes]
        if len(fixed) < 2:
            return None
        # The places every shape of that count holds fixed bytes at, and where they are not all the same.
        telling = [j for j in range(1, quotes) if all(j in each for each in fixed) and
                   len({each[j] for each in fixed}) > 1]
        if not telling:
            return None
        pieces = b"\n".join(itemgetter(*members)(lines)).split(b'"')
        if len(pieces) != len(members) * quotes + 1:
            return None
        keys = pieces[telling[0]::quotes] if len(telling) == 1 else \
            list(zip(*(pieces[j::quotes] for j in telling), strict=True))
        order = sorted(range(len(members)), key=keys.__getitem__)  # stable: each group in the run's order
        groups = [list(map(members.__getitem__, group)) for _, group in groupby(order, keys.__getitem__)]
        if len(groups) > len(fixed):
            return None  # bytes no known shape has there
        staged: list[bytes] = []
        placed: list[int] = []
        for alike in groups:
            got = self._staged_group(lines, alike, first_row, max_bytes)
            if got is None:
                return None
            staged += got
            placed += alike
        return staged, placed

    def _staged_group(self, lines: list[bytes], members: list[int], first_row: int, max_bytes: int,
                      shape: _Shape | None = None) -> list[bytes] | None:
        """The staged lines of lines[i] for i in `members` (ascending), when all are of the first one's shape (given
        when known) and `staged_line` would stage each; None otherwise."""
        first = lines[members[0]]
        shape = shape or self._line_shape(first)[1]
        if shape is None:
            return None
        got = shape.columns.staged(0, b"\n".join(itemgetter(*members)(lines)) if len(members) > 1 else first,
                                   max_bytes, list(map(first_row.__add__, members)))
        return None if got is None else got[0].split(b"\n")[:-1]  # (each staged line ends in a newline)

    def learn(self, raw: bytes, has_key: bool, key: Any, request: dict) -> None:
        """Keep the shape of `raw`, the line `staged_line` last missed, which was accepted and staged with this
        key (`has_key`) and request."""
        last, self._last = self._last, None
        if last is None or last[0] is not raw or raw.startswith(_BOM):
            return  # (a BOM is skipped on line 1 only)
        pieces, aside = last[1], last[2]
        if not _only_line_breaks(raw if aside is None else aside):
            return
        if not len(pieces) & 1:
            return
        keys = [i for i in range(1, len(pieces) - 1, 2) if pieces[i + 1].lstrip(_WHITESPACE)[:1] == b":"]
        depths: dict[int, int] = {}  # string -> how many objects and arrays hold it
        depth = 0
        for i in range(1, len(pieces) - 1, 2):
            between = pieces[i - 1]
            depths[i] = depth = depth + between.count(b"{") + between.count(b"[") - between.count(b"}") - \
                between.count(b"]")
        at_request = [i for i in keys if depths[i] == 1 and pieces[i] == b"request"]
        at_key = [i for i in keys if depths[i] == 1 and pieces[i] == b"key"]
        if len(at_request) != 1 or len(at_key) != has_key:
            return
        request_value = _value(pieces, at_request[0] + 1, request, depths)
        key_value = _value(pieces, at_key[0] + 1, key, depths) if has_key else None
        if request_value is None or (has_key and key_value is None):
            return
        between = pieces[0::2]
        if type(key) is int and key_value.first == key_value.last and \
                _INTEGER.findall(pieces[key_value.first]) == key_value.between:
            at = -1 if key_value.first == len(pieces) - 1 else key_value.first // 2
            if at not in self._integer_keys and len(self._integer_keys) < _MAX_INTEGER_KEYS:
                self._integer_keys.append(at)
            if at in self._integer_keys:
                key_value = _IntegerKey(at if at < 0 else key_value.first)
                between[at] = _INTEGER.sub(b"#", between[at], 1)
        shape = _Shape(pieces, keys, request_value, key_value)
        if sum(map(len, shape.strings)) > _MAX_SHAPE_BYTES or b"\x00" in b"".join(shape.strings):
            return  # (a string kept whole is written as fixed bytes: not with an escape set aside)
        if self._count >= _MAX_SHAPES:
            self._shapes.clear()
            self._count = 0
        alike = self._shapes.setdefault(tuple(between), [])
        if len(alike) < _MAX_ALIKE:
            alike.append(shape)
            self._count += 1
