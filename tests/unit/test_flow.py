"""The run lifecycle (submit -> poll -> collect -> finalize) over in-memory storage and a fake Vertex."""

from __future__ import annotations

import orjson
import pytest

from shared import collect, layout, poll, scheduler, submit
from tests.unit.fakes import make_pipeline, retryable
from tests.unit.flows import GOOD, assert_accounting, deliver_finished, jsonl, lines, settle, upload


def test_happy_path_with_a_bad_line_and_a_blank_line():
    p, store, vertex, publisher = make_pipeline()
    body = b"\n".join([GOOD % 1, b"", b"{not json", GOOD % 4]) + b"\n"
    assert submit.handle_upload(p, upload(store, "incoming/a/b.jsonl", body)) == "staged"
    assert len(vertex.jobs) == 1
    settle(p, vertex, publisher)
    report = assert_accounting(store, "a/b", [1, 3, 4])
    assert report["state"] == "partial"
    assert report["rows"]["failedByReason"] == {"invalid_json": 1}
    errors = jsonl(store, "errors/a/b.jsonl")
    assert errors[0]["line"] == "{not json" and errors[0]["stage"] == "validation"
    results = jsonl(store, "results/a/b.jsonl")
    assert {r["text"] for r in results} == {"answer to q1", "answer to q4"}
    assert [m for m in publisher.messages if m[0] == "run-finished"][0][1]["state"] == "partial"


def test_keys_round_trip_with_their_json_types():
    p, store, vertex, publisher = make_pipeline()
    body = b"\n".join([
        b'{"key": "q-1", "request": {"contents": [{"parts": [{"text": "a"}]}]}}',
        b'{"key": 7, "request": {"contents": [{"parts": [{"text": "b"}]}]}}',
        b'{"request": {"contents": [{"parts": [{"text": "c"}]}]}}',
    ])
    submit.handle_upload(p, upload(store, "incoming/k.jsonl", body))
    settle(p, vertex, publisher)
    assert_accounting(store, "k", [1, 2, 3])
    by_row = {r["row"]: r for r in jsonl(store, "results/k.jsonl")}
    assert by_row[1]["key"] == "q-1" and by_row[2]["key"] == 7 and "key" not in by_row[3]
    staged = vertex.staged_lines(next(iter(vertex.jobs)))
    assert all(isinstance(v, str) for line in staged for k, v in line.items() if k != "request")


def test_split_by_rows_and_the_active_job_cap_across_runs():
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=2, MAX_ACTIVE_JOBS=2)
    submit.handle_upload(p, upload(store, "incoming/one.jsonl", b"\n".join(lines(5))))
    submit.handle_upload(p, upload(store, "incoming/two.jsonl", b"\n".join(lines(3))))
    state = scheduler.read(p)
    assert len(state["active"]) == 2 and len(state["queue"]) == 3  # 3 + 2 parts, 2 slots
    assert state["queue"][0]["q"].endswith("p0003-a1")  # FIFO: the first run's last part before the second run
    for _ in range(10):
        for name, job in list(vertex.jobs.items()):
            if job["state"] == "JOB_STATE_PENDING":
                vertex.run(name)
        poll.handle_tick(p)
        assert len(scheduler.read(p)["active"]) <= 2
    deliver_finished(p, publisher)
    assert len(vertex.jobs) == 5
    assert_accounting(store, "one", [1, 2, 3, 4, 5])
    assert_accounting(store, "two", [1, 2, 3])


def test_split_by_bytes():
    p, store, vertex, publisher = make_pipeline(MAX_BYTES_PER_JOB=1024)
    event = upload(store, "incoming/big.jsonl", b"\n".join(lines(40)))
    submit.handle_upload(p, event)
    record = store.read_json("out-bucket", layout.run_state_name(layout.run_id(event.bucket, event.name,
                                                                                event.generation)))
    parts = record.value["parts"]
    assert len(parts) > 1 and all(part["bytes"] <= 1024 for part in parts.values())
    assert sum(part["rows"] for part in parts.values()) == 40
    settle(p, vertex, publisher)
    assert_accounting(store, "big", list(range(1, 41)))


def test_duplicate_upload_event_never_creates_a_second_job():
    p, store, vertex, publisher = make_pipeline()
    event = upload(store, "incoming/d.jsonl", b"\n".join(lines(3)))
    assert submit.handle_upload(p, event) == "staged"
    assert submit.handle_upload(p, event) == "duplicate"
    assert vertex.calls.count("create") == 1
    settle(p, vertex, publisher)
    assert submit.handle_upload(p, event) == "duplicate"
    assert vertex.calls.count("create") == 1


