"""What operators rely on: poll's Vertex call pattern, run-finished only after the report, job.slow warnings and
the structured log contract (one JSON object per line, stable event names, run/job/input labels)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared import layout, poll, submit
from shared.publisher import MemoryPublisher
from shared.vertex import JobInfo
from tests.unit.fakes import FakeVertex, make_pipeline, retryable
from tests.unit.flows import assert_accounting, lines, settle, upload

SEVERITIES = {"DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"}
LABELS = "logging.googleapis.com/labels"


def log_lines(out: str) -> list[dict[str, Any]]:
    entries = []
    for line in out.splitlines():
        entry = orjson.loads(line)  # raises if a line is not JSON
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == name]


# --- (a) job states come from list calls --------------------------------------------------------------------

class FilterRecordingVertex(FakeVertex):
    """FakeVertex that also keeps the filter of every list call."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.filters: list[str] = []

    def list(self, filter: str, page_size: int = 100):  # noqa: A002
        self.filters.append(filter)
        return super().list(filter, page_size)


def test_poll_learns_job_states_from_list_calls_never_one_get_per_job():
    p, store, _, publisher = make_pipeline(MAX_ROWS_PER_JOB=2, MAX_ACTIVE_JOBS=2, MAX_ATTEMPTS=2)
    vertex = p.vertex = FilterRecordingVertex(store)
    submit.handle_upload(p, upload(store, "incoming/many.jsonl", b"\n".join(lines(7))))
    submit.handle_upload(p, upload(store, "incoming/more.jsonl", b"\n".join(lines(3))))
    failed_once: set[str] = set()

    def outcome(line):  # one retry job on top of the six first attempts
        if line["gbp_row"] == "r3" and "r3" not in failed_once:
            failed_once.add("r3")
            return retryable()
        return None

    ticks = settle(p, vertex, publisher, rounds=20, outcome=outcome)
    assert_accounting(store, "many", list(range(1, 8)))
    assert_accounting(store, "more", [1, 2, 3])
    assert len(vertex.jobs) == 4 + 2 + 1
    assert "get" not in vertex.calls
    # At most one state listing per tick (one page here), and only when there were active jobs to look at.
    states = [f for f in vertex.filters if "create_time>=" in f]
    assert 0 < len(states) <= ticks
    assert all('labels.pipeline="gemini-batch-pipeline"' in f for f in states)
    # Parts that start together are looked up in one call by their jobs' display names, not one call each.
    look_ups = [f for f in vertex.filters if "create_time>=" not in f]
    assert look_ups and all(f.startswith('display_name="gemini-batch-pipeline-r') for f in look_ups)
    assert any(" OR " in f for f in look_ups)
    assert vertex.calls.count("find") < len(vertex.jobs) - len(look_ups)


# --- (b) run-finished is published only once the report exists ---------------------------------------------

class ReportCheckingPublisher(MemoryPublisher):
    """Records, at the moment of each run-finished publish, whether the report object is already stored."""

    def __init__(self, store) -> None:
        super().__init__()
        self.store = store
        self.report_at_publish: list[dict[str, Any] | None] = []

    def publish(self, topic: str, payload: dict[str, Any], **attributes: str) -> None:
        if topic == "run-finished":
            bucket, name = payload["report"].removeprefix("gs://").split("/", 1)
            data = self.store.read_bytes(bucket, name)
            self.report_at_publish.append(orjson.loads(data) if data is not None else None)
        super().publish(topic, payload, **attributes)


