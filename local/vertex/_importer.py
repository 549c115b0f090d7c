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
"""

from __future__ import annotations

import re

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


class SchemaChecker:
    """Feed it every line (`check_line`); it raises `ImportRuleError` at the first rule broken.

    Memory grows with the number of distinct key paths (the schema), never with the number of rows.
    """

    def __init__(self):
        self._types: dict[str, tuple[str, str, str | None]] = {}
        self._columns: set[str] = set()  # key names already found valid
        self.rows = 0

    def check_line(self, raw: bytes, line: int):
        """Parse and check one non-blank line; returns the parsed object."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ImportRuleError(f"Invalid JSON: {exc}", line) from None
        if not isinstance(obj, dict):
            raise ImportRuleError("Each line must be a JSON object", line)
        self.rows += 1
        self._walk_record(obj, "", 0, line)
        return obj

    def _walk_record(self, obj: dict, path: str, level: int, line: int) -> None:
        if not obj:
            raise ImportRuleError(f"Cannot store struct '{path or '<root>'}' with no fields", line)
        if level + 1 > MAX_LEVEL:
            raise ImportRuleError(
                f"Schema nested too deeply, at least {level + 1} compared to the maximum allowed level "
                f"of {MAX_LEVEL} (at '{path}')", line)
        for key, value in obj.items():
            if key not in self._columns:
                if not _COLUMN.match(key):
                    raise ImportRuleError(
                        f"Invalid field name \"{key}\" at '{path or '<root>'}'. Fields must contain only letters, "
                        "numbers, and underscores, start with a letter or underscore", line)
                self._columns.add(key)
            self._walk_value(value, f"{path}.{key}" if path else key, level + 1, line)

    def _walk_value(self, value, path: str, level: int, line: int) -> None:
        kind = _type_of(value)
        if kind is None:
            return
        seen = self._types.get(path)
        if seen is None:
            self._types[path] = kind
        elif seen[0] != kind[0]:
            why = "; ".join(x for x in (_coerced(seen), _coerced(kind)) if x)
            raise ImportRuleError(
                f"Field {path} has changed type from {seen[1]} to {kind[1]}"
                + (f" ({why}; start such values with a letter to keep them strings)" if why else ""), line)
        if kind[0] == "RECORD":
            self._walk_record(value, path, level, line)
        elif kind[0] == "REPEATED":
            for item in value:
                self._walk_value(item, path + "[]", level, line)
