"""No single fault stalls the others: a throttled model, a permission still propagating, a failing entry in
poll, a lost staged input, an over-long name, a configuration error. Each is met the way the issue promises
and every run still ends with its report and exact row accounting."""

from __future__ import annotations

import orjson
import pytest

from shared import handlers, layout, poll, scheduler, submit
from shared import scheduler_state as rules
from shared.errors import ConfigError, VertexDeniedError, VertexTransientError
from tests.unit.fakes import make_pipeline
from tests.unit.flows import assert_accounting, jsonl, lines, settle, tick_and_collect, upload
from tests.unit.healing import World


class ModelFaults:
    """Wraps a FakeVertex: creates for the listed models answer with the given error."""

    def __init__(self, vertex, faults: dict[str, Exception]) -> None:
        self._vertex, self.faults = vertex, faults

    def create(self, **kw):
        if kw["model"] in self.faults:
            raise self.faults[kw["model"]]
        return self._vertex.create(**kw)

    def __getattr__(self, name):
        return getattr(self._vertex, name)


def test_a_model_without_quota_never_blocks_the_runs_of_other_models():
    p, store, vertex, publisher = make_pipeline(MAX_ACTIVE_JOBS=2)
    p.vertex = ModelFaults(vertex, {"gemini-busy": VertexTransientError("429 RESOURCE_EXHAUSTED")})
    submit.handle_upload(p, upload(store, "incoming/busy.jsonl", b"\n".join(lines(2)), {"model": "gemini-busy"}))
    submit.handle_upload(p, upload(store, "incoming/free.jsonl", b"\n".join(lines(3))))
    # The busy model's part waits in the queue; the other run's job was created behind it.
    state = scheduler.read(p)
    assert [e["model"] for e in state["queue"]] == ["gemini-busy"]
    assert state["throttled"]["gemini-busy"]["strikes"] >= 1
    assert len(vertex.jobs) == 1
    seen = 0
    for _ in range(5):  # the busy model stays throttled all along; the free run finishes regardless
        for name in list(vertex.jobs):
            vertex.run(name)
        seen = tick_and_collect(p, publisher, seen)
    assert_accounting(store, "free", [1, 2, 3])
    assert not store.read_bytes("out-bucket", layout.report_name("busy"))
    # Quota comes back: the waiting part runs, and the throttle is cleared.
    p.vertex = vertex
    settle(p, vertex, publisher, rounds=200)
    assert_accounting(store, "busy", [1, 2])
    assert "gemini-busy" not in scheduler.read(p)["throttled"]


def test_a_throttle_backs_off_and_never_exceeds_a_minute():
    s = rules.enqueue(rules.empty(), [("r:p1", "m")], 0.0)
    for strike in range(1, 12):
        s, qid = rules.reserve(s, now=1000.0 * strike, token="t", cap=1, creates_per_minute=60)
        s = rules.throttle(s, qid, "t", now=1000.0 * strike)
        assert s["throttled"]["m"]["until"] - 1000.0 * strike == min(60.0, 2.0 ** strike)
        assert rules.reserve(s, now=1000.0 * strike + 1, token="u", cap=1, creates_per_minute=60) is None


def test_creations_stay_within_the_regional_rate():
    s = rules.enqueue(rules.empty(), [(f"r:p{i}", "m") for i in range(5)], 0.0)
    for i in range(3):
        s, _ = rules.reserve(s, now=10.0 + i, token=f"t{i}", cap=100, creates_per_minute=3)
    assert rules.reserve(s, now=20.0, token="x", cap=100, creates_per_minute=3) is None
    assert rules.reserve(s, now=71.0, token="x", cap=100, creates_per_minute=3) is not None


def test_every_change_to_a_reservation_checks_its_token():
    s = rules.enqueue(rules.empty(), [("r:p1", "m")], 0.0)
    s, qid = rules.reserve(s, now=1.0, token="mine", cap=1, creates_per_minute=60)
    assert rules.set_job(s, qid, "theirs", job="j", state=None, input_uri=None, now=2.0) is None
    assert rules.release(s, qid, token="theirs") is None
    assert rules.throttle(s, qid, "theirs", now=2.0) is None
    assert rules.deny(s, qid, "theirs", now=2.0, retry_in=5) is None
    assert rules.orphan(s, qid, "theirs") is None
    s = rules.set_job(s, qid, "mine", job="j", state="JOB_STATE_PENDING", input_uri="gs://x", now=2.0)
    assert rules.release(s, qid, job="other") is None and rules.release(s, qid, job="j")["active"] == {}