def test_run_finished_is_published_after_the_report_is_written():
    p, store, vertex, _ = make_pipeline(MAX_ROWS_PER_JOB=2)
    publisher = p.publisher = ReportCheckingPublisher(store)
    event = upload(store, "incoming/dir/done.jsonl", b"\n".join([*lines(3), b"{bad"]))
    submit.handle_upload(p, event)
    settle(p, vertex, publisher)
    report = assert_accounting(store, "dir/done", [1, 2, 3, 4])
    finished = [m[1] for m in publisher.messages if m[0] == "run-finished"]
    assert len(finished) == 1 and len(publisher.report_at_publish) == 1
    at_publish = publisher.report_at_publish[0]
    assert at_publish is not None, "run-finished was published before reports/dir/done.json existed"
    assert at_publish == report  # the complete, final report, not an earlier version
    message = finished[0]
    assert message["report"] == f"gs://out-bucket/{layout.report_name('dir/done')}"
    assert message["run"] == report["run"] == layout.run_id("in-bucket", event.name, event.generation)
    assert message["state"] == report["state"] == "partial" and message["rows"] == report["rows"]
    assert message["superseded"] is False


def test_a_file_without_jobs_also_announces_only_after_its_report():
    p, store, vertex, _ = make_pipeline()
    publisher = p.publisher = ReportCheckingPublisher(store)
    submit.handle_upload(p, upload(store, "incoming/junk.txt", b"not\njson\n"))
    assert not vertex.jobs
    assert len(publisher.report_at_publish) == 1 and publisher.report_at_publish[0] is not None
    assert publisher.report_at_publish[0]["state"] == "failed"


# --- (c) job.slow for a job running too long ----------------------------------------------------------------

class StartTimeVertex(FakeVertex):
    """FakeVertex whose jobs can carry a start time (the base fake reports none)."""

    def _info(self, name: str) -> JobInfo:
        return dataclasses.replace(super()._info(name), start_time=self.jobs[name].get("started"))


def test_poll_warns_about_a_job_running_longer_than_running_warn_seconds(capsys):
    p, store, _, _ = make_pipeline(PENDING_WARN_SECONDS=60, RUNNING_WARN_SECONDS=600)
    vertex = p.vertex = StartTimeVertex(store)
    event = upload(store, "incoming/long.jsonl", b"\n".join(lines(2)))
    submit.handle_upload(p, event)
    name = next(iter(vertex.jobs))
    job = vertex.jobs[name]
    now = datetime.fromtimestamp(p.clock(), UTC)
    job["state"] = "JOB_STATE_RUNNING"
    job["created"] = now - timedelta(seconds=700)
    # Created long ago (past the pending threshold) but running only briefly: no warning.
    job["started"] = now - timedelta(seconds=100)
    capsys.readouterr()
    poll.handle_tick(p)
    assert '"job.slow"' not in capsys.readouterr().out

    job["started"] = now - timedelta(seconds=650)
    poll.handle_tick(p)
    slow = events(log_lines(capsys.readouterr().out), "job.slow")
    assert len(slow) == 1
    warning = slow[0]
    assert warning["severity"] == "WARNING" and "running" in warning["message"]
    assert warning["state"] == "JOB_STATE_RUNNING" and warning["seconds"] > 600
    run = layout.run_id(event.bucket, event.name, event.generation)
    assert warning[LABELS]["run"] == run and warning[LABELS]["job"] == name.rsplit("/", 1)[-1]

    vertex.run(name)
    poll.handle_tick(p)
    assert '"job.slow"' not in capsys.readouterr().out  # a finished job is not slow


# --- (d) the structured log contract over a whole flow -------------------------------------------------------