def test_replayed_job_finished_does_not_duplicate_rows():
    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/r.jsonl", b"\n".join(lines(4))))
    settle(p, vertex, publisher)
    before = store.read_bytes("out-bucket", "results/r.jsonl")
    deliver_finished(p, publisher)  # every job-finished once more
    assert store.read_bytes("out-bucket", "results/r.jsonl") == before
    assert_accounting(store, "r", [1, 2, 3, 4])
    assert len([m for m in publisher.messages if m[0] == "run-finished"]) == 1


def test_retryable_rows_get_another_job_until_max_attempts():
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=3)
    submit.handle_upload(p, upload(store, "incoming/retry.jsonl", b"\n".join(lines(6))))
    always_fails = {"q2"}
    fails_once: set[str] = {"q3", "q5"}

    def outcome(line):
        text = line["request"]["contents"][0]["parts"][0]["text"]
        if text in always_fails:
            return retryable(429, "RESOURCE_EXHAUSTED")
        if text in fails_once:
            fails_once.discard(text)
            return retryable()
        return None

    settle(p, vertex, publisher, outcome=outcome)
    report = assert_accounting(store, "retry", [1, 2, 3, 4, 5, 6])
    assert len(vertex.jobs) == 3  # attempts 1, 2 and 3 of the one chunk
    assert report["retriedRows"] == 3 + 1
    errors = jsonl(store, "errors/retry.jsonl")
    assert [(e["row"], e["stage"], e["code"], e["retryable"], e["attempts"]) for e in errors] == \
        [(2, "prediction", 429, True, 3)]
    assert errors[0]["request"]["contents"][0]["parts"][0]["text"] == "q2"  # re-droppable as input
    attempts = {r["row"]: r["attempts"] for r in jsonl(store, "results/retry.jsonl")}
    assert attempts == {1: 1, 3: 2, 4: 1, 5: 2, 6: 1}


def test_partial_output_of_a_cancelled_job_is_harvested_and_the_rest_retried():
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=2)
    submit.handle_upload(p, upload(store, "incoming/c.jsonl", b"\n".join(lines(10))))
    first = next(iter(vertex.jobs))
    vertex.run(first, state="JOB_STATE_CANCELLED", keep=0.5)
    poll.handle_tick(p)
    deliver_finished(p, publisher)
    assert len(vertex.jobs) == 2  # the retry job for the 5 rows that never came back
    second = list(vertex.jobs)[1]
    assert len(vertex.staged_lines(second)) == 5
    vertex.run(second, state="JOB_STATE_EXPIRED", keep=0.4)
    settle(p, vertex, publisher)
    report = assert_accounting(store, "c", list(range(1, 11)))
    assert report["rows"]["succeeded"] == 7
    assert report["rows"]["failedByStage"] == {"missing": 3}


def test_job_failing_at_import_sends_its_rows_to_errors_without_retry():
    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/f.jsonl", b"\n".join(lines(3))))
    vertex.run(next(iter(vertex.jobs)), state="JOB_STATE_FAILED", error=(3, "Failed to import data."), keep=0)
    settle(p, vertex, publisher)
    report = assert_accounting(store, "f", [1, 2, 3])
    assert report["state"] == "failed"
    errors = jsonl(store, "errors/f.jsonl")
    assert {(e["stage"], e["code"], e["status"], e["retryable"]) for e in errors} == \
        {("job", 400, "INVALID_ARGUMENT", False)}
    assert len(vertex.jobs) == 1


def test_unknown_model_from_object_metadata_fails_the_rows_with_the_vertex_error():
    p, store, vertex, publisher = make_pipeline()
    vertex.create_faults = ["rejected"]
    submit.handle_upload(p, upload(store, "incoming/m.jsonl", b"\n".join(lines(2)), {"model": "gemini-nope"}))
    deliver_finished(p, publisher)
    report = assert_accounting(store, "m", [1, 2])
    assert report["model"] == "gemini-nope" and report["rows"]["failedByReason"] == {"NOT_FOUND": 2}
    assert not scheduler.read(p)["active"]


