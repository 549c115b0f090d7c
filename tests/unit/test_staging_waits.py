"""Staging says where its time went: the seconds of the whole pass, and of them those spent waiting for the
storage to give the input's bytes and to take the staged files (what `run.staged` logs and the end-to-end
benchmark prints). Measuring changes nothing staged."""

from __future__ import annotations

import contextlib
import time

import orjson

from shared import layout, staging
from shared.storage.memory import MemoryStore
from tests.unit.fakes import make_pipeline

READ_PAUSE, WRITE_PAUSE = 0.02, 0.01


class _Slow:
    """A stream that takes its time over every call, as a storage far away does."""

    def __init__(self, stream, pause: float) -> None:
        self._stream, self._pause = stream, pause

    def read(self, size: int = -1) -> bytes:
        time.sleep(self._pause)
        return self._stream.read(size)

    def write(self, data) -> int:
        time.sleep(self._pause)
        return self._stream.write(data)

    def close(self) -> None:
        self._stream.close()


class _SlowStore(MemoryStore):
    reads = writes = 0

    @contextlib.contextmanager
    def open_read(self, *args, **kwargs):
        with super().open_read(*args, **kwargs) as stream:
            yield _Counted(self, "reads", _Slow(stream, READ_PAUSE))

    @contextlib.contextmanager
    def open_write(self, *args, **kwargs):
        with super().open_write(*args, **kwargs) as stream:
            yield _Counted(self, "writes", _Slow(stream, WRITE_PAUSE))


class _Counted:
    def __init__(self, store: _SlowStore, what: str, stream: _Slow) -> None:
        self._store, self._what, self._stream = store, what, stream

    def read(self, size: int = -1) -> bytes:
        self._store.reads += 1
        return self._stream.read(size)

    def write(self, data) -> int:
        self._store.writes += 1
        return self._stream.write(data)

    def close(self) -> None:
        self._stream.close()


def _input() -> bytes:
    good = [orjson.dumps({"key": f"k{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"q {i}"}]}]}})
            for i in range(30)]
    return b"\n".join(good[:12] + [b"{not json"] + good[12:]) + b"\n"


def _stage(store: MemoryStore) -> tuple[staging.Staged, list[bytes | None]]:
    p, _, _, _ = make_pipeline(MAX_ROWS_PER_JOB=10)
    p.store = store
    data = _input()
    generation = store.write_bytes("in-bucket", "incoming/q.jsonl", data)
    staged = staging.stage(p, "r1", "in-bucket", "incoming/q.jsonl", generation, len(data))
    names = [layout.validation_errors_name("r1"), *(layout.staged_name("r1", part) for part in staged.parts)]
    return staged, [store.read_bytes(p.work_bucket, name) for name in names]


def test_the_pass_counts_its_waits_on_the_storage_and_stages_the_same_bytes():
    slow = _SlowStore()
    staged, files = _stage(slow)
    plain, plain_files = _stage(MemoryStore())
    assert files == plain_files and staged.parts.keys() == plain.parts.keys() and len(staged.parts) == 3
    assert slow.reads >= 2 and slow.writes >= 4  # the input read to its end; three parts and the errors file
    assert staged.read_seconds >= slow.reads * READ_PAUSE
    assert staged.write_seconds >= slow.writes * WRITE_PAUSE
    assert staged.seconds >= staged.read_seconds + staged.write_seconds
    assert plain.seconds >= plain.read_seconds + plain.write_seconds >= 0

