"""Output files: Vertex's line format, echoed keys, order, the offline model, shards and retryable rows."""

from __future__ import annotations

import json
import re
import time
import tracemalloc

import pytest

from tests.functional.vertex._support import (
    create,
    output_files,
    output_lines,
    request,
    rows,
    state,
    upload_jsonl,
    wait_done,
    wait_state,
)

pytestmark = pytest.mark.functional

PROCESSED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
VALID_ROLE = ('Bad Request: {"error": {"code": 400, "message": "Please use a valid role: user, model.", '
              '"status": "INVALID_ARGUMENT"}}')


def run(client, bucket, prefix, lines, labels=None, storage_client=None):
    job = create(client, upload_jsonl(bucket, "in.jsonl", lines), prefix, labels=labels)
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_SUCCEEDED", done.error
    return done, output_lines(storage_client, done)


def test_success_and_failure_lines_match_the_documented_format(client, bucket, prefix, storage_client):
    good = {"request": request("Why is the sky blue?"), "custom_id": "k1", "meta": {"n": 1, "tags": ["a"]}}
    bad = {"request": {"contents": [{"parts": [{"text": "hello"}], "role": "tester"}]}, "custom_id": "k2",
           "meta": {"n": 2, "tags": []}}
    done, lines = run(client, bucket, prefix, [good, bad], storage_client=storage_client)
    by_id = {line["custom_id"]: line for line in lines}

    ok = by_id["k1"]
    assert list(ok)[:4] == ["status", "processed_time", "request", "response"]
    assert ok["status"] == "" and PROCESSED.match(ok["processed_time"])
    assert ok["request"] == good["request"] and ok["meta"] == good["meta"]  # echoed unchanged
    response = ok["response"]
    assert set(response) == {"candidates", "modelVersion", "usageMetadata"}
    candidate = response["candidates"][0]
    assert set(candidate) == {"avgLogprobs", "content", "finishReason"}
    assert isinstance(candidate["avgLogprobs"], float) and candidate["avgLogprobs"] < 0
    assert candidate["content"]["role"] == "model" and candidate["finishReason"] == "STOP"
    text = candidate["content"]["parts"][0]["text"]
    assert "Why is the sky blue?" in text
    assert response["modelVersion"] == "gemini-2.5-flash@default"
    usage = response["usageMetadata"]
    assert usage["promptTokenCount"] == 5  # 20 characters / 4
    assert usage["candidatesTokenCount"] > 0
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]

    failed = by_id["k2"]
    assert "response" not in failed and failed["status"] == VALID_ROLE
    assert PROCESSED.match(failed["processed_time"]) and failed["request"] == bad["request"]
    assert failed["meta"] == bad["meta"]
    stats = done.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (1, 1, 0)


def test_output_order_is_not_input_order(client, bucket, prefix, storage_client):
    _, lines = run(client, bucket, prefix, rows(30), storage_client=storage_client)
    ids = [line["custom_id"] for line in lines]
    assert sorted(ids) == sorted(f"q{i}" for i in range(30))
    assert ids != [f"q{i}" for i in range(30)]
    in_place = sum(1 for i, cid in enumerate(ids) if cid == f"q{i}")
    assert in_place <= 5


def test_two_rows_are_swapped(client, bucket, prefix, storage_client):
    _, lines = run(client, bucket, prefix, rows(2), storage_client=storage_client)
    assert [line["custom_id"] for line in lines] == ["q1", "q0"]


def test_model_is_deterministic_across_jobs(client, bucket, prefix, storage_client):
    lines = rows(5)
    _, first = run(client, bucket, prefix + "/1", lines, storage_client=storage_client)
    _, second = run(client, bucket, prefix + "/2", lines, storage_client=storage_client)
    texts = [{line["custom_id"]: line["response"]["candidates"][0]["content"]["parts"][0]["text"] for line in out}
             for out in (first, second)]
    assert texts[0] == texts[1]
    assert len(set(texts[0].values())) == 5  # different prompts, different answers


