"""Streams that move Cloud Storage bytes on a thread of their own, so the caller computes while the network
works: a read-ahead reader and a write-behind writer.

google-cloud-storage's reader and writer block the caller for every chunk (one HTTP request each, tens of
milliseconds in the cloud): collect and submit would wait on the network, then compute, then wait again.
With one chunk in flight on each side, a pass takes about the longer of the two instead of their sum.
Errors raised on the thread are raised again to the caller, at its next read or write, or at close.
Memory: `depth` chunks besides the one the caller holds.
"""

from __future__ import annotations

import queue
import threading
from typing import IO

_STOP = object()
_HANDOFF = object()  # the reader reached its limit: the caller reads the source itself from here


class ReadAhead:
    """Reads `source` in `chunk` pieces ahead of the caller; with `limit`, no further ahead than that many
    bytes (a caller that needs only part of an object does not download chunks it will never read: a reader
    past the limit gets the rest straight from the source, one chunk per call)."""

    def __init__(self, source: IO[bytes], chunk: int, depth: int = 2, limit: int | None = None) -> None:
        self._source, self._chunk, self._limit = source, chunk, limit
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._buffer, self._at, self._done, self._direct = b"", 0, False, False
        self._thread = threading.Thread(target=self._fill, name="gcs-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        fetched = 0
        try:
            while not self._closed.is_set():
                if self._limit is not None and fetched >= self._limit:
                    self._put(_HANDOFF)  # the last touch of the source on this thread
                    return
                data = self._source.read(self._chunk)
                fetched += len(data)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._put(exc)

    def _put(self, item: object) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while part := self.read(self._chunk):
                parts.append(part)
            return b"".join(parts)
        while self._at >= len(self._buffer):
            if self._done:
                return b""
            if self._direct:
                return self._source.read(size)
            item = self._queue.get()
            if item is _HANDOFF:
                self._direct = True
                continue
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return b""
            self._buffer, self._at = item, 0
        if self._at == 0 and size >= len(self._buffer):  # the whole chunk: no copy
            out, self._buffer = self._buffer, b""
            return out
        out = self._buffer[self._at:self._at + size]
        self._at += len(out)
        return out

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WriteBehind:
    """Writes to `sink` on a thread, `chunk` bytes at a time, while the caller goes on."""

    def __init__(self, sink: IO[bytes], chunk: int, depth: int = 1) -> None:
        self._sink, self._chunk = sink, chunk
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        # Small writes are copied into one buffer, not kept as objects: an error line fresh from orjson.dumps
        # keeps ~8 KB of memory whatever its length, so a chunk of such lines held ~8x the chunk.
        self._pending = bytearray()
        self._error: BaseException | None = None
        self._finished = False
        self._thread = threading.Thread(target=self._drain, name="gcs-write-behind", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (data := self._queue.get()) is not _STOP:
            if self._error is None:
                try:
                    self._sink.write(data)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> int:
        self._check()
        if not self._pending and len(data) >= self._chunk and type(data) is bytes:
            self._queue.put(data)  # a chunk or more, and immutable: handed over as it is
            return len(data)
        self._pending += data
        if len(self._pending) >= self._chunk:
            self._queue.put(self._pending)
            self._pending = bytearray()
        return len(data)

    def flush(self) -> None:
        self._check()

    def finish(self) -> None:
        """Hand over what is left and wait until the sink has it all; raises the thread's error. Once."""
        if self._finished:
            self._check()
            return
        self._finished = True
        if self._pending:
            self._queue.put(self._pending)
            self._pending = bytearray()
        self._queue.put(_STOP)
        self._thread.join()
        self._check()

    def close(self) -> None:
        """Finish, then close the sink (a caller may end an upload before its `with` block does)."""
        self.finish()
        self._sink.close()

    def abandon(self) -> None:
        """Stop without handing over the rest (the caller failed: the object must not be written)."""
        if self._finished:
            return
        self._finished = True
        self._pending = bytearray()
        self._queue.put(_STOP)
        self._thread.join()
