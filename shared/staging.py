"""Validate and stage an uploaded file in one streaming pass: bad lines to the run's validation errors,
good lines to part files of at most MAX_ROWS_PER_JOB rows and MAX_BYTES_PER_JOB bytes each.

Lines of known shapes in a row are staged side by side (`_Runs`, `KnownShapes.staged_run`), at a fraction of a
line's cost one by one: lines of one shape, or of several in any order. A large input of short lines that runs do
not take (shapes that do not repeat, escapes orjson writes otherwise) is validated in blocks of lines by worker
processes (`shared/workers.py`), one per CPU, while this process reads the input, hands out the blocks and writes
what comes back, in order; so is any large input of short lines once the instance's workers are running (they stay),
each worker keeping the shapes it learnt from block to block (`stage_block`). Per line, validation one by one is
Python (a few microseconds a line whatever its length), so one core caps it; two processes on two vCPU validate such
lines in about 0.6-0.8 of the time. Long lines, and lines runs take, are validated here: handing out their bytes
costs about what validating them does.

What a block gives must be what one pass over every line in order gives: the importer rules (one type per key
path across the file, at most MAX_COLUMNS key paths) make a line's verdict depend on the lines before it. A
block goes out with the file's schema as it stands when it is sent; a worker reports what its accepted lines
added to that schema. A block is taken as it is when the schema it saw is the file's schema at its first line
(no block before it changed the schema meanwhile), or when everything it added the file's schema has, with the
same types, and none of its lines was refused by the importer rules (which of a line's problems is found first,
and what a type conflict's message says, depend on the schema). Any other block is validated again here, in
order, against the file's schema: correct whatever the file, and rare, as a file's schema is fixed by its first
lines but for a few keys. tests/unit/test_parallel_staging.py checks the staged parts and the errors file byte
for byte against one pass, in blocks of a few lines, on files made to defeat it.
"""

from __future__ import annotations

import pickle
import time
import uuid
from array import array
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from shared import joining, layout, raw_request, runstate, validation, workers
from shared.known_shapes import KnownShapes
from shared.lines import READ_SIZE, Prefixed, TooLong, UpToDamage, iter_lines, newlines
from shared.pipeline import Pipeline
from shared.rowsums import RowSums
from shared.timed import Timed
from shared.validation import Accepted, LineValidator, Rejected

_WRITE_BATCH = 1 << 20
_SAMPLES = 5  # rejection messages kept for the log
BLOCK_BYTES = 2 * 1024 * 1024  # of input lines per block (4 MB: peak RSS ~170 MB against ~120, no faster)
PARALLEL_MIN_BYTES = 16 * 1024 * 1024  # a smaller input is validated here: starting workers would cost more
# Workers validate an input whose first megabyte has lines of this many bytes or fewer, on average, and whose lines
# runs do not take (below). Per line, validation one by one costs ~5-7 us whatever its length; handing a block out
# and taking its staged lines back (reading, counting lines, the pipe both ways, about ten copies of each byte) costs
# by its bytes. One pass here against two workers already started, as an instance keeps them (2 vCPU that run two
# processes at ~1.5x one, the same file twice each, `stage_file` in one process), before runs: 200,000 lines of
# ~300 bytes 1.03-1.04 s against 0.61-0.62 s; 120,000 of ~640 bytes 0.81-1.02 s against 0.47-0.49 s; 60,000 of
# ~1.1 KB 0.44-0.45 s against 0.33-0.39 s; 43,000 of ~4.6 KB 0.51-0.63 s against 0.75-0.78 s. Starting the workers
# costs ~0.2 s more, once per instance. With runs, 200,000 short lines of one shape take 0.53-0.89 s here against
# 0.47-0.63 s with warm workers (and 0.8-1.0 s with cold ones); of three shapes in turn, before runs took lines of
# several shapes, 1.65-1.83 s here against 0.99-1.32 s with warm workers (0.85-0.88 s here since).
SHORT_LINE_BYTES = 2048
# Lines of known shapes are staged side by side in runs of up to this many bytes (`_Runs`); a run not all of known
# shapes is tried again halved, down to RUN_MIN_BYTES, whose lines then go one by one; RUN_BACKOFF: the most
# runs left untried after the shortest failed again.
RUN_BYTES = 256 * 1024
RUN_MIN_BYTES = 16 * 1024
RUN_BACKOFF = 64
RUNS_TAKE_SHARE = 0.5  # of the first read's lines taken in runs, for an input of short lines to be staged here
LONG_LINE_BYTES = 16 * 1024 * 1024  # a line longer than this (inline data, or no newline at all) is not sent in a
# block: the rest of the input is validated here, streaming, as one pass would
# Refusals by the importer's walk of a line, which the schema may decide: the walk stops at the first problem in
# document order, so a type the schema fixed earlier turns a bad key name (or a struct too deep, an empty one, an
# array in an array) further on into a type conflict; and a conflict's message names the line that fixed the type.
_SCHEMA_BOUND = frozenset((validation.TYPE_CONFLICT, validation.TOO_MANY_COLUMNS, validation.BAD_KEY_NAME,
                           validation.TOO_DEEP, validation.EMPTY_STRUCT, validation.NESTED_ARRAY))


