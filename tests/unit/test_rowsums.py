"""Collect skips its second pass only when the rows that succeeded are exactly the part's rows
(`shared/rowsums.py`): one or two wrong rows (dropped, duplicated under another number, renumbered) never pass
for the part's own, and a part whose record has no sums is read in full as before."""

from __future__ import annotations

import random
from array import array

import pytest

from shared import layout, runstate, submit
from shared.rowsums import RowSums
from tests.unit.fakes import make_pipeline, retryable
from tests.unit.flows import assert_accounting, jsonl, lines, settle, upload

_new_part = runstate.new_part


def _sums(rows) -> RowSums:
    sums = RowSums()
    sums.update(rows)
    return sums


@pytest.mark.parametrize("seed", range(300))
def test_one_or_two_wrong_rows_never_match_the_parts_sums(seed: int):
    rnd = random.Random(seed)
    top = rnd.choice([50, 5_000, 2_000_000])
    part = rnd.sample(range(1, top), rnd.randint(2, min(400, top - 1)))
    stored = _sums(part).value()
    assert _sums(array("q", part)).matches(len(part), stored) and _sums(iter(part)).matches(len(part), stored)
    wrong = list(part)
    for i in rnd.sample(range(len(wrong)), rnd.randint(1, 2)):
        wrong[i] = rnd.choice([wrong[i] + rnd.randint(1, 3), rnd.choice(part), wrong[i] * 2, 0])
    if sorted(wrong) != sorted(part):
        assert not _sums(wrong).matches(len(part), stored)
    assert not _sums(part[:-1]).matches(len(part), stored)
    assert not _sums(part).matches(len(part), None)  # a part recorded before the sums existed


def test_the_sums_stay_exact_json_numbers_for_huge_row_numbers():
    assert all(0 <= v < 2 ** 53 for v in _sums([2 ** 40, 2 ** 41 + 7]).value())


def _reads_of_staged(store, monkeypatch) -> list[str]:
    read = store.open_read
    names: list[str] = []

    def spy(bucket, name, *args, **kwargs):
        if name.startswith("staging/"):
            names.append(name)
        return read(bucket, name, *args, **kwargs)

    monkeypatch.setattr(store, "open_read", spy)
    return names


def test_a_part_whose_rows_all_succeeded_is_not_read_again(monkeypatch):
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=4)
    submit.handle_upload(p, upload(store, "incoming/clean.jsonl", b"\n".join(lines(6))))
    reads = _reads_of_staged(store, monkeypatch)
    settle(p, vertex, publisher)
    assert_accounting(store, "clean", [1, 2, 3, 4, 5, 6])
    assert reads == [] and len(vertex.jobs) == 2


def test_a_part_with_a_failed_row_or_without_sums_is_read_in_full_and_its_retry_part_has_sums(monkeypatch):
    p, store, vertex, publisher = make_pipeline(MAX_ATTEMPTS=2)
    event = upload(store, "incoming/r.jsonl", b"\n".join(lines(5)))
    submit.handle_upload(p, event)
    reads = _reads_of_staged(store, monkeypatch)
    fails_once = {"q2", "q4"}

    def outcome(line):
        text = line["request"]["contents"][0]["parts"][0]["text"]
        if text in fails_once:
            fails_once.discard(text)
            return retryable()
        return None

    settle(p, vertex, publisher, outcome=outcome)
    assert_accounting(store, "r", [1, 2, 3, 4, 5])
    run = layout.run_id(event.bucket, event.name, event.generation)
    parts = store.read_json("out-bucket", layout.run_state_name(run)).value["parts"]
    assert parts["p0001-a2"]["rowSums"] == _sums([2, 4]).value() and parts["p0001-a2"]["rows"] == 2
    assert reads == [layout.staged_name(run, "p0001-a1")]  # attempt 2 came back whole: not read again
    assert {r["row"]: r["attempts"] for r in jsonl(store, "results/r.jsonl")} == {1: 1, 2: 2, 3: 1, 4: 2, 5: 1}


def test_a_part_recorded_without_sums_is_read_in_full(monkeypatch):
    p, store, vertex, publisher = make_pipeline()
    monkeypatch.setattr(runstate, "new_part", lambda *a, row_sums=None, **k: _new_part(*a, **k))
    submit.handle_upload(p, upload(store, "incoming/old.jsonl", b"\n".join(lines(3))))
    reads = _reads_of_staged(store, monkeypatch)
    settle(p, vertex, publisher)
    assert_accounting(store, "old", [1, 2, 3])
    assert len(reads) == 1
