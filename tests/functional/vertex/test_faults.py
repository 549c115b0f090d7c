"""Control-plane faults through the SDK, the admin endpoint, and switches set at start and per job."""

from __future__ import annotations

import time
import uuid

import pytest
from google.genai import errors, types

from local.vertex import SPECS, SwitchError, start_server
from tests.functional.vertex._support import (
    PARENT,
    create,
    http,
    make_client,
    rows,
    state,
    upload_jsonl,
    wait_done,
)

pytestmark = pytest.mark.functional


@pytest.mark.parametrize("code, exc, status", [(429, errors.ClientError, "RESOURCE_EXHAUSTED"),
                                               (503, errors.ServerError, "UNAVAILABLE")])
def test_next_calls_fail(client, emu, bucket, prefix, code, exc, status):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    emu.set_switches(http_error_next=2, http_error_code=code)
    for _ in range(2):
        with pytest.raises(exc) as info:
            create(client, src, prefix, labels={"attempt": "x"})
        assert info.value.code == code and info.value.status == status
        assert info.value.details["error"]["code"] == code
    assert emu.switches()["http_error_next"] == 0
    job = create(client, src, prefix)  # the third call goes through
    assert state(wait_done(client, job.name)) == "JOB_STATE_SUCCEEDED"
    listed = client.batches.list(config=types.ListBatchJobsConfig(filter='labels.attempt="x"'))
    assert list(listed) == []  # the failed creates created nothing


def test_error_fraction(client, emu):
    emu.set_switches(http_error_fraction=0.5, http_fault_calls=["list"])
    outcomes = []
    for _ in range(40):
        try:
            client.batches.list(config=types.ListBatchJobsConfig(page_size=1))
            outcomes.append(True)
        except errors.ServerError as exc:
            assert exc.code == 503
            outcomes.append(False)
    assert 8 <= outcomes.count(False) <= 32
    emu.set_switches(http_error_fraction=1.0)
    with pytest.raises(errors.ServerError):
        client.batches.list()


