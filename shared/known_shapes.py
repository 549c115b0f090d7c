"""Staging a line whose shape an accepted line of the same file already had, without parsing or walking it.

The lines of an input file mostly share one shape: the same keys, the same JSON between the strings, the same
kind of value in each string, one prompt and one "key" string differing from line to line. Validation's verdict
on a line depends only on that shape (the keys, the types, numeric-looking strings, the `role` values) and on
the file's schema, which an accepted line fixes for every path it uses. So a line of a known shape gets the
verdict its shape got, and the staged line `raw_request.request_bytes` would splice, from the line's bytes.

A line's shape is `raw.split(b'"')` (with no backslash in the line, the odd pieces are exactly its strings'
contents) with each string that is a value (followed at once by `,`, `}` or `]`) reduced to whether the
importer reads it as a number, except a `role` value, which is kept whole. Keys, the bytes between strings,
and any string followed by something else stay as they are. A shape is learnt only from a line that was
accepted and spliced (its request and key spelled as orjson spells them), so a line of the same shape is valid
JSON, spelled the same way, exactly when its strings are: valid UTF-8 with no control character (none is
escaped, as no backslash is there). Its verdict and staged bytes are then the full path's, byte for byte
(tests/unit/test_known_shapes.py checks this against the full path on generated and hostile lines).

What a known line costs is three passes over its bytes (the split, the check of its strings, the copy into
the staged line) and a few dict and tuple operations: on the bench's ~4.6 KB lines ~10.5 us, against ~16 us
for parsing, validating and splicing it (~6.5 us of which is `orjson.loads`). `python -m bench.measure validate
INPUT WORK`, side by side with the code before this module, two or three runs each: the bench's 200 MB input
0.97 s -> 0.64 s, its 200,000 short lines 2.33 s -> 1.07 s, the same bytes written. A file whose lines all
differ in shape (per-row keys) gets nothing from this, so it stops looking after `_GIVE_UP_MISSES` misses
with fewer hits than misses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import itemgetter

from shared import joining

__all__ = ["KnownShapes"]

_VALUE_ENDS = (b",", b"}", b"]")
_NUMERIC = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?")  # validation._NUMERIC_RE, for bytes
# Control bytes and the backslash become a byte UTF-8 never has: one decode finds them and bad UTF-8 alike.
_UNSAFE = bytes(0xFF if b < 0x20 or b == 0x5C else b for b in range(256))
_CONTROLS = bytes(range(0x20))
_KEY_FIRST = b'{"key":'
_KEY_BEFORE = len(b',"key":')
_REQUEST_AFTER = len(b',"request":')
_MAX_SHAPES = 256  # forgotten all at once past this: a file has a few shapes, or too many to keep
_MAX_ALIKE = 8  # shapes kept with the same bytes between strings (each is tried in turn)
_MAX_SHAPE_BYTES = 4096  # of strings kept whole: a shape with more (a long key, strings before spaces) is not kept
_GIVE_UP_MISSES = 1000

# How a line holds its key: none, `{"key":K,"request":R}`, `{"request":R,"key":K}`.
_NO_KEY, _KEY_FIRST_FORM, _KEY_LAST_FORM = 0, 1, 2


def _picker(indexes: list[int]) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """pieces -> the tuple of pieces[i] for i in `indexes` (one C call for two or more)."""
    if len(indexes) >= 2:
        return itemgetter(*indexes)
    if indexes:
        i = indexes[0]
        return lambda pieces: (pieces[i],)
    return lambda pieces: ()


class _Shape:
    """One learnt shape: which strings it keeps whole (keys, `role` values, strings not followed at once by `,`
    `}` `]`) and what they hold; which are values, and which of those the importer reads as numbers; where the
    request starts and ends (in a piece between strings, so the same in every line of the shape) and how the
    line holds its key; how many control bytes it has between strings (a `\\r` before the newline)."""

    __slots__ = ("whole", "strings", "values", "numeric", "start_piece", "start_offset", "end_piece", "end_back",
                 "form", "controls")

    def __init__(self, pieces: list[bytes], start: int, end: int, form: int) -> None:
        whole, values = [], []
        for i in range(1, len(pieces) - 1, 2):
            is_value = pieces[i + 1][:1] in _VALUE_ENDS and (i < 3 or pieces[i - 2] != b"role")
            (values if is_value else whole).append(i)
        self.whole = _picker(whole)
        self.strings = self.whole(pieces)
        self.values = _picker(values)
        self.numeric = tuple(_is_numeric(text) for text in self.values(pieces))
        self.start_piece, self.start_offset = _piece_at(pieces, start)
        self.end_piece, end_offset = _piece_at(pieces, end)
        self.end_back = len(pieces[self.end_piece]) - end_offset
        self.form = form
        self.controls = sum(len(piece) - len(piece.translate(None, _CONTROLS)) for piece in pieces[0::2])

    def matches(self, pieces: list[bytes]) -> bool:
        """Whether a line with the same bytes between strings has this shape."""
        if self.whole(pieces) != self.strings:
            return False
        numeric = _NUMERIC.fullmatch
        for text, was in zip(self.values(pieces), self.numeric, strict=True):
            if (text[:1] < b":" and numeric(text) is not None) is not was:
                return False
        return True


def _is_numeric(text: bytes) -> bool:
    return text[:1] < b":" and _NUMERIC.fullmatch(text) is not None


def _piece_at(pieces: list[bytes], offset: int) -> tuple[int, int]:
    """(i, o): byte `offset` of the line is byte o of pieces[i] (or just past it), pieces joined by a quote."""
    for i, piece in enumerate(pieces):
        if offset <= len(piece):
            return i, offset
        offset -= len(piece) + 1
    raise ValueError("offset past the line")


class KnownShapes:
    """The shapes of one file's accepted, spliced lines, and the staged lines of later lines of those shapes.

    `staged_line(row, raw)` first; when it gives None, the caller validates the line in full and, when it is
    accepted and its request spliced, calls `learn(raw, start, end, has_key)` with the request's span."""

    __slots__ = ("_shapes", "_count", "_last", "_hits", "_misses", "_on")

    def __init__(self) -> None:
        self._shapes: dict[tuple[bytes, ...], list[_Shape]] = {}  # by the bytes between strings
        self._count = 0
        self._last: tuple | None = None  # (raw, pieces) of the line staged_line last missed
        self._hits = self._misses = 0
        self._on = True

    def staged_line(self, row: int, raw: bytes) -> bytes | None:
        """The line `raw` (line `row` of the file) staged, when a line of its shape was learnt; else None."""
        self._last = None
        if not self._on:
            return None
        pieces = raw.split(b'"')
        for shape in self._shapes.get(tuple(pieces[0::2]), ()):
            if shape.matches(pieces):
                break
        else:
            self._misses += 1
            if self._misses >= _GIVE_UP_MISSES and self._hits < self._misses:
                self._on = False
            self._last = (raw, pieces)
            return None
        # Strings must be valid UTF-8 with no control byte and no backslash (nothing escaped): the same decode
        # finds all three. A `\r` before the newline sits between strings.
        try:
            (raw[:-1] if shape.controls else raw).translate(_UNSAFE).decode()
        except UnicodeDecodeError:
            return None  # the full path says how the line is invalid, or stages it
        self._hits += 1
        i = shape.start_piece
        start = shape.start_offset + (sum(map(len, pieces[:i])) + i if i else 0)
        i = shape.end_piece - len(pieces) + 1  # <= 0: pieces after the end's, counted from the last
        end = len(raw) - shape.end_back - (sum(map(len, pieces[i:])) - i if i else 0)
        body = raw[start:end]
        form = shape.form
        if form == _NO_KEY:
            return joining.staged_line_spliced(row, body, None)
        if form == _KEY_FIRST_FORM:
            return joining.staged_line_spliced(row, body, raw[len(_KEY_FIRST):start - _REQUEST_AFTER])
        return joining.staged_line_spliced(row, body, raw[end + _KEY_BEFORE:len(raw) - 1 - shape.controls])

    def learn(self, raw: bytes, start: int, end: int, has_key: bool) -> None:
        """Keep the shape of `raw`, the line `staged_line` last missed, accepted with its request at
        raw[start:end] spelled as orjson spells it (`raw_request.request_span`)."""
        last, self._last = self._last, None
        if last is None or last[0] is not raw or b"\\" in raw:
            return
        pieces = last[1]
        form = _NO_KEY if not has_key else _KEY_FIRST_FORM if raw.startswith(_KEY_FIRST) else _KEY_LAST_FORM
        shape = _Shape(pieces, start, end, form)
        if sum(map(len, shape.strings)) > _MAX_SHAPE_BYTES or shape.controls > 1:
            return
        if self._count >= _MAX_SHAPES:
            self._shapes.clear()
            self._count = 0
        alike = self._shapes.setdefault(tuple(pieces[0::2]), [])
        if len(alike) < _MAX_ALIKE:
            alike.append(shape)
            self._count += 1