@dataclass
class Staged:
    total: int = 0
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # the first few rejection messages, for the log
    # Where the pass's time went: all of it, and how much of it was spent waiting for the storage to give the
    # input's bytes (`read_seconds`) or to take the part files and the errors file (`write_seconds`). The rest
    # is validating (with the workers, if any) and splitting.
    seconds: float = 0.0
    read_seconds: float = 0.0
    write_seconds: float = 0.0
    unreadable: str | None = None  # why the input could not be read to its end (its rest is one failed row)

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    def validation(self) -> dict[str, Any]:
        return {"failed": self.failed, "byReason": dict(sorted(self.failed_by_reason.items()))}


class _Parts:
    """Rolls staged lines over into a new part file whenever the next line would break a limit."""

    def __init__(self, p: Pipeline, run: str, stack: ExitStack, staged: Staged) -> None:
        self._p, self._run, self._stack, self._staged = p, run, stack, staged
        self._writer: Timed | None = None
        # Lines go to the writer in batches of about _WRITE_BATCH bytes: a write call per ~4 KB line took ~4 us,
        # about a tenth of validating it (cProfile of `batchctl validate` on the `python -m bench --mb 100` input).
        # Only when the bytes reach the writer changes; the object still appears when the writer closes. One
        # buffer, not a list of lines: a line fresh from orjson.dumps keeps ~8 KB of memory whatever its length.
        self._pending = bytearray()
        self._chunk = 0
        self._rows = self._bytes = 0
        self._first = self._last = 0
        self._sums = RowSums()

    def add_block(self, data: bytes | bytearray, rows: array | range) -> None:
        """`add` for each staged line of a block (`data`, the lines one after another, each ending in its newline;
        their rows): the same parts, with a step per part the lines fill instead of one per line. Where each line
        ends is looked for only when the block does not fit in the part being written."""
        cfg = self._p.config
        if self._writer is not None and self._rows + len(rows) <= cfg.max_rows_per_job and \
                self._bytes + len(data) <= cfg.max_bytes_per_job:
            self._append(data, 0, len(data), rows)
            return
        ends = _line_ends(data)
        done = at = 0  # lines added, and their bytes
        while done < len(rows):
            if self._writer is None or self._rows >= cfg.max_rows_per_job or \
                    self._bytes + ends[done] - at > cfg.max_bytes_per_job:
                self._roll()
            # The lines that still fit this part: within its rows, and within its bytes.
            last = min(len(rows), done + cfg.max_rows_per_job - self._rows,
                       bisect_right(ends, at + cfg.max_bytes_per_job - self._bytes, lo=done))
            self._append(data, at, ends[last - 1], rows[done:last])
            done, at = last, ends[last - 1]

    def _append(self, data: bytes | bytearray, start: int, end: int, rows: array | range) -> None:
        """The lines data[start:end], of these rows, to the part being written."""
        if type(data) is bytes and end - start >= _WRITE_BATCH // 4 and start == 0 and end == len(data):
            # A run staged at once: written as it is, not copied into the batch first.
            if self._pending:
                self._flush()
            self._writer.write(data)
        else:
            self._pending += memoryview(data)[start:end]
            if len(self._pending) >= _WRITE_BATCH:
                self._flush()
        self._rows += len(rows)
        self._bytes += end - start
        self._first = self._first or rows[0]
        self._last = rows[-1]
        self._sums.update(rows)

    def add(self, line: bytes, row: int) -> None:
        cfg = self._p.config
        if self._writer is None or self._rows >= cfg.max_rows_per_job or \
                self._bytes + len(line) > cfg.max_bytes_per_job:
            self._roll()
        self._pending += line
        if len(self._pending) >= _WRITE_BATCH:
            self._flush()
        self._rows += 1
        self._bytes += len(line)
        self._first = self._first or row
        self._last = row
        self._sums.add(row)

    def _roll(self) -> None:
        self.close()
        self._chunk += 1
        part = layout.part_id(self._chunk, 1)
        self._writer = Timed(self._stack.enter_context(
            self._p.store.open_write(self._p.work_bucket, layout.staged_name(self._run, part))))
        self._rows = self._bytes = 0
        self._first = self._last = 0
        self._sums = RowSums()

    def _flush(self) -> None:
        self._writer.write(self._pending)
        self._pending = bytearray()  # a new one: the writer may keep the one it was given

    def close(self) -> None:
        if self._writer is not None:
            if self._pending:
                self._flush()
            self._writer.close()  # finish the upload now; ExitStack closing it again is harmless
            self._staged.write_seconds += self._writer.seconds
            part = layout.part_id(self._chunk, 1)
            self._staged.parts[part] = runstate.new_part(self._chunk, 1, self._rows, self._bytes,
                                                         since=self._p.clock(), first_row=self._first,
                                                         last_row=self._last, row_sums=self._sums.value())
            self._writer = None


