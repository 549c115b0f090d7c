"""The reconciliation's planning (pure) and its bounded, resumable walk over runs, inputs and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import orjson

from shared import layout, reconcile, repairs, runstate
from shared import scheduler_state as rules
from shared.publisher import MemoryDeadLetters
from shared.repairs import Kind
from shared.vertex import JobInfo
from tests.unit.flows import GOOD, assert_accounting, lines
from tests.unit.healing import World

NOW = 10_000.0
DEADLINE = 30.0


def _record(state: str, **parts) -> dict:
    record = runstate.new_run(run="r1", bucket="b", name="incoming/x.jsonl", generation=1, rel="x", model="m",
                              now=datetime.fromtimestamp(NOW - 100, UTC).isoformat())
    record.update(state=state, parts=parts)
    return record


def _part(state: str, since: float = NOW - 100, job: str | None = None) -> dict:
    part = runstate.new_part(1, 1, 2, 10, since=since, first_row=1, last_row=2)
    part.update(state=state, job=job)
    return part


def _plan(record=None, marker=None, scheduler=None, jobs=None, queued=()):
    return repairs.plan(marker=marker, record=record, scheduler=scheduler or rules.empty(), queued=set(queued),
                        jobs=jobs or {}, now=NOW, deadline=DEADLINE)


def test_plan_each_stuck_state_to_its_repair_only_after_the_deadline():
    assert [a.kind for a in _plan(marker={"since": NOW - 31})] == [Kind.START_RUN]
    assert _plan(marker={"since": NOW - 29}) == []
    assert [a.kind for a in _plan(_record(runstate.STAGING))] == [Kind.RESTAGE]
    finalizing = _record(runstate.FINALIZING)
    assert [a.kind for a in _plan(finalizing)] == [Kind.FINALIZE]  # no timestamp: an older record, overdue
    finalizing["finalizingSince"] = NOW - 5
    assert _plan(finalizing) == []
    assert [a.kind for a in _plan(_record(runstate.DONE))] == [Kind.CLOSE]


def test_plan_requeues_only_queued_parts_the_scheduler_does_not_hold():
    record = _record(runstate.RUNNING, **{"p0001-a1": _part(runstate.QUEUED), "p0002-a1": _part(runstate.QUEUED),
                                          "p0003-a1": _part(runstate.QUEUED, since=NOW - 1)})
    [action] = _plan(record, queued={"r1:p0002-a1"})
    assert action.kind == Kind.REQUEUE and action.parts == ("p0001-a1",)  # p0003 is too young to judge


def test_plan_reannounces_finished_jobs_nobody_collected():
    ended = datetime.fromtimestamp(NOW - 60, UTC)
    record = _record(runstate.RUNNING, **{
        "p0001-a1": _part(runstate.SUBMITTED, job="j1"), "p0002-a1": _part(runstate.SUBMITTED, job="j2"),
        "p0003-a1": _part(runstate.SUBMITTED, job="j3"), "p0004-a1": _part(runstate.SUBMITTED, job="j4")})
    jobs = {"j1": JobInfo("j1", "JOB_STATE_SUCCEEDED", end_time=ended), "j2": JobInfo("j2", "JOB_STATE_RUNNING"),
            "j3": JobInfo("j3", "JOB_STATE_FAILED", end_time=datetime.fromtimestamp(NOW - 1, UTC)), "j4": None}
    assert repairs.jobs_to_check(record, rules.empty()) == ["j1", "j2", "j3", "j4"]
    [action] = _plan(record, jobs=jobs)
    assert action.kind == Kind.REANNOUNCE and action.parts == ("p0001-a1", "p0004-a1")
    assert action.announcements[1]["state"] == "JOB_STATE_FAILED" and action.announcements[1]["error"]["code"] == 13


def test_plan_announces_a_stored_refusal_again():
    refused = _part(runstate.REJECTED)
    refused.update(rejection={"code": None, "httpCode": 404, "status": "NOT_FOUND", "message": "no model"},
                   rejectedAt=NOW - 60)
    [action] = _plan(_record(runstate.RUNNING, **{"p0001-a1": refused}))
    assert action.kind == Kind.REANNOUNCE and action.announcements[0]["error"]["httpCode"] == 404


def test_a_repair_is_not_repeated_within_the_deadline():
    book = repairs.record_repair(None, Kind.FINALIZE, NOW)
    assert not repairs.due(book, Kind.FINALIZE, NOW + DEADLINE, DEADLINE)
    assert repairs.due(book, Kind.FINALIZE, NOW + DEADLINE + 1, DEADLINE)
    assert repairs.due(book, Kind.RESTAGE, NOW, DEADLINE)


def test_the_open_run_walk_is_bounded_per_tick_and_resumes_where_it_stopped():
    world = World(RECONCILE_BATCH=2)
    world.lose.update({"job-finished"})
    for i in range(5):
        world.drop(f"incoming/f{i}.jsonl", b"\n".join(lines(1)))
    visits = []
    for _ in range(3):
        visits.append(reconcile.handle_tick(world.p)["visited"])
    assert visits == [2, 2, 1]
    cursor = world.store.read_json("out-bucket", layout.RECONCILE_CURSOR_NAME).value
    assert cursor["openAfter"] == ""  # wrapped around after the last page
    world.settle([f"f{i}" for i in range(5)])


def test_an_input_whose_notification_never_arrived_gets_a_run_after_the_grace():
    world = World()
    world.lose.add("uploads")
    world.drop("incoming/quiet.jsonl", b"\n".join(lines(3)))
    assert not reconcile.handle_tick(world.p).get("repaired")  # too young: its submit may be at work
    world.settle(["quiet"])
    assert_accounting(world.store, "quiet", [1, 2, 3])


def test_the_input_sweep_skips_what_a_finished_sweep_already_verified():
    world = World()
    for i in range(3):
        world.drop(f"incoming/old{i}.jsonl", b"\n".join(lines(1)))
    world.settle([f"old{i}" for i in range(3)])
    reads = []
    original = world.store.read_json
    world.store.read_json = lambda b, n: (reads.append(n), original(b, n))[1]
    world.now += 100
    reconcile.handle_tick(world.p)  # this sweep reads each input's run once and verifies them all
    assert len([n for n in reads if n.startswith("state/runs/")]) == 3
    reads.clear()
    world.now += 100
    reconcile.handle_tick(world.p)  # the next one lists them, and reads nothing: they are below its horizon
    assert not [n for n in reads if n.startswith("state/runs/")]


def test_the_model_override_travels_with_a_republished_upload():
    world = World()
    world.lose.add("uploads")
    world.drop("incoming/m.jsonl", b"\n".join(lines(1)), {"model": "gemini-2.5-pro"})
    world.settle(["m"])
    report = orjson.loads(world.store.read_bytes("out-bucket", layout.report_name("m")))
    assert report["model"] == "gemini-2.5-pro"


def test_dead_letters_are_reported_repaired_and_acknowledged(capsys):
    world = World(DEAD_LETTER_SUBSCRIPTIONS="uploads-dead-letter-watch,job-finished-dead-letter-watch")
    world.p.dead_letters = letters = MemoryDeadLetters()
    world.lose.add("uploads")
    event = world.drop("incoming/dl.jsonl", GOOD % 1 + b"\n")
    resource, attributes = event.to_notification()
    letters.add("uploads-dead-letter-watch", resource, **attributes)
    letters.add("job-finished-dead-letter-watch", {"run": "r123", "part": "p0001-a1"})
    world.now += 1  # well within the sweep's grace: the dead letter alone starts the run
    summary = reconcile.handle_tick(world.p)
    assert summary["deadLettered"] == 2 and not any(letters.waiting.values())
    out = capsys.readouterr().out
    assert out.count('"event":"message.dead_lettered"') == 2 and "a message about run r123" in out
    world.pump()
    assert world.store.read_json("out-bucket", layout.run_state_name(
        layout.run_id("in-bucket", "incoming/dl.jsonl", event.generation)))
    world.settle(["dl"])


def _reads_take_a_second(world: World, monkeypatch) -> SimpleNamespace:
    """reconcile's clock, moved on a second by every storage read of `world` (`now`, set back by the caller before
    each tick), and the store's own read (`read`)."""
    clock = SimpleNamespace(now=0.0, read=world.store.read_json)
    monkeypatch.setattr(reconcile, "time", SimpleNamespace(monotonic=lambda: clock.now))

    def read(bucket: str, name: str):
        clock.now += 1.0
        return clock.read(bucket, name)
    world.store.read_json = read
    return clock