def test_ambiguous_create_finds_the_job_by_label_instead_of_creating_twice():
    p, store, vertex, publisher = make_pipeline()
    vertex.create_faults = ["ambiguous-created"]
    submit.handle_upload(p, upload(store, "incoming/amb.jsonl", b"\n".join(lines(2))))
    assert len(vertex.jobs) == 1 and vertex.calls.count("create") == 1
    settle(p, vertex, publisher)
    assert_accounting(store, "amb", [1, 2])


def test_throttled_create_keeps_the_part_queued_for_the_next_tick():
    p, store, vertex, publisher = make_pipeline()
    vertex.create_faults = ["throttled"]
    submit.handle_upload(p, upload(store, "incoming/t.jsonl", b"\n".join(lines(2))))
    assert not vertex.jobs and len(scheduler.read(p)["queue"]) == 1
    settle(p, vertex, publisher)
    assert_accounting(store, "t", [1, 2])


def test_a_reservation_left_by_a_crash_is_adopted_by_the_poller():
    p, store, vertex, publisher = make_pipeline(STUCK_CREATE_SECONDS=5)
    vertex.create_faults = ["ambiguous-lost"] * 4
    submit.handle_upload(p, upload(store, "incoming/s.jsonl", b"\n".join(lines(2))))
    assert not vertex.jobs and len(scheduler.read(p)["active"]) == 1  # a reservation, and no job
    for _ in range(10):  # the fake clock advances one second per reading
        poll.handle_tick(p)
    assert len(vertex.jobs) == 1
    settle(p, vertex, publisher)
    assert_accounting(store, "s", [1, 2])


def test_file_without_usable_rows_still_gets_a_report():
    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/notes.txt", b"hello\nworld\n"))
    report = assert_accounting(store, "notes.txt", [1, 2])
    assert report["state"] == "failed" and "not a JSONL file" in report["note"]
    submit.handle_upload(p, upload(store, "incoming/empty.jsonl", b"\n\n"))
    report = assert_accounting(store, "empty", [])
    assert report["rows"]["total"] == 0 and store.read_bytes("out-bucket", "results/empty.jsonl") == b""
    assert not vertex.jobs


@pytest.mark.parametrize("name", ["other/x.jsonl", "incoming/", "results/incoming/x.jsonl"])
def test_objects_outside_the_input_prefix_are_ignored(name):
    p, store, vertex, publisher = make_pipeline()
    assert submit.handle_upload(p, upload(store, name, GOOD % 1)) == "ignored"
    assert not list(store.list_names("out-bucket", ""))


def test_an_older_generation_finishing_last_does_not_replace_newer_outputs():
    p, store, vertex, publisher = make_pipeline()
    old = upload(store, "incoming/same.jsonl", b"\n".join(lines(2)))
    submit.handle_upload(p, old)
    old_job = next(iter(vertex.jobs))
    new = upload(store, "incoming/same.jsonl", b"\n".join(lines(3)))
    # The old generation is gone from the bucket now, but its run was staged before the overwrite.
    submit.handle_upload(p, new)
    new_job = list(vertex.jobs)[1]
    vertex.run(new_job)
    poll.handle_tick(p)
    seen = deliver_finished(p, publisher)
    assert_accounting(store, "same", [1, 2, 3])
    vertex.run(old_job)
    poll.handle_tick(p)
    deliver_finished(p, publisher, seen)
    report = assert_accounting(store, "same", [1, 2, 3])
    assert report["input"]["generation"] == str(new.generation)
    finished = [m[1] for m in publisher.messages if m[0] == "run-finished"]
    assert [m["superseded"] for m in finished] == [False, True]


def test_poll_warns_about_jobs_waiting_or_running_too_long(capsys):
    from datetime import UTC, datetime, timedelta

    p, store, vertex, publisher = make_pipeline(PENDING_WARN_SECONDS=60, RUNNING_WARN_SECONDS=120)
    submit.handle_upload(p, upload(store, "incoming/slow.jsonl", b"\n".join(lines(2))))
    job = vertex.jobs[next(iter(vertex.jobs))]
    now = datetime.fromtimestamp(p.clock(), UTC)
    job["created"] = now - timedelta(seconds=61)
    capsys.readouterr()
    poll.handle_tick(p)
    slow = [orjson.loads(x) for x in capsys.readouterr().out.splitlines() if '"job.slow"' in x]
    assert len(slow) == 1 and slow[0]["severity"] == "WARNING" and "waiting" in slow[0]["message"]
    job["created"] = now - timedelta(seconds=30)
    poll.handle_tick(p)
    assert '"job.slow"' not in capsys.readouterr().out


