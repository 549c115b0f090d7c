"""Partial output of a FAILED or PARTIALLY_SUCCEEDED job is harvested: the rows exported before the fault are
results, the others are retried or end as `job` / `missing` errors once MAX_ATTEMPTS is spent."""

from __future__ import annotations

from shared import poll, scheduler, submit
from tests.unit.fakes import make_pipeline, retryable
from tests.unit.flows import assert_accounting, deliver_finished, jsonl, lines, settle, upload

TEN = b"\n".join(lines(10))


def finish(p, vertex, publisher, name: str, seen: int = 0, **run_kwargs) -> int:
    """End one Vertex job as told, let poll announce it and collect take it."""
    vertex.run(name, **run_kwargs)
    poll.handle_tick(p)
    return deliver_finished(p, publisher, seen)


def job_states(report: dict) -> list[tuple[str, str]]:
    return [(j["part"], j["state"]) for j in report["jobs"]]


def test_failed_job_keeps_its_exported_rows_and_retries_the_rest():
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=2)
    submit.handle_upload(p, upload(store, "incoming/failed.jsonl", TEN))
    first = next(iter(vertex.jobs))
    seen = finish(p, vertex, publisher, first, state="JOB_STATE_FAILED", error=(13, "System error."), keep=0.5)
    assert len(vertex.jobs) == 2
    second = list(vertex.jobs)[1]
    assert [line["gbp_row"] for line in vertex.staged_lines(second)] == ["r6", "r7", "r8", "r9", "r10"]
    finish(p, vertex, publisher, second, seen)
    report = assert_accounting(store, "failed", list(range(1, 11)))
    assert report["state"] == "succeeded" and report["retriedRows"] == 5
    attempts = {r["row"]: r["attempts"] for r in jsonl(store, "results/failed.jsonl")}
    assert attempts == {**dict.fromkeys(range(1, 6), 1), **dict.fromkeys(range(6, 11), 2)}
    assert {r["row"]: r["text"] for r in jsonl(store, "results/failed.jsonl")}[3] == "answer to q3"
    assert report["tokens"]["total"] == 10 * 8  # the harvested rows' usage is counted too
    assert job_states(report) == [("p0001-a1", "JOB_STATE_FAILED"), ("p0001-a2", "JOB_STATE_SUCCEEDED")]
    assert not scheduler.read(p)["active"] and not scheduler.read(p)["queue"]


def test_failed_job_with_attempts_spent_keeps_its_exported_rows_and_fails_the_rest_as_job_errors():
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=1)
    submit.handle_upload(p, upload(store, "incoming/failed-once.jsonl", TEN))
    finish(p, vertex, publisher, next(iter(vertex.jobs)), state="JOB_STATE_FAILED",
           error=(13, "System error."), keep=0.3)
    assert len(vertex.jobs) == 1
    report = assert_accounting(store, "failed-once", list(range(1, 11)))
    assert report["state"] == "partial"
    assert sorted(r["row"] for r in jsonl(store, "results/failed-once.jsonl")) == [1, 2, 3]
    errors = jsonl(store, "errors/failed-once.jsonl")
    assert [e["row"] for e in errors] == list(range(4, 11))
    assert {(e["stage"], e["code"], e["status"], e["attempts"]) for e in errors} == {("job", 500, "INTERNAL", 1)}
    assert all("FAILED" in e["message"] and e["request"]["contents"] for e in errors)
    assert report["rows"]["failedByStage"] == {"job": 7} and report["retriedRows"] == 0


def test_failed_job_with_a_permanent_error_keeps_its_exported_rows_without_retrying_the_rest():
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=3)
    submit.handle_upload(p, upload(store, "incoming/denied.jsonl", TEN))
    finish(p, vertex, publisher, next(iter(vertex.jobs)), state="JOB_STATE_FAILED",
           error=(7, "Failed to export data: permission denied."), keep=0.2)
    assert len(vertex.jobs) == 1  # a permission error would repeat: no retry job
    report = assert_accounting(store, "denied", list(range(1, 11)))
    assert sorted(r["row"] for r in jsonl(store, "results/denied.jsonl")) == [1, 2]
    errors = jsonl(store, "errors/denied.jsonl")
    assert {(e["stage"], e["code"], e["status"], e["retryable"]) for e in errors} == \
        {("job", 403, "PERMISSION_DENIED", False)}
    assert report["rows"]["failedByReason"] == {"PERMISSION_DENIED": 8}


