"""Resumable upload sessions kept by the proxy: the bytes of each unfinished upload, spooled to a file.

Why: fake-gcs-server copies a session's accumulated bytes again on every chunk, so its cost grows with the square
of the object's size (175 MB in 8 MiB chunks: 3.7-5 CPU-s; in one request: 0.7-1.4; see README.md). Cloud Storage
has no such cost. So the proxy answers the chunks itself and hands the storage the whole object in one request
when the last byte arrives (`_resumable`); the storage's session, opened by the start request, receives nothing
before that.

The rules a session follows are Cloud Storage's (`plan`, pure):
- `Content-Range: bytes A-B/*` (or `/T` with B+1 < T) adds bytes: 308 with `Range: bytes=0-N`, N the last byte
  held. Bytes already held are skipped (a chunk sent again after a lost reply); a chunk starting beyond the
  bytes held is refused 400, since nothing would fill the gap.
- `bytes */*` asks how far the upload got: 308 with that Range, without one before the first byte; so does
  `bytes */T` while fewer than T bytes are held.
- the request that brings the bytes held to the announced size commits: `bytes A-B/T` with B+1 == T,
  `bytes */T` once T bytes are held, or no Content-Range at all (the whole object in one request).
A committed session answers every later request with its commit's answer (200 and the object), as Cloud Storage
does, so a client whose reply was lost learns that its upload is done. `DELETE` cancels an open session (499).

A session lives in memory until it is committed and then for `upload_session_seconds` without a request; an
unfinished one is dropped after the same idle time, its file deleted (Cloud Storage keeps a session a week; the
proxy should not hold disk that long for a client that went away). Requests to a dropped or unknown session are
answered 404, Cloud Storage's answer for an expired one. Spool files live in one directory per proxy, removed
when the proxy stops; a proxy killed outright while it held bytes leaves its directory behind
(`gcs-limits-uploads-*` under the temporary directory).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

MAX_SESSIONS = 10_000  # sessions remembered; past it the oldest idle ones are dropped first
BUSY_SECONDS = 30.0  # how long a request waits for another request of the same session to finish
_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
# Preconditions given when a session starts; they apply to the object when the session commits.
CONDITIONS = ("ifGenerationMatch", "ifGenerationNotMatch")


class Step(StrEnum):
    STATUS = "status"  # answer how far the upload got (308)
    APPEND = "append"  # keep the body's new bytes, answer 308
    COMMIT = "commit"  # keep the body's new bytes, then write the object
    INVALID = "invalid"  # 400, nothing kept


@dataclass(frozen=True)
class Plan:
    step: Step
    skip: int = 0  # leading body bytes the session already holds
    expect: int | None = None  # body length the Content-Range announces (None: whatever the framing carries)
    total: int | None = None  # the object's size, once announced
    error: str = ""


def plan(held: int, total: int | None, content_range: str | None, length: int | None) -> Plan:
    """What one request to an open session does.

    `held`: bytes spooled so far; `total`: the size an earlier request announced (None until one does);
    `content_range`: the request's header (None when absent); `length`: its Content-Length (None when chunked).
    """
    if content_range is None:  # the whole object in this request
        return Plan(Step.COMMIT, skip=min(held, length) if length is not None else 0, expect=length, total=length)
    m = _RANGE.match(content_range.strip())
    if not m:
        return Plan(Step.INVALID, error=f"Invalid Content-Range header: {content_range!r}.")
    size = None if m.group(3) == "*" else int(m.group(3))
    if size is not None and total is not None and size != total:
        return Plan(Step.INVALID, error=f"The object size {size} differs from the {total} announced before.")
    if m.group(1) is None:  # bytes */*, bytes */T
        if size is None or size > held:
            return Plan(Step.STATUS, total=total)
        if size < held:
            return Plan(Step.INVALID, error=f"The object size {size} is less than the {held} bytes received.")
        return Plan(Step.COMMIT, expect=0, total=size)
    first, last = int(m.group(1)), int(m.group(2))
    if last < first or (size is not None and last >= size):
        return Plan(Step.INVALID, error=f"Invalid Content-Range header: {content_range!r}.")
    span = last - first + 1
    if length is not None and length != span:
        return Plan(Step.INVALID, error=f"Content-Range {content_range!r} announces {span} bytes, the body has "
                                        f"{length}.")
    if first > held:
        return Plan(Step.INVALID, error=f"Invalid request. According to the Content-Range header, the upload offset "
                                        f"is {first} byte(s), which exceeds already uploaded size of {held} byte(s).")
    size = size if size is not None else total
    skip = min(held - first, span)
    end = max(held, last + 1)
    if size is not None and end > size:
        return Plan(Step.INVALID, error=f"Invalid Content-Range header: {content_range!r}.")
    return Plan(Step.COMMIT if end == size else Step.APPEND, skip=skip, expect=span, total=size)


def range_header(held: int) -> str | None:
    """The `Range` of a 308: the bytes held, or None before the first one (the header is then left out)."""
    return f"bytes=0-{held - 1}" if held else None


def content_range_of(size: int) -> str:
    """The Content-Range of the one request that carries a whole object of `size` bytes to the storage."""
    return f"bytes 0-{size - 1}/{size}" if size else "bytes */0"


class Session:
    """One resumable upload: the object it writes, its preconditions, the bytes held, and, once committed, the
    storage's answer. Requests of one session are served one at a time (`lock`)."""

    def __init__(self, upload_id: str, key: str, conditions: dict[str, str], directory: Callable[[], str],
                 now: float, media_type: str | None = None):
        self.upload_id = upload_id
        self.key = key  # bucket/name, charged for the commit
        self.conditions = conditions
        self.media_type = media_type  # set: the commit may be a media upload of this content type (`_resumable`)
        self.lock = threading.Lock()
        self.held = 0
        self.total: int | None = None
        self.answer = None  # the commit's answer (`_relay.Stored`) once committed
        self.gone = False  # dropped (expired, cancelled, evicted, proxy stopping): answer 404
        self.touched = now
        self._directory = directory
        self._file = None

    def take(self, body, skip: int, expect: int | None) -> bool:
        """Spool the request body after its first `skip` bytes. False (nothing kept) when the body's length is
        not `expect`; a body broken off raises as `body.read` does, and nothing of it is kept either."""
        start, seen = self.held, 0
        try:
            while piece := body.read():
                if seen + len(piece) > skip:
                    self._spool().write(piece[max(0, skip - seen):])
                seen += len(piece)
        except BaseException:
            self.cut(start)
            raise
        if expect is not None and seen != expect:
            self.cut(start)
            return False
        self.held = start + max(0, seen - skip)
        return True

    def cut(self, size: int) -> None:
        """Forget the bytes after the first `size` (a request that failed half-way adds nothing)."""
        if self._file is not None:
            self._file.flush()
            self._file.truncate(size)
            self._file.seek(size)
        self.held = size

    def send(self, sock) -> None:
        """Send the bytes held on `sock` (kernel to kernel, no copy through Python)."""
        if self.held == 0:
            return
        self._file.flush()
        sock.sendfile(self._file, 0, self.held)
        self._file.seek(self.held)

    def finish(self, answer) -> None:
        """Committed: keep the answer for later requests, delete the bytes."""
        self.answer = answer
        self._discard_file()

    def drop(self) -> None:
        self.gone = True
        self._discard_file()

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def _spool(self):
        if self._file is None:
            fd, path = tempfile.mkstemp(prefix="upload-", dir=self._directory())
            self._file = os.fdopen(fd, "w+b")
            self._path = path
        return self._file

    def _discard_file(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._path)
        self._file = None


