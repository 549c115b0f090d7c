"""HTTP plumbing of the proxy: request bodies read piece by piece, and pooled connections to the storage.

A request body is framed by Content-Length or by chunked transfer coding and read in pieces of at most
`CHUNK` bytes, so an object of any size passes through in constant memory. A piece can be read ahead
(`peek_until`) and is then forwarded first. Bodies up to `SMALL_BODY` are read whole before they are
forwarded, so they can be sent again when a pooled connection turns out to be closed by the storage.

`Backend` keeps idle keep-alive connections to the storage (last in, first out) with Nagle's algorithm off:
headers and body go out in separate writes, and with Nagle each request would wait for a delayed ACK. A pooled
connection may have been closed by the storage meanwhile; only requests whose body is in hand take one (they can
be sent again), and none idle for more than `MAX_IDLE_SECONDS` is reused. A streamed body always gets a new
connection (about 0.1 ms on loopback, nothing next to the body). `generation` asks the storage for an object's
generation, for the preconditions the proxy checks itself.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

CHUNK = 256 * 1024
SMALL_BODY = 64 * 1024
# Headers that describe one hop, not the message: never forwarded as they came (framing is redone per hop).
HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                 "te", "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "host", "content-length"})
MAX_IDLE_SECONDS = 30.0
_MAX_LINE = 4096
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")


class BackendError(Exception):
    """The storage did not answer (refused, reset, closed)."""


class ClientGone(Exception):
    """The client's connection broke or its body ended early: nothing can be answered."""


class BodyError(Exception):
    """A request body that cannot be framed (bad chunk, unknown coding, bad Content-Length)."""

    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.code = code


class RequestBody:
    """The body of one client request, read on demand."""

    def __init__(self, rfile, headers):
        self._rfile = rfile
        coding = headers.get("Transfer-Encoding")
        raw_length = headers.get("Content-Length")
        self.chunked = coding is not None
        self.length: int | None = None  # declared length (Content-Length framing only)
        self._chunk_left = 0
        if self.chunked:
            if [c.strip().lower() for c in coding.split(",")] != ["chunked"]:
                raise BodyError(f"Transfer-Encoding {coding!r} is not supported; use chunked or Content-Length.",
                                501)
            self._remaining = 0
        else:
            raw = (raw_length or "0").strip()
            if not (raw.isascii() and raw.isdigit()):
                raise BodyError(f"Invalid Content-Length header: {raw!r}.")
            self.length = self._remaining = int(raw)
        self.done = not self.chunked and self._remaining == 0
        self._head = b""

    # --- reading ------------------------------------------------------------------------------------
    def read(self) -> bytes:
        """The next piece of the body (read-ahead bytes first); b"" once the body is over."""
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._read_raw()

    def peek_until(self, limit: int, enough: Callable[[bytes], bool]) -> bytes:
        """Read ahead until `enough(head)`, `limit` bytes or the end; the bytes are still forwarded later."""
        while not enough(self._head) and len(self._head) < limit and not self.done:
            self._head += self._read_raw()
        return self._head

    def read_small(self) -> bytes | None:
        """The whole body when it is known to be at most SMALL_BODY bytes (then it stays replayable), else None."""
        if self.chunked or (self.length or 0) > SMALL_BODY:
            return None
        data = self._head
        self._head = b""
        while not self.done:
            data += self._read_raw()
        return data

    def drain(self, limit: int) -> bool:
        """Read and drop up to `limit` bytes; True when the body is over (the connection can be reused)."""
        dropped = len(self._head)
        self._head = b""
        while not self.done and dropped <= limit:
            dropped += len(self._read_raw())
        return self.done

    def _read_raw(self) -> bytes:
        if self.done:
            return b""
        try:
            if not self.chunked:
                want = min(self._remaining, CHUNK)
                data = self._rfile.read(want)
                if len(data) != want:
                    raise ClientGone("the request body ended before Content-Length bytes")
                self._remaining -= want
                self.done = self._remaining == 0
                return data
            if self._chunk_left == 0:
                size_text = self._line().split(b";", 1)[0].strip()
                if not _HEX.match(size_text):
                    raise BodyError(f"Malformed chunked body: bad chunk size {size_text[:20]!r}.")
                self._chunk_left = int(size_text, 16)
                if self._chunk_left == 0:
                    while self._line().strip():  # trailer fields, up to the blank line
                        pass
                    self.done = True
                    return b""
            data = self._rfile.read(min(self._chunk_left, CHUNK))
            if not data:
                raise ClientGone("the chunked request body ended early")
            self._chunk_left -= len(data)
            if self._chunk_left == 0 and self._line().strip():
                raise BodyError("Malformed chunked body: a chunk does not match its size.")
            return data
        except OSError as exc:
            raise ClientGone(str(exc)) from exc

    def _line(self) -> bytes:
        line = self._rfile.readline(_MAX_LINE + 1)
        if not line:
            raise ClientGone("the chunked request body ended early")
        if len(line) > _MAX_LINE or not line.endswith(b"\n"):
            raise BodyError("Malformed chunked body: a line is too long or the body ended early.")
        return line


class _Connection(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Backend:
    """Where the storage listens, and a pool of idle connections to it."""

    def __init__(self, url: str, timeout: float = 600.0, max_idle: int = 64):
        parts = urlsplit(url.strip())
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"backend URL must look like http://HOST:PORT, not {url!r}")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"backend URL must not carry a path or query: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.netloc = parts.netloc
        self.url = f"http://{parts.netloc}"
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()

    def acquire(self, *, pooled: bool = True) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was used before (a used one may have been closed by the storage).

        `pooled=False` always opens a new one (for a body that cannot be sent twice).
        """
        stale = []
        found = None
        if pooled:
            cutoff = time.monotonic() - MAX_IDLE_SECONDS
            with self._lock:
                while self._idle:
                    conn, since = self._idle.pop()
                    if since >= cutoff:
                        found = conn
                        break
                    stale.append(conn)
        for conn in stale:
            conn.close()
        if found is not None:
            return found, True
        return _Connection(self.host, self.port, timeout=self._timeout), False

    def release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


def generation(backend: Backend, bucket: str, name: str) -> str:
    """The object's generation at the storage ("0" when it does not exist), for a precondition the proxy checks
    itself; BackendError if the storage does not answer."""
    conn, _ = backend.acquire(pooled=False)
    try:
        conn.request("GET", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}",
                     headers={"Host": backend.netloc})
        resp = conn.getresponse()
        payload = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise BackendError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    if resp.status == 404:
        return "0"
    return str(json.loads(payload).get("generation", "0"))
