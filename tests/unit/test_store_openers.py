"""A store's opener crosses to a worker process pickled, once per task: every copy must be the same key, so a
worker opens one store (one storage client, one connection pool) for all its tasks and keeps no more."""

from __future__ import annotations

import pickle

import pytest

from shared import harvest
from shared.storage.base import StoreOpener
from shared.storage.gcs import GcsStore, make_client
from shared.storage.localfs import LocalFsStore


class _Subclass(LocalFsStore):
    """A store type of its own (as `batchctl validate`'s check-only store is): its opener opens one of it."""


def _stores(tmp_path):
    buckets = {"in": tmp_path / "in", "out": tmp_path / "out"}
    return [LocalFsStore(tmp_path, buckets), _Subclass(tmp_path), GcsStore(make_client(endpoint="http://127.0.0.1:9"))]


def _copy(opener: StoreOpener) -> StoreOpener:
    return pickle.loads(pickle.dumps(opener))


@pytest.mark.parametrize("which", range(3))
def test_an_opener_equals_its_pickled_copies_and_opens_the_same_kind_of_store(tmp_path, which):
    store = _stores(tmp_path)[which]
    opener = store.opener()
    first, second = _copy(opener), _copy(opener)
    assert first is not second
    assert first == second == opener
    assert hash(first) == hash(second) == hash(opener)
    assert len({first, second, opener}) == 1
    assert type(first()) is type(store)


def test_a_local_store_opened_elsewhere_keeps_its_buckets(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.jsonl").write_bytes(b"one\ntwo\n")
    store = LocalFsStore(tmp_path / "root", {"in": tmp_path / "in"})
    with _copy(store.opener())().open_read("in", "x.jsonl", start=4) as stream:
        assert stream.read() == b"two\n"


def test_openers_of_different_stores_differ(tmp_path):
    assert LocalFsStore(tmp_path / "a").opener() != LocalFsStore(tmp_path / "b").opener()
    assert LocalFsStore(tmp_path).opener() != _Subclass(tmp_path).opener()
    assert GcsStore(make_client(endpoint="http://127.0.0.1:9")).opener() != \
        GcsStore(make_client(endpoint="http://127.0.0.1:8")).opener()


def test_a_worker_opens_one_store_for_all_its_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(harvest, "_worker_stores", {})
    (tmp_path / "b").mkdir()
    lines = b"".join(b'{"gbp_row":"r%d","status":"","response":{"candidates":[]}}\n' % row for row in range(1, 41))
    (tmp_path / "b" / "p.jsonl").write_bytes(lines)
    opener = LocalFsStore(tmp_path).opener()
    cuts = harvest.spans([("p.jsonl", len(lines))], piece_bytes=200)
    assert len(cuts) > 5
    # Each task unpickles its own copy of the opener, as a worker does.
    got = [harvest._in_worker(_copy(opener), "b", span, 1) for span in cuts]
    assert len(harvest._worker_stores) == 1
    assert sum(len(piece.succeeded) + len(piece.failures) for piece in got) == 40
