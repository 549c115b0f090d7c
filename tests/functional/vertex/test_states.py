"""Job life cycle: queueing on a bounded pool, expiry, whole-job faults and the importer's failures."""

from __future__ import annotations

import pytest

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
    wait_state,
)

pytestmark = pytest.mark.functional


@pytest.fixture
def one_worker(fake_gcs):
    """An emulator whose pool runs one job at a time."""
    emulator = start_server(workers=1)
    yield emulator
    emulator.stop()


def test_jobs_queue_while_the_pool_is_busy(one_worker, bucket, prefix):
    client = make_client(one_worker.url)
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    first = create(client, src, prefix + "/a", labels={"emulator_run_latency": "0-6"})
    wait_state(client, first.name, "JOB_STATE_RUNNING")
    second = create(client, src, prefix + "/b")
    assert state(second) == "JOB_STATE_PENDING"
    assert state(wait_state(client, second.name, "JOB_STATE_QUEUED")) == "JOB_STATE_QUEUED"
    assert state(wait_done(client, first.name)) == "JOB_STATE_SUCCEEDED"
    done = wait_done(client, second.name)
    assert state(done) == "JOB_STATE_SUCCEEDED"
    assert done.start_time >= client.batches.get(name=first.name).end_time


def test_queued_job_expires_after_queue_timeout(one_worker, bucket, prefix):
    client = make_client(one_worker.url)
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    blocker = create(client, src, prefix + "/a", labels={"emulator_run_latency": "3"})
    wait_state(client, blocker.name, "JOB_STATE_RUNNING")
    waiting = create(client, src, prefix + "/b", labels={"emulator_queue_timeout": "0-3"})
    done = wait_done(client, waiting.name)
    assert state(done) == "JOB_STATE_EXPIRED"
    assert done.start_time is None and done.end_time is not None and done.output_info is None
    client.batches.cancel(name=blocker.name)


