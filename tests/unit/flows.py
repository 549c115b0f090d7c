"""Driving a run through submit -> poll -> collect in memory, for the unit tests that need a whole flow."""

from __future__ import annotations

import orjson

from shared import collect, layout, poll, scheduler, verify
from shared.events import StorageObjectEvent

GOOD = b'{"request": {"contents": [{"role": "user", "parts": [{"text": "q%d"}]}]}}'


def lines(n: int, start: int = 1) -> list[bytes]:
    return [GOOD % i for i in range(start, start + n)]


def upload(store, name: str, body: bytes, metadata=None) -> StorageObjectEvent:
    gen = store.put("in-bucket", name, body, metadata)
    return StorageObjectEvent(bucket="in-bucket", name=name, generation=gen, metadata=metadata or {})


def jsonl(store, name: str) -> list[dict]:
    data = store.read_bytes("out-bucket", name)
    assert data is not None, f"{name} was not written"
    return [orjson.loads(line) for line in data.splitlines() if line]


def deliver_finished(p, publisher, start: int = 0) -> int:
    """Hand every job-finished message published since `start` to collect; returns the new start."""
    for topic, payload, _ in list(publisher.messages[start:]):
        if topic == p.config.job_finished_topic:
            collect.handle_job_finished(p, collect.JobFinished.from_payload(payload))
    return len(publisher.messages)


def tick_and_collect(p, publisher, start: int = 0) -> int:
    poll.handle_tick(p)
    return deliver_finished(p, publisher, start)


def settle(p, vertex, publisher, *, rounds: int = 10, **run_kwargs) -> int:
    """Run every pending job, tick, collect, until the scheduler is empty. Returns the number of ticks."""
    seen = 0
    for tick in range(1, rounds + 1):
        for name, job in list(vertex.jobs.items()):
            if job["state"] == "JOB_STATE_PENDING":
                vertex.run(name, **run_kwargs)
        seen = tick_and_collect(p, publisher, seen)
        state = scheduler.read(p)
        if not state["active"] and not state["queue"]:
            return tick
    raise AssertionError(f"the run did not settle in {rounds} ticks")


def assert_accounting(store, rel: str, rows: list[int]) -> dict:
    """results + errors hold each input row once, and the report's counts agree (the shared checker).
    Returns the report."""
    report = orjson.loads(store.read_bytes("out-bucket", layout.report_name(rel)))
    problems = verify.check(rel, rows, report, jsonl(store, layout.results_name(rel)),
                            jsonl(store, layout.errors_name(rel)))
    assert problems == [], "\n".join(problems)
    return report
