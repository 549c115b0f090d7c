"""Validate and stage an uploaded file in one streaming pass: bad lines to the run's validation errors,
good lines to part files of at most MAX_ROWS_PER_JOB rows and MAX_BYTES_PER_JOB bytes each."""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from shared import joining, layout, raw_request, runstate
from shared.known_shapes import KnownShapes
from shared.lines import TooLong, iter_lines
from shared.pipeline import Pipeline
from shared.rowsums import RowSums
from shared.validation import Accepted, LineValidator, Rejected

_WRITE_BATCH = 1 << 20


@dataclass
class Staged:
    total: int = 0
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # the first few rejection messages, for the log

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    def validation(self) -> dict[str, Any]:
        return {"failed": self.failed, "byReason": dict(sorted(self.failed_by_reason.items()))}


class _Parts:
    """Rolls staged lines over into a new part file whenever the next line would break a limit."""

    def __init__(self, p: Pipeline, run: str, stack: ExitStack, staged: Staged) -> None:
        self._p, self._run, self._stack, self._staged = p, run, stack, staged
        self._writer: IO[bytes] | None = None
        # Lines go to the writer in batches of about _WRITE_BATCH bytes: a write call per ~4 KB line took ~4 us,
        # about a tenth of validating it (cProfile of `batchctl validate` on the `python -m bench --mb 100` input).
        # Only when the bytes reach the writer changes; the object still appears when the writer closes. One
        # buffer, not a list of lines: a line fresh from orjson.dumps keeps ~8 KB of memory whatever its length.
        self._pending = bytearray()
        self._chunk = 0
        self._rows = self._bytes = 0
        self._first = self._last = 0
        self._sums = RowSums()

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
        self._writer = self._stack.enter_context(
            self._p.store.open_write(self._p.work_bucket, layout.staged_name(self._run, part)))
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
            part = layout.part_id(self._chunk, 1)
            self._staged.parts[part] = runstate.new_part(self._chunk, 1, self._rows, self._bytes,
                                                         since=self._p.clock(), first_row=self._first,
                                                         last_row=self._last, row_sums=self._sums.value())
            self._writer = None


def _reject(errors: IO[bytes], staged: Staged, row: int, reason: str, message: str, *, request: Any = None,
            line: str | None = None, has_key: bool = False, key: Any = None) -> None:
    errors.write(joining.error_line(row, has_key, key, stage="validation", code=400, status="INVALID_ARGUMENT",
                                    message=message, retryable=False, attempts=0, request=request, line=line))
    staged.failed_by_reason[reason] += 1
    if len(staged.samples) < 5:
        staged.samples.append(message)


def stage(p: Pipeline, run: str, bucket: str, name: str, generation: int) -> Staged:
    """Stream gs://bucket/name#generation once. Raises ObjectMissing if that generation is gone."""
    staged = Staged()
    validator = LineValidator()
    shapes = KnownShapes()
    max_bytes = p.config.max_bytes_per_job
    with ExitStack() as stack:
        errors = stack.enter_context(p.store.open_write(p.work_bucket, layout.validation_errors_name(run)))
        parts = _Parts(p, run, stack, staged)
        source = stack.enter_context(p.store.open_read(bucket, name, generation))
        first_staged = True
        for row, raw in enumerate(iter_lines(source), 1):
            if isinstance(raw, TooLong):
                staged.total += 1
                _reject(errors, staged, row, "line_too_long",
                        f"line {row}: {raw.length} bytes is longer than any request Vertex accepts",
                        line=bytes(raw).decode(errors="replace"))
                continue
            line = shapes.staged_line(row, raw)
            if line is not None and len(line) <= max_bytes:
                staged.total += 1
                parts.add(line, row)
                continue  # never the first staged line: a line of its shape was staged before it
            verdict = validator.validate(row, raw)
            if verdict is None:
                continue  # blank lines are not rows
            staged.total += 1
            if isinstance(verdict, Rejected):
                _reject(errors, staged, row, verdict.reason, verdict.message, request=verdict.request,
                        line=verdict.line, has_key=verdict.has_key, key=verdict.key)
                continue
            assert isinstance(verdict, Accepted)
            # A request already spelled as orjson would spell it is copied, never re-serialised.
            spliced = raw_request.request_bytes(raw, verdict.has_key, verdict.key, verdict.keys)
            if spliced is None:
                line = joining.staged_line(row, verdict.request, verdict.has_key, verdict.key)
            else:
                line = joining.staged_line_raw(row, spliced, verdict.has_key, verdict.key)
            if len(line) > max_bytes:
                _reject(errors, staged, row, "line_too_large",
                        f"line {row}: {len(line)} bytes is more than MAX_BYTES_PER_JOB ({max_bytes})",
                        request=verdict.request, has_key=verdict.has_key, key=verdict.key)
                continue
            shapes.learn(raw, verdict.has_key, verdict.key, verdict.request)  # later lines of its shape: no parse
            parts.add(line, row)
            if first_staged:
                first_staged = False
                p.checkpoint("submit.staging")  # a crash here leaves half-written part files behind
        parts.close()
    return staged
