"""The slots object is the one object every function writes: Cloud Storage takes about one write a second to it,
and a write refused as stale counts as much as one that lands. Its writers pace themselves on the value read
just before their conditional write, take turns within one instance, and overlapping poll ticks in one
instance do the work once."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from shared import layout, poll, scheduler, submit
from shared import scheduler_state as rules
from tests.unit.fakes import make_pipeline
from tests.unit.flows import lines, upload

NOW = 1_800_000_000.0


class Clock:
    """A clock that only sleeping moves."""

    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class CountingStore:
    """Wraps a store: records every conditional write of the slots object, and whether it was refused."""

    def __init__(self, store, pause: float = 0.0) -> None:
        self._store, self._pause = store, pause
        self.slot_writes: list[bool] = []  # True: written, False: refused as stale

    def write_json(self, bucket, name, value, *, if_generation_match, retry=True):
        if name != layout.SCHEDULER_NAME:
            return self._store.write_json(bucket, name, value, if_generation_match=if_generation_match, retry=retry)
        time.sleep(self._pause)  # a write's round trip: overlapping writers would read the same generation
        written = self._store.write_json(bucket, name, value, if_generation_match=if_generation_match, retry=retry)
        self.slot_writes.append(written is not None)
        return written

    def __getattr__(self, name):
        return getattr(self._store, name)


def _paced_pipeline(written_ago: float | None):
    p, store, vertex, publisher = make_pipeline()
    clock = Clock()
    counting = CountingStore(store)
    p = dataclasses.replace(p, store=counting, clock=clock, sleep=clock.sleep)
    if written_ago is not None:
        store.write_json(p.work_bucket, layout.SCHEDULER_NAME, {**rules.empty(), "at": NOW - written_ago},
                         if_generation_match=None)
    return p, clock, counting


def _add_slot(qid: str):
    def change(s):
        s["active"][qid] = {"since": NOW, "token": "t", "entry": "queue/x"}
        return s
    return change


def test_a_writer_waits_out_the_interval_since_the_last_write_then_writes_what_it_reads_then():
    p, clock, store = _paced_pipeline(written_ago=0.3)
    stored, wrote = scheduler.change_slots(p, _add_slot("run~a/p1"))
    assert wrote and clock.slept == [pytest.approx(rules.MIN_WRITE_INTERVAL - 0.3)]
    assert stored["at"] >= NOW - 0.3 + rules.MIN_WRITE_INTERVAL and "run~a/p1" in stored["active"]
    assert store.slot_writes == [True]


def test_a_writer_writes_at_once_when_the_last_write_is_older_than_the_interval():
    p, clock, store = _paced_pipeline(written_ago=rules.MIN_WRITE_INTERVAL)
    _, wrote = scheduler.change_slots(p, _add_slot("run~a/p1"))
    assert wrote and clock.slept == [] and store.slot_writes == [True]


def test_a_best_effort_writer_skips_its_turn_instead_of_waiting():
    p, clock, store = _paced_pipeline(written_ago=1.5)
    assert scheduler.change_slots(p, _add_slot("run~a/p1"), skip_within=2.0) == (None, False)
    assert clock.slept == [] and store.slot_writes == []
    assert scheduler.read_slots(p)["active"] == {}


def test_a_change_with_nothing_left_to_do_after_the_wait_writes_nothing():
    p, clock, store = _paced_pipeline(written_ago=0.5)
    assert scheduler.change_slots(p, lambda s: None)[1] is False
    assert len(clock.slept) == 1 and store.slot_writes == []


def test_a_stamp_in_the_future_does_not_hold_a_writer_back():
    """Another instance's clock may run ahead: its stamp is not read as a write just now."""
    p, clock, store = _paced_pipeline(written_ago=-0.5)
    _, wrote = scheduler.change_slots(p, _add_slot("run~a/p1"))
    assert wrote and clock.slept == [] and store.slot_writes == [True]


def test_a_stamp_that_stays_recent_through_every_wait_does_not_block_the_change():
    p, clock, store = _paced_pipeline(written_ago=0.1)
    p = dataclasses.replace(p, sleep=clock.slept.append)  # waits that never move this writer's clock
    _, wrote = scheduler.change_slots(p, _add_slot("run~a/p1"))
    assert wrote and len(clock.slept) == scheduler._PACE_TRIES and store.slot_writes == [True]


def test_writers_in_one_instance_take_turns_and_none_is_refused_as_stale(monkeypatch):
    monkeypatch.setattr(rules, "MIN_WRITE_INTERVAL", 0.05)
    p, store, _, _ = make_pipeline()
    counting = CountingStore(store, pause=0.02)
    p = dataclasses.replace(p, store=counting, clock=time.time, sleep=time.sleep)
    threads = [threading.Thread(target=scheduler.change_slots, args=(p, _add_slot(f"run~a/p{i}")))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counting.slot_writes == [True] * 4
    assert sorted(scheduler.read_slots(p)["active"]) == [f"run~a/p{i}" for i in range(4)]


def test_overlapping_ticks_in_one_instance_do_the_work_once(monkeypatch):
    p, store, vertex, _ = make_pipeline(MAX_ROWS_PER_JOB=1)
    submit.handle_upload(p, upload(store, "incoming/overlap.jsonl", b"\n".join(lines(2))))
    listing, release = threading.Event(), threading.Event()
    real_list = vertex.list

    def slow_list(*args, **kwargs):
        listing.set()
        release.wait(5)
        return real_list(*args, **kwargs)

    monkeypatch.setattr(vertex, "list", slow_list)
    first: list[dict[str, int]] = []
    ticking = threading.Thread(target=lambda: first.append(poll.handle_tick(p)))
    ticking.start()
    assert listing.wait(5)
    calls = len(vertex.calls)
    assert poll.handle_tick(p) == dict.fromkeys(("active", "queued", "finished", "adopted", "started", "failed"), 0)
    assert len(vertex.calls) == calls  # the second tick asked Vertex nothing
    release.set()
    ticking.join()
    assert first and first[0]["active"] == 2
    monkeypatch.setattr(vertex, "list", real_list)
    assert poll.handle_tick(p)["active"] >= 1  # and the next tick runs again


def test_reservations_handed_back_after_an_unreachable_vertex_are_freed_in_one_write():
    p, store, vertex, _ = make_pipeline(MAX_ROWS_PER_JOB=1)
    counting = CountingStore(store)
    p = dataclasses.replace(p, store=counting)
    vertex.create_faults = ["ambiguous-lost"] * 4  # the first part's creates stay ambiguous: Vertex is down
    submit.handle_upload(p, upload(store, "incoming/down.jsonl", b"\n".join(lines(3))))
    state = scheduler.read(p)
    assert vertex.calls.count("create") == 4 and len(state["queue"]) == 2
    assert [e["orphan"] for e in state["active"].values()] == [True]
    # The reservation of all three, the first marked orphan, the two others freed together.
    assert counting.slot_writes == [True, True, True]
