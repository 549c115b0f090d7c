"""Scale: a thousand jobs through the SDK on a bounded pool, and a 200,000-row input (the per-job maximum)."""

from __future__ import annotations

import re
import time

import orjson
import pytest
from google.genai import types

from local.vertex import start_server
from tests.functional.vertex._support import (
    create,
    http,
    make_client,
    output_files,
    raw,
    request,
    rows,
    state,
    upload_jsonl,
    wait_done,
)

pytestmark = pytest.mark.functional

JOBS = 1000


def test_a_thousand_jobs_succeed_and_page(fake_gcs, bucket):
    with start_server(workers=8) as emulator:
        client = make_client(emulator.url)
        src = upload_jsonl(bucket, "in.jsonl", rows(1))
        names = [create(client, src, f"gs://{bucket.name}/out/{i:04d}", display_name=f"job-{i:04d}").name
                 for i in range(JOBS)]
        assert len(set(names)) == JOBS
        deadline = time.monotonic() + 30
        while True:
            _, stats = http(f"{emulator.url}/emulator/v1/stats")
            if stats["states"].get("JOB_STATE_SUCCEEDED", 0) == JOBS or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert stats["jobs"] == JOBS and stats["states"] == {"JOB_STATE_SUCCEEDED": JOBS}
        # All thousand were created before the first could finish: all were active at once, none is now.
        assert stats["active"] == 0 and 8 < stats["peakActive"] <= JOBS
        _, reset = http(f"{emulator.url}/emulator/v1/stats/reset", method="POST")
        assert reset == {"peakActive": 0}

        listed = list(client.batches.list(config=types.ListBatchJobsConfig(page_size=100)))  # 10 pages, followed
        assert [job.display_name for job in listed] == [f"job-{i:04d}" for i in reversed(range(JOBS))]
        assert [job.name for job in listed] == names[::-1]
        assert all(state(job) == "JOB_STATE_SUCCEEDED" and job.completion_stats.successful_count == 1
                   for job in listed)

        pages, token, seen = 0, None, []
        while True:  # the default page size is 100
            page = raw(client, "get", "batchPredictionJobs" + (f"?pageToken={token}" if token else ""))
            pages += 1
            seen += [job["name"] for job in page["batchPredictionJobs"]]
            token = page.get("nextPageToken")
            if not token:
                break
        assert pages == 10 and seen == names[::-1]
        whole = raw(client, "get", "batchPredictionJobs?pageSize=5000")  # capped at 1000: one page, no token
        assert len(whole["batchPredictionJobs"]) == JOBS and "nextPageToken" not in whole
        flt = types.ListBatchJobsConfig(filter='state="JOB_STATE_SUCCEEDED" AND display_name:"job-09*"', page_size=30)
        assert [job.display_name for job in client.batches.list(config=flt)] == [
            f"job-{i:04d}" for i in reversed(range(900, 1000))]


def test_200k_short_rows(client, bucket, prefix, storage_client):
    """The largest input a job may have: every row is answered and exported, in 10,000-row shards.
    (That the input is streamed rather than held whole is checked by test_large_input_is_streamed.)"""
    n = 200_000
    line = orjson.dumps({"custom_id": "r%d", "request": request("Item %d")})  # formatting beats 200,000 dumps
    data = b"\n".join(line % (i, i) for i in range(n))
    bucket.blob("short.jsonl").upload_from_string(data + b"\n", content_type="application/jsonl")
    job = create(client, f"gs://{bucket.name}/short.jsonl", prefix)
    done = wait_done(client, job.name, timeout=60)
    assert state(done) == "JOB_STATE_SUCCEEDED"
    stats = done.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (n, 0, 0)
    names = output_files(storage_client, done)
    assert len(names) == 20 and "predictions.jsonl" in names
    directory = done.output_info.gcs_output_directory[len(f"gs://{bucket.name}/"):]
    ids = set()
    lines = 0
    for name in names:
        shard = bucket.blob(f"{directory}/{name}").download_as_bytes()
        lines += shard.count(b"\n")
        ids.update(re.findall(rb'"custom_id":"(r\d+)"', shard))
    assert lines == n and len(ids) == n
