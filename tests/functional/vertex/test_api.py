"""Every REST call through the unmodified google-genai SDK, the raw resource shape, and the error shape."""

from __future__ import annotations

import json
import re
import socket
import time
from http.client import HTTPConnection

import pytest
from google.genai import errors, types

from tests.functional.vertex._support import (
    PARENT,
    create,
    http,
    output_files,
    output_lines,
    raw,
    rows,
    state,
    upload_jsonl,
    wait_done,
    wait_state,
)

pytestmark = pytest.mark.functional

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_create_get_and_resource_shape(client, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(3))
    job = create(client, src, prefix, labels={"pipeline": "gbp", "run": "r-1"}, display_name="shape")
    assert state(job) == "JOB_STATE_PENDING"
    assert re.fullmatch(rf"{PARENT}/batchPredictionJobs/\d+", job.name)
    assert int(job.name.rsplit("/", 1)[1]) < 2**63
    assert job.completion_stats is None and job.start_time is None and job.end_time is None
    assert job.display_name == "shape" and job.model == "publishers/google/models/gemini-2.5-flash"

    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_SUCCEEDED"
    assert done.completion_stats.successful_count == 3 and done.completion_stats.failed_count == 0
    assert done.create_time <= done.start_time <= done.end_time
    assert done.src.gcs_uri == [src] and done.dest.gcs_uri == prefix

    body = raw(client, "get", done.name)
    assert body["name"] == done.name
    assert body["labels"] == {"pipeline": "gbp", "run": "r-1"}  # kept and returned (the SDK drops them)
    assert body["completionStats"] == {"successfulCount": "3", "failedCount": "0", "incompleteCount": "0"}
    for key in ("createTime", "startTime", "endTime", "updateTime"):
        assert RFC3339.match(body[key]), body[key]
    assert body["inputConfig"] == {"instancesFormat": "jsonl", "gcsSource": {"uris": [src]}}
    assert body["outputConfig"] == {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": prefix}}
    stamp = body["createTime"]
    assert body["outputInfo"] == {"gcsOutputDirectory": f"{prefix}/prediction-model-{stamp}"}
    assert "error" not in body
    assert len(output_lines(storage_client, done)) == 3


def test_pending_resource_has_null_completion_stats(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    job = create(client, src, prefix, labels={"emulator_queue_latency": "0-4", "run": "null-stats"})
    assert job.completion_stats is None
    status, body = http(f"{emu.url}/v1/{job.name}")  # the JSON on the wire, before any client reshapes it
    assert status == 200 and body["state"] == "JOB_STATE_PENDING"
    assert "completionStats" in body and body["completionStats"] is None
    assert "outputInfo" not in body and "startTime" not in body
    assert client.batches.get(name=job.name).completion_stats is None
    listed = list(client.batches.list(config=types.ListBatchJobsConfig(filter='labels.run="null-stats"')))
    assert [j.name for j in listed] == [job.name] and listed[0].completion_stats is None
    listing = raw(client, "get", 'batchPredictionJobs?filter=labels.run%3D%22null-stats%22')
    assert listing["batchPredictionJobs"][0]["completionStats"] is None
    running = wait_state(client, job.name, {"JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"})
    assert running.start_time is not None and running.completion_stats is not None


def test_running_shows_unknown_incomplete_count(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(4))
    job = create(client, src, prefix, labels={"emulator_run_latency": "1"})
    wait_state(client, job.name, "JOB_STATE_RUNNING")
    body = raw(client, "get", job.name)
    assert body["completionStats"]["incompleteCount"] == "-1"
    assert RFC3339.match(body["startTime"]) and "endTime" not in body
    client.batches.cancel(name=job.name)
    wait_done(client, job.name)


def test_cancel_running_job_goes_through_cancelling(client, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(10))
    job = create(client, src, prefix, labels={"emulator_run_latency": "2"})  # one shard of 10000 rows
    wait_state(client, job.name, "JOB_STATE_RUNNING")
    time.sleep(0.5)  # a few rows done, none exported yet
    assert client.batches.cancel(name=job.name) is None  # answers {}
    seen = state(client.batches.get(name=job.name))
    assert seen in {"JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"}
    done = wait_state(client, job.name, "JOB_STATE_CANCELLED")
    assert done.error.code == 1
    assert done.end_time is not None
    lines = output_lines(storage_client, done)
    stats = done.completion_stats
    assert 1 <= stats.successful_count == len(lines) < 10  # the rows done were exported on cancel
    assert output_files(storage_client, done) == ["predictions.jsonl"]
    assert stats.incomplete_count == 10 - len(lines)


def test_cancelling_is_observable_with_cancel_latency(client, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(4))
    job = create(client, src, prefix, labels={"emulator_run_latency": "2", "emulator_cancel_latency": "0-5"})
    wait_state(client, job.name, "JOB_STATE_RUNNING")
    client.batches.cancel(name=job.name)
    assert state(client.batches.get(name=job.name)) == "JOB_STATE_CANCELLING"
    client.batches.cancel(name=job.name)  # cancelling again is fine while not terminal
    done = wait_state(client, job.name, "JOB_STATE_CANCELLED")
    assert done.error.code == 1 and done.error.message == "CANCELED"


def test_cancel_pending_job_and_cancel_terminal_job(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    job = create(client, src, prefix, labels={"emulator_queue_latency": "5"})
    client.batches.cancel(name=job.name)
    done = client.batches.get(name=job.name)
    assert state(done) == "JOB_STATE_CANCELLED" and done.error.code == 1 and done.start_time is None
    with pytest.raises(errors.ClientError) as info:
        client.batches.cancel(name=job.name)
    assert info.value.code == 400 and info.value.status == "FAILED_PRECONDITION"
    assert info.value.details["error"]["code"] == 400
    assert "JOB_STATE_CANCELLED" in info.value.message


def test_delete_returns_operation_and_removes_job(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    job = create(client, src, prefix)
    wait_done(client, job.name)
    op = client.batches.delete(name=job.name)
    assert re.fullmatch(rf"{PARENT}/operations/\d+", op.name) and op.done is True and op.error is None
    with pytest.raises(errors.ClientError) as info:
        client.batches.get(name=job.name)
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    assert raw(client, "get", op.name)["done"] is True


def test_delete_running_job_is_refused(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    job = create(client, src, prefix, labels={"emulator_queue_latency": "5"})
    with pytest.raises(errors.ClientError) as info:
        client.batches.delete(name=job.name)
    assert info.value.status == "FAILED_PRECONDITION"
    client.batches.cancel(name=job.name)


def test_unknown_model_is_404(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    with pytest.raises(errors.ClientError) as info:
        create(client, src, prefix, model="gemini-x")
    assert info.value.code == 404
    assert info.value.details == {"error": {"code": 404, "status": "NOT_FOUND",
                                            "message": "The PublisherModel gemini-x does not exist."}}


def test_models_switch_accepts_patterns(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    emu.set_switches(models=["gemini-*"])
    job = create(client, src, prefix, model="gemini-x")
    assert state(wait_done(client, job.name)) == "JOB_STATE_SUCCEEDED"
    assert job.model == "publishers/google/models/gemini-x"


def test_unknown_job_and_bad_job_id(client):
    with pytest.raises(errors.ClientError) as info:
        client.batches.get(name=f"{PARENT}/batchPredictionJobs/123")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as info:
        client.batches.get(name=f"{PARENT}/batchPredictionJobs/abc")
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    with pytest.raises(errors.ClientError) as info:
        client.batches.cancel(name=f"{PARENT}/batchPredictionJobs/99")
    assert info.value.code == 404


def test_invalid_labels_and_bad_destination_are_400(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    for labels in ({"Bad": "x"}, {"k": "UPPER"}, {"k": "x" * 64}, {"emulator_nope": "1"},
                   {"emulator_run_latency": "fast"}, {"emulator_job_fault": "explode"},
                   {"emulator_create_fault": "418"}, {"emulator_call_fault": "404"}, {"emulator_call_fault_next": "-1"},
                   {"emulator_http_error_next": "1"}):
        with pytest.raises(errors.ClientError) as info:
            create(client, src, prefix, labels=labels)
        assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT", labels
    config = types.CreateBatchJobConfig(dest="gs://", display_name="x")
    with pytest.raises(errors.ClientError):
        client.batches.create(model="gemini-2.5-flash", src=src, config=config)


def test_error_shape_for_malformed_bodies_and_unknown_paths(emu):
    base = f"{emu.url}/v1/{PARENT}/batchPredictionJobs"
    for body in (b"{not json", b"", b"[1, 2]", b'{"displayName": "x", "bogus": 1}'):
        status, payload = http(base, "POST", body)
        assert status == 400 and payload["error"]["status"] == "INVALID_ARGUMENT", body
        assert payload["error"]["code"] == 400 and payload["error"]["message"]
    for url, method in ((f"{emu.url}/v1/nothing/here", "GET"), (f"{emu.url}/", "GET"),
                        (f"{base}/123", "PUT"), (f"{emu.url}/emulator/v1/nope", "GET")):
        status, payload = http(url, method, b"{}" if method == "PUT" else None)
        assert status == 404 and payload == {"error": {"code": 404, "status": "NOT_FOUND",
                                                       "message": payload["error"]["message"]}}
    status, payload = http(f"{base}?pageSize=abc")
    assert status == 400 and payload["error"]["status"] == "INVALID_ARGUMENT"


def test_broken_http_is_answered_in_the_json_error_shape(emu):
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(b"BREW /v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501")
    assert json.loads(body)["error"]["status"] == "UNIMPLEMENTED"


def _exchange(sock, request: bytes) -> tuple[bytes, dict, bytes]:
    """Send one request on a raw socket and read one Content-Length framed answer:
    (status line, headers, body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return status.encode(), headers, rest[:length]


def test_chunked_body_is_decoded_and_the_connection_stays_usable(emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    body = json.dumps({"displayName": "chunked", "model": "publishers/google/models/gemini-2.5-flash",
                       "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [src]}},
                       "outputConfig": {"predictionsFormat": "jsonl",
                                        "gcsDestination": {"outputUriPrefix": prefix}},
                       "labels": {"run": "chunked"}}).encode()
    conn = HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        pieces = [body[:17], body[17:60], body[60:]]
        conn.request("POST", f"/v1/{PARENT}/batchPredictionJobs", body=iter(pieces),
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                     encode_chunked=True)
        answer = conn.getresponse()
        created = json.loads(answer.read())
        assert answer.status == 200, created
        assert created["displayName"] == "chunked" and created["labels"] == {"run": "chunked"}
        # The same keep-alive connection answers the next request normally.
        conn.request("GET", f"/v1/{created['name']}")
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["name"] == created["name"]
    finally:
        conn.close()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        # chunk extensions and trailer fields are allowed and skipped
        chunked = (b"POST /emulator/v1/switches HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"d;ext=1\r\n{\"run_latency\r\n"
                   b"8\r\n\": 0.25}\r\n0\r\nX-Trailer: y\r\n\r\n")
        status, _, payload = _exchange(sock, chunked)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(payload)["run_latency"] == 0.25
        status, _, payload = _exchange(sock, b"GET /emulator/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200") and json.loads(payload) == {"status": "ok"}


@pytest.mark.parametrize("framing", [
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hex
    b"Transfer-Encoding: chunked\r\n\r\n10\r\n{}\r\n0\r\n\r\n",  # a chunk shorter than its size
    b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",  # a coding the emulator does not speak
    b"Content-Length: many\r\n\r\n{}",
])
def test_unframable_body_is_an_error_and_closes_the_connection(emu, framing):
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        request = b"POST /emulator/v1/switches HTTP/1.1\r\nHost: x\r\n" + framing
        status, headers, payload = _exchange(sock, request + b"GET /emulator/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        error = json.loads(payload)["error"]
        assert status.split()[1] in (b"400", b"501") and error["status"] in ("INVALID_ARGUMENT", "UNIMPLEMENTED")
        assert int(status.split()[1]) == error["code"] and error["message"]
        assert headers.get("connection") == "close"
        sock.settimeout(2)
        assert sock.recv(65536) == b""  # closed: the bytes after the body were never parsed as a request
    assert emu.switches()["run_latency"] == 0.0
