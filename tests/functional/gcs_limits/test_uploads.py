"""Resumable uploads: the proxy keeps the chunks and the storage gets one write, while the client meets Cloud
Storage's session protocol (308 with the bytes held, status queries, the commit's answer again, 404 once gone),
its preconditions at the commit, and the per-object limit and fault switches on the commit alone."""

from __future__ import annotations

import io
import os
import time

import orjson
import pytest
from google.api_core import exceptions
from google.cloud.storage.exceptions import InvalidResponse

from local.gcs_limits import _proxy, start_server
from local.gcs_limits._resumable import media_upload_type
from tests.functional.gcs_limits._support import call, counts, make_client

pytestmark = pytest.mark.functional

KIB = 1024
CHUNK = 256 * KIB  # the client's smallest chunk


def session_path(blob, **kw) -> str:
    """A session started through the proxy by the client; the path and query of its URL."""
    url = blob.create_resumable_upload_session(**kw)
    return url[url.index("/upload/"):]


def put(proxy, path: str, content_range: str | None, data: bytes = b"") -> tuple[int, dict, bytes]:
    headers = {"Content-Range": content_range} if content_range else {}
    return call(proxy.url, "PUT", path, data, headers)


def wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_multi_chunk_upload_arrives_intact_with_its_metadata_and_the_storage_sees_one_write(raw_gcs):
    """A second proxy between this one and fake-gcs-server counts what the storage is sent."""
    with start_server(raw_gcs.url, rate_per_object=0) as inner, start_server(inner.url) as proxy:
        bucket = make_client(proxy.url).create_bucket(f"up-{os.urandom(5).hex()}")
        data = os.urandom(CHUNK) * 4 + b"tail!!!"  # four full chunks and 7 bytes
        blob = bucket.blob("out/rows.csv")
        blob.metadata = {"run": "r1"}
        inner.reset_stats()
        with blob.open("wb", chunk_size=CHUNK, content_type="text/csv") as writer:
            for i in range(0, len(data), 100 * KIB):
                writer.write(data[i:i + 100 * KIB])
        sent = inner.stats()["totals"]["requests"]
        assert sent == 2  # the session's start and one PUT of the whole object: five chunks never reached it

        stored = bucket.get_blob("out/rows.csv")
        assert (stored.size, stored.content_type, stored.metadata) == (len(data), "text/csv", {"run": "r1"})
        assert stored.download_as_bytes() == data
        assert counts(proxy, bucket, "out/rows.csv")["writes"] == 1
        assert os.listdir(proxy.spool_dir) == []  # committed: the spooled bytes are gone


def test_an_upload_that_sets_only_its_name_and_content_type_is_committed_as_a_media_upload_of_the_same_object(
        raw_gcs, monkeypatch):
    chosen = []
    monkeypatch.setattr(_proxy, "media_upload_type", lambda *args: chosen.append(media_upload_type(*args)) or
                        chosen[-1])
    with start_server(raw_gcs.url, rate_per_object=0) as inner, start_server(inner.url) as proxy:
        bucket = make_client(proxy.url).create_bucket(f"up-{os.urandom(5).hex()}")
        data = os.urandom(CHUNK) * 2 + b"tail"
        plain, tagged = bucket.blob("out/plain.jsonl"), bucket.blob("out/tagged.jsonl")
        tagged.metadata = {"run": "r1"}
        inner.reset_stats()
        for blob in (plain, tagged):
            with blob.open("wb", chunk_size=CHUNK, content_type="application/x-ndjson") as writer:
                writer.write(data)
        # Both proxies decide at each start (the inner one answers first); custom metadata keeps the session.
        assert chosen == ["application/x-ndjson", "application/x-ndjson", None, None]
        assert inner.stats()["totals"]["requests"] == 4  # each: the session's start and one write
        a, b = bucket.get_blob("out/plain.jsonl"), bucket.get_blob("out/tagged.jsonl")
        same = ("size", "content_type", "md5_hash", "crc32c", "metageneration", "storage_class")
        assert [getattr(a, f) for f in same] == [getattr(b, f) for f in same]
        assert (a.metadata, b.metadata) == (None, {"run": "r1"})
        assert a.download_as_bytes() == data


