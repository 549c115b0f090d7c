"""A write that commits while its reply is lost (Cloud Storage does this; the client retries the conditional
write and gets 412 for its own commit) is recognised as ours and never applied twice."""

from __future__ import annotations

import pytest

from shared import layout, scheduler
from shared.errors import StateConflictError, TransientError
from shared.storage import base, change_json
from shared.storage.memory import MemoryStore
from tests.unit.fakes import make_pipeline
from tests.unit.flows import assert_accounting, lines, settle, upload


class LostReplies:
    """Wraps a store: every `every`-th conditional write commits, then answers as if the precondition failed
    (the client sent it again and met its own commit), or with `error` raises it (a 503 not sent again)."""

    def __init__(self, store: MemoryStore, every: int, error: Exception | None = None) -> None:
        self._store, self._every, self._n, self._error = store, every, 0, error
        self.lost = 0
        self.sent: list[bool] = []  # per conditional write: did the caller ask the client to retry it

    def write_json(self, bucket, name, value, *, if_generation_match, retry=True):
        written = self._store.write_json(bucket, name, value, if_generation_match=if_generation_match, retry=retry)
        if written is not None and if_generation_match is not None:
            self.sent.append(retry)
            self._n += 1
            if self._n % self._every == 0:
                self.lost += 1
                if self._error is not None:
                    raise self._error
                return None
        return written

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_committed_write_whose_reply_was_lost_is_not_applied_again():
    store = LostReplies(MemoryStore(), every=1)
    calls = []

    def bump(cur):
        calls.append(1)
        return {"n": (cur or {"n": 0})["n"] + 1}

    value, wrote = change_json(store, "b", "state/counter.json", bump)
    assert wrote and value["n"] == 1 and store.lost == 1
    assert store.read_json("b", "state/counter.json").value["n"] == 1 and len(calls) == 1


def test_a_committed_write_answered_with_a_server_error_is_told_by_reading_and_sent_once():
    """The client is told not to send a conditional write again: sent again after a 503 that committed, it
    would be refused by its own commit, one more write against the object's rate of about one a second."""
    store = LostReplies(MemoryStore(), every=1, error=TransientError("503 after commit"))
    value, wrote = change_json(store, "b", "state/counter.json", lambda cur: {"n": (cur or {"n": 0})["n"] + 1})
    assert wrote and value["n"] == 1 and store.lost == 1 and store.sent == [False]
    assert store.read_json("b", "state/counter.json").value["n"] == 1


class Down:
    """A storage whose writes never get through."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.writes = 0

    def write_json(self, bucket, name, value, *, if_generation_match, retry=True):
        self.writes += 1
        raise TransientError("503")

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_storage_that_keeps_failing_is_a_transient_failure_not_a_lost_race(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(base.time, "sleep", pauses.append)
    monkeypatch.setattr(base.random, "random", lambda: 0.5)  # the jitter's middle: a factor of 1
    store = Down(MemoryStore())
    with pytest.raises(TransientError) as caught:
        change_json(store, "b", "state/x.json", lambda cur: {"n": 1})
    assert not isinstance(caught.value, StateConflictError) and store.writes == base._UNANSWERED_TRIES
    # Paced as the client's own retries would be (from about a second, doubling), not as a lost race (10 ms on).
    assert pauses == [1.0, 2.0, 4.0, 8.0][:base._UNANSWERED_TRIES - 1]


def test_lost_replies_on_every_third_write_change_nothing_in_a_whole_flow():
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=2, MAX_ACTIVE_JOBS=2, MAX_ATTEMPTS=2)
    p.store = flaky = LostReplies(store, every=3)
    submit_rows = {"a": 5, "b": 3}
    from shared import submit

    for rel, n in submit_rows.items():
        submit.handle_upload(p, upload(store, f"incoming/{rel}.jsonl", b"\n".join(lines(n))))
        state = scheduler.read(p)
        assert len(state["active"]) <= 2
    settle(p, vertex, publisher, rounds=30)
    assert flaky.lost > 5
    for rel, n in submit_rows.items():
        assert_accounting(store, rel, list(range(1, n + 1)))
    assert len(vertex.jobs) == 3 + 2  # one job per part: no reservation was taken twice
    assert not list(store.list_names("out-bucket", layout.OPEN_PREFIX))
