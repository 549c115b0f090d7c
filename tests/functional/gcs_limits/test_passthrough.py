"""Everything that is not limited passes through unchanged: links, sessions, lists, ranges, framing, many
connections at once; and a storage that does not answer is a 502 in GCS's shape."""

from __future__ import annotations

import http.client
import socket
import threading
from urllib.parse import urlsplit

import orjson
import pytest
from google.api_core import exceptions

from local.gcs_limits import start_server
from tests.functional.gcs_limits._support import call, counts, make_client

pytestmark = pytest.mark.functional


def test_links_and_upload_sessions_lead_back_through_the_proxy(proxy, pbucket, raw_gcs):
    pbucket.blob("x/y.txt").upload_from_string(b"hello")
    blob = pbucket.get_blob("x/y.txt")
    assert blob.self_link.startswith(proxy.url + "/") and blob.media_link.startswith(proxy.url + "/")
    assert pbucket.self_link.startswith(proxy.url + "/")
    session = pbucket.blob("s").create_resumable_upload_session()
    assert session.startswith(proxy.url + "/upload/")
    status, _, data = call(proxy.url, "GET", f"/storage/v1/b/{pbucket.name}/o")
    assert status == 200 and raw_gcs.url.encode() not in data


def test_json_objects_are_downloaded_byte_for_byte_never_rewritten(proxy, pbucket):
    content = orjson.dumps({"selfLink": proxy.backend_url + "/storage/v1/b/x"})
    pbucket.blob("doc.json").upload_from_string(content, content_type="application/json")
    assert pbucket.blob("doc.json").download_as_bytes() == content
    status, _, data = call(proxy.url, "GET", f"/storage/v1/b/{pbucket.name}/o/doc.json?alt=media")
    assert (status, data) == (200, content)


def test_listing_with_paging_passes_through(proxy, client, pbucket):
    proxy.set_switches(rate_per_object=0)
    names = [f"p/{i:02d}" for i in range(7)]
    for name in names:
        pbucket.blob(name).upload_from_string(b"x")
    pages = [[b.name for b in page] for page in client.list_blobs(pbucket, prefix="p/", page_size=3).pages]
    assert pages == [names[0:3], names[3:6], names[6:]]


def test_range_reads_pass_through(proxy, pbucket):
    pbucket.blob("r").upload_from_string(b"0123456789")
    assert pbucket.blob("r").download_as_bytes(start=2, end=5) == b"2345"
    status, headers, data = call(proxy.url, "GET", f"/storage/v1/b/{pbucket.name}/o/r?alt=media",
                                 headers={"Range": "bytes=7-"})
    assert (status, data, headers["content-range"]) == (206, b"789", "bytes 7-9/10")


def test_a_chunked_upload_body_passes_through_and_counts_as_a_write(proxy, pbucket):
    parts = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", f"/upload/storage/v1/b/{pbucket.name}/o?uploadType=media&name=chunked%2Fbody",
                 body=iter([b"ab", b"c" * 300_000, b"d"]), encode_chunked=True,
                 headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    resp.read()
    status, _, _ = call(proxy.url, "GET", f"/storage/v1/b/{pbucket.name}/o", conn=conn)  # same connection
    assert status == 200
    conn.close()
    assert pbucket.blob("chunked/body").download_as_bytes() == b"ab" + b"c" * 300_000 + b"d"
    assert counts(proxy, pbucket, "chunked/body")["writes"] == 1


def test_many_concurrent_keep_alive_connections_are_served(proxy, pbucket):
    pbucket.blob("shared").upload_from_string(b"s")
    parts = urlsplit(proxy.url)
    failures: list = []

    def client_loop():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
        try:
            for _ in range(10):
                status, _, data = call(proxy.url, "GET", f"/storage/v1/b/{pbucket.name}/o/shared?alt=media", conn=conn)
                if (status, data) != (200, b"s"):
                    failures.append((status, data))
        except Exception as exc:  # collected and asserted below
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client_loop) for _ in range(48)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert proxy.stats()["totals"]["requests"] >= 480


def test_a_storage_that_does_not_answer_is_a_502_in_gcs_shape():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        with start_server(f"http://127.0.0.1:{port}") as proxy:
            status, _, data = call(proxy.url, "GET", "/storage/v1/b/any/o")
            assert status == 502 and orjson.loads(data)["error"]["code"] == 502
            with pytest.raises(exceptions.BadGateway):
                make_client(proxy.url).bucket("any").get_blob("x", retry=None)


def test_a_body_that_cannot_be_framed_gets_400_and_the_connection_is_closed(proxy):
    parts = urlsplit(proxy.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(b"POST /upload/storage/v1/b/x/o?uploadType=media&name=y HTTP/1.1\r\nHost: h\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head
    assert orjson.loads(body)["error"]["code"] == 400