def test_fault_calls_limit_which_calls_fail(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    emu.set_switches(http_error_fraction=1.0, http_fault_calls=["get"])
    job = create(client, src, prefix)  # create is not listed: it works
    with pytest.raises(errors.ServerError):
        client.batches.get(name=job.name)
    emu.set_switches(http_error_fraction=0.0)
    assert state(wait_done(client, job.name)) == "JOB_STATE_SUCCEEDED"


def test_create_succeeds_but_answers_500(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    emu.set_switches(create_500_next=1)
    with pytest.raises(errors.ServerError) as info:
        create(client, src, prefix, labels={"run": "ambiguous-500"})
    assert info.value.code == 500 and info.value.status == "INTERNAL"
    found = list(client.batches.list(config=types.ListBatchJobsConfig(filter='labels.run="ambiguous-500"')))
    assert len(found) == 1  # the job exists: find it by label before creating again
    assert state(wait_done(client, found[0].name)) == "JOB_STATE_SUCCEEDED"


def test_hanging_create_times_out_but_creates_the_job(emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    emu.set_switches(http_hang_next=1, http_hang_seconds=1.5)
    impatient = make_client(emu.url, timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        create(impatient, src, prefix, labels={"run": "ambiguous-timeout"})
    assert "Timeout" in type(info.value).__name__
    assert time.monotonic() - started < 1.4
    client = make_client(emu.url)
    found = list(client.batches.list(config=types.ListBatchJobsConfig(filter='labels.run="ambiguous-timeout"')))
    assert len(found) == 1
    assert state(wait_done(client, found[0].name)) == "JOB_STATE_SUCCEEDED"


@pytest.mark.parametrize("code, exc, status", [(429, errors.ClientError, "RESOURCE_EXHAUSTED"),
                                               (503, errors.ServerError, "UNAVAILABLE")])
def test_create_fault_label_refuses_the_create_and_creates_nothing(client, emu, bucket, prefix, code, exc, status):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    emu.set_switches(job_fault="fail", job_fault_jobs=1)
    run = f"refused-{uuid.uuid4().hex[:8]}"
    with pytest.raises(exc) as info:
        create(client, src, prefix, labels={"emulator_create_fault": str(code), "run": run})
    assert info.value.code == code and info.value.status == status
    assert list(client.batches.list(config=types.ListBatchJobsConfig(filter=f'labels.run="{run}"'))) == []
    assert emu.switches()["job_fault_jobs"] == 1  # the refused create consumed nothing
    job = create(client, src, prefix, labels={"run": run})  # the same create without the label goes through
    assert state(wait_done(client, job.name)) == "JOB_STATE_FAILED"  # and it is the one that got the fault


def test_create_fault_label_500_creates_the_job(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    run = f"label-500-{uuid.uuid4().hex[:8]}"
    with pytest.raises(errors.ServerError) as info:
        create(client, src, prefix, labels={"emulator_create_fault": "500", "run": run})
    assert info.value.code == 500 and info.value.status == "INTERNAL"
    found = list(client.batches.list(config=types.ListBatchJobsConfig(filter=f'labels.run="{run}"')))
    assert len(found) == 1
    assert state(wait_done(client, found[0].name)) == "JOB_STATE_SUCCEEDED"
    assert state(client.batches.get(name=found[0].name)) == "JOB_STATE_SUCCEEDED"  # get is not affected


def test_create_fault_label_hang_creates_then_answers_late(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    run = f"label-hang-{uuid.uuid4().hex[:8]}"
    impatient = make_client(emu.url, timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        create(impatient, src, prefix, labels={"emulator_create_fault": "hang", "emulator_http_hang_seconds": "1-5",
                                               "run": run})
    assert "Timeout" in type(info.value).__name__ and time.monotonic() - started < 1.4
    found = list(client.batches.list(config=types.ListBatchJobsConfig(filter=f'labels.run="{run}"')))
    assert len(found) == 1 and state(wait_done(client, found[0].name)) == "JOB_STATE_SUCCEEDED"
    started = time.monotonic()  # a patient client gets the job, late
    job = create(client, src, prefix + "-2", labels={"emulator_create_fault": "hang",
                                                     "emulator_http_hang_seconds": "0-3"})
    assert time.monotonic() - started >= 0.3 and job.name.startswith(PARENT)
    assert emu.switches()["http_hang_seconds"] == 30.0  # the label set it for that job only


@pytest.mark.parametrize("code, exc", [(429, errors.ClientError), (500, errors.ServerError),
                                       (503, errors.ServerError)])
def test_call_fault_label_fails_the_next_calls_on_that_job(client, bucket, prefix, code, exc):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    job = create(client, src, prefix, labels={"emulator_call_fault": str(code), "emulator_call_fault_next": "2",
                                              "emulator_queue_latency": "5"})
    other = create(client, src, prefix + "-other", labels={"emulator_queue_latency": "5"})
    with pytest.raises(exc) as info:
        client.batches.get(name=job.name)
    assert info.value.code == code and info.value.details["error"]["code"] == code
    assert state(client.batches.get(name=other.name)) == "JOB_STATE_PENDING"  # other jobs are not hit
    with pytest.raises(exc):
        client.batches.cancel(name=job.name)
    assert state(client.batches.get(name=job.name)) == "JOB_STATE_PENDING"  # the failed cancel did nothing
    client.batches.cancel(name=job.name)
    assert state(client.batches.get(name=job.name)) == "JOB_STATE_CANCELLED"
    client.batches.cancel(name=other.name)


def test_call_fault_label_hang_does_the_work_then_answers_late(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    job = create(client, src, prefix, labels={"emulator_call_fault": "hang", "emulator_http_hang_seconds": "1",
                                              "emulator_queue_latency": "5"})
    impatient = make_client(emu.url, timeout_ms=200)
    with pytest.raises(Exception) as info:
        impatient.batches.cancel(name=job.name)
    assert "Timeout" in type(info.value).__name__
    assert state(client.batches.get(name=job.name)) == "JOB_STATE_CANCELLED"  # the timed-out cancel was done


def test_hang_fraction_delays_answers(client, emu):
    emu.set_switches(http_hang_fraction=1.0, http_hang_seconds=0.3, http_fault_calls=["list"])
    started = time.monotonic()
    client.batches.list(config=types.ListBatchJobsConfig(page_size=1))
    assert time.monotonic() - started >= 0.3


def test_admin_endpoint(emu):
    status, switches = http(f"{emu.url}/emulator/v1/switches")
    assert status == 200 and set(switches) == set(SPECS) and switches["run_latency"] == 0.0
    status, switches = http(f"{emu.url}/emulator/v1/switches", "POST", b'{"run_latency": 0.25, "job_fault": "fail"}')
    assert status == 200 and switches["run_latency"] == 0.25 and emu.switches()["job_fault"] == "fail"
    for bad in (b'{"nope": 1}', b'{"run_latency": -1}', b'{"http_error_code": 418}', b"{bad", b"[]",
                b'{"run_latency": 1, "job_fault": "boom"}'):
        status, payload = http(f"{emu.url}/emulator/v1/switches", "POST", bad)
        assert status == 400 and payload["error"]["status"] == "INVALID_ARGUMENT", bad
    assert emu.switches()["run_latency"] == 0.25  # a rejected change changes nothing
    status, switches = http(f"{emu.url}/emulator/v1/switches", "DELETE")
    assert status == 200 and switches["run_latency"] == 0.0 and switches["job_fault"] == "none"
    assert http(f"{emu.url}/emulator/v1/health") == (200, {"status": "ok"})
    status, stats = http(f"{emu.url}/emulator/v1/stats")
    assert status == 200 and stats["jobs"] == sum(stats["states"].values())


def test_admin_calls_are_never_faulted(emu):
    emu.set_switches(http_error_fraction=1.0)
    assert http(f"{emu.url}/emulator/v1/health")[0] == 200


def test_python_api_validates_switches(emu):
    with pytest.raises(SwitchError):
        emu.set_switches(retryable_fraction=2)
    with pytest.raises(SwitchError):
        emu.set_switches(unknown_switch=1)
    assert emu.set_switches({"queue_latency": "0.5"}, run_latency=1)["queue_latency"] == 0.5


def test_switches_at_start_apply_to_jobs(fake_gcs, bucket, prefix):
    with start_server(switches={"queue_latency": 0.3, "models": "gemini-*,my-model"}) as emulator:
        client = make_client(emulator.url)
        src = upload_jsonl(bucket, "in.jsonl", rows(1))
        job = create(client, src, prefix, model="my-model")
        time.sleep(0.15)
        assert state(client.batches.get(name=job.name)) == "JOB_STATE_PENDING"
        done = wait_done(client, job.name)
        assert (done.start_time - done.create_time).total_seconds() >= 0.3
        emulator.reset_switches()
        assert emulator.switches()["queue_latency"] == 0.3  # reset goes back to the start values
    with pytest.raises(SwitchError):
        start_server(switches={"run_latency": "slow"})


def test_run_latency_label_and_switch(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(4))
    job = create(client, src, prefix, labels={"emulator_run_latency": "0-4"})
    done = wait_done(client, job.name)
    assert (done.end_time - done.start_time).total_seconds() >= 0.4
    emu.set_switches(run_latency=0.3)
    done = wait_done(client, create(client, src, prefix + "-2").name)
    assert (done.end_time - done.start_time).total_seconds() >= 0.3
    # A label beats the switch in force.
    done = wait_done(client, create(client, src, prefix + "-3", labels={"emulator_run_latency": "0"}).name)
    assert (done.end_time - done.start_time).total_seconds() < 0.25


def test_switch_changes_do_not_touch_accepted_jobs(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    emu.set_switches(queue_latency=0.2)
    job = create(client, src, prefix)
    emu.set_switches(queue_latency=0, job_fault="fail")
    assert state(wait_done(client, job.name)) == "JOB_STATE_SUCCEEDED"
