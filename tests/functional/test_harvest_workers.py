"""Collect's worker processes, for real: pieces read by two `shared.worker_process` processes through their
own storage (local files, or their own client to the rate-limited local Cloud Storage) equal the pieces made
in this process; a worker's error reaches the caller as itself; a worker that dies fails the delivery
retryably, and the next collect starts new workers."""

from __future__ import annotations

import os
import random
import signal
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from shared import harvest, workers
from shared.storage.base import ObjectMissing
from shared.storage.gcs import GcsStore
from shared.storage.localfs import LocalFsStore

OK = {"candidates": [{"content": {"parts": [{"text": "fine \u00e9"}]}, "finishReason": "STOP"}],
      "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5}}


def _body(rows: int = 3000) -> bytes:
    rnd = random.Random(5)
    lines = []
    for _ in range(rows):
        row = rnd.randint(1, rows)
        record = {"status": "", "gbp_row": f"r{row}", "gbp_key": f'k"id-{row}"',
                  "request": {"contents": [{"parts": [{"text": "q" * rnd.randint(10, 400)}]}]}}
        if rnd.random() < 0.1:
            record["status"] = 'Too Many Requests: {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}'
        else:
            record["response"] = OK
        lines.append(orjson.dumps(record))
    return b"\n".join(lines) + b"\n"


def _collected(store, bucket: str, name: str, size: int, workers: int) -> tuple:
    out: list[bytes] = []
    merged = harvest.Harvest(out.append)
    for piece in harvest.pieces(store, bucket, harvest.spans([(name, size)], 20_000), 1, workers):
        merged.add(piece)
    return b"".join(out), merged.seen, merged.failures, merged.succeeded, merged.tokens


@pytest.fixture
def many_small_pieces(monkeypatch):
    monkeypatch.setattr(harvest, "PARALLEL_MIN_BYTES", 0)
    workers.discard()  # an earlier test in this process may have left the instance's workers (they are kept)
    yield
    workers.discard()


@pytest.fixture(params=["localfs", "gcs"])
def stored(request, tmp_path, storage_client, bucket):
    body = _body()
    if request.param == "localfs":
        store = LocalFsStore(tmp_path, {"b": tmp_path})
        store.write_bytes("b", "vertex/p.jsonl", body)
        return store, "b", body
    store = GcsStore(storage_client)
    store.write_bytes(bucket.name, "vertex/p.jsonl", body)
    return store, bucket.name, body


def test_two_workers_give_the_pieces_this_process_gives(stored, many_small_pieces):
    store, bucket, body = stored
    here = _collected(store, bucket, "vertex/p.jsonl", len(body), workers=1)
    assert here[3] > 0 and here[2]
    assert _collected(store, bucket, "vertex/p.jsonl", len(body), workers=2) == here
    team = workers._TEAM
    assert team is not None and all(proc.poll() is None for proc in team.procs)  # kept for the next collect
    assert _collected(store, bucket, "vertex/p.jsonl", len(body), workers=2) == here
    assert workers._TEAM is team


def test_a_workers_error_reaches_the_caller_as_itself(tmp_path, many_small_pieces):
    store = LocalFsStore(tmp_path, {"b": tmp_path})
    store.write_bytes("b", "vertex/p.jsonl", _body(200))
    todo = harvest.spans([("vertex/p.jsonl", 40_000), ("vertex/gone.jsonl", 40_000)], 20_000)
    with pytest.raises(ObjectMissing):
        list(harvest.pieces(store, "b", todo, 1, workers=2))


def test_a_worker_that_dies_fails_the_delivery_retryably_and_new_workers_take_over(tmp_path, many_small_pieces):
    store = LocalFsStore(tmp_path, {"b": tmp_path})
    body = _body()
    store.write_bytes("b", "vertex/p.jsonl", body)
    todo = harvest.spans([("vertex/p.jsonl", len(body))], 20_000)
    found = harvest.pieces(store, "b", todo, 1, workers=2)
    next(found)
    for proc in workers._TEAM.procs:
        os.kill(proc.pid, signal.SIGKILL)
    with pytest.raises(workers.WorkerLost):
        list(found)
    assert workers._TEAM is None
    here = _collected(store, "b", "vertex/p.jsonl", len(body), workers=1)
    assert _collected(store, "b", "vertex/p.jsonl", len(body), workers=2) == here


def test_workers_started_ahead_are_the_ones_pass_one_uses(tmp_path, monkeypatch):
    store = LocalFsStore(tmp_path, {"b": tmp_path})
    body = _body()
    store.write_bytes("b", "vertex/p.jsonl", body)
    monkeypatch.setattr(harvest, "PARALLEL_MIN_BYTES", len(body))
    workers.discard()  # an earlier test in this process may have left the instance's workers (they are kept)
    try:
        harvest.prepare(store, 2, len(body) - 1)  # too little output to pay for workers: none start
        harvest.prepare(store, 1, len(body))
        assert workers._TEAM is None
        harvest.prepare(store, 2, len(body))
        team = workers._TEAM
        assert team is not None and team.size == 2
        here = _collected(store, "b", "vertex/p.jsonl", len(body), workers=1)
        assert workers._TEAM is team
        assert _collected(store, "b", "vertex/p.jsonl", len(body), workers=2) == here
        assert workers._TEAM is team
    finally:
        workers.discard()


def test_a_second_collect_while_the_workers_are_busy_runs_here_and_neither_is_mixed_up(tmp_path,
                                                                                      many_small_pieces):
    # A server on threads runs two collects at once when a job is announced twice: one set of pipes, one user.
    store = LocalFsStore(tmp_path, {"b": tmp_path})
    body = _body()
    store.write_bytes("b", "vertex/p.jsonl", body)
    here = _collected(store, "b", "vertex/p.jsonl", len(body), workers=1)
    first = harvest.pieces(store, "b", harvest.spans([("vertex/p.jsonl", len(body))], 20_000), 1, workers=2)
    out: list[bytes] = []
    merged = harvest.Harvest(out.append)
    merged.add(next(first))
    team = workers._TEAM
    assert _collected(store, "b", "vertex/p.jsonl", len(body), workers=2) == here  # meanwhile, in this process
    for piece in first:
        merged.add(piece)
    assert (b"".join(out), merged.seen, merged.failures, merged.succeeded, merged.tokens) == here
    assert workers._TEAM is team and all(proc.poll() is None for proc in team.procs)


def test_collects_on_threads_at_once_each_get_their_own_pieces(tmp_path, many_small_pieces):
    store = LocalFsStore(tmp_path, {"b": tmp_path})
    body = _body()
    store.write_bytes("b", "vertex/p.jsonl", body)
    here = _collected(store, "b", "vertex/p.jsonl", len(body), workers=1)
    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(_collected, store, "b", "vertex/p.jsonl", len(body), 2) for _ in range(8)]
        assert all(run.result(timeout=120) == here for run in runs)
