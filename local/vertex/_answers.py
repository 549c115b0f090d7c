"""A row's answer, and a large job's rows answered side by side in worker processes.

At latency 0 a job is Python from end to end: parsing each line, the model and the output line take ~12 us a
row (`answer_chunk`), one thread's worth, so a 200,000-row job would keep one core busy while the other idled (the
end-to-end benchmark's largest phase). A row's answer depends on the line, its row number and the job's name,
model and retryable-fault settings (`Asked`), and on nothing else but whether a `fileData` object exists, which
takes the emulator's storage: a worker leaves such a row to the job (ASK_THE_JOB) and the job's own thread
answers it.

`AnswerPool.answered` gives the answers chunk by chunk in row order, so the job's loop (exports, faults, cancel,
pacing) is the same whichever computes them; the pool only works ahead of it, by one chunk per process and one
more, and what it computed past the row where a job stops is thrown away. Only a job of at least `POOL_MIN_ROWS` rows is
sent there: starting the processes (~0.1 s each, once per emulator, while that job's importer pass reads on) and
sending lines to them would cost a small job more than it saves. What it gains is a share of the row work, on a
host where two processes run at ~1.5x one: 200,000 rows in 4.11-4.53 s against 4.74-5.66 s (`_perf`, see
`_runner`). tests/functional/vertex/test_answer_pool.py runs every recorded job of tests/unit/test_vertex_rows.py
through the pool and checks the same output.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import orjson

from local.vertex import _output
from local.vertex._model import RowFailure, predict, retryable_draw

__all__ = ["POOL_MIN_ROWS", "AnswerPool", "Asked", "answer"]

POOL_MIN_ROWS = 20_000
# A chunk (what a process answers at a time) ends at CHUNK_ROWS rows or CHUNK_BYTES of lines, whichever comes first.
# One chunk per process is in flight and one more, so a process that finishes finds its next chunk waiting; what
# the emulator holds ahead is then a few MB whatever the lines' size (lines and their answers, each the line and
# ~0.5 KB more, with their copies on the way). tests/functional/vertex/test_output.py keeps a 22 MB job's peak
# under 11 MB (~9.0 MB with rows answered in the job's thread): these chunks, three in flight for two processes,
# ~10.5 MB; 512 KB chunks with two per process took it to ~15.6 MB.
CHUNK_ROWS = 2048
CHUNK_BYTES = 160 * 1024
_NO_REQUEST = "Invalid JSON payload received. Each line needs a 'request' field."


class Asked(NamedTuple):
    """What of a job its rows' answers depend on."""

    job: str
    model: str
    retryable_fraction: float
    retryable_codes: tuple


def answer(asked: Asked, row: int, obj: dict, file_exists: Callable[[str], bool]) -> tuple[bytes, bool]:
    """Row `row` (`obj`, its parsed line) answered: (its output line, whether it succeeded)."""
    when = _output.processed_time()
    fraction = asked.retryable_fraction
    failure = retryable_draw(asked.job, row, fraction, asked.retryable_codes) if fraction > 0 else None
    if failure is None:
        if "request" not in obj:
            failure = RowFailure(400, _NO_REQUEST)
        else:
            try:
                response = predict(obj["request"], asked.model, file_exists)
                return _output.success_line(obj, response, when), True
            except RowFailure as exc:
                failure = exc
    return _output.failure_line(obj, failure.status, when), False


class _AskTheJob(Exception):
    """Raised in a worker for a row that needs the job's storage (a `fileData` object to look up)."""


def _no_storage(uri: str) -> bool:
    raise _AskTheJob(uri)


OK, FAILED, ASK_THE_JOB = 1, 0, 2  # a row's flag in a chunk's answers


def answer_chunk(asked: Asked, first: int, lines: list[bytes], file_exists: Callable[[str], bool] = _no_storage) \
        -> tuple[list[bytes], bytearray]:
    """The answers of rows first, first + 1, ...: their output lines, and a flag a row (OK, FAILED, or ASK_THE_JOB
    where `file_exists` raised _AskTheJob: the row's line is then its input line, for the job's thread to answer).

    `answer`, unrolled for a chunk: a row is ~12 us of work, and a call, a tuple and lookups a row were a tenth
    of it."""
    out: list[bytes] = []
    flags = bytearray(len(lines))
    loads, when_now, success = orjson.loads, _output.processed_time, _output.success_line
    model, fraction = asked.model, asked.retryable_fraction
    for index, raw in enumerate(lines):
        obj = loads(raw)
        if fraction > 0 or "request" not in obj:  # a retryable draw, or no request: the general path
            try:
                line, ok = answer(asked, first + index, obj, file_exists)
            except _AskTheJob:
                line, ok = raw, ASK_THE_JOB
            out.append(line)
            flags[index] = ok
            continue
        try:
            out.append(success(obj, predict(obj["request"], model, file_exists), when_now()))
            flags[index] = OK
        except RowFailure as exc:
            out.append(_output.failure_line(obj, exc.status, when_now()))
        except _AskTheJob:
            out.append(raw)
            flags[index] = ASK_THE_JOB
    return out, flags


def _nothing() -> None:
    """A first task, to start the processes."""


class AnswerPool:
    """Worker processes shared by the emulator's jobs, started on first use and stopped with the emulator."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn, not fork: the emulator is threaded (HTTP server, clock, job threads, storage client).
                self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._executor

    def warm(self) -> None:
        """Start the processes now (they start on a first task): a job calls this when its importer pass meets row
        POOL_MIN_ROWS, so that they start (~0.1 s each) while it reads the rest."""
        self._started().submit(_nothing)

    def answered(self, asked: Asked, chunks: Iterable[tuple[int, list[bytes]]], here: Callable[[int, bytes], tuple]) \
            -> Iterator[tuple[int, list[bytes], bytearray]]:
        """(first row, output lines, flags: `answer_chunk`'s) for each of `chunks` ((first row, its line and the
        next ones')), in order; `here(row, raw)` answers a row a worker left to the job."""
        executor = self._started()
        chunks = iter(chunks)
        window: deque = deque()
        try:
            for first, lines in itertools.islice(chunks, self.processes + 1):
                window.append((first, executor.submit(answer_chunk, asked, first, lines)))
            while window:
                first, future = window.popleft()
                try:
                    out, flags = future.result()
                except BrokenProcessPool:
                    self._discard(executor)  # a worker died: the next job starts new ones
                    raise
                more = next(chunks, None)
                if more is not None:
                    window.append((more[0], executor.submit(answer_chunk, asked, *more)))
                index = flags.find(ASK_THE_JOB)
                while index >= 0:
                    out[index], flags[index] = here(first + index, out[index])
                    index = flags.find(ASK_THE_JOB, index + 1)
                yield first, out, flags
        finally:
            for _, future in window:
                future.cancel()  # the job stopped (fault, cancel, emulator stopping): its later rows are not needed

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