class _Direct:
    """Where one pass puts its lines: staged lines to the parts, rejected ones to the errors file."""

    def __init__(self, p: Pipeline, staged: Staged, parts: _Parts, errors: IO[bytes]) -> None:
        self._p, self._staged, self._parts, self._errors = p, staged, parts, errors
        self._started = False

    def staged_line(self, line: bytes, row: int) -> None:
        self._staged.total += 1
        self._parts.add(line, row)
        self._first_staged()

    def rejected(self, line: bytes, reason: str, message: str) -> None:
        _count_rejected(self._staged, reason, message)
        self._errors.write(line)

    def staged_lines(self, data: bytes, rows: range) -> None:
        """Staged lines one after another (`KnownShapes.staged_run`), with their rows."""
        self._staged.total += len(rows)
        self._parts.add_block(data, rows)
        self._first_staged()

    def block(self, block: Block) -> None:
        """A worker's block, taken as it is."""
        staged = self._staged
        staged.total += len(block.rows) + sum(block.by_reason.values())
        staged.failed_by_reason.update(block.by_reason)
        staged.samples += block.samples[:max(0, _SAMPLES - len(staged.samples))]
        if block.errors:
            self._errors.write(block.errors)
        if block.rows:
            self._parts.add_block(block.staged, block.rows)
            self._first_staged()

    def _first_staged(self) -> None:
        if not self._started:
            self._started = True
            self._p.checkpoint("submit.staging")  # a crash here leaves half-written part files behind


def _count_rejected(staged: Staged, reason: str, message: str) -> None:
    staged.total += 1
    staged.failed_by_reason[reason] += 1
    if len(staged.samples) < _SAMPLES:
        staged.samples.append(message)