def test_expire_fault_at_0_expires_in_the_queue(client, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    job = create(client, src, prefix, labels={"emulator_job_fault": "expire", "emulator_fault_at": "0",
                                              "emulator_queue_latency": "0-1"})
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_EXPIRED" and done.start_time is None and done.completion_stats is None
    assert done.output_info is None


def test_expire_fault_midway_exports_part(client, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(10))
    job = create(client, src, prefix, labels={"emulator_job_fault": "expire", "emulator_fault_at": "0-4",
                                              "emulator_export_every": "3"})
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_EXPIRED" and done.start_time is not None
    assert done.error.code == 4 and "expired" in done.error.message
    lines = output_lines(storage_client, done)
    assert sorted(line["custom_id"] for line in lines) == ["q0", "q1", "q2", "q3"]
    assert output_files(storage_client, done) == ["predictions-00001.jsonl", "predictions.jsonl"]
    stats = done.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (4, 0, 6)
    assert stats.successful_count + stats.failed_count + stats.incomplete_count == 10


def test_fail_fault_keeps_the_rows_exported_before_it(client, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(8))
    job = create(client, src, prefix, labels={"emulator_job_fault": "fail", "emulator_fault_at": "0-5",
                                              "emulator_export_every": "3"})
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_FAILED"
    assert done.error.code == 13 and done.error.message.startswith("System error")
    lines = output_lines(storage_client, done)
    assert len(lines) == 4 and {line["custom_id"] for line in lines} == {"q0", "q1", "q2", "q3"}
    assert output_files(storage_client, done) == ["predictions-00001.jsonl", "predictions.jsonl"]
    stats = done.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (4, 0, 4)


def test_cancel_fault_midway_exports_part(client, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(10))
    job = create(client, src, prefix, labels={"emulator_job_fault": "cancel", "emulator_fault_at": "0-3"})
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_CANCELLED" and done.error.code == 1
    assert sorted(line["custom_id"] for line in output_lines(storage_client, done)) == ["q0", "q1", "q2"]
    assert done.completion_stats.incomplete_count == 7


def test_partial_fault_is_partially_succeeded(client, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(4))
    job = create(client, src, prefix, labels={"emulator_job_fault": "partial", "emulator_fault_at": "0-75"})
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_PARTIALLY_SUCCEEDED" and done.error is None
    assert len(output_lines(storage_client, done)) == 3
    assert done.completion_stats.successful_count == 3 and done.completion_stats.incomplete_count == 1


def test_job_fault_switch_for_the_next_job_only(client, emu, bucket, prefix):
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    emu.set_switches(job_fault="fail", job_fault_jobs=1)
    first = create(client, src, prefix + "/a")
    second = create(client, src, prefix + "/b")
    assert emu.switches()["job_fault"] == "none"
    assert state(wait_done(client, first.name)) == "JOB_STATE_FAILED"
    assert state(wait_done(client, second.name)) == "JOB_STATE_SUCCEEDED"


def test_readonly_output_fails_with_code_7(client, emu, bucket, prefix, storage_client):
    src = upload_jsonl(bucket, "in.jsonl", rows(2))
    emu.set_switches(readonly_prefixes=[f"gs://{bucket.name}/out"])
    job = create(client, src, prefix)
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_FAILED" and done.error.code == 7
    assert done.error.message.startswith("Service account service-")
    assert "@gcp-sa-aiplatform.iam.gserviceaccount.com doesn't have sufficient permission " \
           f"storage.objects.create to write {done.output_info.gcs_output_directory}/predictions.jsonl" \
           in done.error.message
    assert output_files(storage_client, done) == []
    emu.set_switches(readonly_prefixes=[f"gs://{bucket.name}"])  # a bare bucket: that bucket only
    assert wait_done(client, create(client, src, prefix + "-b").name).error.code == 7
    emu.set_switches(readonly_prefixes=[f"gs://{bucket.name[:-1]}"])
    assert state(wait_done(client, create(client, src, prefix + "-c").name)) == "JOB_STATE_SUCCEEDED"
    emu.reset_switches()
    other = create(client, src, prefix + "-x", labels={"emulator_job_fault": "permission"})
    assert wait_done(client, other.name).error.code == 7


@pytest.mark.parametrize("which", ["input", "output"])
def test_missing_bucket_fails_with_code_9(client, bucket, prefix, which):
    src = upload_jsonl(bucket, "in.jsonl", rows(1))
    missing = f"no-such-bucket-{which}"
    if which == "input":
        src = f"gs://{missing}/in.jsonl"
    job = create(client, src, f"gs://{missing}/x" if which == "output" else prefix)
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_FAILED" and done.error.code == 9
    assert done.error.message.startswith(f"Failed to get GCS bucket location for {missing}.")


def test_missing_input_object_fails_the_import(client, bucket, prefix):
    job = create(client, f"gs://{bucket.name}/absent.jsonl", prefix)
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_FAILED" and done.error.code == 3
    assert done.error.message.startswith("Failed to import data. Please check 'Prepare input' section")


def _deep(levels: int) -> dict:
    value: dict = {"leaf": "x"}
    for _ in range(levels - 2):
        value = {"k": value}
    return value


GOOD = {"custom_id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}


@pytest.mark.parametrize("bad, detail", [
    ({"custom_id": 7, "request": GOOD["request"]}, "changed type from STRING to INTEGER"),
    ({"custom_id": "b", "request": {"contents": "not a list"}}, "changed type from ARRAY to STRING"),
    ({**GOOD, "extra": {"x": _deep(15)}}, "Schema nested too deeply, at least 16"),
    ({**GOOD, "meta": {"bad key": 1}}, 'Invalid field name "bad key"'),
    ({**GOOD, "$defs": 1}, 'Invalid field name "$defs"'),
    ({**GOOD, "request": {**GOOD["request"], "tools": [{"google_search": {}}]}},
     "Cannot store struct 'request.tools[].google_search' with no fields"),
    ("{not json", "Invalid JSON"),
    ("[1, 2]", "Each line must be a JSON object"),
])
def test_importer_rules_fail_the_whole_job(client, bucket, prefix, storage_client, bad, detail):
    src = upload_jsonl(bucket, "in.jsonl", [GOOD, GOOD, bad])
    job = create(client, src, prefix)
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_FAILED" and done.error.code == 3
    assert done.error.message.startswith("Failed to import data. Please check 'Prepare input' section")
    assert detail in done.error.message and "input line 3" in done.error.message
    assert output_files(storage_client, done) == []  # no row ran


@pytest.mark.parametrize("first, second, numeric, detail", [
    ("000000", "abc", "000000", "changed type from INTEGER to STRING"),
    ("abc", "000000", "000000", "changed type from STRING to INTEGER"),
    ("-2.50", "x1", "-2.50", "changed type from FLOAT to STRING"),
])
def test_numeric_looking_strings_are_numbers_to_the_importer(client, bucket, prefix, storage_client, first, second,
                                                             numeric, detail):
    """The importer coerces a string of digits to a number, so it cannot share a path with a real string."""
    lines = [{"id": first, **GOOD}, {"id": second, **GOOD}]
    done = wait_done(client, create(client, upload_jsonl(bucket, "in.jsonl", lines), prefix).name)
    assert state(done) == "JOB_STATE_FAILED" and done.error.code == 3
    message = done.error.message
    assert f"Field id has {detail}" in message and "input line 2" in message
    assert f'numeric-looking string "{numeric}"' in message
    assert output_files(storage_client, done) == []


@pytest.mark.parametrize("values", [("000000", 7), ("000000", "42", 1.5, "-3.25"), (7, "000000"), ("1.5", 2)])
def test_numeric_looking_strings_share_a_path_with_numbers(client, bucket, prefix, values):
    lines = [{"id": value, **GOOD} for value in values]
    done = wait_done(client, create(client, upload_jsonl(bucket, "in.jsonl", lines), prefix).name)
    assert state(done) == "JOB_STATE_SUCCEEDED" and done.completion_stats.successful_count == len(values)


def test_compatible_types_pass_the_importer(client, bucket, prefix, storage_client):
    lines = [{**GOOD, "score": 1, "note": None}, {**GOOD, "score": 2.5, "note": "n"},
             {**GOOD, "extra": {"x": _deep(14)}}]
    job = create(client, upload_jsonl(bucket, "in.jsonl", lines), prefix)
    done = wait_done(client, job.name)
    assert state(done) == "JOB_STATE_SUCCEEDED" and done.completion_stats.successful_count == 3