def test_every_log_line_is_one_structured_json_object_with_labels_and_counts(capsys):
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=2, MAX_ATTEMPTS=2)
    body = b"\n".join([*lines(3), b"", b"{not json", *lines(2, start=6)]) + b"\n"  # rows 1-3, 5, 6, 7
    event = upload(store, "incoming/logs/flow.jsonl", body)
    capsys.readouterr()
    submit.handle_upload(p, event)
    settle(p, vertex, publisher, outcome=lambda line: retryable(429, "RESOURCE_EXHAUSTED")
           if line["gbp_row"] == "r2" else None)
    report = assert_accounting(store, "logs/flow", [1, 2, 3, 5, 6, 7])
    assert report["rows"]["failedByStage"] == {"validation": 1, "prediction": 1}

    entries = log_lines(capsys.readouterr().out)
    run = layout.run_id(event.bucket, event.name, event.generation)
    uri = "gs://in-bucket/incoming/logs/flow.jsonl"
    job_ids = {name.rsplit("/", 1)[-1] for name in vertex.jobs}
    for entry in entries:
        assert entry["severity"] in SEVERITIES, entry
        assert isinstance(entry["message"], str) and entry["message"], entry
        assert isinstance(entry["event"], str) and "." in entry["event"], entry
        if entry["event"] == "poll.tick":  # the poller's summary of a tick concerns no single run
            continue
        labels = entry.get(LABELS)
        assert isinstance(labels, dict) and labels.get("run") == run, entry
        assert all(isinstance(v, str) for v in labels.values()), entry
        if "job" in labels:
            assert labels["job"] in job_ids, entry
        if "input" in labels:
            assert labels["input"] == uri, entry

    def one(name: str) -> dict[str, Any]:
        found = events(entries, name)
        assert len(found) == 1, (name, found)
        return found[0]

    def with_input(entry: dict[str, Any]) -> dict[str, Any]:
        assert entry[LABELS]["input"] == uri, entry
        return entry

    received = with_input(one("run.received"))
    assert received["severity"] == "INFO" and received["generation"] == str(event.generation)
    staged = with_input(one("run.staged"))
    assert (staged["rows"], staged["failed"], staged["parts"]) == (6, 1, 3)
    assert staged["seconds"] >= staged["readSeconds"] + staged["writeSeconds"] - 0.002 >= -0.002  # (rounded)

    failed = [with_input(e) for e in events(entries, "rows.failed")]
    assert all(e["severity"] == "ERROR" for e in failed)
    validation = [e for e in failed if e.get("stage") == "validation"]
    assert len(validation) == 1 and validation[0]["failed"] == 1
    assert validation[0]["byReason"] == {"invalid_json": 1}
    prediction = [e for e in failed if e.get("stage") != "validation"]
    assert len(prediction) == 1 and prediction[0]["byStage"] == {"prediction": 1}
    assert prediction[0]["byReason"] == {"RESOURCE_EXHAUSTED": 1} and prediction[0][LABELS]["job"] in job_ids

    submitted = [with_input(e) for e in events(entries, "job.submitted")]
    assert len(submitted) == len(vertex.jobs) == 4  # three chunks, and the retry of the first
    assert {e[LABELS]["job"] for e in submitted} == job_ids
    assert sorted(e["rows"] for e in submitted) == [1, 1, 2, 2]

    job_finished = events(entries, "job.finished")
    assert {e[LABELS]["job"] for e in job_finished} == job_ids and len(job_finished) == 4
    assert all(e[LABELS]["run"] == run and e["state"] == "JOB_STATE_SUCCEEDED" for e in job_finished)
    for e in events(entries, "job.state"):
        assert e[LABELS]["run"] == run and e[LABELS]["job"] in job_ids

    collected = [with_input(e) for e in events(entries, "part.collected")]
    assert len(collected) == 4 and {e[LABELS]["job"] for e in collected} == job_ids
    assert sum(e["succeeded"] for e in collected) == report["rows"]["succeeded"] == 4
    assert sum(e["failed"] for e in collected) == 1 and sum(e["retried"] for e in collected) == 1
    for e in collected:  # its own timing: its passes within its seconds, its waits on storage within them too
        assert e["pass1Seconds"] + e["pass2Seconds"] <= e["seconds"] + 0.002
        assert 0 <= e["writeSeconds"] <= e["seconds"] + 0.002
    retried = events(entries, "rows.retried")
    assert len(retried) == 1 and retried[0]["rows"] == 1 and retried[0][LABELS]["run"] == run

    finished = with_input(one("run.finished"))
    assert finished["state"] == "partial" and finished["rows"] == report["rows"]
    assert finished["jobs"] == 4 and finished["tokens"] == report["tokens"]
    assert isinstance(finished["seconds"], int | float)
    order = [e["event"] for e in entries]
    assert order.index("run.received") < order.index("run.staged") < order.index("job.submitted")
    assert order.index("run.finished") > max(i for i, name in enumerate(order) if name == "part.collected")