@dataclass(slots=True)
class Block:
    """What a worker made of a block of lines: its staged lines (one after another, with their rows), its error
    lines, and what its accepted lines added to the schema it was sent with."""

    staged: bytearray | bytes = field(default_factory=bytearray)
    rows: array = field(default_factory=lambda: array("q"))
    errors: bytearray | bytes = field(default_factory=bytearray)
    by_reason: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    added: list[tuple[str, str | None]] = field(default_factory=list)
    schema_bound: bool = False  # a line was refused for a reason the schema decides
    validator: LineValidator | None = None  # the schema after the block, when it added anything

    def staged_line(self, line: bytes, row: int) -> None:
        self.staged += line
        self.rows.append(row)

    def staged_lines(self, data: bytes, rows: range) -> None:
        self.staged += data
        self.rows.extend(rows)

    def rejected(self, line: bytes, reason: str, message: str) -> None:
        self.errors += line
        self.by_reason[reason] += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append(message)
        if reason in _SCHEMA_BOUND:
            self.schema_bound = True

    def __reduce_ex__(self, protocol: int) -> tuple:
        # The staged lines go out of band when the pickler takes buffers (`workers.send`); the error lines are few.
        return _block, (pickle.PickleBuffer(self.staged) if protocol >= 5 else bytes(self.staged), self.rows,
                        bytes(self.errors), self.by_reason, self.samples, self.added,
                        self.schema_bound, self.validator)


def _block(staged: Any, *rest: Any) -> Block:
    """A Block unpickled: its lines in the buffers they came back in (bytes), as they are."""
    return Block(staged if isinstance(staged, bytes | bytearray) else bytes(staged), *rest)


def _reject(sink: Any, row: int, reason: str, message: str, *, request: Any = None, line: str | None = None,
            has_key: bool = False, key: Any = None) -> None:
    sink.rejected(joining.error_line(row, has_key, key, stage="validation", code=400, status="INVALID_ARGUMENT",
                                     message=message, retryable=False, attempts=0, request=request, line=line),
                  reason, message)


def _stage_lines(numbered: Iterable[tuple[int, bytes]], validator: LineValidator, shapes: KnownShapes,
                 max_bytes: int, sink: Any) -> None:
    """Validate and stage lines in order (numbered as in the file), each to `sink.staged_line` or
    `sink.rejected`. The one pass over a file, and what a worker does with a block of it."""
    for row, raw in numbered:
        if isinstance(raw, TooLong):
            _reject(sink, row, "line_too_long", f"line {row}: {raw.length} bytes is longer than any request Vertex "
                    "accepts", line=bytes(raw).decode(errors="replace"))
            continue
        line = shapes.staged_line(row, raw)
        if line is not None and len(line) <= max_bytes:
            sink.staged_line(line, row)
            continue
        verdict = validator.validate(row, raw)
        if verdict is None:
            continue  # blank lines are not rows
        if isinstance(verdict, Rejected):
            _reject(sink, row, verdict.reason, verdict.message, request=verdict.request, line=verdict.line,
                    has_key=verdict.has_key, key=verdict.key)
            continue
        assert isinstance(verdict, Accepted)
        # A request already spelled as orjson would spell it is copied, never re-serialised.
        spliced = raw_request.request_bytes(raw, verdict.has_key, verdict.key, verdict.keys)
        if spliced is None:
            line = joining.staged_line(row, verdict.request, verdict.has_key, verdict.key)
        else:
            line = joining.staged_line_raw(row, spliced, verdict.has_key, verdict.key)
        if len(line) > max_bytes:
            _reject(sink, row, "line_too_large",
                    f"line {row}: {len(line)} bytes is more than MAX_BYTES_PER_JOB ({max_bytes})",
                    request=verdict.request, has_key=verdict.has_key, key=verdict.key)
            continue
        shapes.learn(raw, verdict.has_key, verdict.key, verdict.request)  # later lines of its shape: no parse
        sink.staged_line(line, row)


def _line_ends(data: bytes | bytearray) -> list[int]:
    """Where each line of `data` (staged lines, each ending in its newline, none inside) ends."""
    ends, find = [], data.find
    at = find(b"\n")
    while at >= 0:
        ends.append(at + 1)
        at = find(b"\n", at + 1)
    return ends


