"""batchPredictionJobs.list through the SDK: every filter operator, AND / NOT / OR, labels, paging."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.genai import errors, types

from local.vertex import start_server
from tests.functional.vertex._support import create, make_client, raw, rows, upload_jsonl, wait_done

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def listing(fake_gcs, storage_client):
    """A private emulator holding a known set of jobs: 3 succeeded, 1 failed, 1 pending, 1 cancelled."""
    emulator = start_server(workers=2)
    client = make_client(emulator.url)
    bucket = storage_client.create_bucket(f"list-{uuid.uuid4().hex[:10]}")
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    dest = f"gs://{bucket.name}/out"
    jobs = {}
    for i, (name, labels) in enumerate([
        ("alpha-1", {"team": "red", "run": "r1"}),
        ("alpha-2", {"team": "red"}),
        ("beta-1", {"team": "blue", "run": "r2"}),
        ("beta-2", {"team": "blue", "emulator_job_fault": "fail"}),
        ("gamma", {"team": "green", "emulator_queue_latency": "600"}),
        ("delta", {"emulator_queue_latency": "600"}),
    ]):
        jobs[name] = create(client, src, f"{dest}/{i}", labels=labels, display_name=name)
        if name == "alpha-2":
            jobs["middle"] = datetime.now(UTC)
            time.sleep(0.01)
    for name in ("alpha-1", "alpha-2", "beta-1", "beta-2"):
        wait_done(client, jobs[name].name)
    client.batches.cancel(name=jobs["delta"].name)
    yield client, jobs
    emulator.stop()


def names(client, flt=None, page_size=None) -> set[str]:
    config = types.ListBatchJobsConfig(filter=flt, page_size=page_size)
    return {job.display_name for job in client.batches.list(config=config)}


@pytest.mark.parametrize("flt, expected", [
    (None, {"alpha-1", "alpha-2", "beta-1", "beta-2", "gamma", "delta"}),
    ('state="JOB_STATE_SUCCEEDED"', {"alpha-1", "alpha-2", "beta-1"}),
    ("state=JOB_STATE_FAILED", {"beta-2"}),
    ('state!="JOB_STATE_SUCCEEDED"', {"beta-2", "gamma", "delta"}),
    ('state="JOB_STATE_PENDING"', {"gamma"}),
    ('state="JOB_STATE_CANCELLED"', {"delta"}),
    ('labels.team="red"', {"alpha-1", "alpha-2"}),
    ('labels.team!="red"', {"beta-1", "beta-2", "gamma", "delta"}),
    ("labels.run:*", {"alpha-1", "beta-1"}),
    ("labels:run", {"alpha-1", "beta-1"}),
    ('display_name="beta-1"', {"beta-1"}),
    ('display_name:"alpha*"', {"alpha-1", "alpha-2"}),
    ('displayName:"*-2"', {"alpha-2", "beta-2"}),
    ('labels.team="blue" AND state="JOB_STATE_SUCCEEDED"', {"beta-1"}),
    ('labels.team="blue" state="JOB_STATE_SUCCEEDED"', {"beta-1"}),
    ('NOT labels.team="red"', {"beta-1", "beta-2", "gamma", "delta"}),
    ('labels.team:* AND NOT state="JOB_STATE_SUCCEEDED"', {"beta-2", "gamma"}),
    ('-labels.team:*', {"delta"}),
    ('labels.team="green" OR display_name="delta"', {"gamma", "delta"}),
    ('(labels.team="red" OR labels.team="blue") AND NOT labels.run:*', {"alpha-2", "beta-2"}),
    ('model:"*gemini-2.5-flash"', {"alpha-1", "alpha-2", "beta-1", "beta-2", "gamma", "delta"}),
])
def test_filter_grammar(listing, flt, expected):
    client, _ = listing
    assert names(client, flt) == expected


def test_time_comparisons(listing):
    client, jobs = listing
    middle = jobs["middle"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    after = {"beta-1", "beta-2", "gamma", "delta"}
    assert names(client, f'create_time>"{middle}"') == after
    assert names(client, f'create_time>="{middle}"') == after
    assert names(client, f'create_time<"{middle}"') == {"alpha-1", "alpha-2"}
    assert names(client, f'create_time<="{middle}"') == {"alpha-1", "alpha-2"}
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert names(client, f'create_time>"{future}"') == set()
    assert names(client, f'end_time<"{future}" AND labels.team:*') == {"alpha-1", "alpha-2", "beta-1", "beta-2"}
    assert names(client, f'createTime<"{future}" AND state="JOB_STATE_PENDING"') == {"gamma"}


def test_paging_over_several_pages(listing):
    client, _ = listing
    pager = client.batches.list(config=types.ListBatchJobsConfig(page_size=2))
    assert len(pager.page) == 2  # one page at a time
    assert [j.display_name for j in pager] == ["delta", "gamma", "beta-2", "beta-1", "alpha-2", "alpha-1"]
    first = raw(client, "get", "batchPredictionJobs?pageSize=4")
    assert len(first["batchPredictionJobs"]) == 4 and first["nextPageToken"]
    second = raw(client, "get", f"batchPredictionJobs?pageSize=4&pageToken={first['nextPageToken']}")
    assert len(second["batchPredictionJobs"]) == 2 and "nextPageToken" not in second
    assert names(client, 'labels.team:*', page_size=1) == {"alpha-1", "alpha-2", "beta-1", "beta-2", "gamma"}


def test_list_is_scoped_to_project_and_location(listing):
    client, _ = listing
    other = raw(client, "get", "projects/other/locations/us-central1/batchPredictionJobs")
    assert other == {"batchPredictionJobs": []}


@pytest.mark.parametrize("flt", ['state="RUNNING"', "state>JOB_STATE_FAILED", 'create_time>"yesterday"',
                                 'foo="bar"', 'state="JOB_STATE_FAILED" AND', '(state="JOB_STATE_FAILED"',
                                 'display_name>"x"', 'labels.team', '"quoted"'])
def test_bad_filter_is_invalid_argument(listing, flt):
    client, _ = listing
    with pytest.raises(errors.ClientError) as info:
        list(client.batches.list(config=types.ListBatchJobsConfig(filter=flt)))
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert info.value.message.startswith("Invalid filter")


@pytest.mark.parametrize("flt", ["(" * 5000 + 'state="JOB_STATE_FAILED"' + ")" * 5000,
                                 "(" * 5000, "NOT " * 3000 + "labels:run", "-" * 3000 + "labels:run",
                                 "(" * 101 + 'state="JOB_STATE_FAILED"' + ")" * 101])
def test_deeply_nested_filter_is_invalid_argument(listing, flt):
    client, _ = listing
    with pytest.raises(errors.ClientError) as info:
        list(client.batches.list(config=types.ListBatchJobsConfig(filter=flt)))
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert info.value.details == {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": (
        "Invalid filter: nested more than 100 levels deep (parentheses and negations)")}}


def test_nesting_up_to_the_cap_is_fine(listing):
    client, _ = listing
    assert names(client, "(" * 100 + 'state="JOB_STATE_FAILED"' + ")" * 100) == {"beta-2"}
    assert names(client, "NOT " * 99 + "labels:run") == {"beta-2", "gamma", "delta", "alpha-2"}


@pytest.mark.parametrize("token", ["garbage", "eyJzIjogMX0", "eyJzIjoxLCJmIjoieCJ9"])
def test_bad_page_token_is_invalid_argument(listing, token):
    client, _ = listing
    with pytest.raises(errors.ClientError) as info:
        client.batches.list(config=types.ListBatchJobsConfig(page_token=token))
    assert info.value.code == 400 and info.value.message == "Invalid page token."


def test_page_token_is_tied_to_its_filter(listing):
    client, _ = listing
    first = raw(client, "get", "batchPredictionJobs?pageSize=1")
    with pytest.raises(errors.ClientError):
        client.batches.list(config=types.ListBatchJobsConfig(page_token=first["nextPageToken"],
                                                             filter='labels.team="red"'))