def test_an_older_run_still_writing_makes_the_newer_one_wait():
    from shared import finalize as fin

    p, store, vertex, publisher = make_pipeline()
    old = upload(store, "incoming/lease.jsonl", b"\n".join(lines(1)))
    old_run = layout.run_id(old.bucket, old.name, old.generation)
    new = upload(store, "incoming/lease.jsonl", b"\n".join(lines(2)))
    # The old generation's run holds the publishing lease (it is composing right now).
    store.write_json("out-bucket", layout.latest_name("in-bucket", "incoming/lease.jsonl"),
                     {"generation": old.generation, "run": old_run, "publishing": True, "since": p.clock()},
                     if_generation_match=0)
    submit.handle_upload(p, new)
    vertex.run(next(iter(vertex.jobs)))
    poll.handle_tick(p)
    with pytest.raises(fin.OutputsBusy):
        deliver_finished(p, publisher)
    assert store.read_bytes("out-bucket", "reports/lease.json") is None
    pointer = layout.latest_name("in-bucket", "incoming/lease.jsonl")
    store.write_json("out-bucket", pointer, {"generation": old.generation, "run": old_run, "publishing": False},
                     if_generation_match=store.read_json("out-bucket", pointer).generation)
    deliver_finished(p, publisher)  # the platform's redelivery
    assert_accounting(store, "lease", [1, 2])


def test_collect_dying_after_recording_the_retry_part_is_repaired_by_the_replay(monkeypatch):
    import shared.collect as collect_module

    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/crash.jsonl", b"\n".join(lines(3))))
    vertex.run(next(iter(vertex.jobs)), outcome=lambda line: retryable() if "q2" in str(line) else None)
    poll.handle_tick(p)

    def killed(*args):
        raise RuntimeError("instance killed right after the run record was written")

    monkeypatch.setattr(collect_module, "resume", killed)
    with pytest.raises(RuntimeError):
        deliver_finished(p, publisher)
    assert not scheduler.read(p)["queue"] and len(vertex.jobs) == 1  # the retry part is not queued yet
    monkeypatch.undo()
    deliver_finished(p, publisher)  # redelivered: the part is collected, resume() queues its retry
    assert len(vertex.jobs) == 2
    settle(p, vertex, publisher)
    assert_accounting(store, "crash", [1, 2, 3])


def test_a_late_duplicate_collect_never_runs_a_part_again():
    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/late.jsonl", b"\n".join(lines(2))))
    settle(p, vertex, publisher, outcome=lambda line: retryable() if "q1" in str(line) and
           line["gbp_row"] == "r1" and len(vertex.jobs) == 1 else None)
    assert_accounting(store, "late", [1, 2])
    jobs = len(vertex.jobs)
    run = next(iter(store.list_names("out-bucket", "state/runs/")))
    record = store.read_json("out-bucket", run).value
    # A stale scheduler entry for the retry part, as a slow duplicate collect would leave it.
    scheduler.enqueue(p, record, ["p0001-a2"])
    assert scheduler.drain(p) == 0 and len(vertex.jobs) == jobs
    assert not scheduler.read(p)["active"]


def test_only_one_poller_adopts_a_stuck_reservation():
    p, store, vertex, publisher = make_pipeline(STUCK_CREATE_SECONDS=5)
    vertex.create_faults = ["ambiguous-lost"] * 4
    submit.handle_upload(p, upload(store, "incoming/adopt.jsonl", b"\n".join(lines(1))))
    qid = next(iter(scheduler.read(p)["active"]))
    for _ in range(6):
        p.clock()
    first, second = scheduler.claim_stuck(p, qid), scheduler.claim_stuck(p, qid)
    assert first and second is None
    assert scheduler.start_job(p, qid, "someone-elses-token", adopt=True) == "lost"
    assert scheduler.start_job(p, qid, first, adopt=True) in ("created", "found")
    assert len(vertex.jobs) == 1


def test_a_row_exported_as_failed_and_as_succeeded_counts_as_succeeded():
    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/twice.jsonl", b"\n".join(lines(2))))
    name = next(iter(vertex.jobs))
    vertex.run(name)
    prefix = vertex.jobs[name]["dest"][5:].split("/", 1)[1]
    staged = vertex.staged_lines(name)[0]
    failed = {**staged, "status": retryable(), "processed_time": "2026-11-21T09:00:00.000+00:00"}
    store.put("out-bucket", f"{prefix}/prediction-model-2026-11-21T10:00:00.000000Z/a-first.jsonl",
              orjson.dumps(failed) + b"\n")
    settle(p, vertex, publisher)
    report = assert_accounting(store, "twice", [1, 2])
    assert report["rows"]["succeeded"] == 2 and report["retriedRows"] == 0 and len(vertex.jobs) == 1


