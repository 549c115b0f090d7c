"""The emulator's narrow adapter over Cloud Storage (google-cloud-storage).

It honours STORAGE_EMULATOR_HOST (then it uses anonymous credentials), so the same code reads a
fake-gcs-server locally and real GCS otherwise. Inputs are read STREAMING in ranged chunks, never
whole, so a 200,000-row file costs a few MiB of memory. One client per thread: the workers share
nothing mutable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import quote

from google.api_core import exceptions as gexc

CHUNK = 1024 * 1024


class ObjectMissing(Exception):
    """The input object does not exist."""


def parse_gs(uri: str) -> tuple[str, str]:
    """Split `gs://bucket/name` into (bucket, name); raise ValueError when it is not a gs:// URI."""
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    bucket, _, name = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket")
    return bucket, name


class Storage:
    def __init__(self, project: str = "local"):
        self._project = project
        self._local = threading.local()

    def client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from shared.storage.gcs import make_client

            client = make_client(self._project)
            self._local.client = client
        return client

    def bucket_exists(self, name: str) -> bool:
        try:
            return self.client().bucket(name).exists()
        except gexc.Forbidden:
            return False

    def object_exists(self, uri: str) -> bool:
        try:
            bucket, name = parse_gs(uri)
        except ValueError:
            return False
        if not name:
            return False
        try:
            return self.client().bucket(bucket).blob(name).exists()
        except gexc.GoogleAPIError:
            return False

    def iter_lines(self, uri: str) -> Iterator[bytes]:
        """Every physical line of an object (without its newline), read in ranged chunks (`iter_blocks`)."""
        for lines in self.iter_blocks(uri):
            yield from lines

    def iter_blocks(self, uri: str) -> Iterator[list[bytes]]:
        """The physical lines of an object (without their newlines), a list for each ranged read of CHUNK bytes:
        the lines that end in it, the first one begun in the read before.

        The object's size and generation are read first, so no range ever reaches past the end (a 416
        answer leaves fake-gcs-server's keep-alive connection stalling the next request) and a file
        replaced mid-read fails instead of mixing two generations.
        """
        bucket, name = parse_gs(uri)
        try:
            blob = self.client().bucket(bucket).get_blob(name)
        except gexc.NotFound:
            blob = None
        if blob is None:
            raise ObjectMissing(uri)
        size, generation, pos, rest = blob.size or 0, blob.generation, 0, b""
        while pos < size:
            try:
                data = blob.download_as_bytes(start=pos, end=min(pos + CHUNK, size) - 1, checksum=None,
                                              if_generation_match=generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                raise ObjectMissing(uri) from None
            if not data:
                break
            pos += len(data)
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            if lines:
                yield lines
        if rest:
            yield [rest]

    def write(self, uri: str, data: bytes) -> None:
        """Write a whole object in one media upload (`uploadType=media`).

        The client's own `upload_from_string` sends an object over 8 MB as a resumable session and a smaller one as
        multipart; fake-gcs-server takes either at about a third of the speed of a media upload (a 184 MB object:
        1.2-1.7 s as a session, 0.9-1.2 s as multipart, 0.35-0.55 s as media), and a job waits for each shard's
        write. The request goes through the client's authorised session, so real Cloud Storage takes it too."""
        bucket, name = parse_gs(uri)
        client = self.client()
        answer = client._http.request(
            "POST", f"{client.api_endpoint}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
            params={"uploadType": "media", "name": name}, data=data,
            headers={"Content-Type": "application/jsonl"}, timeout=120)
        if answer.status_code >= 300:
            raise gexc.from_http_status(answer.status_code, f"upload of {uri} failed: {answer.text[:300]}")