@pytest.mark.parametrize(("body", "query", "header", "wanted"), [
    (b'{"name": "a"}', {"uploadType": "resumable"}, "application/x-ndjson", "application/x-ndjson"),
    (b'{"name": "a", "contentType": "text/csv"}', {"uploadType": "resumable", "ifGenerationMatch": "0"}, None,
     "text/csv"),
    (b'{"name": "a", "contentType": "text/csv"}', {"uploadType": "resumable"}, "text/csv", "text/csv"),
    (None, {"uploadType": "resumable", "name": "a"}, "text/plain", "text/plain"),
    (b'{"name": "a", "contentType": "text/csv"}', {"uploadType": "resumable"}, "text/plain", None),  # which wins?
    (b'{"name": "a"}', {"uploadType": "resumable"}, None, None),  # the storage's default type
    (b'{"name": "a", "metadata": {"k": "v"}}', {"uploadType": "resumable"}, "text/plain", None),
    (b'{"name": "a", "cacheControl": "no-store"}', {"uploadType": "resumable"}, "text/plain", None),
    (b'{"name": "a"}', {"uploadType": "resumable", "predefinedAcl": "publicRead"}, "text/plain", None),
    (b'{"name": "a", "contentType": 5}', {"uploadType": "resumable"}, None, None),
    (b'not json', {"uploadType": "resumable"}, "text/plain", None),
    (b'[1]', {"uploadType": "resumable"}, "text/plain", None),
])
def test_a_commit_is_a_media_upload_only_when_the_start_set_nothing_else(body, query, header, wanted):
    assert media_upload_type(body, query, header) == wanted


def test_a_status_query_mid_session_names_the_bytes_held_and_a_committed_session_answers_its_object(
        proxy, pbucket):
    path = session_path(pbucket.blob("s.bin"), content_type="application/octet-stream")
    data = os.urandom(CHUNK) + b"0123456789"

    status, headers, _ = put(proxy, path, "bytes */*")
    assert status == 308 and "range" not in headers  # nothing held yet
    assert put(proxy, path, f"bytes 0-{CHUNK - 1}/*", data[:CHUNK])[:2][0] == 308
    status, headers, _ = put(proxy, path, f"bytes 0-{CHUNK - 1}/*", data[:CHUNK])  # sent again: kept once
    assert (status, headers["range"]) == (308, f"bytes=0-{CHUNK - 1}")
    status, headers, _ = put(proxy, path, "bytes */*")
    assert (status, headers["range"]) == (308, f"bytes=0-{CHUNK - 1}")
    status, headers, _ = put(proxy, path, f"bytes */{len(data)}")  # the size, before the last bytes came
    assert (status, headers["range"]) == (308, f"bytes=0-{CHUNK - 1}")
    status, _, body = put(proxy, path, f"bytes {CHUNK + 5}-{CHUNK + 9}/*", data[-5:])  # a gap
    assert status == 400 and b"exceeds already uploaded size" in body
    assert not pbucket.blob("s.bin").exists()  # an open session has written nothing

    status, _, body = put(proxy, path, f"bytes {CHUNK}-{len(data) - 1}/{len(data)}", data[CHUNK:])
    assert status == 200
    committed = orjson.loads(body)
    assert committed["size"] == str(len(data)) and committed["selfLink"].startswith(proxy.url)
    status, _, again = put(proxy, path, "bytes */*")  # the session is done: its object again
    assert status == 200 and orjson.loads(again)["generation"] == committed["generation"]
    assert pbucket.blob("s.bin").download_as_bytes() == data
    assert counts(proxy, pbucket, "s.bin")["writes"] == 1


def test_an_abandoned_session_leaves_no_object_and_no_spooled_file(proxy, pbucket):
    path = session_path(pbucket.blob("abandoned"))
    assert put(proxy, path, f"bytes 0-{CHUNK - 1}/*", b"a" * CHUNK)[0] == 308
    assert len(os.listdir(proxy.spool_dir)) == 1
    proxy.set_switches(upload_session_seconds=0.2)
    assert wait_for(lambda: os.listdir(proxy.spool_dir) == [])
    status, _, body = put(proxy, path, "bytes */*")
    assert status == 404 and orjson.loads(body)["error"]["code"] == 404  # Cloud Storage's expired session
    assert not pbucket.blob("abandoned").exists()
    assert counts(proxy, pbucket, "abandoned").get("writes", 0) == 0


def test_a_writer_that_fails_midway_writes_nothing_and_its_bytes_go_at_the_idle_time(proxy, pbucket):
    """The pipeline's way to abandon an upload. The client's writer then sends DELETE to the upload's start URL,
    not to its session, so the session is left to time out, as on Cloud Storage."""
    with pytest.raises(RuntimeError), pbucket.blob("half").open("wb", chunk_size=CHUNK) as writer:
        writer.write(b"h" * (3 * CHUNK))  # two chunks go out
        assert len(os.listdir(proxy.spool_dir)) == 1
        raise RuntimeError("the producer failed")
    assert not pbucket.blob("half").exists()
    proxy.set_switches(upload_session_seconds=0.2)
    assert wait_for(lambda: os.listdir(proxy.spool_dir) == [])
    assert not pbucket.blob("half").exists()


