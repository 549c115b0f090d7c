"""Submit and collect say where their time went: the seconds of the whole pass (or passes), and of them those
spent waiting for the storage to give the input's bytes and to take the files written (what `run.staged` and
`part.collected` log and the end-to-end benchmark prints). Measuring changes nothing written."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter

import orjson

from shared import layout, staging, submit
from shared.storage.memory import MemoryStore
from tests.unit.fakes import make_pipeline
from tests.unit.flows import assert_accounting, lines, settle, upload

READ_PAUSE, WRITE_PAUSE = 0.02, 0.01


class _Slow:
    """A stream that takes its time over every read and write, as a storage far away does; counts them."""

    def __init__(self, stream, calls: Counter) -> None:
        self._stream, self._calls = stream, calls

    def read(self, size: int = -1) -> bytes:
        self._calls["read"] += 1
        time.sleep(READ_PAUSE)
        return self._stream.read(size)

    def write(self, data) -> int:
        self._calls["write"] += 1
        time.sleep(WRITE_PAUSE)
        return self._stream.write(data)

    def close(self) -> None:
        self._stream.close()


def _slowed(store: MemoryStore) -> Counter:
    """Make every stream `store` opens slow; returns the count of their reads and writes."""
    calls: Counter = Counter()
    real_read, real_write = store.open_read, store.open_write

    @contextlib.contextmanager
    def open_read(*args, **kwargs):
        with real_read(*args, **kwargs) as stream:
            yield _Slow(stream, calls)

    @contextlib.contextmanager
    def open_write(*args, **kwargs):
        with real_write(*args, **kwargs) as stream:
            yield _Slow(stream, calls)

    store.open_read, store.open_write = open_read, open_write
    return calls


def _input() -> bytes:
    good = [orjson.dumps({"key": f"k{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"q {i}"}]}]}})
            for i in range(30)]
    return b"\n".join(good[:12] + [b"{not json"] + good[12:]) + b"\n"


def _stage(slow: bool) -> tuple[staging.Staged, list[bytes | None], Counter]:
    p, store, _, _ = make_pipeline(MAX_ROWS_PER_JOB=10)
    calls = _slowed(store) if slow else Counter()
    data = _input()
    generation = store.write_bytes("in-bucket", "incoming/q.jsonl", data)
    staged = staging.stage(p, "r1", "in-bucket", "incoming/q.jsonl", generation, len(data))
    names = [layout.validation_errors_name("r1"), *(layout.staged_name("r1", part) for part in staged.parts)]
    return staged, [store.read_bytes(p.work_bucket, name) for name in names], calls


def test_staging_counts_its_waits_on_the_storage_and_stages_the_same_bytes():
    staged, files, calls = _stage(slow=True)
    plain, plain_files, _ = _stage(slow=False)
    assert files == plain_files and staged.parts.keys() == plain.parts.keys() and len(staged.parts) == 3
    assert calls["read"] >= 2 and calls["write"] >= 4  # the input read to its end; three parts and the errors file
    assert staged.read_seconds >= calls["read"] * READ_PAUSE
    assert staged.write_seconds >= calls["write"] * WRITE_PAUSE
    assert staged.seconds >= staged.read_seconds + staged.write_seconds
    assert plain.seconds >= plain.read_seconds + plain.write_seconds >= 0


def test_collect_counts_its_passes_and_its_waits_for_the_part_files(capsys):
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=10)
    assert submit.handle_upload(p, upload(store, "incoming/t.jsonl", b"\n".join(lines(25)))) == "staged"
    _slowed(store)
    capsys.readouterr()
    settle(p, vertex, publisher)
    assert_accounting(store, "t", list(range(1, 26)))
    collected = [e for e in map(json.loads, capsys.readouterr().out.splitlines()) if e["event"] == "part.collected"]
    assert len(collected) == 3
    for e in collected:
        assert e["pass1Seconds"] >= 2 * READ_PAUSE  # its predictions file read to its end
        assert e["writeSeconds"] >= WRITE_PAUSE  # its result lines written
        assert e["pass1Seconds"] + e["pass2Seconds"] <= e["seconds"] + 0.002
        assert e["writeSeconds"] <= e["seconds"] + 0.002