def test_a_short_vertex_outage_does_not_hold_the_slots_until_the_stuck_timeout():
    """Creates that stay ambiguous leave an orphan reservation the next poll adopts at once; while Vertex is
    unreachable nothing else is tried, and once it answers every part starts (STUCK_CREATE_SECONDS stays 600)."""
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=1)
    vertex.create_faults = ["ambiguous-lost"] * 12  # three functions' worth of creates fail
    submit.handle_upload(p, upload(store, "incoming/outage.jsonl", b"\n".join(lines(3))))
    state = scheduler.read(p)
    assert vertex.calls.count("create") == 4  # the first part only: the others wait in the queue
    assert len(state["queue"]) == 2
    assert [e["orphan"] for e in state["active"].values()] == [True]
    poll.handle_tick(p)
    poll.handle_tick(p)
    assert not vertex.jobs and vertex.calls.count("create") == 12 and len(scheduler.read(p)["queue"]) == 2
    poll.handle_tick(p)  # Vertex answers again: the orphan is found-or-created, the queue drains
    assert len(vertex.jobs) == 3 and not scheduler.read(p)["queue"]
    settle(p, vertex, publisher)
    assert_accounting(store, "outage", [1, 2, 3])
    assert len(vertex.jobs) == 3


def test_overlapping_collects_of_one_part_log_its_failures_once(monkeypatch, capsys):
    """Two deliveries of one job-finished racing: both harvest, only the one whose state change lands logs the
    counts (log-based metrics count each row once) and moves the run on; the other answers duplicate."""
    p, store, vertex, publisher = make_pipeline()
    bad = b'{"request": {"contents": [{"role": "user", "parts": [{"text": "q9"}]}]}}'
    submit.handle_upload(p, upload(store, "incoming/race.jsonl", b"\n".join([*lines(2), bad])))
    rejected = 'Bad Request: {"error": {"code": 400, "message": "no", "status": "INVALID_ARGUMENT"}}'
    vertex.run(next(iter(vertex.jobs)), outcome=lambda line: rejected if "q9" in str(line) else None)
    poll.handle_tick(p)
    payload = next(m[1] for m in publisher.messages if m[0] == "job-finished")
    real_harvest = collect._harvest
    outcomes = []

    def overlapped(*args, **kwargs):
        monkeypatch.setattr(collect, "_harvest", real_harvest)
        # The second delivery runs to the end while the first is still reading the output.
        outcomes.append(collect.handle_job_finished(p, collect.JobFinished.from_payload(payload)))
        return real_harvest(*args, **kwargs)

    monkeypatch.setattr(collect, "_harvest", overlapped)
    capsys.readouterr()
    outcomes.append(collect.handle_job_finished(p, collect.JobFinished.from_payload(payload)))
    assert outcomes == ["collected", "duplicate"]
    events = [orjson.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert events.count("rows.failed") == 1 and events.count("part.collected") == 1
    assert_accounting(store, "race", [1, 2, 3])
    assert len([m for m in publisher.messages if m[0] == "run-finished"]) == 1


def test_a_duplicate_finalize_of_an_old_run_never_composes_over_a_newer_generation(monkeypatch):
    """Two deliveries finalize the old run at once. The lease is held by one invocation, so the second waits
    (OutputsBusy, redelivered later) instead of composing after the first released the lease, when the newer
    generation may already have published."""
    from shared import finalize as fin

    p, store, vertex, publisher = make_pipeline()
    old = upload(store, "incoming/dup.jsonl", b"\n".join(lines(1)))
    submit.handle_upload(p, old)
    vertex.run(next(iter(vertex.jobs)))
    poll.handle_tick(p)
    old_run = layout.run_id(old.bucket, old.name, old.generation)
    real_compose = store.compose
    busy = []

    def compose_with_a_duplicate(*args, **kwargs):
        monkeypatch.setattr(store, "compose", real_compose)
        with pytest.raises(fin.OutputsBusy) as exc:
            fin.finalize(p, old_run)  # the duplicate delivery, while the first one is composing
        busy.append(str(exc.value))
        return real_compose(*args, **kwargs)

    monkeypatch.setattr(store, "compose", compose_with_a_duplicate)
    deliver_finished(p, publisher)
    assert busy and "another delivery of this run" in busy[0]
    assert_accounting(store, "dup", [1])
    # The newer generation publishes; the duplicate's redelivery finds its run done and writes nothing.
    new = upload(store, "incoming/dup.jsonl", b"\n".join(lines(3)))
    submit.handle_upload(p, new)
    settle(p, vertex, publisher)
    fin.finalize(p, old_run)
    report = assert_accounting(store, "dup", [1, 2, 3])
    assert report["input"]["generation"] == str(new.generation)


def test_the_poller_labels_job_events_with_the_input(capsys):
    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/labels.jsonl", b"\n".join(lines(2))))
    capsys.readouterr()
    settle(p, vertex, publisher)
    events = {e["event"]: e for e in map(orjson.loads, capsys.readouterr().out.splitlines())}
    for name in ("job.state", "job.finished"):
        labels = events[name]["logging.googleapis.com/labels"]
        assert labels["input"] == "gs://in-bucket/incoming/labels.jsonl", name
        assert labels["run"] and labels["job"], name


def test_tallies_that_do_not_add_up_are_logged_as_an_error(capsys):
    p, store, vertex, publisher = make_pipeline()
    submit.handle_upload(p, upload(store, "incoming/sum.jsonl", b"\n".join(lines(2))))
    run = next(iter(store.list_names("out-bucket", "state/runs/")))
    found = store.read_json("out-bucket", run)
    store.write_json("out-bucket", run, {**found.value, "total": 3}, if_generation_match=found.generation)
    capsys.readouterr()
    settle(p, vertex, publisher)
    bad = [e for e in map(orjson.loads, capsys.readouterr().out.splitlines()) if e["event"] == "run.unbalanced"]
    assert len(bad) == 1 and bad[0]["severity"] == "ERROR"
    assert "3 rows but 2 succeeded and 0 failed" in bad[0]["message"]


def test_a_delivery_whose_lease_was_taken_over_by_its_own_run_leaves_the_finish_to_it(monkeypatch):

    p, store, vertex, publisher = make_pipeline()
    event = upload(store, "incoming/over.jsonl", b"\n".join(lines(1)))
    submit.handle_upload(p, event)
    vertex.run(next(iter(vertex.jobs)))
    poll.handle_tick(p)
    run = layout.run_id(event.bucket, event.name, event.generation)
    pointer = layout.latest_name("in-bucket", "incoming/over.jsonl")
    real_compose = store.compose

    def stall_past_the_lease(*args, **kwargs):
        monkeypatch.setattr(store, "compose", real_compose)
        # This delivery stalls past the lease; another delivery of the same run takes the lease over.
        cur = store.read_json("out-bucket", pointer)
        store.write_json("out-bucket", pointer, {**cur.value, "token": "the-other-delivery"},
                         if_generation_match=cur.generation)
        return real_compose(*args, **kwargs)

    monkeypatch.setattr(store, "compose", stall_past_the_lease)
    deliver_finished(p, publisher)
    assert store.read_bytes("out-bucket", "reports/over.json") is None  # left to the lease holder
    assert store.read_json("out-bucket", layout.run_state_name(run)).value["state"] == "finalizing"
    assert not [m for m in publisher.messages if m[0] == "run-finished"]


def test_a_running_job_without_a_start_time_is_measured_against_the_running_threshold(capsys):
    from datetime import UTC, datetime, timedelta

    p, store, vertex, publisher = make_pipeline(PENDING_WARN_SECONDS=60, RUNNING_WARN_SECONDS=600)
    submit.handle_upload(p, upload(store, "incoming/run.jsonl", b"\n".join(lines(1))))
    job = vertex.jobs[next(iter(vertex.jobs))]
    job["state"] = "JOB_STATE_RUNNING"
    job["created"] = datetime.fromtimestamp(p.clock(), UTC) - timedelta(seconds=120)
    capsys.readouterr()
    poll.handle_tick(p)
    assert '"job.slow"' not in capsys.readouterr().out  # 120 s running is under the running threshold
    job["created"] -= timedelta(seconds=600)
    poll.handle_tick(p)
    slow = [orjson.loads(x) for x in capsys.readouterr().out.splitlines() if '"job.slow"' in x]
    assert len(slow) == 1 and "running" in slow[0]["message"]
