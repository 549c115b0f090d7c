"""An accepted input line's request as the bytes it came in, when they are the bytes staging would write.

`joining.staged_line` re-serialises the parsed request with orjson, the largest cost of staging: ~10 us a line
for the bench's ~4.6 KB lines (validating one takes about as long), as orjson first encodes every non-ASCII
prompt to UTF-8 again; finding and checking the request's bytes here and splicing the line take ~6-8 us, and
`batchctl validate` of the `python -m bench --mb 100` input went from ~0.50 s to ~0.47 s (three runs each of
`python -m bench.measure validate INPUT WORK`, on a busy 2 vCPU machine). `request_bytes` returns the request's bytes
R only when R is exactly `orjson.dumps(orjson.loads(R))`, so `joining.staged_line_raw` writes the same staged
line, byte for byte, and every byte count derived from it (part sizes, MAX_BYTES_PER_JOB, `line_too_large`) is
unchanged. That holds when:

* the line is `{"key":K,"request":R}`, `{"request":R,"key":K}` or `{"request":R}`, optionally ending in `\\r`,
  with K spelled as orjson spells the parsed key;
* R has no backslash: no escapes, so every `"` delimits a string, whose bytes orjson writes back as they are
  (it refuses raw control characters in strings and escapes nothing else);
* outside its strings R has no whitespace, and each number is spelled as orjson spells it back;
* R holds as many keys (a `:` outside strings) as the parsed request's objects do: no duplicate key, and no
  other member or duplicate of "request" or "key" shares the line (each would add a `:`).

Anything else gives None, and the caller re-serialises as before.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["request_bytes"]

_SPACE = re.compile(rb"[ \t\r\n]")
_NUMBER = re.compile(rb"-?[0-9][0-9.eE+-]*")
_REQUEST_FIRST = b'{"request":'
_KEY_FIRST = b'{"key":'
# The verdicts of `_spelled_as_orjson` by structure (a request's bytes outside its strings). The lines of a file
# mostly share one structure, numbers included (a generationConfig's on every line): its checks (a regex search,
# finding the numbers, a round trip for each float) were half of this function's cost on ~300-byte lines.
# Bounded: structures up to _SPELLED_LONGEST bytes, the dict cleared when it holds _SPELLED_MAX of them.
_SPELLED: dict[bytes, bool] = {}
_SPELLED_MAX = 1024
_SPELLED_LONGEST = 512


def request_bytes(raw: bytes, has_key: bool, key: Any, keys: int) -> bytes | None:
    """R, the bytes of the "request" of an accepted line `raw` (with its parsed `has_key` / `key`) whose request
    objects hold `keys` keys, when they are orjson's own spelling of it; None otherwise."""
    end = len(raw) - 1
    if raw[end:] == b"\r":
        end -= 1
    if raw[end:end + 1] != b"}":
        return None
    if not has_key:
        if not raw.startswith(_REQUEST_FIRST):
            return None
        start = len(_REQUEST_FIRST)
    else:
        try:
            spelled = orjson.dumps(key)
        except orjson.JSONEncodeError:
            return None
        if raw.startswith(_KEY_FIRST):
            head = b'{"key":%b,"request":' % spelled
            if not raw.startswith(head):
                return None
            start = len(head)
        elif raw.startswith(_REQUEST_FIRST):
            tail = b',"key":%b' % spelled
            if raw[end - len(tail):end] != tail:
                return None
            start, end = len(_REQUEST_FIRST), end - len(tail)
        else:
            return None
    body = raw[start:end]
    if b"\\" in body:
        return None
    structure = b"".join(body.split(b'"')[0::2])
    if structure.count(b":") != keys:
        return None
    spelled = _SPELLED.get(structure)
    if spelled is None:
        spelled = _spelled_as_orjson(structure)
        if len(structure) <= _SPELLED_LONGEST:
            if len(_SPELLED) >= _SPELLED_MAX:
                _SPELLED.clear()
            _SPELLED[structure] = spelled
    return body if spelled else None


def _spelled_as_orjson(structure: bytes) -> bool:
    """Whether a request's bytes outside its strings are as orjson writes them: no whitespace, and every number
    spelled as orjson spells it back."""
    if _SPACE.search(structure):
        return False
    for number in _NUMBER.findall(structure):
        if not (number.isdigit() and len(number) < 19 and (number[0] != 48 or len(number) == 1)) \
                and orjson.dumps(orjson.loads(number)) != number:
            return False
    return True