def test_max_output_tokens_truncates(client, bucket, prefix, storage_client):
    line = {"custom_id": "m", "request": request("Tell me a long story", generationConfig={"maxOutputTokens": 3})}
    free = {"custom_id": "f", "request": request("Tell me a long story")}
    _, out = run(client, bucket, prefix, [line, free], storage_client=storage_client)
    by_id = {x["custom_id"]: x["response"] for x in out}
    capped, full = by_id["m"]["candidates"][0], by_id["f"]["candidates"][0]
    assert capped["finishReason"] == "MAX_TOKENS" and full["finishReason"] == "STOP"
    assert by_id["m"]["usageMetadata"]["candidatesTokenCount"] == 3
    assert capped["content"]["parts"][0]["text"] == full["content"]["parts"][0]["text"][:12]


def test_json_mime_type_answers_json(client, bucket, prefix, storage_client):
    line = {"custom_id": "j", "request": request("Name a colour",
                                                 generationConfig={"responseMimeType": "application/json"})}
    _, out = run(client, bucket, prefix, [line], storage_client=storage_client)
    answer = json.loads(out[0]["response"]["candidates"][0]["content"]["parts"][0]["text"])
    assert answer["topic"] == "Name a colour" and answer["answer"]


def test_file_data_parts(client, bucket, prefix, storage_client):
    bucket.blob("img/cat.jpg").upload_from_string(b"\xff\xd8jpeg")
    present = {"fileData": {"fileUri": f"gs://{bucket.name}/img/cat.jpg", "mimeType": "image/jpeg"}}
    absent = {"fileData": {"fileUri": f"gs://{bucket.name}/img/dog.jpg", "mimeType": "image/jpeg"}}
    lines = [{"custom_id": name, "request": {"contents": [{"role": "user", "parts": [part, {"text": "what?"}]}]}}
             for name, part in (("present", present), ("absent", absent))]
    done, out = run(client, bucket, prefix, lines, storage_client=storage_client)
    by_id = {x["custom_id"]: x for x in out}
    assert by_id["present"]["status"] == "" and by_id["present"]["response"]["usageMetadata"]["promptTokenCount"] > 258
    status = by_id["absent"]["status"]
    assert status.startswith('Bad Request: {"error": {"code": 400, "message": "Cannot fetch content from gs://')
    assert json.loads(status.split(": ", 1)[1])["error"]["status"] == "INVALID_ARGUMENT"
    assert done.completion_stats.failed_count == 1


@pytest.mark.parametrize("req, message", [
    ({"contents": []}, "must include at least one parts field"),
    ({"contents": [{"role": "user", "parts": {"text": "x"}}]}, "Invalid value at 'contents[0].parts'"),
    ({"contents": [{"role": "user", "parts": []}]}, "must include at least one parts field"),
    ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "empty text parameter"),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "Please use a valid role: user, model."),
    ({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 0}},
     "maxOutputTokens"),
])
def test_malformed_requests_fail_their_row_only(client, bucket, prefix, storage_client, req, message):
    lines = [{"custom_id": "bad", "request": req}]
    if isinstance(req["contents"][0]["parts"] if req["contents"] else [], list):
        # (a parts object next to parts lists on other lines would fail the importer instead)
        lines.append({"custom_id": "good", "request": request("fine")})
    done, out = run(client, bucket, prefix, lines, storage_client=storage_client)
    by_id = {x["custom_id"]: x for x in out}
    assert by_id.get("good", {"status": ""})["status"] == ""
    bad = by_id["bad"]
    assert "response" not in bad and bad["request"] == req
    body = json.loads(bad["status"].removeprefix("Bad Request: "))
    assert body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert message in body["error"]["message"]


def test_line_without_request_fails(client, bucket, prefix, storage_client):
    done, out = run(client, bucket, prefix, [{"custom_id": "x"}, {"custom_id": "y", "request": request("a")}],
                    storage_client=storage_client)
    assert {x["custom_id"]: x["status"] != "" for x in out} == {"x": True, "y": False}