def test_delete_cancels_a_session_at_once(proxy, pbucket):
    path = session_path(pbucket.blob("cancelled"))
    assert put(proxy, path, f"bytes 0-{CHUNK - 1}/*", b"c" * CHUNK)[0] == 308
    status, _, _ = call(proxy.url, "DELETE", path)
    assert status == 499  # Cloud Storage's answer to a cancelled upload
    assert os.listdir(proxy.spool_dir) == []
    assert put(proxy, path, f"bytes {CHUNK}-{CHUNK}/{CHUNK + 1}", b"c")[0] == 404
    assert not pbucket.blob("cancelled").exists()


def test_if_generation_match_0_given_at_the_start_fails_at_the_commit_when_the_object_exists(proxy, pbucket):
    proxy.set_switches(rate_per_object=0)
    pbucket.blob("state").upload_from_string(b"first")
    blob = pbucket.blob("state")
    blob.chunk_size = CHUNK
    with pytest.raises(exceptions.PreconditionFailed):  # no size given: a chunked resumable upload
        blob.upload_from_file(io.BytesIO(b"s" * (2 * CHUNK + 1)), if_generation_match=0)
    assert pbucket.blob("state").download_as_bytes() == b"first"
    mine = counts(proxy, pbucket, "state")
    assert (mine["writes"], mine["writesRefused"]) == (2, 1)
    assert os.listdir(proxy.spool_dir) == []

    fresh = pbucket.blob("fresh")
    fresh.chunk_size = CHUNK
    fresh.upload_from_file(io.BytesIO(b"f" * (2 * CHUNK + 1)), if_generation_match=0)  # absent: it holds
    assert pbucket.blob("fresh").download_as_bytes() == b"f" * (2 * CHUNK + 1)


def test_a_precondition_is_checked_at_the_commit_not_only_when_the_session_started(proxy, pbucket):
    """The object appears while the session is open: the commit must fail, as on Cloud Storage."""
    proxy.set_switches(rate_per_object=0)
    writer = pbucket.blob("race").open("wb", chunk_size=CHUNK, if_generation_match=0)
    writer.write(b"w" * (2 * CHUNK))  # session started while "race" did not exist; a chunk is out
    pbucket.blob("race").upload_from_string(b"someone else")
    with pytest.raises(InvalidResponse) as failed:  # the writer reports the 412 of its last request
        writer.close()
    assert failed.value.response.status_code == 412
    assert pbucket.blob("race").download_as_bytes() == b"someone else"


def test_the_write_limit_applies_to_the_commit_whose_bytes_are_then_sent_again(proxy, pbucket):
    proxy.set_switches(burst=1)
    pbucket.blob("limited").upload_from_string(b"x")  # spends the only token
    path = session_path(pbucket.blob("limited"))
    assert put(proxy, path, f"bytes 0-{CHUNK - 1}/*", b"a" * CHUNK)[0] == 308  # chunks spend no token
    status, _, body = put(proxy, path, f"bytes {CHUNK}-{CHUNK + 2}/{CHUNK + 3}", b"end")
    assert status == 429 and orjson.loads(body)["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    status, headers, _ = put(proxy, path, "bytes */*")
    assert (status, headers["range"]) == (308, f"bytes=0-{CHUNK - 1}")  # the refused bytes were not kept
    time.sleep(1.05)
    assert put(proxy, path, f"bytes {CHUNK}-{CHUNK + 2}/{CHUNK + 3}", b"end")[0] == 200
    assert pbucket.blob("limited").download_as_bytes() == b"a" * CHUNK + b"end"
    mine = counts(proxy, pbucket, "limited")
    assert (mine["writes"], mine["rejected429"]) == (2, 1)


def test_a_commit_whose_reply_is_lost_is_retried_by_the_client_and_finds_its_upload_done(proxy, pbucket):
    """commit_then_503 on the last request: the client sends it again and gets the committed object (200)."""
    proxy.set_switches(commit_then_503=1)
    data = os.urandom(2 * CHUNK + 3)
    with pbucket.blob("lost").open("wb", chunk_size=CHUNK) as writer:
        writer.write(data)
    assert pbucket.blob("lost").download_as_bytes() == data
    mine = counts(proxy, pbucket, "lost")
    assert (mine["writes"], mine["committed503"]) == (1, 1)