def test_the_input_sweep_stops_where_its_budget_runs_out_and_the_next_tick_goes_on(monkeypatch):
    # Every storage read takes a second of the tick's budget (half the function's timeout, 5 s here): a sweep over
    # twelve inputs whose uploads were lost cannot judge them all in one tick. It stops between two inputs and
    # saves where; the next ticks go on from there, and every input is handed to submit once, none skipped.
    world = World()
    rels = [f"lost{i:02d}" for i in range(12)]
    for rel in rels:
        world.lose.add("uploads")
        world.drop(f"incoming/{rel}.jsonl", b"\n".join(lines(1)))
    world.now += 100  # old enough to judge
    clock = _reads_take_a_second(world, monkeypatch)

    def handed_to_submit() -> list[str]:
        return [attributes["objectId"] for topic, _, attributes in world.publisher.messages
                if topic == world.p.config.uploads_topic]

    ticks = []
    while len(ticks) < 30:
        clock.now = 0.0
        reconcile.handle_tick(world.p)
        cursor = world.store.read_json(world.p.work_bucket, layout.RECONCILE_CURSOR_NAME).value
        ticks.append((len(handed_to_submit()), cursor["sweep"].get("after")))
        if not cursor["sweep"]["after"]:
            break
    assert len(ticks) > 3 and 0 < ticks[0][0] < len(rels)  # several ticks, each some of the inputs
    assert [after for _, after in ticks[:-1]] == sorted({after for _, after in ticks[:-1]})  # always further on
    assert sorted(handed_to_submit()) == [f"incoming/{rel}.jsonl" for rel in rels]  # each once
    world.store.read_json = clock.read
    world.settle(rels)
    for rel in rels:
        assert_accounting(world.store, rel, [1])