def test_incremental_export_in_shards(client, bucket, prefix, storage_client):
    job = create(client, upload_jsonl(bucket, "in.jsonl", rows(10)), prefix,
                 labels={"emulator_export_every": "4", "emulator_run_latency": "1"})
    running = wait_state(client, job.name, "JOB_STATE_RUNNING")
    deadline = time.monotonic() + 5
    while not output_files(storage_client, running) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "predictions.jsonl" in output_files(storage_client, running)
    assert state(client.batches.get(name=job.name)) == "JOB_STATE_RUNNING"  # exported while running
    done = wait_done(client, job.name)
    assert output_files(storage_client, done) == [
        "predictions-00001.jsonl", "predictions-00002.jsonl", "predictions.jsonl"]
    assert sorted(x["custom_id"] for x in output_lines(storage_client, done)) == sorted(f"q{i}" for i in range(10))


def _retryable(lines):
    return {x["custom_id"] for x in lines if x["status"] and not x["status"].startswith("Bad Request")}


def test_retryable_failures_draw_per_job_and_row(client, bucket, prefix, storage_client):
    labels = {"emulator_retryable_fraction": "0-3"}
    _, first = run(client, bucket, prefix + "/1", rows(200), labels=labels, storage_client=storage_client)
    failed = _retryable(first)
    assert 30 <= len(failed) <= 90
    statuses = {x["status"].split(":", 1)[0] for x in first if x["custom_id"] in failed}
    assert statuses == {"Too Many Requests", "Internal Server Error", "Service Unavailable"}
    for line in first:
        if line["custom_id"] in failed:
            assert "response" not in line
            error = json.loads(line["status"].split(": ", 1)[1])["error"]
            assert (error["code"], error["status"]) in {(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"),
                                                        (503, "UNAVAILABLE")}
    # The same input in a new job draws afresh (the draw hashes job name and row): other rows fail.
    _, again = run(client, bucket, prefix + "/3", rows(200), labels=labels, storage_client=storage_client)
    assert len(_retryable(again) & failed) < len(failed) * 0.6
    # The failed rows retried in a new job: most now succeed.
    retry = [r for r in rows(200) if r["custom_id"] in failed]
    _, second = run(client, bucket, prefix + "/2", retry, labels=labels, storage_client=storage_client)
    assert len(_retryable(second)) < len(failed) * 0.6


def test_retryable_codes_switch(client, emu, bucket, prefix, storage_client):
    emu.set_switches(retryable_fraction=1.0, retryable_codes=[503])
    done, out = run(client, bucket, prefix, rows(5), storage_client=storage_client)
    assert {x["status"].split(":", 1)[0] for x in out} == {"Service Unavailable"}
    assert done.completion_stats.failed_count == 5
    _, out = run(client, bucket, prefix + "/l", rows(3), labels={"emulator_retryable_codes": "429-500"},
                 storage_client=storage_client)
    assert {x["status"].split(":", 1)[0] for x in out} <= {"Too Many Requests", "Internal Server Error"}


def test_large_input_is_streamed(client, bucket, prefix, storage_client):
    """20,000 rows (~22 MB): every row comes back, in shards, and the job's peak Python memory stays
    far below the input size (it never holds the file)."""
    pad = "p" * 1000
    n = 20_000
    blob = bucket.blob("big.jsonl")
    with blob.open("wb", chunk_size=4 * 1024 * 1024) as f:
        for i in range(n):
            f.write(json.dumps({"custom_id": f"r{i}", "pad": pad,
                                "request": request(f"Item {i}")}).encode() + b"\n")
    size = blob.size or bucket.get_blob("big.jsonl").size
    assert size > 20_000_000
    tracemalloc.start()
    try:
        job = create(client, f"gs://{bucket.name}/big.jsonl", prefix, labels={"emulator_export_every": "1000"})
        done = wait_done(client, job.name, timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state(done) == "JOB_STATE_SUCCEEDED" and done.completion_stats.successful_count == n
    assert peak < size / 2, f"peak {peak} for a {size}-byte input"
    names = output_files(storage_client, done)
    assert len(names) == 20 and names[-1] == "predictions.jsonl"
    seen = set()
    for line in output_lines(storage_client, done):
        seen.add(line["custom_id"])
    assert len(seen) == n