class Sessions:
    """Every session this proxy started, by upload id (oldest first), and the directory of their spool files.

    The directory is made when the first byte is spooled, so a proxy that never holds any (or fails to start)
    leaves nothing behind even if it is killed.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._table: OrderedDict[str, Session] = OrderedDict()
        self._directory: str | None = None

    @property
    def directory(self) -> str:
        with self._lock:
            if self._directory is None:
                self._directory = tempfile.mkdtemp(prefix="gcs-limits-uploads-")
            return self._directory

    def open(self, upload_id: str, key: str, conditions: dict[str, str], media_type: str | None = None) -> Session:
        session = Session(upload_id, key, conditions, lambda: self.directory, self._clock(), media_type)
        with self._lock:
            self._table[upload_id] = session
            over = len(self._table) - MAX_SESSIONS
            crowded = [s for s in self._table.values() if s is not session][:over] if over > 0 else []
        for old in crowded:
            self._drop_if_idle(old)
        return session

    def get(self, upload_id: str | None) -> Session | None:
        if not upload_id:
            return None
        with self._lock:
            return self._table.get(upload_id)

    def touch(self, session: Session) -> None:
        session.touched = self._clock()

    def cancel(self, session: Session) -> None:
        """Drop a session whose lock the caller holds."""
        session.drop()
        self._forget(session)

    def expire(self, idle_seconds: float) -> int:
        """Drop the sessions unused for `idle_seconds` (a session busy with a request is left alone); how many."""
        cutoff = self._clock() - idle_seconds
        with self._lock:
            stale = [s for s in self._table.values() if s.touched <= cutoff]
        return sum(self._drop_if_idle(s) for s in stale)

    def close(self) -> None:
        """Drop every session and delete the spool directory (the proxy is stopping)."""
        with self._lock:
            sessions, self._table = list(self._table.values()), OrderedDict()
            directory, self._directory = self._directory, None
        for session in sessions:
            locked = session.lock.acquire(timeout=1.0)
            try:
                session.drop()
            finally:
                if locked:
                    session.lock.release()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _drop_if_idle(self, session: Session) -> bool:
        if not session.lock.acquire(blocking=False):
            return False
        try:
            session.drop()
        finally:
            session.lock.release()
        self._forget(session)
        return True

    def _forget(self, session: Session) -> None:
        with self._lock:
            if self._table.get(session.upload_id) is session:
                del self._table[session.upload_id]
