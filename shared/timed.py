"""A stream whose calls are timed: how long a path waited for the storage to give or take its bytes, told apart
from the work it did (`run.staged` and `part.collected` log both)."""

from __future__ import annotations

import time
from typing import IO

__all__ = ["Timed"]


class Timed:
    """`stream`, with the seconds spent in its reads, writes and close added up in `seconds`. A clock read
    either side of a call (~0.1 us), against a call that moves a line at least and most often a megabyte."""

    __slots__ = ("_stream", "seconds")

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.seconds = 0.0

    def read(self, size: int = -1) -> bytes:
        start = time.perf_counter()
        try:
            return self._stream.read(size)
        finally:
            self.seconds += time.perf_counter() - start

    def write(self, data: bytes | bytearray | memoryview) -> int:
        start = time.perf_counter()
        try:
            return self._stream.write(data)
        finally:
            self.seconds += time.perf_counter() - start

    def close(self) -> None:
        start = time.perf_counter()
        try:
            self._stream.close()
        finally:
            self.seconds += time.perf_counter() - start