def test_the_scheduler_object_keeps_no_history():
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=1)
    for i in range(5):
        submit.handle_upload(p, upload(store, f"incoming/f{i}.jsonl", b"\n".join(lines(2))))
    settle(p, vertex, publisher, rounds=20)
    stored = store.read_json("out-bucket", layout.SCHEDULER_NAME).value
    assert stored["queue"] == [] and stored["active"] == {} and "known" not in stored


def test_a_version_1_scheduler_object_is_read_and_upgraded():
    old = {"queue": ["r1:p0001-a1"], "active": {}, "known": {"r1:p0001-a1": 1, "r0:p0001-a1": 1}}
    new = rules.upgrade(old)
    assert new["version"] == 2 and new["queue"][0]["q"] == "r1:p0001-a1" and "known" not in new


def test_permission_denied_is_retried_then_names_the_permission_problem():
    world = World(PERMISSION_GRACE_SECONDS=60)
    world.p.vertex = ModelFaults(world.vertex, {"gemini-2.5-flash": VertexDeniedError("403 PERMISSION_DENIED")})
    world.drop("incoming/d.jsonl", b"\n".join(lines(3)))
    world.now += 30
    world.tick()
    state = scheduler.read(world.p)
    assert state["queue"] and "denied" in state["queue"][0]  # still waiting: within the grace
    world.settle(["d"])
    errors = jsonl(world.store, "errors/d.jsonl")
    assert len(errors) == 3 and {e["code"] for e in errors} == {403}
    assert "roles/aiplatform.user" in errors[0]["message"] and errors[0]["retryable"] is False
    assert_accounting(world.store, "d", [1, 2, 3])


def test_permission_that_comes_back_within_the_grace_runs_the_rows():
    world = World(PERMISSION_GRACE_SECONDS=600)
    faults = ModelFaults(world.vertex, {"gemini-2.5-flash": VertexDeniedError("403 PERMISSION_DENIED")})
    world.p.vertex = faults
    world.drop("incoming/d.jsonl", b"\n".join(lines(3)))
    world.now += 100
    world.tick()
    faults.faults.clear()  # IAM propagated
    world.settle(["d"])
    assert len(jsonl(world.store, "results/d.jsonl")) == 3


class FlakyGet:
    """A Vertex whose list misses one job and whose get fails for it: that entry cannot be checked."""

    def __init__(self, vertex, bad: set[str]) -> None:
        self._vertex, self.bad = vertex, bad

    def list(self, filter, page_size=100):  # noqa: A002
        return [j for j in self._vertex.list(filter, page_size) if j.name not in self.bad]

    def get(self, name):
        if name in self.bad:
            raise VertexTransientError("503 on get")
        return self._vertex.get(name)

    def __getattr__(self, name):
        return getattr(self._vertex, name)


def test_one_failing_entry_in_poll_is_skipped_and_the_tick_goes_on(capsys):
    p, store, vertex, publisher = make_pipeline(MAX_ACTIVE_JOBS=2)
    submit.handle_upload(p, upload(store, "incoming/a.jsonl", b"\n".join(lines(2))))
    submit.handle_upload(p, upload(store, "incoming/b.jsonl", b"\n".join(lines(2))))
    submit.handle_upload(p, upload(store, "incoming/c.jsonl", b"\n".join(lines(2))))  # queued: 2 slots
    first, second = list(vertex.jobs)
    for name in (first, second):
        vertex.run(name)
    p.vertex = FlakyGet(vertex, {first})
    summary = poll.handle_tick(p)
    assert summary["failed"] == 1 and summary["finished"] == 1 and summary["started"] == 1
    assert '"event":"poll.entry_failed"' in capsys.readouterr().out
    p.vertex = vertex
    settle(p, vertex, publisher)
    for rel in ("a", "b", "c"):
        assert_accounting(store, rel, [1, 2])