class _Runs:
    """`_stage_lines` over whole lines, taking runs of lines of known shapes side by side (`KnownShapes.staged_run`:
    one shape, or several in any order): a few C calls per string of a shape for a run, where one by one each line
    costs a few Python steps per string. A run that is not all of known shapes is tried again halved, down to
    RUN_MIN_BYTES, whose lines then go one by one; after a run taken whole, the next may be twice as long. Where the
    shortest runs keep failing (lines of shapes that do not repeat), fewer are tried: after each failure but the
    first in a row, twice as many runs as after the one before (up to RUN_BACKOFF) go line by line untried."""

    def __init__(self, validator: LineValidator, shapes: KnownShapes, max_bytes: int, sink: Any) -> None:
        self.validator, self.shapes, self.max_bytes, self.sink = validator, shapes, max_bytes, sink
        self._size = RUN_BYTES
        self._backoff = self._untried = 0  # after a shortest run failed: runs to leave untried, and those left
        self.taken = 0  # lines staged in runs

    def stage(self, first: int, data: bytes, start: int = 0, end: int | None = None) -> int:
        """Stage the lines of data[start:end] (whole lines, none longer than LONG_LINE_BYTES; the lines
        `iter_lines` would give), the first of them line `first` of the file. Returns how many lines they are."""
        end = len(data) if end is None else end
        if end <= start:
            return 0
        if data[end - 1] == 10:  # the lines are those of data[start:end] before its last newline, split at newlines
            end -= 1
        shapes, at, row = self.shapes, start, first
        while True:
            cut = data.find(b"\n", min(at + self._size, end), end)  # the run ends at a line's end, `size` bytes on
            stop = end if cut < 0 else cut
            run = data[at:stop]
            staged, tried = None, False
            if self._untried:
                self._untried -= 1
            elif shapes.on:
                staged, tried = shapes.staged_run(row, run, self.max_bytes), True
                if staged is None and self._size > RUN_MIN_BYTES and b"\n" in run:
                    self._size //= 2
                    continue
            if staged is not None:
                self.sink.staged_lines(*staged)
                row += len(staged[1])
                self.taken += len(staged[1])
                self._size = min(self._size * 2, RUN_BYTES)
                self._backoff = 0
            else:
                if tried:  # a shortest run failed: the next is tried at once, after another failure fewer are
                    self._untried, self._backoff = self._backoff, min(self._backoff * 2 or 1, RUN_BACKOFF)
                lines = run.split(b"\n")
                _stage_lines(enumerate(lines, row), self.validator, shapes, self.max_bytes, self.sink)
                row += len(lines)
            if stop >= end:
                return row - first
            at = stop + 1


# A worker's known shapes, kept from one block of a file to its next: (the file's pass, the shapes, the schema they
# were learnt within). Learnt again for every block, the bench's ~4.6 KB lines cost ~4 ms more a 2 MB block (96
# blocks: 0.99 s against 0.61 s in one process). A shape's verdict is the full path's for any schema that has every
# key path the shape's line had, with the same types (`shared/known_shapes.py`); each was learnt within the schema
# kept beside it, so they serve a block whose schema holds all of that one. A block sent before an earlier one's
# additions reached the file's schema, or after a block was validated again in the parent (a line a worker
# accepted may have been refused there), may not hold it: that block learns afresh.
_kept: tuple[str, KnownShapes, LineValidator] | None = None


def stage_block(first: int, data: Any, validator: LineValidator, max_bytes: int, pass_id: str = "") -> Block:
    """In a worker: the lines of `data` (whole lines, the first of them line `first` of the file) validated
    against `validator` (the file's schema when the block was sent) and staged. `pass_id` names the pass over
    the file the block is of: the shapes learnt from its earlier blocks serve it where its schema allows."""
    global _kept
    kept = _kept
    if kept is not None and pass_id and kept[0] == pass_id and validator.holds(kept[2].entries()):
        shapes = kept[1]
    else:
        shapes = KnownShapes()
    _kept = None  # (until this block is done: a block that fails leaves nothing behind)
    block = Block()
    changes = validator.changes
    _Runs(validator, shapes, max_bytes, block).stage(first, bytes(data))
    block.added = validator.added()
    if validator.changes != changes:
        block.validator = validator
    if pass_id:
        _kept = (pass_id, shapes, validator)
    return block


