"""The bounded worker pool and what one job does when it runs.

Scheduling: a created job is PENDING for its `queue_latency`; then it joins a FIFO of ready jobs and
waits for one of `workers` threads. A ready job that finds no idle worker shows QUEUED until one picks
it up. A job still waiting `queue_timeout` seconds after creation is EXPIRED (the real service's 72 h
rule); the `expire` fault with `fault_at` 0 expires it as soon as its queue latency has passed. One
clock thread drives the timers with heaps, so thousands of waiting jobs cost nothing while they wait.

Running: RUNNING -> (bucket checks, code 9) -> importer pass over the whole input (code 3) -> the rows,
streamed a second time, answered by the offline model, exported every `export_every` rows as a shard
-> SUCCEEDED. Cancel (CANCELLING), `fail`, `cancel`, `partial` and `expire` (with `fault_at` > 0) faults
stop at a row boundary AFTER exporting every row completed so far, exactly what the pipeline must harvest.

An `expire` that hits a RUNNING job has no documented counterpart: the real service cancels a job still
running after 24 h (use the `cancel` fault for that). It exists so a pipeline can meet EXPIRED with
partial output; the error it carries is DEADLINE_EXCEEDED (4), the gRPC code for a time limit passed.

A small input (the lines of all its files within `SMALL_INPUT` bytes) is kept from the importer pass
for the rows, so thousands of tiny jobs do not read every file twice; a larger one is streamed again.
The two passes cannot be one: the real service fails a job with code 3 before any row runs, and rows
are exported while the job runs, so the whole input must have passed the importer before the first
row is answered. Keeping the first pass's parsed lines or answers instead would take memory (or disk)
that grows with the input; streaming it again costs ~0.3 CPU-s per 200,000 lines (read and parse).
The importer pass does not parse a line that fits the schema into dicts (a typed decoder checks it in
C, see `_importer`), so each line is parsed into dicts once, for its row.

Cost of one 200,000-row job of ~345-byte request lines at latency 0 (`python -m local.vertex._perf`, three runs
each, interleaved with the code before the table model and the chunks): 4.2-5.2 s of wall and 6.1-7.6 CPU-s with
two answer processes (`_answers`), against 5.5-6.1 s and 8.7-9.6 CPU-s, on 2 vCPU where two busy processes run at
~1.5x one (so a CPU second counts for more than it does alone). `--parts` splits the row work over lines in memory:
importer ~2.5 us a row, parse and model and output line ~12 us (26-28 before). The job's thread reads, checks and
exports; its only Python step a row is the importer's: the rows travel in chunks (`chunks`, `answer_chunk`) and
their answers are taken in pieces (`run_rows`). A job of `POOL_MIN_ROWS` rows or more has its rows answered by the
emulator's answer processes, one per CPU, while its thread reads the input and exports.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator

import orjson

from local.vertex import _answers, _output
from local.vertex._answers import OK, POOL_MIN_ROWS, AnswerPool, Asked, answer, answer_chunk
from local.vertex._gcs import ObjectMissing, Storage, parse_gs
from local.vertex._importer import IMPORT_MESSAGE, ImportRuleError, SchemaChecker
from local.vertex._store import WAITING, Job, JobStore
from shared.workers import available_cpus

log = logging.getLogger("local.vertex")

SYSTEM_ERROR = {"code": 13, "message": "System error. Please try this operation again."}
EXPORT_ERROR = {"code": 13, "message": "Failed to export data. Retrying may solve the problem."}
CANCELED = {"code": 1, "message": "CANCELED"}
EXPIRED_RUNNING = {"code": 4, "message": (
    "The batch prediction job expired before all of its instances were processed. The predictions "
    "completed before that were exported.")}
SMALL_INPUT = 256 * 1024
_PACE = 0.02  # sleep in slices of at least this many seconds when spreading run latency over rows


def service_agent(parent: str) -> str:
    """The Vertex AI service agent of the job's project (a stable fake project number)."""
    project = parent.split("/")[1]
    number = int(hashlib.sha256(project.encode()).hexdigest(), 16) % 10**12
    return f"service-{number:012d}@gcp-sa-aiplatform.iam.gserviceaccount.com"


