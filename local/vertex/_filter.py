"""The `filter` of batchPredictionJobs.list: a small AIP-160 parser compiled to a predicate.

Supported: `state="JOB_STATE_RUNNING"`, `state!=...`, `labels.k="v"`, `labels.k:*`, `labels:k`,
`display_name="x"`, `display_name:"prefix*"` (`*` is a wildcard with `=` and `:`), `model="..."`,
`create_time>"2026-01-01T00:00:00Z"` (also >=, <, <=, =, != and update_time / start_time / end_time),
joined with `AND` (or juxtaposition), `OR`, `NOT` / `-`, and parentheses. camelCase field names are
accepted too. Anything else is a `FilterError`, answered as 400 INVALID_ARGUMENT like the real service.

The parser recurses once per parenthesis and per negation, so nesting is capped at `MAX_DEPTH`: a
filter of thousands of `(` is a 400, not a RecursionError answered as a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

STATES = (
    "JOB_STATE_UNSPECIFIED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED", "JOB_STATE_EXPIRED", "JOB_STATE_UPDATING", "JOB_STATE_PARTIALLY_SUCCEEDED",
)

_TIME_FIELDS = {
    "create_time": "create_time", "createTime": "create_time",
    "update_time": "update_time", "updateTime": "update_time",
    "start_time": "start_time", "startTime": "start_time",
    "end_time": "end_time", "endTime": "end_time",
}
_STRING_FIELDS = {"display_name": "display_name", "displayName": "display_name", "model": "model"}

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>!=|>=|<=|=|>|<|:)
    | (?P<paren>[()])
    | (?P<word>[^\s()=!<>:"']+)
    )""", re.VERBOSE)

Predicate = Callable[[object], bool]
MAX_DEPTH = 100  # parentheses and NOT / - nested inside each other


class FilterError(ValueError):
    """The filter text cannot be parsed or names something that cannot be filtered on."""


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"unexpected character at position {pos}: {text[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def next(self):
        tok = self.peek()
        if tok[0] is None:
            raise FilterError("unexpected end of filter")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda job: True
        pred = self.or_expr()
        if self.i != len(self.tokens):
            raise FilterError(f"unexpected {self.peek()[1]!r}")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.peek() == ("word", "OR"):
            self.next()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda job: any(p(job) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while True:
            kind, value = self.peek()
            if kind is None or value == ")" or (kind == "word" and value == "OR"):
                break
            if kind == "word" and value == "AND":
                self.next()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda job: all(p(job) for p in parts))

    def unary(self) -> Predicate:
        kind, value = self.peek()
        if kind == "word" and value in ("NOT", "-"):
            self.next()
            inner = self.nested(self.unary)
            return lambda job: not inner(job)
        if kind == "word" and value.startswith("-") and len(value) > 1:
            self.tokens[self.i] = ("word", value[1:])
            inner = self.nested(self.unary)
            return lambda job: not inner(job)
        if kind == "paren" and value == "(":
            self.next()
            inner = self.nested(self.or_expr)
            if self.next() != ("paren", ")"):
                raise FilterError("missing )")
            return inner
        return self.comparison()

    def nested(self, parse: Callable[[], Predicate]) -> Predicate:
        """Parse one level deeper (inside a parenthesis or a negation), refusing more than MAX_DEPTH."""
        if self.depth >= MAX_DEPTH:
            raise FilterError(f"nested more than {MAX_DEPTH} levels deep (parentheses and negations)")
        self.depth += 1
        try:
            return parse()
        finally:
            self.depth -= 1

    def comparison(self) -> Predicate:
        kind, field = self.next()
        if kind != "word" or field in ("AND", "OR", "NOT"):
            raise FilterError(f"expected a field name, got {field!r}")
        kind, op = self.next()
        if kind != "op":
            raise FilterError(f"expected an operator after {field}, got {op!r}")
        kind, value = self.next()
        if kind not in ("str", "word"):
            raise FilterError(f"expected a value after {field}{op}, got {value!r}")
        return _compile(field, op, value, quoted=kind == "str")


def _wildcard(pattern: str) -> Callable[[str], bool]:
    if "*" not in pattern:
        return lambda s: s == pattern
    regex = re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$", re.DOTALL)
    return lambda s: regex.match(s) is not None


def _string_test(field: str, op: str, value: str, get: Callable[[object], str | None]) -> Predicate:
    if op not in ("=", "!=", ":"):
        raise FilterError(f"operator {op} is not supported on {field}")
    match = _wildcard(value)
    if op == "!=":
        return lambda job: not match(get(job) or "")
    return lambda job: get(job) is not None and match(get(job))


def parse_time(value: str) -> datetime:
    try:
        out = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise FilterError(f"{value!r} is not an RFC 3339 timestamp") from None
    if out.tzinfo is None:
        raise FilterError(f"{value!r} has no time zone (end it with Z)")
    return out


_COMPARE = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def _compile(field: str, op: str, value: str, quoted: bool) -> Predicate:
    if field == "state":
        if op not in ("=", "!=", ":"):
            raise FilterError(f"operator {op} is not supported on state")
        if value not in STATES:
            raise FilterError(f"{value!r} is not a job state")
        if op == "!=":
            return lambda job: job.state != value
        return lambda job: job.state == value
    if field in _STRING_FIELDS:
        attr = _STRING_FIELDS[field]
        return _string_test(field, op, value, lambda job: getattr(job, attr))
    if field in _TIME_FIELDS:
        attr = _TIME_FIELDS[field]
        if op == ":":
            raise FilterError(f"operator : is not supported on {field}")
        when = parse_time(value)
        cmp = _COMPARE[op]
        return lambda job: getattr(job, attr) is not None and cmp(getattr(job, attr), when)
    if field == "labels":
        if op != ":":
            raise FilterError("use labels.<key>=\"value\" or labels:<key>")
        return lambda job: value in job.labels
    if field.startswith("labels."):
        key = field[len("labels."):]
        if not key:
            raise FilterError("labels. needs a key")
        if op == ":" and value == "*" and not quoted:
            return lambda job: key in job.labels
        return _string_test(field, op, value, lambda job: job.labels.get(key))
    raise FilterError(f"unsupported field {field!r}")


def compile_filter(text: str | None) -> Predicate:
    """Compile a list filter into a predicate over job records (attributes: state, display_name, model,
    labels, create_time, update_time, start_time, end_time)."""
    return _Parser(text or "").parse()