def test_partially_succeeded_job_is_harvested_then_retried_until_max_attempts():
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=2)
    submit.handle_upload(p, upload(store, "incoming/partial.jsonl", TEN))
    first = next(iter(vertex.jobs))
    failed_once: set[str] = set()

    def outcome(line):
        row = line["gbp_row"]
        if row == "r2":
            return 'Bad Request: {"error": {"code": 400, "message": "Please use a valid role.", ' \
                   '"status": "INVALID_ARGUMENT"}}'
        if row == "r5" and row not in failed_once:
            failed_once.add(row)
            return retryable()
        return None

    # Rows 1-6 are exported (2 failed for good, 5 retryably), 7-10 never came back.
    seen = finish(p, vertex, publisher, first, state="JOB_STATE_PARTIALLY_SUCCEEDED", keep=0.6, outcome=outcome)
    assert len(vertex.jobs) == 2
    second = list(vertex.jobs)[1]
    assert [line["gbp_row"] for line in vertex.staged_lines(second)] == ["r5", "r7", "r8", "r9", "r10"]
    # The retry job is cut short too: rows 9 and 10 are missing after the last attempt.
    finish(p, vertex, publisher, second, seen, state="JOB_STATE_PARTIALLY_SUCCEEDED", keep=0.6, outcome=outcome)
    assert len(vertex.jobs) == 2

    report = assert_accounting(store, "partial", list(range(1, 11)))
    assert report["state"] == "partial"
    attempts = {r["row"]: r["attempts"] for r in jsonl(store, "results/partial.jsonl")}
    assert attempts == {1: 1, 3: 1, 4: 1, 6: 1, 5: 2, 7: 2, 8: 2}
    errors = {e["row"]: e for e in jsonl(store, "errors/partial.jsonl")}
    assert (errors[2]["stage"], errors[2]["code"], errors[2]["retryable"], errors[2]["attempts"]) == \
        ("prediction", 400, False, 1)
    for row in (9, 10):
        assert (errors[row]["stage"], errors[row]["retryable"], errors[row]["attempts"]) == ("missing", True, 2)
        assert errors[row]["request"]["contents"][0]["parts"][0]["text"] == f"q{row}"
    assert report["rows"]["failedByStage"] == {"prediction": 1, "missing": 2}
    assert report["retriedRows"] == 5
    assert job_states(report) == [("p0001-a1", "JOB_STATE_PARTIALLY_SUCCEEDED"),
                                  ("p0001-a2", "JOB_STATE_PARTIALLY_SUCCEEDED")]
    finished = [m[1] for m in publisher.messages if m[0] == "run-finished"]
    assert len(finished) == 1 and finished[0]["rows"] == report["rows"]


def test_partial_output_across_split_parts_is_harvested_part_by_part():
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=4, MAX_ATTEMPTS=1)
    submit.handle_upload(p, upload(store, "incoming/split.jsonl", TEN))  # parts of 4, 4 and 2 rows
    assert len(vertex.jobs) == 3
    a, b, c = list(vertex.jobs)
    vertex.run(a, state="JOB_STATE_FAILED", error=(13, "System error."), keep=0.5)
    vertex.run(b, state="JOB_STATE_PARTIALLY_SUCCEEDED", keep=0.75)
    vertex.run(c)
    settle(p, vertex, publisher)
    report = assert_accounting(store, "split", list(range(1, 11)))
    assert sorted(r["row"] for r in jsonl(store, "results/split.jsonl")) == [1, 2, 5, 6, 7, 9, 10]
    stages = {e["row"]: e["stage"] for e in jsonl(store, "errors/split.jsonl")}
    assert stages == {3: "job", 4: "job", 8: "missing"}
    assert report["rows"]["failedByStage"] == {"job": 2, "missing": 1}
