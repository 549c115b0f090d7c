"""The BigQuery-style importer's rules that fail a WHOLE job before any row runs (error code 3).

Vertex loads the input file through an importer that infers ONE column type per JSON key path across
the entire file, so a file is checked line by line here, streaming, before the first prediction:
- a key path holding different types on different lines (null fits anything; int and float are one
  numeric family; a numeric-looking string is still a STRING, so "7" and 7 on the same path fail),
  arrays holding elements of different types included;
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


def _type_of(value) -> tuple[str, str] | None:
    """(family, BigQuery type name) of a JSON value; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "BOOLEAN", "BOOLEAN"
    if isinstance(value, int):
        return "NUMERIC", "INTEGER"
    if isinstance(value, float):
        return "NUMERIC", "FLOAT"
    if isinstance(value, str):
        return "STRING", "STRING"
    if isinstance(value, dict):
        return "RECORD", "RECORD"
    return "REPEATED", "ARRAY"


class SchemaChecker:
    """Feed it every line (`check_line`); it raises `ImportRuleError` at the first rule broken.

    Memory grows with the number of distinct key paths (the schema), never with the number of rows.
    """

    def __init__(self):
        self._types: dict[str, tuple[str, str]] = {}
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
            if not _COLUMN.match(key):
                raise ImportRuleError(
                    f"Invalid field name \"{key}\" at '{path or '<root>'}'. Fields must contain only letters, "
                    "numbers, and underscores, start with a letter or underscore", line)
            self._walk_value(value, f"{path}.{key}" if path else key, level + 1, line)

    def _walk_value(self, value, path: str, level: int, line: int) -> None:
        kind = _type_of(value)
        if kind is None:
            return
        seen = self._types.get(path)
        if seen is None:
            self._types[path] = kind
        elif seen[0] != kind[0]:
            raise ImportRuleError(
                f"Field {path} has changed type from {seen[1]} to {kind[1]}", line)
        if kind[0] == "RECORD":
            self._walk_record(value, path, level, line)
        elif kind[0] == "REPEATED":
            for item in value:
                self._walk_value(item, path + "[]", level, line)