def test_dead_letters_past_the_budget_are_left_for_the_next_tick(monkeypatch, capsys):
    # Each dead letter of a lost upload costs storage reads; out of time, the tick acknowledges only those it
    # reported and repaired, and the rest come again on the next.
    world = World(DEAD_LETTER_SUBSCRIPTIONS="uploads-dead-letter-watch")
    world.p.dead_letters = letters = MemoryDeadLetters()
    for i in range(8):
        world.lose.add("uploads")
        resource, attributes = world.drop(f"incoming/dl{i}.jsonl", GOOD % 1 + b"\n").to_notification()
        letters.add("uploads-dead-letter-watch", resource, **attributes)
    world.now += 1  # within the sweep's grace: only the dead letters start the runs
    clock = _reads_take_a_second(world, monkeypatch)
    left = []
    while letters.waiting["uploads-dead-letter-watch"] and len(left) < 20:
        clock.now = 0.0
        reconcile.handle_tick(world.p)
        left.append(len(letters.waiting["uploads-dead-letter-watch"]))
    assert len(left) > 2 and left[-1] == 0 and left == sorted(left, reverse=True)
    assert capsys.readouterr().out.count('"event":"message.dead_lettered"') == 8  # each reported once
    world.store.read_json = clock.read
    world.settle([f"dl{i}" for i in range(8)])
