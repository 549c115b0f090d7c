"""Switches given at start (`start_server(switches=...)`, the values flags and env vars hand over as text)
act from the emulator's very first call, and `reset_switches()` goes back to them."""

from __future__ import annotations

import uuid

import pytest
from google.genai import errors, types

from local.vertex import start_server
from tests.functional.vertex._support import (
    create,
    make_client,
    output_files,
    output_lines,
    rows,
    state,
    upload_jsonl,
    wait_done,
)

pytestmark = pytest.mark.functional


@pytest.fixture
def started(fake_gcs):
    """start(**switches) -> (emulator, client): a private emulator with those start values."""
    emulators = []

    def start(**switches):
        emulator = start_server(workers=2, switches=switches)
        emulators.append(emulator)
        return emulator, make_client(emulator.url)

    yield start
    for emulator in emulators:
        emulator.stop()


def by_label(client, run: str) -> list:
    return list(client.batches.list(config=types.ListBatchJobsConfig(filter=f'labels.run="{run}"')))


def test_http_error_next_at_start(started, bucket, prefix):
    emulator, client = started(http_error_next="2", http_error_code="429")
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    with pytest.raises(errors.ClientError) as info:
        create(client, src, prefix, labels={"run": "first"})
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(errors.ClientError) as info:
        client.batches.list()
    assert info.value.code == 429
    assert by_label(client, "first") == []  # the third call goes through; the failed create created nothing
    assert emulator.switches()["http_error_next"] == 0
    assert emulator.reset_switches()["http_error_next"] == 2  # back to the start value


def test_create_500_next_at_start(started, bucket, prefix):
    _, client = started(create_500_next=1)
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    with pytest.raises(errors.ServerError) as info:
        create(client, src, prefix, labels={"run": "ambiguous"})
    assert info.value.code == 500 and info.value.status == "INTERNAL"
    found = by_label(client, "ambiguous")
    assert len(found) == 1 and state(wait_done(client, found[0].name)) == "JOB_STATE_SUCCEEDED"
    second = create(client, src, prefix + "-2")  # only the first create answered 500
    assert state(wait_done(client, second.name)) == "JOB_STATE_SUCCEEDED"


def test_retryable_fraction_at_start(started, bucket, prefix, storage_client):
    _, client = started(retryable_fraction="1", retryable_codes="429")
    src = upload_jsonl(bucket, "in.jsonl", rows(4))
    done = wait_done(client, create(client, src, prefix).name)
    assert state(done) == "JOB_STATE_SUCCEEDED"  # row failures alone never fail the job
    stats = done.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (0, 4, 0)
    assert {line["status"].split(":", 1)[0] for line in output_lines(storage_client, done)} == {"Too Many Requests"}
    spared = wait_done(client, create(client, src, prefix + "-2", labels={"emulator_retryable_fraction": "0"}).name)
    assert spared.completion_stats.successful_count == 4  # a label still wins over the start value


def test_export_every_at_start(started, bucket, prefix, storage_client):
    _, client = started(export_every="2")
    done = wait_done(client, create(client, upload_jsonl(bucket, "in.jsonl", rows(5)), prefix).name)
    assert state(done) == "JOB_STATE_SUCCEEDED"
    assert output_files(storage_client, done) == [
        "predictions-00001.jsonl", "predictions-00002.jsonl", "predictions.jsonl"]
    assert sorted(line["custom_id"] for line in output_lines(storage_client, done)) == [f"q{i}" for i in range(5)]


def test_job_fault_at_start_hits_every_job(started, bucket, prefix, storage_client):
    _, client = started(job_fault="partial", fault_at="0.5")
    src = upload_jsonl(bucket, "in.jsonl", rows(4))
    for suffix in ("-1", "-2"):
        done = wait_done(client, create(client, src, prefix + suffix).name)
        assert state(done) == "JOB_STATE_PARTIALLY_SUCCEEDED"
        assert len(output_lines(storage_client, done)) == 2 and done.completion_stats.incomplete_count == 2
    clean = wait_done(client, create(client, src, prefix + "-3", labels={"emulator_job_fault": "none"}).name)
    assert state(clean) == "JOB_STATE_SUCCEEDED"


def test_job_fault_at_start_for_the_first_jobs_only(started, bucket, prefix):
    emulator, client = started(job_fault="fail", job_fault_jobs=1)
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    first = wait_done(client, create(client, src, prefix + "-1").name)
    assert state(first) == "JOB_STATE_FAILED" and first.error.code == 13
    assert state(wait_done(client, create(client, src, prefix + "-2").name)) == "JOB_STATE_SUCCEEDED"
    assert emulator.reset_switches()["job_fault"] == "fail"


def test_create_fault_at_start_refuses_every_create(started, bucket, prefix):
    emulator, client = started(create_fault="503")
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    for _ in range(2):
        with pytest.raises(errors.ServerError) as info:
            create(client, src, prefix, labels={"run": "refused"})
        assert info.value.code == 503
    assert by_label(client, "refused") == []
    job = create(client, src, prefix, labels={"emulator_create_fault": "none"})  # a label lets one through
    assert state(wait_done(client, job.name)) == "JOB_STATE_SUCCEEDED"


def test_call_fault_at_start_hits_the_first_get_of_every_job(started, bucket, prefix):
    _, client = started(call_fault="503")
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    for i in range(2):
        job = create(client, src, f"{prefix}-{i}", labels={"run": uuid.uuid4().hex[:8]})
        with pytest.raises(errors.ServerError) as info:
            client.batches.get(name=job.name)
        assert info.value.code == 503 and info.value.status == "UNAVAILABLE"
        assert state(wait_done(client, job.name)) == "JOB_STATE_SUCCEEDED"  # call_fault_next defaults to 1
