"""ObjectStore on google-cloud-storage (the real service, or fake-gcs-server via STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import orjson
import requests
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage._media.requests import _request_helpers as _media_helpers

from shared.errors import TransientError
from shared.lines import newlines
from shared.storage._overlap import ReadAhead, WriteBehind
from shared.storage.base import Listed, ObjectMissing, ObjectUnreadable, StoreOpener, Versioned, dumps, index_of

_COMPOSE_MAX = 32  # GCS composes at most 32 sources per call
_CHUNK = 8 * 1024 * 1024
# The client hands a download to the caller 8 KB at a time, a few Python calls each: 100 MB cost ~0.37 CPU-s,
# held under the interpreter lock, so a read-ahead thread could not overlap it with the caller's work. With 1 MB
# pieces the same download takes ~0.15 CPU-s. A private constant of the pinned client (read at call time);
# tests/functional/test_gcs_store.py fails if a new version drops it.
DOWNLOAD_PIECE = 1024 * 1024
if hasattr(_media_helpers, "_SINGLE_GET_CHUNK_SIZE"):
    _media_helpers._SINGLE_GET_CHUNK_SIZE = DOWNLOAD_PIECE


def make_client(project: str | None = None, *, endpoint: str | None = None) -> storage.Client:
    """The one way this project builds a Cloud Storage client, so nothing bypasses a local storage's limits by
    accident. `endpoint`, or else STORAGE_EMULATOR_HOST, points it at a local Cloud Storage (anonymous
    credentials then); without either it uses application default credentials against the real service."""
    endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        if not endpoint.startswith("http"):
            endpoint = "http://" + endpoint
        return storage.Client(project=project or "local", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": endpoint})
    return storage.Client(project=project)


@contextmanager
def _translate(*, unanswered: bool = False) -> Iterator[None]:
    """Turn the client's server errors into the pipeline's retryable error; with `unanswered`, a call that got
    no answer at all too (the client's retries, which would absorb those, are off for that call)."""
    lost = (requests.exceptions.ConnectionError, requests.exceptions.Timeout) if unanswered else ()
    try:
        yield
    except (gexc.TooManyRequests, gexc.ServerError, gexc.ServiceUnavailable, *lost) as exc:
        raise TransientError(f"Cloud Storage: {exc}") from exc


class GcsStore:
    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def _blob(self, bucket: str, name: str, generation: int | None = None) -> storage.Blob:
        return self._client.bucket(bucket).blob(name, generation=generation)

    def read_json(self, bucket: str, name: str) -> Versioned | None:
        blob = self._blob(bucket, name)
        with _translate():
            try:
                data = blob.download_as_bytes()
            except gexc.NotFound:
                return None
        return Versioned(orjson.loads(data), int(blob.generation))

    def write_bytes(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
                    *, if_generation_match: int | None = None, metadata: dict[str, str] | None = None,
                    retry: bool = True) -> int | None:
        blob = self._blob(bucket, name)
        if metadata:
            blob.metadata = metadata
        # The client's own policy (retry a conditional write) unless the caller tells outcomes by reading.
        options = {} if retry else {"retry": None}
        with _translate(unanswered=not retry):
            try:
                blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match,
                                        **options)
            except gexc.PreconditionFailed:
                return None
        return int(blob.generation)

    def write_json(self, bucket: str, name: str, value: Any, *, if_generation_match: int | None,
                   retry: bool = True) -> int | None:
        return self.write_bytes(bucket, name, dumps(value), "application/json",
                                if_generation_match=if_generation_match, metadata=index_of(value), retry=retry)

    def read_bytes(self, bucket: str, name: str) -> bytes | None:
        with _translate():
            try:
                return self._blob(bucket, name).download_as_bytes()
            except gexc.NotFound:
                return None

    @contextmanager
    def open_read(self, bucket: str, name: str, generation: int | None = None, *,
                  start: int = 0, length: int | None = None) -> Iterator[IO[bytes]]:
        blob = self._blob(bucket, name, generation)
        with _translate():
            try:
                blob.reload()  # fail here, cleanly, when the object or that generation is gone
                if (blob.content_encoding or "").lower() == "gzip":
                    # Uploaded compressed (`gcloud storage cp -Z`): Cloud Storage would decompress on the fly
                    # and ignore the ranges the reader asks for. Read the stored bytes by range, and
                    # decompress here, still streaming.
                    raw = blob.open("rb", chunk_size=_CHUNK, raw_download=True)
                    ahead = ReadAhead(raw, _CHUNK)
                    reader = _Inflated(gzip.GzipFile(fileobj=ahead, mode="rb"), f"gs://{bucket}/{name}")
                    if start:
                        reader.read_to(start)  # offsets count decompressed bytes: read up to it
                else:
                    raw = blob.open("rb", chunk_size=_CHUNK)
                    if start:
                        raw.seek(start)  # the next read asks for the range from here
                    ahead = reader = ReadAhead(raw, _CHUNK, limit=length)
            except gexc.NotFound:
                raise ObjectMissing(f"gs://{bucket}/{name}") from None
        with raw, ahead:
            yield reader

    def opener(self) -> StoreOpener:
        return StoreOpener(_store_for, (self._client.project, self._client.api_endpoint))

    @contextmanager
    def open_write(self, bucket: str, name: str, content_type: str = "application/x-ndjson") -> Iterator[IO[bytes]]:
        blob = self._blob(bucket, name)
        with _translate(), blob.open("wb", chunk_size=_CHUNK, content_type=content_type) as writer:
            behind = WriteBehind(writer, _CHUNK)
            try:
                yield behind  # type: ignore[misc]
            except BaseException:
                behind.abandon()  # the upload is then dropped, unfinished: no object is written
                raise
            behind.finish()

    def list_names(self, bucket: str, prefix: str) -> Iterator[str]:
        with _translate():
            for blob in self._client.list_blobs(bucket, prefix=prefix):
                yield blob.name

    def list_page(self, bucket: str, prefix: str, *, start_after: str = "", limit: int = 1000) -> list[Listed]:
        # start_offset is inclusive: ask for one more and drop the name we started after.
        with _translate():
            blobs = self._client.list_blobs(bucket, prefix=prefix, start_offset=start_after or None,
                                            max_results=limit + 1)
            listed = [Listed(b.name, int(b.generation), b.time_created.timestamp() if b.time_created else 0.0,
                             int(b.size or 0), dict(b.metadata or {})) for b in blobs if b.name > start_after]
        return listed[:limit]

    def object_info(self, bucket: str, name: str, generation: int | None = None) -> dict[str, Any] | None:
        with _translate():
            blob = self._client.bucket(bucket).get_blob(name, generation=generation)
        if blob is None:
            return None
        return {"size": blob.size, "generation": blob.generation, "metadata": dict(blob.metadata or {}),
                "content_type": blob.content_type}

    def compose(self, bucket: str, sources: Iterable[str], destination: str, scratch_prefix: str,
                content_type: str = "application/x-ndjson", *,
                if_generation_match: int | None = None) -> int | None:
        names = list(sources)
        if not names:
            return self.write_bytes(bucket, destination, b"", content_type, if_generation_match=if_generation_match)
        level = 0
        # Fold groups of 32 into scratch objects until one call can finish the job.
        while len(names) > _COMPOSE_MAX:
            folded = []
            for i in range(0, len(names), _COMPOSE_MAX):
                scratch = f"{scratch_prefix}{level:02d}-{i // _COMPOSE_MAX:05d}"
                self._compose_once(bucket, names[i:i + _COMPOSE_MAX], scratch, content_type, None)
                folded.append(scratch)
            names, level = folded, level + 1
        return self._compose_once(bucket, names, destination, content_type, if_generation_match)

    def _compose_once(self, bucket: str, names: list[str], destination: str, content_type: str,
                      if_generation_match: int | None) -> int | None:
        target = self._blob(bucket, destination)
        target.content_type = content_type
        with _translate():
            try:
                target.compose([self._blob(bucket, n) for n in names], if_generation_match=if_generation_match)
            except gexc.PreconditionFailed:
                return None
        return int(target.generation)

    def delete(self, bucket: str, name: str) -> None:
        with _translate(), contextlib.suppress(gexc.NotFound):
            self._blob(bucket, name).delete()


