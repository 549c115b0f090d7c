"""Which object a request mutates: the rules, pure (no sockets, no clock).

GCS limits mutations per object name: create, update and delete. In the JSON API those are
- uploads, `POST /upload/storage/v1/b/{bucket}/o?uploadType=media|multipart` (the name is the `name` query
  parameter for media, the metadata part of the body for multipart, which wins over the query);
- the commit of a resumable upload: the session starts with `POST ...?uploadType=resumable` (name in the JSON
  body or the query; nothing is written yet); its later requests (`upload_id` in the query) are answered by the
  proxy, which decides from the bytes it holds which of them commits (`_uploads.plan`);
- `PATCH`/`PUT`/`DELETE /storage/v1/b/{bucket}/o/{object}` (metadata update, delete) and changes to its `acl`;
- `POST .../o/{destination}/compose` and `POST .../rewriteTo|copyTo/b/{bucket}/o/{destination}`: the destination
  is written. A rewrite that continues with a `rewriteToken` is not counted again.
Everything else (reads, lists, bucket calls) is a `READ`: never limited (a read of one object still names it, so
faults injected into it are counted under its name).

Names are taken from the raw path split on `/`, then percent-decoded, so `a%2Fb` and the name `a/b` in a body
are the same object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

import orjson

ADMIN = "/emulator/v1"
_UPLOAD = re.compile(r"^/upload/storage/v1/b/([^/]+)/o/?$")
_OBJECT = re.compile(r"^(?:/download)?/storage/v1/b/([^/]+)/o/(.+?)(/acl(?:/[^/]+)?)?$")
_COMPOSE = re.compile(r"^/storage/v1/b/([^/]+)/o/(.+)/compose$")
_REWRITE = re.compile(r"^/storage/v1/b/[^/]+/o/.+?/(?:rewriteTo|copyTo)/b/([^/]+)/o/(.+)$")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_WRITE_METHODS = ("PATCH", "PUT", "DELETE")


class Kind(StrEnum):
    READ = "read"  # not a mutation: passes unlimited
    MUTATION = "mutation"  # writes `bucket/name`
    MULTIPART = "multipart"  # an upload whose name is in the body's first part (`name` is the query's, if any)
    RESUMABLE_START = "resumable_start"  # opens an upload session; the name may be in the JSON body
    RESUMABLE_PUT = "resumable_put"  # any later request of a session (chunk, status query, commit, cancel)
    ADMIN = "admin"


@dataclass(frozen=True)
class Call:
    kind: Kind
    bucket: str | None = None
    name: str | None = None
    upload_id: str | None = None


def classify(method: str, path: str, query: dict[str, str]) -> Call:
    """Sort one request by what it does to objects. `path` is raw (still percent-encoded), `query` decoded."""
    if path == ADMIN or path.startswith(ADMIN + "/"):
        return Call(Kind.ADMIN)
    m = _UPLOAD.match(path)
    if m:
        bucket = unquote(m.group(1))
        upload_id = query.get("upload_id")
        if upload_id:
            return Call(Kind.RESUMABLE_PUT, bucket, query.get("name"), upload_id)
        if method != "POST":
            return Call(Kind.READ, bucket)
        kind = query.get("uploadType", "")
        if kind == "multipart":
            return Call(Kind.MULTIPART, bucket, query.get("name"))
        if kind == "resumable":
            return Call(Kind.RESUMABLE_START, bucket, query.get("name"))
        if query.get("name"):
            return Call(Kind.MUTATION, bucket, query["name"])
        return Call(Kind.READ, bucket)  # storage refuses an upload without a name; nothing to count
    if method == "POST":
        m = _COMPOSE.match(path)
        if m:
            return Call(Kind.MUTATION, unquote(m.group(1)), unquote(m.group(2)))
        m = _REWRITE.match(path)
        if m:
            if query.get("rewriteToken"):
                return Call(Kind.READ, unquote(m.group(1)))
            return Call(Kind.MUTATION, unquote(m.group(1)), unquote(m.group(2)))
    m = _OBJECT.match(path)
    if not m:
        return Call(Kind.READ)
    writes = not path.startswith("/download/") and (method in _WRITE_METHODS or (method == "POST" and m.group(3)))
    return Call(Kind.MUTATION if writes else Kind.READ, unquote(m.group(1)), unquote(m.group(2)))


def upload_id_of(location: str | None) -> str | None:
    """The `upload_id` query parameter of a resumable session URL, or None."""
    if not location:
        return None
    m = re.search(r"[?&]upload_id=([^&#]+)", location)
    return unquote(m.group(1)) if m else None


def multipart_boundary(content_type: str | None) -> bytes | None:
    m = _BOUNDARY.search(content_type or "")
    return m.group(1).strip().encode("latin-1", "replace") if m else None


def first_part_name(head: bytes, boundary: bytes) -> tuple[bool, str | None]:
    """(complete, name): the `name` in the JSON metadata part that opens a multipart/related body.

    `complete` is False while `head` does not yet hold the whole first part (read more and ask again);
    a complete part that is not JSON, or has no string `name`, gives (True, None).
    """
    delimiter = b"--" + boundary
    start = head.find(delimiter)
    if start < 0:
        return False, None
    headers_end = head.find(b"\r\n\r\n", start)
    if headers_end < 0:
        return False, None
    end = head.find(b"\r\n" + delimiter, headers_end + 4)
    if end < 0:
        return False, None
    return True, json_name(head[headers_end + 4:end])


def json_name(raw: bytes) -> str | None:
    """The string `name` of a JSON object, or None (not JSON, not an object, no name)."""
    try:
        meta = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        return None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and name else None
