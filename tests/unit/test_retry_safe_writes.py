"""A write that commits while its reply is lost (Cloud Storage does this; the client retries the conditional
write and gets 412 for its own commit) is recognised as ours and never applied twice."""

from __future__ import annotations

from shared import layout, scheduler
from shared.storage import change_json
from shared.storage.memory import MemoryStore
from tests.unit.fakes import make_pipeline
from tests.unit.flows import assert_accounting, lines, settle, upload


class LostReplies:
    """Wraps a store: every `every`-th conditional write commits, then answers as if the precondition failed."""

    def __init__(self, store: MemoryStore, every: int) -> None:
        self._store, self._every, self._n = store, every, 0
        self.lost = 0

    def write_json(self, bucket, name, value, *, if_generation_match):
        written = self._store.write_json(bucket, name, value, if_generation_match=if_generation_match)
        if written is not None and if_generation_match is not None:
            self._n += 1
            if self._n % self._every == 0:
                self.lost += 1
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