def _stage_stream(source: IO[bytes], validator: LineValidator, shapes: KnownShapes, max_bytes: int,
                  sink: Any) -> None:
    """`_stage_lines` over every line of `source`, the whole lines of each read at once (`_Runs`), each taken
    from the read itself; from a line longer than LONG_LINE_BYTES on, line by line, as `iter_lines` gives them."""
    runs = _Runs(validator, shapes, max_bytes, sink)
    row, pending, held = 1, [], 0  # pending: the pieces of a line begun in earlier reads
    while True:
        chunk = source.read(READ_SIZE)
        if not chunk:
            if pending:  # the last line, without a newline
                runs.stage(row, b"".join(pending))
            return
        start = 0
        if pending:
            cut = chunk.find(b"\n")
            if cut < 0:
                pending.append(chunk)
                held += len(chunk)
                if held > LONG_LINE_BYTES:
                    _stage_lines(enumerate(iter_lines(Prefixed(b"".join(pending), source)), row), validator, shapes,
                                 max_bytes, sink)
                    return
                continue
            pending.append(chunk[:cut + 1])
            row += runs.stage(row, b"".join(pending))
            pending, held, start = [], 0, cut + 1
        end = max(chunk.rfind(b"\n", start) + 1, start)  # whole lines only; the rest waits for the next read
        row += runs.stage(row, chunk, start, end)
        if end < len(chunk):
            pending.append(chunk[end:])
            held += len(chunk) - end


def stage(p: Pipeline, run: str, bucket: str, name: str, generation: int, size: int | None = None) -> Staged:
    """Stream gs://bucket/name#generation once. Raises ObjectMissing if that generation is gone. `size`: the
    object's, when known (a large input is validated by worker processes)."""
    started = time.perf_counter()
    staged = Staged()
    validator = LineValidator()
    processes = p.config.submit_workers or workers.available_cpus()
    with ExitStack() as stack:
        errors = Timed(stack.enter_context(p.store.open_write(p.work_bucket, layout.validation_errors_name(run))))
        parts = _Parts(p, run, stack, staged)
        sink = _Direct(p, staged, parts, errors)
        reading = Timed(stack.enter_context(p.store.open_read(bucket, name, generation)))
        source = readable = UpToDamage(reading)
        max_bytes = p.config.max_bytes_per_job
        team = None
        if processes >= 2 and size is not None and size >= PARALLEL_MIN_BYTES:
            # Per line, validation costs about the same whatever the line's length, and handing a block to a
            # worker costs by its bytes: long lines are validated here as fast as they can be handed out.
            head = source.read(READ_SIZE)
            source = Prefixed(head, source)
            if len(head) <= SHORT_LINE_BYTES * max(1, head.count(b"\n")) and \
                    _workers_pay(head, max_bytes, workers.running(processes, (__name__,))) and \
                    workers.team_lock.acquire(blocking=False):
                stack.callback(workers.team_lock.release)
                team = workers.team(processes, (__name__,))
        if team is None:
            _stage_stream(source, validator, KnownShapes(), max_bytes, sink)
        else:
            try:
                _stage_in_blocks(team, source, validator, max_bytes, sink)
            except BaseException:
                workers.discard(kill=True)  # a worker left mid-task, or is busy with a block no one will read
                raise
        if readable.damage is not None:
            # The damage is in the object: every delivery of the upload would meet it. The run ends instead, with
            # the lines before it validated as any others and the rest counted as one failed row.
            staged.unreadable = str(readable.damage)
            line = readable.damage.line
            _reject(sink, line, validation.UNREADABLE_INPUT,
                    f"line {line} and every line after it count as this one failed row: {readable.damage}", line="")
        parts.close()
        closing = time.perf_counter()
    # (Leaving the block finished the errors file's upload.)
    staged.write_seconds += errors.seconds + time.perf_counter() - closing
    staged.read_seconds = reading.seconds
    staged.seconds = time.perf_counter() - started
    return staged


