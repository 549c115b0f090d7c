"""The BigQuery-style importer's rules that fail a WHOLE job before any row runs (error code 3).

Vertex loads the input file through an importer that infers ONE column type per JSON key path across
the entire file, so a file is checked line by line here, streaming, before the first prediction:
- a key path holding different types on different lines (null fits anything; int and float are one
  numeric family), arrays holding elements of different types included. The importer coerces a
  numeric-looking string (digits only, with an optional leading "-" and an optional ".digits" tail,
  e.g. "000000", "-3" or "2.5") to a number, so it joins the numeric family: "000000" then 7 on the
  same path passes, "000000" then "abc" fails. That is why ids should start with a letter;
- nesting deeper than 15 levels: a key's level is the number of object keys on its path, arrays
  not counted (`request`=1, `request.contents[].parts[].text`=4); a key at level 16 fails;
- a key that is not a valid BigQuery column name (`[A-Za-z_][A-Za-z0-9_]*`);
- an empty object `{}` anywhere (a struct with no fields);
- a line that is not JSON, or not a JSON object.

Speed: the rules are judged by one walk of the parsed line (`SchemaChecker._walk_record`), but most
lines of a real input have the shape of lines already seen, and such a line can neither break a rule
nor teach the schema anything. A typed msgspec decoder built from the schema so far accepts only such
lines (every key known on its path, every non-null value of its path's type family, no empty object)
and checks them in C, with no Python walk and no dicts built; any line it does not accept, for
whatever reason, goes to orjson and the walk, which alone decide and report. msgspec and orjson accept
the same JSON (strict, UTF-8 only, no NaN, no number past a double), so a line the decoder passes is one
the rows pass can parse; the importer tests meet both with broken lines. On 200,000 request lines of
~345 bytes the pass costs ~0.4 CPU-s instead of ~0.8 (`python -m local.vertex._perf --parts`).

Most of that decoder's time went to one thing: matching every string against the numeric-looking pattern (a
string path must not hold "000042"), ~1.7 of ~2.6 us a line. A string can only read as a number if its first
character is a digit or a minus sign, so its spelling starts with `"` and a digit, a minus or a backslash (an escape
may spell either). A line with no such bytes anywhere (one search, ~0.6 us) has no numeric-looking string, and a
second decoder that takes any string on a string path judges it as the first would (~0.9 us); a line with them
takes the first decoder, as before. The importer pass of `_perf --parts`: 3.3-3.6 -> 2.7-2.8 us a line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

import msgspec
import orjson

MAX_LEVEL = 15
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMERIC_STRING = re.compile(r"-?[0-9]+(\.[0-9]+)?")

IMPORT_MESSAGE = (
    "Failed to import data. Please check 'Prepare input' section of "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-from-cloud-storage "
    "and make sure the input follows the required format. Error: {detail}"
)


class ImportRuleError(Exception):
    """One input line breaks an importer rule; `detail` says which and where."""

    def __init__(self, detail: str, line: int):
        super().__init__(f"line {line}: {detail}")
        self.detail = detail
        self.line = line

    @property
    def job_message(self) -> str:
        return IMPORT_MESSAGE.format(detail=f"{self.detail} (input line {self.line})")


# orjson builds exact types only, so a type lookup is enough (and a quick one: this runs for every value).
_STRING = ("STRING", "STRING", None)
_KINDS = {bool: ("BOOLEAN", "BOOLEAN", None), int: ("NUMERIC", "INTEGER", None),
          float: ("NUMERIC", "FLOAT", None), dict: ("RECORD", "RECORD", None), list: ("REPEATED", "ARRAY", None)}
_NUMBER_START = frozenset("-0123456789")

# The fast decoder's view of the same rules (see `_fast_type`).
_EMPTY_OBJECT = re.compile(rb"\{\s*\}")  # also inside strings: that only sends a line to the walk
_NUMERIC_TEXT = Annotated[str, msgspec.Meta(pattern=r"\A-?[0-9]+(?:\.[0-9]+)?\Z")]
_OTHER_TEXT = Annotated[str, msgspec.Meta(pattern=r"\A(?!-?[0-9]+(?:\.[0-9]+)?\Z)")]
_FAMILY_TYPES: dict[str, Any] = {"STRING": _OTHER_TEXT, "NUMERIC": int | float | _NUMERIC_TEXT, "BOOLEAN": bool}
# The same, for a line with no string that may read as a number (`_MAYBE_NUMERIC` finds none): any string fits a
# string path. Every string that reads as a number starts with a digit or "-", spelled as it is or escaped.
_PLAIN_FAMILY_TYPES: dict[str, Any] = {**_FAMILY_TYPES, "STRING": str}
_MAYBE_NUMERIC = re.compile(rb'"[-0-9\\]')
_MAX_BUILDS = 32      # a file whose lines keep adding keys stops rebuilding (the last decoder stays sound)
_MAX_FAST_PATHS = 2000  # a wider schema is not worth compiling: those lines take the walk


def _type_of(value) -> tuple[str, str, str | None] | None:
    """(family, BigQuery type name, the numeric-looking string it was read from or None) of a JSON
    value; None for null."""
    if value is None:
        return None
    if type(value) is str:
        if value[:1] in _NUMBER_START and _NUMERIC_STRING.fullmatch(value):
            return "NUMERIC", "FLOAT" if "." in value else "INTEGER", value
        return _STRING
    return _KINDS[type(value)]


def _coerced(kind: tuple[str, str, str | None]) -> str:
    """Why a type may surprise: the numeric-looking string the importer read as a number."""
    if kind[2] is None:
        return ""
    sample = kind[2] if len(kind[2]) <= 40 else kind[2][:37] + "..."
    return f'the numeric-looking string "{sample}" is read as {kind[1]}'


class _Path:
    """One key path of the inferred schema: its first non-null type and its children (a record's keys,
    an array's elements). A line's walk follows this tree, so no path string is built per value and a
    key is checked against the column-name rule only the first time it appears on its path."""

    __slots__ = ("name", "kind", "keys", "item")

    def __init__(self, name: str):
        self.name = name
        self.kind: tuple[str, str, str | None] | None = None
        self.keys: dict[str, _Path] = {}
        self.item: _Path | None = None


_RECORD, _REPEATED = _KINDS[dict], _KINDS[list]


class SchemaChecker:
    """Feed it every line (`check_line`); it raises `ImportRuleError` at the first rule broken.

    Memory grows with the number of distinct key paths (the schema), never with the number of rows.
    A line is walked depth first in key order, so when a line breaks several rules the first one met in
    that order is reported, as the checks are made in this order: empty record, nesting depth, key
    name, type change.

    The schema only grows (a path's type is fixed by its first non-null value, keys are only added), so
    a decoder built from an earlier schema accepts a subset of what the current one would: a stale
    decoder is still right, only slower.
    """

    def __init__(self):
        self._root = _Path("")
        self._columns: set[str] = set()  # key names already found valid
        self._paths = 0
        self._grown = True  # the schema changed since the fast decoder was built
        self._builds = 0
        self._fast: msgspec.json.Decoder | None = None
        self._plain: msgspec.json.Decoder | None = None  # `_fast` for lines with no numeric-looking string
        self.rows = 0

    def check_line(self, raw: bytes, line: int) -> None:
        """Check one non-blank line (count it in `rows`); raise ImportRuleError when it breaks a rule."""
        if self._grown and self.rows and self._builds < _MAX_BUILDS and self._paths <= _MAX_FAST_PATHS:
            self._builds += 1
            self._grown = False
            fresh = _fast_decoder(self._root, _FAMILY_TYPES)
            plain = _fast_decoder(self._root, _PLAIN_FAMILY_TYPES)
            if fresh is not None and plain is not None:
                self._fast, self._plain = fresh, plain
        fast = self._fast
        if fast is not None and not _EMPTY_OBJECT.search(raw):
            if _MAYBE_NUMERIC.search(raw) is None:
                fast = self._plain
            try:
                fast.decode(raw)
            except (msgspec.DecodeError, RecursionError):  # ValidationError included: new, different or broken
                pass
            else:
                self.rows += 1
                return
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ImportRuleError(f"Invalid JSON: {exc}", line) from None
        if type(obj) is not dict:
            raise ImportRuleError("Each line must be a JSON object", line)
        self.rows += 1
        self._walk_record(obj, self._root, 0, line)

    def _walk_record(self, obj: dict, node: _Path, level: int, line: int) -> None:
        if not obj:
            raise ImportRuleError(f"Cannot store struct '{node.name or '<root>'}' with no fields", line)
        level += 1
        if level > MAX_LEVEL:
            raise ImportRuleError(
                f"Schema nested too deeply, at least {level} compared to the maximum allowed level "
                f"of {MAX_LEVEL} (at '{node.name}')", line)
        keys = node.keys
        for key, value in obj.items():
            child = keys.get(key)
            if child is None:
                child = keys[key] = self._new_key(node, key, line)
            if value is not None:  # null fits any type
                self._walk_value(value, child, level, line)

    def _new_key(self, node: _Path, key: str, line: int) -> _Path:
        if key not in self._columns:
            if not _COLUMN.match(key):
                raise ImportRuleError(
                    f"Invalid field name \"{key}\" at '{node.name or '<root>'}'. Fields must contain only letters, "
                    "numbers, and underscores, start with a letter or underscore", line)
            self._columns.add(key)
        self._paths += 1
        self._grown = True
        return _Path(f"{node.name}.{key}" if node.name else key)

    def _walk_value(self, value, node: _Path, level: int, line: int) -> None:
        """Check a non-null value against its path's type, then walk into records and arrays."""
        kind = _type_of(value)
        seen = node.kind
        if seen is not kind:  # the same constant: the common case, nothing to compare
            if seen is None:
                node.kind = kind
                self._grown = True
            elif seen[0] != kind[0]:
                why = "; ".join(x for x in (_coerced(seen), _coerced(kind)) if x)
                raise ImportRuleError(
                    f"Field {node.name} has changed type from {seen[1]} to {kind[1]}"
                    + (f" ({why}; start such values with a letter to keep them strings)" if why else ""), line)
        if kind is _RECORD:
            self._walk_record(value, node, level, line)
        elif kind is _REPEATED:
            item = node.item
            if item is None:
                item = node.item = _Path(node.name + "[]")
                self._paths += 1
            for element in value:
                if element is not None:
                    self._walk_value(element, item, level, line)


def _fast_type(node: _Path, families: dict[str, Any]):
    """The msgspec type of the non-null values that fit `node` as it is now: its family only (a path
    never seen with a value accepts null only; `families` says what each family takes), records closed to
    unknown keys, arrays typed by their elements' path. `Optional[...]` because the inner type may itself be
    None (null only), which `X | None` cannot spell."""
    kind = node.kind
    if kind is None:
        return None
    if kind is _RECORD:
        return _fast_record(node, families)
    if kind is _REPEATED:
        return list[Optional[_fast_type(node.item, families)] if node.item is not None else None]  # noqa: UP045
    return families[kind[0]]


def _fast_record(node: _Path, families: dict[str, Any]):
    names = {f"f{i}": key for i, key in enumerate(node.keys)}
    fields = [(f"f{i}", Optional[_fast_type(child, families)], None)  # noqa: UP045
              for i, child in enumerate(node.keys.values())]
    return msgspec.defstruct("Record", fields, rename=names, forbid_unknown_fields=True, gc=False)


def _fast_decoder(root: _Path, families: dict[str, Any]) -> msgspec.json.Decoder | None:
    """A decoder accepting only lines that fit the schema unchanged; None when msgspec cannot express
    it (a key it cannot rename to, such as one ending in a newline, or arrays nested past recursion)."""
    try:
        return msgspec.json.Decoder(_fast_record(root, families))
    except (ValueError, TypeError, RecursionError):
        return None
