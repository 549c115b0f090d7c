"""The answer side of the proxy: the storage's response streamed back to the client.

Headers pass unchanged except hop-by-hop ones and `Location`, whose storage URL becomes the proxy's (resumable
upload sessions then continue through the proxy). JSON answers of the JSON API (`/storage/v1/...`,
`/upload/storage/v1/...`, up to `REWRITE_LIMIT`) get every occurrence of the storage's URL replaced by the
proxy's, so `selfLink` and `mediaLink` lead back through it (google-cloud-storage downloads from `mediaLink`).
Media (`alt=media`, `/download/...`) is never rewritten: an object's bytes are the client's.
The proxy's URL is the one the client used (its `Host` header).

Bodies go out as they come in, piece by piece: with the storage's Content-Length when it gave one, chunked to an
HTTP/1.1 client otherwise, and up to the end of the connection to an HTTP/1.0 client.

A `Stored` answer (read whole, no connection behind it) is relayed the same way: the answer that committed a
resumable upload is kept and given again to every later request of that session, rewritten for each.
"""

from __future__ import annotations

import contextlib
import http.client
import logging

from local.gcs_limits._wire import CHUNK, HOP, Backend

log = logging.getLogger("local.gcs_limits")

REWRITE_LIMIT = 16 * 1024 * 1024  # JSON answers up to this size get the storage's URLs rewritten


def relay(handler, method: str, query: dict, conn, resp) -> None:
    """Send `resp` to the client of `handler`; the backend connection goes back to the pool when it can.

    `conn` is None for a `Stored` answer (`resp` is then `stored.response()`).
    """
    backend: Backend = handler.limits.backend
    mine = f"http://{handler.headers.get('Host') or handler.server.url[len('http://'):]}"
    headers = []
    for name, value in resp.getheaders():
        low = name.lower()
        if low in HOP:
            continue
        if low == "location" and value.startswith(backend.url):
            value = mine + value[len(backend.url):]
        headers.append((name, value))
    length = resp.getheader("Content-Length")
    bodyless = method == "HEAD" or resp.status in (204, 304) or resp.status < 200
    pieces: list[bytes] = []
    try:
        if bodyless:
            resp.read()  # nothing to read; marks the answer complete so the connection can be pooled
        elif _rewritable(handler.path, query, resp, length):
            data = resp.read(REWRITE_LIMIT + 1) if length is None else resp.read()
            if len(data) <= REWRITE_LIMIT:
                data = data.replace(backend.url.encode(), mine.encode())
                length = str(len(data))
            else:
                log.warning("JSON answer over %d bytes passed without URL rewriting: %s", REWRITE_LIMIT, handler.path)
            pieces.append(data)
    except (OSError, http.client.HTTPException):
        _close(conn)
        handler.close_connection = True
        return
    chunked = not bodyless and length is None and handler.request_version >= "HTTP/1.1"
    try:
        handler.send_response_only(resp.status, resp.reason)
        for name, value in headers:
            handler.send_header(name, value)
        if length is not None:
            handler.send_header("Content-Length", length)
        elif chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        elif not bodyless:
            handler.close_connection = True  # HTTP/1.0: the end of the body is the end of the connection
        if handler.close_connection or handler.limits.stopping.is_set():
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if not bodyless:
            _copy(handler.wfile.write, resp, pieces, chunked)
    except (OSError, http.client.HTTPException):
        # the client went away, or the storage broke off mid-answer (the client then sees a short body)
        _close(conn)
        handler.close_connection = True
        return
    finish(backend, conn, resp)


def finish(backend: Backend, conn, resp, *, drop: bool = False) -> None:
    """Return the connection to the pool once its answer is fully read (`drop` reads the rest first)."""
    if conn is None:
        return
    try:
        while drop and resp.read(CHUNK):
            pass
    except (OSError, http.client.HTTPException):
        conn.close()
        return
    if resp.isclosed() and not resp.will_close:
        backend.release(conn)
    else:
        with contextlib.suppress(OSError):
            conn.close()


class Stored:
    """A storage answer read whole, to be relayed now and again later."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    @classmethod
    def read(cls, resp) -> Stored:
        return cls(resp.status, resp.reason, resp.getheaders(), resp.read())

    @classmethod
    def own(cls, status: int, reason: str, payload: bytes) -> Stored:
        """An answer the proxy makes itself (JSON, GCS's error shape)."""
        return cls(status, reason, [("Content-Type", "application/json; charset=UTF-8"),
                                    ("Content-Length", str(len(payload)))], payload)

    def response(self) -> _Replay:
        """A fresh reader of this answer with the parts of `http.client.HTTPResponse` that `relay` uses."""
        return _Replay(self)


class _Replay:
    will_close = False

    def __init__(self, stored: Stored):
        self.status, self.reason = stored.status, stored.reason
        self._headers, self._body, self._at = stored.headers, stored.body, 0

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def getheader(self, name: str, default=None):
        low = name.lower()
        return next((v for k, v in self._headers if k.lower() == low), default)

    def read(self, amt: int | None = None) -> bytes:
        end = len(self._body) if amt is None else min(len(self._body), self._at + amt)
        piece, self._at = self._body[self._at:end], end
        return piece

    read1 = read

    def isclosed(self) -> bool:
        return self._at >= len(self._body)


def _close(conn) -> None:
    if conn is not None:
        conn.close()


def _copy(write, resp, pieces: list[bytes], chunked: bool) -> None:
    for piece in pieces:
        if piece:
            write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
    while not resp.isclosed():
        piece = resp.read1(CHUNK)
        if not piece:
            break
        write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        write(b"0\r\n\r\n")


def _rewritable(path: str, query: dict, resp, length: str | None) -> bool:
    if query.get("alt") == "media" or not path.startswith(("/storage/v1/", "/upload/storage/v1/")):
        return False
    if length is not None and (not length.isdigit() or int(length) > REWRITE_LIMIT):
        return False
    if (resp.getheader("Content-Encoding") or "identity").lower() != "identity":
        return False  # compressed bytes cannot be searched; fake-gcs-server does not compress its JSON
    return (resp.getheader("Content-Type") or "").lower().startswith("application/json")