def _workers_pay(head: bytes, max_bytes: int, running: bool) -> bool:
    """Whether an input of short lines (`head`, its first read) is staged by workers rather than here.

    Workers already running pay whatever the lines: the instance keeps them, and in blocks of ~2 MB with the shapes
    each learnt kept from block to block, the bench's 200,000 short lines of one shape took 0.62-0.67 s against
    0.71-0.84 s here, in three shapes in turn 0.74-0.98 s against 1.16-1.58 s. Starting them (~0.2-0.3 s) pays only
    where runs of known shapes (`_Runs`) do not take most of the lines (shapes that change from line to line,
    escapes orjson writes otherwise: one by one, a few microseconds a line); where runs take them, several shapes
    included, a fresh process took as long with workers it started as without (1.25-1.65 s against 1.27-1.75 s,
    200,000 lines, at 120 MB against 30). `head` is staged alone to tell (against a schema of its own, everything it
    writes dropped)."""
    if running:
        return True
    runs = _Runs(LineValidator(), KnownShapes(), max_bytes, Block())
    lines = runs.stage(1, head, 0, head.rfind(b"\n") + 1)
    return runs.taken == 0 or runs.taken < lines * RUNS_TAKE_SHARE  # (a read of no whole line tells nothing)


def _stage_in_blocks(team: workers.Team, source: IO[bytes], validator: LineValidator, max_bytes: int,
                     sink: _Direct) -> None:
    """`_stage_lines` over every line of `source`, its blocks validated by `team`; each block's outcome is taken
    or done again here, in order (see the module docstring)."""
    schema = [validator]  # the file's schema as the blocks before the next one to take left it
    sent: deque[tuple[int, bytes, int]] = deque()  # (first row, lines, schema changes when sent)
    blocks = _Blocks(source)
    pass_id = uuid.uuid4().hex

    def tasks() -> Iterator[workers.Task]:
        for first, data in blocks:
            sent.append((first, data, schema[0].changes))
            yield stage_block, (first, pickle.PickleBuffer(data), schema[0], max_bytes, pass_id)

    for block in team.map(tasks()):
        first, data, changes = sent.popleft()
        current = schema[0]
        if current.changes == changes:  # it saw the file's schema: what it added is the file's
            if block.validator is not None:
                schema[0] = block.validator  # (its count of changes is past any a block was sent with)
            sink.block(block)
        elif not block.schema_bound and current.holds(block.added):
            sink.block(block)
        else:
            _Runs(current, KnownShapes(), max_bytes, sink).stage(first, data)
    if blocks.rest is not None:  # a line too long for a block: the rest of the file in one pass, here
        first, stream = blocks.rest
        _stage_lines(enumerate(iter_lines(stream), first), schema[0], KnownShapes(), max_bytes, sink)


class _Blocks:
    """The input in blocks of whole lines, about BLOCK_BYTES each: (first row, bytes), read `READ_SIZE` at a
    time (one copy, into the block). A line longer than LONG_LINE_BYTES stops the blocks: `rest` is then the
    row it starts and a stream of the input from its first byte, for one pass that never holds it whole."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.rest: tuple[int, IO[bytes]] | None = None

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        row, held = 1, bytearray()
        while True:
            data = self._source.read(READ_SIZE)
            end = not data
            held += data
            while held and (end or len(held) >= BLOCK_BYTES):
                cut = _cut(held, end)
                if not cut:  # no line ends in what is held: read on, unless it is too long to hold
                    if len(held) > LONG_LINE_BYTES:
                        self.rest = (row, Prefixed(bytes(held), self._source))
                        return
                    break
                with memoryview(held) as view:
                    block = bytes(view[:cut])  # one copy
                del held[:cut]
                yield row, block
                row += newlines(block)
            if end:
                return


def _cut(held: bytearray, end: bool) -> int:
    """Where the next block ends in `held`: after the line that reaches BLOCK_BYTES, else after the last whole
    line (all of it at the input's end); 0 when no line ends in it."""
    if len(held) >= BLOCK_BYTES:
        cut = held.find(b"\n", BLOCK_BYTES - 1) + 1
        if cut:
            return cut
    return len(held) if end else held.rfind(b"\n") + 1