def _under(uri: str, prefix: str) -> bool:
    """String-prefix match, except that a bare bucket (`gs://b`) matches that bucket only, not `gs://b2`."""
    if prefix.count("/") == 2:
        prefix += "/"
    return uri.startswith(prefix)


class _Abandon(Exception):
    """The emulator is stopping: leave the job as it is."""


class Runner:
    def __init__(self, store: JobStore, storage: Storage, workers: int = 8, answer_processes: int | None = None):
        """`answer_processes`: worker processes that answer the rows of large jobs (`_answers`); None: one per
        CPU; 0 or 1: every row is answered in its job's thread."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._store = store
        self._storage = storage
        pool = AnswerPool(available_cpus() if answer_processes is None else answer_processes)
        self.pool: AnswerPool | None = pool if pool.processes > 1 else None
        self._cond = threading.Condition()
        self._pending: list = []    # (eligible monotonic time, seq, job)
        self._deadlines: list = []  # (expiry monotonic time, seq, job)
        self._ready: deque[Job] = deque()
        self._idle = workers
        self._stopping = False
        self._stop_event = threading.Event()
        self._threads = [threading.Thread(target=self._clock, name="vertex-clock", daemon=True)]
        self._threads += [threading.Thread(target=self._worker, name=f"vertex-worker-{i}", daemon=True)
                          for i in range(workers)]
        for thread in self._threads:
            thread.start()

    # --- scheduling ---------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        start = time.monotonic()
        with self._cond:
            heapq.heappush(self._pending, (start + job.settings.queue_latency, job.seq, job))
            heapq.heappush(self._deadlines, (start + job.settings.queue_timeout, job.seq, job))
            self._cond.notify_all()

    def _expire(self, job: Job) -> None:
        self._store.transition(job, "JOB_STATE_EXPIRED", only_from=WAITING)

    def _clock(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    self._expire(heapq.heappop(self._deadlines)[2])
                while self._pending and self._pending[0][0] <= now:
                    job = heapq.heappop(self._pending)[2]
                    if job.state not in WAITING:
                        continue
                    if job.settings.job_fault == "expire" and job.settings.fault_at == 0:
                        self._expire(job)
                        continue
                    self._ready.append(job)
                    if len(self._ready) > self._idle:
                        self._store.transition(job, "JOB_STATE_QUEUED", only_from={"JOB_STATE_PENDING"})
                    self._cond.notify_all()
                wake = [h[0][0] for h in (self._pending, self._deadlines) if h]
                self._cond.wait(timeout=max(0.0, min(wake) - now) if wake else None)

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._ready:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._ready.popleft()
                if job.state not in WAITING:
                    continue
                self._idle -= 1
            try:
                self._run(job)
            except _Abandon:
                pass
            except Exception:
                log.exception("job %s failed inside the emulator", job.name)
                self._store.transition(job, "JOB_STATE_FAILED", error=dict(SYSTEM_ERROR))
            finally:
                with self._cond:
                    self._idle += 1
                    self._cond.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._stop_event.set()
            self._cond.notify_all()
        for job in self._store.all_jobs():
            job.wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.pool is not None:
            self.pool.close()

    # --- one job ------------------------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        if not self._store.transition(job, "JOB_STATE_RUNNING", only_from=WAITING):
            return
        _JobRun(self, job).run()


class _JobRun:
    """One execution of one job; owns its counters and the rows not yet exported."""

    def __init__(self, runner: Runner, job: Job):
        self.runner = runner
        self.store = runner._store
        self.storage = runner._storage
        self.job = job
        self.s = job.settings
        self.buffer: list[bytes] = []
        self.buffer_ok = 0
        self.shards = 0
        self.ok = 0
        self.failed = 0
        self.total = 0
        self._files: dict[str, bool] = {}
        self._small: list[bytes] | None = None  # the input's lines, when small enough to keep
        self.pool: AnswerPool | None = runner.pool

    def fail(self, error: dict, stats: dict | None = None) -> None:
        self.store.transition(self.job, "JOB_STATE_FAILED", error=error, stats=stats)

    def check_interrupt(self) -> bool:
        """True when the job was cancelled; raise _Abandon when the emulator stops."""
        if self.runner._stopping:
            raise _Abandon
        return self.job.cancel_requested

    def run(self) -> None:
        job = self.job
        out_bucket, _ = parse_gs(job.output_prefix)
        buckets = [parse_gs(uri)[0] for uri in job.input_uris] + [out_bucket]
        for bucket in dict.fromkeys(buckets):
            if not self.storage.bucket_exists(bucket):
                return self.fail({"code": 9, "message": (
                    f"Failed to get GCS bucket location for {bucket}. Please make sure the bucket exists and "
                    f"the Vertex AI service agent {service_agent(job.parent)} has storage.buckets.get "
                    "permission on it.")})
        if not self.import_check():
            return
        if self.s.job_fault == "permission" or any(_under(job.output_dir, p) for p in self.s.readonly_prefixes):
            return self.run_unwritable()
        self.run_rows()

    def import_check(self) -> bool:
        checker = SchemaChecker()
        line = 0
        kept: list[bytes] | None = []
        size = 0
        try:
            for uri in self.job.input_uris:
                for raw in self.storage.iter_lines(uri):
                    line += 1
                    if raw and not raw.isspace():  # a blank line (ASCII whitespace only) is no row
                        checker.check_line(raw, line)
                        if kept is not None:
                            size += len(raw) + 1
                            if size > SMALL_INPUT:
                                kept = None
                            else:
                                kept.append(raw)
                    if line == POOL_MIN_ROWS and self.pool is not None:
                        self.pool.warm()  # this job's rows will go to the answer processes: start them meanwhile
                    if line % 4096 == 0 and self.check_interrupt():
                        self.finish_cancelled()
                        return False
        except ObjectMissing as exc:
            self.fail({"code": 3, "message": IMPORT_MESSAGE.format(detail=f"No such object: {exc}")})
            return False
        except ImportRuleError as exc:
            self.fail({"code": 3, "message": exc.job_message})
            return False
        if checker.rows == 0:
            self.fail({"code": 3, "message": IMPORT_MESSAGE.format(detail="The input contains no instances.")})
            return False
        self.total = checker.rows
        self._small = kept
        return True

    def chunks(self) -> Iterator[tuple[int, list[bytes]]]:
        """(first row, its line and the next ones') for every non-blank line of every input, kept from the importer
        pass when the input is small, else streamed again; a chunk ends at CHUNK_ROWS lines, or at about CHUNK_BYTES
        (its read's lines' mean length) and at the end of a read. Rows are numbered 1, 2, 3, ..."""
        if self._small is not None:
            reads: Iterable[list[bytes]] = [self._small]
            self._small = None
        else:
            reads = (lines for uri in self.job.input_uris for lines in self.storage.iter_blocks(uri))
        row = 1
        for lines in reads:
            lines = [raw for raw in lines if raw and not raw.isspace()]  # a blank line is no row
            if not lines:
                continue
            size = sum(map(len, lines))
            step = max(1, min(_answers.CHUNK_ROWS, _answers.CHUNK_BYTES * len(lines) // max(size, 1)))
            for at in range(0, len(lines), step):
                chunk = lines[at:at + step]
                yield row, chunk
                row += len(chunk)

    def answers(self) -> Iterator[tuple[int, list[bytes], bytearray]]:
        """(first row, output lines, flags: `answer_chunk`'s) for every chunk, in order: from the emulator's answer
        processes for a large job, else answered here."""
        asked = Asked(self.job.name, self.job.model_id, self.s.retryable_fraction, self.s.retryable_codes)
        pool = self.pool
        if pool is not None and self.total >= POOL_MIN_ROWS:
            yield from pool.answered(asked, self.chunks(), lambda row, raw: self.answer(asked, row, raw))
            return
        for first, lines in self.chunks():
            yield first, *answer_chunk(asked, first, lines, self.file_exists)

    def file_exists(self, uri: str) -> bool:
        if uri not in self._files:
            self._files[uri] = self.storage.object_exists(uri)
        return self._files[uri]

    def answer(self, asked: Asked, row: int, raw: bytes) -> tuple[bytes, bool]:
        return answer(asked, row, orjson.loads(raw), self.file_exists)

    def flush(self) -> None:
        if not self.buffer:
            return
        count, ok = len(self.buffer), self.buffer_ok
        lines = _output.shuffled(self.buffer, f"{self.job.name}:{self.shards}")
        lines.append(b"")  # the last line's newline, in the join rather than by copying the shard
        data = b"\n".join(lines)
        del lines
        self.buffer.clear()  # free the lines before the upload copies the data (the row loop holds the list)
        self.buffer_ok = 0
        uri = f"{self.job.output_dir}/{_output.shard_name(self.shards)}"
        try:
            self.storage.write(uri, data)
        except Exception as exc:
            raise _ExportFailed from exc
        self.shards += 1
        self.ok += ok
        self.failed += count - ok
        self.store.set_stats(self.job, self.stats(incomplete=-1))

    def stats(self, incomplete: int | None = None) -> dict:
        if incomplete is None:  # unknown (-1) until the importer has counted the rows
            incomplete = self.total - self.ok - self.failed if self.total else -1
        return {"successfulCount": self.ok, "failedCount": self.failed, "incompleteCount": incomplete}

    def finish_cancelled(self) -> None:
        if self.job.cancel_requested and self.s.cancel_latency > 0:
            self.runner._stop_event.wait(self.s.cancel_latency)  # stays CANCELLING meanwhile
            self.check_interrupt()
        self.store.transition(self.job, "JOB_STATE_CANCELLED", error=dict(CANCELED), stats=self.stats())

    def pace(self, seconds: float) -> None:
        if seconds > 0:
            self.job.wake.wait(seconds)

    def run_unwritable(self) -> None:
        self.pace(self.s.run_latency)
        if self.check_interrupt():
            return self.finish_cancelled()
        self.fail({"code": 7, "message": (
            f"Service account {service_agent(self.job.parent)} doesn't have sufficient permission "
            f"storage.objects.create to write {self.job.output_dir}/predictions.jsonl")},
            stats=self.stats())

    def run_rows(self) -> None:
        """Export the answers as they come, every `export_every` rows, with the run latency spread over the rows; a
        cancel, a fault or the emulator stopping ends the job at a row boundary. A chunk's answers are taken in pieces,
        each as many rows as reach the next export, the fault's row or the next pause (at least _PACE seconds of
        latency), so what is exported when is what it was one row at a time; a cancel is seen between pieces."""
        fault = self.s.job_fault if self.s.job_fault in ("fail", "cancel", "partial", "expire") else None
        stop_after = math.floor(self.total * self.s.fault_at) if fault else None
        per_row = self.s.run_latency / self.total
        # rows between two pauses: a pause comes once the latency owed reaches _PACE
        pace_rows = max(1, math.ceil(_PACE / per_row)) if per_row > 0 else None
        owed = 0.0
        buffer, export_every = self.buffer, self.s.export_every
        runner, job = self.runner, self.job
        try:
            if stop_after == 0:
                return self.end_with_fault(fault)
            for first, lines, flags in self.answers():
                at, count = 0, len(lines)
                while at < count:
                    take = min(count - at, export_every - len(buffer))
                    if stop_after is not None:
                        take = min(take, stop_after - (first + at) + 1)
                    if pace_rows is not None:
                        take = min(take, pace_rows)
                    buffer += lines[at:at + take]
                    self.buffer_ok += flags.count(OK, at, at + take)
                    at += take
                    if len(buffer) >= export_every:
                        self.flush()
                    owed += per_row * take
                    if owed >= _PACE:
                        self.pace(owed)
                        owed = 0.0
                    if runner._stopping:  # check_interrupt, inlined
                        raise _Abandon
                    if job.cancel_requested:
                        self.flush()
                        return self.finish_cancelled()
                    if first + at - 1 == stop_after:
                        return self.end_with_fault(fault)
            self.pace(owed)
            self.flush()
        except _ExportFailed:
            log.exception("export of %s failed", self.job.name)
            return self.fail(dict(EXPORT_ERROR), stats=self.stats())
        self.store.transition(self.job, "JOB_STATE_SUCCEEDED", stats=self.stats())

    def end_with_fault(self, fault: str) -> None:
        self.flush()
        if fault == "cancel":
            self.finish_cancelled()
        elif fault == "fail":
            self.fail(dict(SYSTEM_ERROR), stats=self.stats())
        elif fault == "expire":
            self.store.transition(self.job, "JOB_STATE_EXPIRED", error=dict(EXPIRED_RUNNING), stats=self.stats())
        else:
            self.store.transition(self.job, "JOB_STATE_PARTIALLY_SUCCEEDED", stats=self.stats())


class _ExportFailed(Exception):
    """Writing a shard to Cloud Storage failed."""