class _Inflated:
    """An object stored gzip-encoded, decompressed as it is read. Damage in its stored bytes (not gzip at all,
    corrupt, cut short) is ObjectUnreadable, naming the first line it leaves unread: it is in the object, so the
    event that brought it would meet it again on every delivery. What was decompressed before the damage is
    handed out first (a read gathers the decompressor's pieces itself: a buffered read that fails drops what it
    had gathered). Corruption that still decompresses is found only at the member's end, by its checksum: what
    came out before is handed out as it came. (A download cut short by the network is the client's error, not
    an early end of the stream: the reader knows the object's size.)"""

    def __init__(self, reader: gzip.GzipFile, uri: str) -> None:
        self._reader, self._uri = reader, uri
        self._lines = 0  # newlines handed out, and whether a line was begun after the last one
        self._begun = False
        self._damage: ObjectUnreadable | None = None

    def read(self, size: int = -1) -> bytes:
        if self._damage is not None:
            raise self._damage
        pieces: list[bytes] = []
        got = 0
        failed: Exception | None = None
        try:
            while size < 0 or got < size:
                piece = self._reader.read1(size - got if size >= 0 else -1)
                if not piece:
                    break
                pieces.append(piece)
                got += len(piece)
        except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
            failed = exc
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if data:
            self._lines += newlines(data)
            self._begun = not data.endswith(b"\n")
        if failed is not None:
            line = self._lines + 1 + self._begun
            self._damage = ObjectUnreadable(
                f"{self._uri} is stored gzip-encoded, but its bytes cannot be decompressed from line {line} on "
                f"({type(failed).__name__}: {failed})", line)
            if not data:
                raise self._damage
        return data

    def read_to(self, offset: int) -> None:
        while offset > 0 and (data := self.read(min(offset, _CHUNK))):
            offset -= len(data)

    def close(self) -> None:
        self._reader.close()


def _store_for(project: str | None, endpoint: str | None) -> GcsStore:
    """A GcsStore in a worker process: a client of its own to the same service (clients do not cross
    processes)."""
    local = endpoint if endpoint and "googleapis.com" not in endpoint else None
    return GcsStore(make_client(project, endpoint=local))
