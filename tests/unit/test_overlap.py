"""The read-ahead and write-behind streams GcsStore wraps around the client's: the same bytes in the same
order whatever the read sizes, the thread's errors raised to the caller, and nothing left running."""

from __future__ import annotations

import io
import threading

import pytest

from shared.storage._overlap import ReadAhead, WriteBehind


class _Failing(io.BytesIO):
    def __init__(self, data: bytes, after: int) -> None:
        super().__init__(data)
        self.after = after

    def read(self, size=-1):
        if self.tell() >= self.after:
            raise ConnectionError("reset")
        return super().read(size)


@pytest.mark.parametrize("sizes", [[1], [7, 3], [100], [1000], [-1]])
def test_read_ahead_gives_the_same_bytes_whatever_the_read_sizes(sizes):
    data = bytes(range(256)) * 40
    with ReadAhead(io.BytesIO(data), chunk=333) as stream:
        got, n = [], 0
        while piece := stream.read(sizes[n % len(sizes)]):
            got.append(piece)
            n += 1
        assert stream.read(5) == b""
    assert b"".join(got) == data


@pytest.mark.parametrize("limit", [0, 1, 332, 333, 1000, 9999, 20_000])
def test_a_read_ahead_with_a_limit_fetches_no_more_ahead_and_still_reads_everything(limit):
    data = bytes(range(256)) * 40
    source = io.BytesIO(data)
    with ReadAhead(source, chunk=333, limit=limit) as stream:
        first = stream.read(100)
        threading.Event().wait(0.05)  # let the thread fetch all it may
        assert source.tell() <= max(limit, 0) + 333  # at most the chunk that crossed the limit
        rest = stream.read(-1)
    assert first + rest == data


def test_read_ahead_raises_the_readers_error_to_the_caller_after_the_bytes_before_it():
    with ReadAhead(_Failing(b"x" * 1000, after=600), chunk=300) as stream:
        assert stream.read(300) + stream.read(300) == b"x" * 600
        with pytest.raises(ConnectionError):
            stream.read(300)


def test_closing_a_read_ahead_early_stops_its_thread():
    # Its own thread, not the process's thread count: other tests' threads may end meanwhile (seen in CI).
    before = set(threading.enumerate())
    stream = ReadAhead(io.BytesIO(b"y" * 100_000), chunk=10)
    started = {t for t in set(threading.enumerate()) - before if t.name == "gcs-read-ahead"}
    assert stream.read(10) == b"y" * 10
    stream.close()
    assert started and not any(thread.is_alive() for thread in started)


def test_write_behind_hands_every_byte_over_in_order():
    sink = io.BytesIO()
    writer = WriteBehind(sink, chunk=64)
    for i in range(500):
        writer.write(b"%d," % i)
    writer.finish()
    assert sink.getvalue() == b"".join(b"%d," % i for i in range(500))


def test_closing_a_write_behind_finishes_and_closes_its_sink_once():
    sink = io.BytesIO()
    writer = WriteBehind(sink, chunk=1 << 20)
    writer.write(b"all of it")
    got = []
    sink.close = lambda: got.append(sink.getvalue())
    writer.close()
    writer.finish()  # the with block's own finish, after an early close: nothing more
    assert got == [b"all of it"]


def test_write_behind_raises_the_sinks_error_and_abandon_hands_nothing_more():
    class Broken(io.BytesIO):
        def write(self, data):
            raise OSError("disk gone")

    writer = WriteBehind(Broken(), chunk=4)
    with pytest.raises(OSError):
        for _ in range(100):
            writer.write(b"abcdef")
    writer.abandon()
    sink = io.BytesIO()
    writer = WriteBehind(sink, chunk=1 << 20)
    writer.write(b"kept only if finished")
    writer.abandon()
    assert sink.getvalue() == b""