def test_a_lost_staged_input_is_staged_again_from_the_input():
    world = World(MAX_ROWS_PER_JOB=2)
    body = b"\n".join([*lines(2), b"{bad", b"", *lines(3, start=5)]) + b"\n"
    world.drop("incoming/l.jsonl", body)
    world.run_jobs()
    run = layout.run_id("in-bucket", "incoming/l.jsonl", 1_000_000)
    for name in list(world.store.list_names("out-bucket", f"staging/{run}/p")):
        world.store.delete("out-bucket", name)  # a lifecycle rule took every staged part while jobs ran
    world.settle(["l"])
    report = assert_accounting(world.store, "l", [1, 2, 3, 5, 6, 7])
    assert report["rows"]["succeeded"] == 5 and "staged again" in report["note"]


def test_a_lost_staged_input_whose_input_is_gone_too_ends_its_rows_in_errors():
    world = World(MAX_ROWS_PER_JOB=2)
    world.drop("incoming/g.jsonl", b"\n".join(lines(4)) + b"\n")
    run = layout.run_id("in-bucket", "incoming/g.jsonl", 1_000_000)
    world.store.delete("out-bucket", layout.staged_name(run, "p0002-a1"))
    world.store.delete("in-bucket", "incoming/g.jsonl")
    world.vertex.jobs.clear()  # the job never produced output either: nothing came back for its rows
    world.store.delete("out-bucket", layout.SCHEDULER_NAME)
    world.now += 100
    world.settle(["g"])
    report = assert_accounting(world.store, "g", [1, 2, 3, 4])
    errors = {e["row"]: e for e in jsonl(world.store, "errors/g.jsonl")}
    assert set(errors) == {3, 4} and "both gone" in errors[3]["message"]
    assert "both gone" in report["note"]


def test_an_input_name_too_long_for_its_outputs_still_gets_a_report_under_a_shortened_name():
    p, store, vertex, publisher = make_pipeline()
    long_a = "incoming/" + "é" * 510 + "a.jsonl"  # <rel> of 1,021 bytes: results/<rel>.jsonl would pass 1,024
    long_b = "incoming/" + "é" * 510 + "b.jsonl"
    for name in (long_a, long_b):
        submit.handle_upload(p, upload(store, name, b"\n".join(lines(2))))
    settle(p, vertex, publisher)
    reports = list(store.list_names("out-bucket", "reports/"))
    assert len(reports) == 2 and all(len(n.encode()) <= 1024 for n in store.list_names("out-bucket", ""))
    for name in reports:
        doc = orjson.loads(store.read_bytes("out-bucket", name))
        assert "too long" in doc["note"] and doc["rows"]["succeeded"] == 2
        rel = name.removeprefix("reports/").removesuffix(".json")
        assert_accounting(store, rel, [1, 2])


def test_output_names_that_fit_are_kept_byte_for_byte():
    rel = "a/" + "x" * (1024 - len("results/") - len(".jsonl") - 2)
    assert layout.output_rel(rel) == (rel, False)
    short, renamed = layout.output_rel(rel + "y")
    assert renamed and len(layout.results_name(short).encode()) <= 1024


class MissingTopic:
    def publish(self, topic, payload, **attributes):
        raise ConfigError(f"topic {topic} does not exist")


def test_a_configuration_error_while_handling_an_event_is_never_acknowledged(capsys):
    p, store, vertex, publisher = make_pipeline()
    p.publisher = MissingTopic()
    submit.handle_upload(p, upload(store, "incoming/c.jsonl", b"\n".join(lines(1))))
    next(iter(vertex.jobs.values()))["state"] = "JOB_STATE_SUCCEEDED"
    event = {"type": "google.cloud.pubsub.topic.v1.messagePublished", "id": "1",
             "data": {"message": {"data": "e30=", "attributes": {}}}}
    with pytest.raises(ConfigError):
        handlers.on_tick(p, event)  # answered 500: the platform redelivers once the deploy is fixed
    entry = [orjson.loads(x) for x in capsys.readouterr().out.splitlines() if "misconfigured" in x][0]
    assert entry["severity"] == "CRITICAL" and entry["event"] == "poll.misconfigured"
