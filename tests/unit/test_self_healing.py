"""Self-healing: an instance that dies at any step boundary, or a message that is lost, never keeps a run from
its report. The messages of the crashed delivery are lost too, so only stored state and the scheduled
reconciliation can finish the run, with the same outputs as a clean run and no extra Vertex job."""

from __future__ import annotations

import orjson
import pytest

from shared import layout, reconcile
from tests.unit.fakes import retryable
from tests.unit.flows import GOOD, assert_accounting, lines
from tests.unit.healing import Crash, World

BODY = b"\n".join([GOOD % 1, GOOD % 2, b"{broken", GOOD % 4, b"", GOOD % 6, GOOD % 7, GOOD % 8]) + b"\n"
ROWS = [1, 2, 3, 4, 6, 7, 8]
STEPS = ["submit.claimed", "submit.staging", "submit.written", "submit.staged", "scheduler.reserved",
         "scheduler.created", "collect.harvesting", "collect.written", "finalize.claimed", "finalize.composed",
         "finalize.reported"]


def _world() -> World:
    world = World(MAX_ROWS_PER_JOB=3, MAX_ATTEMPTS=2)
    failed_once: set[str] = set()

    def outcome(line):  # row 2 fails once with a retryable error: a retry part joins the run
        if line["gbp_row"] == "r2" and "r2" not in failed_once:
            failed_once.add("r2")
            return retryable()
        return None

    world.outcome = outcome
    return world


def _clean() -> tuple[list[bytes], list[bytes], dict, dict[str, int]]:
    world = _world()
    world.drop("incoming/f.jsonl", BODY)
    world.settle(["f"])
    return (*world.outputs("f"), world.jobs_per_part())


def _same_as_clean(world: World) -> None:
    results, errors, report = world.outputs("f")
    clean_results, clean_errors, clean_report, clean_jobs = _clean()
    assert results == clean_results and errors == clean_errors
    assert report["rows"] == clean_report["rows"] and report["state"] == clean_report["state"]
    assert world.jobs_per_part() == clean_jobs and set(clean_jobs.values()) == {1}
    assert_accounting(world.store, "f", ROWS)


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_with_its_message_lost_still_ends_with_the_clean_outputs(step):
    world = _world()
    world.crash_once_at(step)
    world.drop("incoming/f.jsonl", BODY)
    seconds = world.settle(["f"])
    assert world.crashes == [step]
    _same_as_clean(world)
    # Healed within a few deadlines (15 s here): the local cloud's timeout makes that seconds.
    assert seconds <= 6 * world.p.config.deadline_seconds


@pytest.mark.parametrize("topic", ["uploads", "job-finished", "run-finished"])
def test_a_lost_message_still_ends_with_the_clean_outputs(topic):
    world = _world()
    world.lose.add(topic)
    world.drop("incoming/f.jsonl", BODY)
    world.settle(["f"])
    assert topic not in world.lose  # the loss did happen
    _same_as_clean(world)


def test_every_repair_is_logged_with_what_and_why(capsys):
    world = _world()
    world.lose.add("uploads")
    world.drop("incoming/f.jsonl", BODY)
    world.settle(["f"])
    out = capsys.readouterr().out
    assert '"event":"run.repaired"' in out and '"repair":"start_run"' in out
    assert "its upload notification was lost" in out
    assert '"event":"run.stuck"' not in out


def test_reconciliation_leaves_a_moving_run_alone():
    world = _world()
    world.drop("incoming/f.jsonl", BODY)
    for _ in range(3):  # the run is young: nothing is overdue yet
        assert not reconcile.handle_tick(world.p).get("repaired")
        world.now += 1
    world.settle(["f"])
    assert not world.store.read_json("out-bucket", layout.repairs_name(_run_of(world)))


def _run_of(world: World) -> str:
    [name] = [n for n in world.store.list_names("out-bucket", "state/runs/")]
    return name.removeprefix("state/runs/").removesuffix(".json")


def test_a_run_that_cannot_be_repaired_logs_run_stuck_once_per_period(capsys):
    world = _world()
    world.drop("incoming/f.jsonl", BODY)
    def always_dies_collecting(step):  # every collect dies: the job-finished repair never succeeds
        if step == "collect.harvesting":
            raise Crash(step)

    world.p.checkpoint = always_dies_collecting
    period = 12 * world.p.config.deadline_seconds

    def rounds(seconds):
        end = world.now + seconds
        while world.now < end:
            world.run_jobs()
            world.tick()
            world.pump()
            world.now += 10

    rounds(period)
    out = capsys.readouterr().out
    assert out.count('"event":"run.stuck"') == 1 and out.count('"event":"run.repaired"') > 3
    assert "reannounce repeated" in out
    rounds(period / 2)
    assert capsys.readouterr().out.count('"event":"run.stuck"') == 0  # not again within the period
    rounds(period)
    assert capsys.readouterr().out.count('"event":"run.stuck"') == 1


def test_a_lost_refusal_is_announced_again_and_the_rows_end_in_errors():
    world = World()
    world.vertex.create_faults = ["rejected"]
    world.lose.add("job-finished")
    world.drop("incoming/nomodel.jsonl", b"\n".join([GOOD % 1, GOOD % 2]))
    world.settle(["nomodel"])
    report = assert_accounting(world.store, "nomodel", [1, 2])
    assert report["rows"]["failedByReason"] == {"NOT_FOUND": 2}
    assert world.vertex.calls.count("create") == 1  # refused once, never created again


def test_an_older_generation_stalled_past_its_lease_never_lands_over_a_newer_one():
    world = World()
    stalled = []

    def stall_once(step):
        if step != "finalize.claimed" or stalled:
            return
        stalled.append(step)
        # The old generation's finalize stalls past its lease; meanwhile the file is uploaded again and the
        # newer run finishes completely.
        world.now += world.p.config.deadline_seconds + 1
        world.drop("incoming/s.jsonl", b"\n".join(lines(4)))
        for _ in range(20):
            world.run_jobs()
            world.tick()
            world.pump()
            world.now += 5
            found = world.store.read_bytes("out-bucket", layout.report_name("s"))
            if found and orjson.loads(found)["rows"]["total"] == 4:
                return
        raise AssertionError("the newer generation did not finish")

    world.p.checkpoint = stall_once
    world.drop("incoming/s.jsonl", b"\n".join(lines(2)))
    world.settle(["s"])
    assert stalled
    report = assert_accounting(world.store, "s", [1, 2, 3, 4])  # the newer outputs, not the older's
    assert report["rows"]["total"] == 4
