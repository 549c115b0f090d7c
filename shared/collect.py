"""collect: a finished Vertex job becomes result and error lines of its part, and a retry part for the rows
worth another attempt. When the last part of a run is collected, the run is finalized.

Two streaming passes, so memory holds only row numbers and the failures' details:
1. every predictions file of the job's own output prefix (also after FAILED / CANCELLED / EXPIRED /
   PARTIALLY_SUCCEEDED: partial output is harvested) -> result lines, and the failed rows;
2. the part's staged input, in row order -> error lines (carrying the original request, so an errors file
   is a valid input file), the retry part's staged file, and the rows that never came back ("missing").
   Skipped when every row of the part came back and succeeded (`shared/rowsums.py`): it would write nothing.
All outputs are written under names derived from (run, part): a replayed event rewrites the same bytes.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from shared import cancellation, harvest, joining, layout, log, lost_input, prediction_lines, runstate, workers
from shared.errors import BadEventError
from shared.lines import iter_lines
from shared.pipeline import Pipeline
from shared.progress import resume
from shared.rowsums import RowSums
from shared.storage import change_json
from shared.storage.base import ObjectMissing
from shared.timed import Timed

_PAGE = 1000  # names per listing call


@dataclass(frozen=True, slots=True)
class JobFinished:
    """The job-finished message (published by poll, or by submit when Vertex refused a job)."""

    run: str
    part: str
    job: str | None
    state: str
    error: dict[str, Any] | None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> JobFinished:
        try:
            return cls(run=str(payload["run"]), part=str(payload["part"]), job=payload.get("job"),
                       state=str(payload["state"]), error=payload.get("error"))
        except KeyError as exc:
            raise BadEventError(f"job-finished message lacks {exc}") from None

    def to_payload(self) -> dict[str, Any]:
        return {"run": self.run, "part": self.part, "job": self.job, "state": self.state, "error": self.error}


@dataclass
class _Tally:
    succeeded: int = 0
    retried: int = 0
    by_stage: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)
    note: str | None = None

    def outcome(self, msg: JobFinished) -> dict[str, Any]:
        done = {"succeeded": self.succeeded, "retried": self.retried, "failedByStage": dict(self.by_stage),
                "failedByReason": dict(self.by_reason), "tokens": dict(self.tokens), "jobState": msg.state,
                "jobError": msg.error, "job": msg.job}
        if self.note:
            done["note"] = self.note
        return done


def _job_failure(msg: JobFinished) -> joining.Failure:
    err = msg.error or {}
    if err.get("httpCode"):  # refused at create: the rows never ran and never will with this input
        return joining.Failure(0, int(err["httpCode"]), str(err.get("status") or ""), str(err.get("message")), False)
    return joining.job_failure(msg.state, err.get("code"), err.get("message"))


def handle_job_finished(p: Pipeline, msg: JobFinished) -> str:
    """Returns "collected", "duplicate" or "unknown"."""
    started = time.perf_counter()
    bucket = p.work_bucket
    found = p.store.read_json(bucket, layout.run_state_name(msg.run))
    if found is None or msg.part not in found.value["parts"]:
        log.error("job.unknown", f"job-finished for unknown run/part {msg.run}/{msg.part}", run=msg.run)
        return "unknown"
    record = found.value
    part = record["parts"][msg.part]
    if part["state"] == runstate.COLLECTED:
        resume(p, record)  # an earlier delivery may have died after collecting: finish its work
        return "duplicate"

    attempt = part["attempt"]
    max_attempts = p.config.max_attempts
    tally = _Tally()
    failures: dict[int, joining.Failure] = {}
    retry_part = layout.next_attempt(msg.part)
    with ExitStack() as stack:
        results = Timed(stack.enter_context(p.store.open_write(bucket, layout.part_results_name(msg.run, msg.part))))
        harvesting = time.perf_counter()
        seen, sums = _harvest(p, msg, attempt, results, failures, tally)
        settling = time.perf_counter()
        p.checkpoint("collect.harvesting")  # a crash here leaves the part's files unwritten
        errors = Timed(stack.enter_context(p.store.open_write(bucket, layout.part_errors_name(msg.run, msg.part))))
        retry_sums = RowSums()
        if failures or not sums.matches(part["rows"], part.get("rowSums")):
            # Pass 2 only when a row failed or did not come back: otherwise it would find nothing to write.
            # When every row came back, the failed ones are all it needs: their lines are searched for.
            came_back = sums.plus(failures).matches(part["rows"], part.get("rowSums"))
            retry_rows, retry_bytes = _settle(p, record, msg, attempt, max_attempts, seen, failures, errors,
                                              stack, retry_part, tally, retry_sums,
                                              sorted(failures) if came_back else None)
        else:
            retry_rows = retry_bytes = 0
        closing = time.perf_counter()
    # Leaving the block finished the uploads: what the part's files waited for, with their writes.
    waited = results.seconds + errors.seconds + time.perf_counter() - closing
    pass1, pass2 = settling - harvesting, closing - settling
    p.checkpoint("collect.written")

    retry = runstate.new_part(part["chunk"], attempt + 1, retry_rows, retry_bytes, since=p.clock(),
                              first_row=part.get("firstRow"), last_row=part.get("lastRow"),
                              row_sums=retry_sums.value()) if retry_rows else None
    new, won = change_json(p.store, bucket, layout.run_state_name(msg.run),
                           lambda r: runstate.part_collected(r, msg.part, tally.outcome(msg), retry,
                                                             retry_part if retry else None, p.clock())
                           if r else None)
    if not won:
        # A concurrent delivery collected this part first (its part files are the same bytes as ours). It
        # logs the counts, so the log-based metrics count each row once; moving the run on is idempotent,
        # and done here too in case that delivery dies before it does.
        if new is not None:
            resume(p, new)
        return "duplicate"
    failed = sum(tally.by_stage.values())
    if failed:
        log.error("rows.failed", f"{failed} rows of {msg.run}/{msg.part} failed for good", run=msg.run,
                  job=_job_id(msg), input=record["input"]["uri"], byStage=dict(tally.by_stage),
                  byReason=dict(tally.by_reason))
    seconds = time.perf_counter() - started
    log.info("part.collected", f"{msg.run}/{msg.part}: {tally.succeeded} succeeded, {failed} failed, "
             f"{tally.retried} to retry, in {seconds:.2f} s (pass 1 {pass1:.2f} s, pass 2 {pass2:.2f} s, "
             f"{waited:.2f} s of it waiting for the part's files to be written)", run=msg.run, job=_job_id(msg),
             input=record["input"]["uri"], part=msg.part, succeeded=tally.succeeded, failed=failed,
             retried=tally.retried, jobState=msg.state, seconds=round(seconds, 3), pass1Seconds=round(pass1, 3),
             pass2Seconds=round(pass2, 3), writeSeconds=round(waited, 3))
    if retry:
        log.info("rows.retried", f"{retry_rows} rows of {msg.run}/{msg.part} go to attempt {attempt + 1}",
                 run=msg.run, job=_job_id(msg), part=msg.part, rows=retry_rows)
    # The run record (with the retry part in it) is written before the retry part is queued, so the
    # scheduler never holds a part the run does not know; resume() queues it, or finalizes the run.
    resume(p, new)
    return "collected"


def _job_id(msg: JobFinished) -> str | None:
    return msg.job.rsplit("/", 1)[-1] if msg.job else None


def _harvest(p: Pipeline, msg: JobFinished, attempt: int, results: IO[bytes],
             failures: dict[int, joining.Failure], tally: _Tally) -> tuple[harvest.RowSet, RowSums]:
    """Pass 1: every *.jsonl under the job's output prefix, in pieces (`shared/harvest.py`), side by side in
    worker processes when the output is large. Returns the rows that came back, and the sums of those that
    succeeded."""
    prefix = layout.vertex_output_prefix(msg.run, msg.part) + "/"
    todo = harvest.spans(_outputs(p, prefix))
    merged = harvest.Harvest(results.write, failures=failures)
    processes = p.config.collect_workers or workers.available_cpus()
    for piece in harvest.pieces(p.store, p.work_bucket, todo, attempt, processes):
        for message in merged.add(piece):
            log.warning("rows.unjoinable", message, run=msg.run, job=_job_id(msg))
    tally.succeeded += merged.succeeded
    if merged.succeeded:
        prompt, cand, total = merged.tokens
        tally.tokens.update(prompt=prompt, candidates=cand, total=total)
    return merged.seen, merged.sums


def _outputs(p: Pipeline, prefix: str) -> list[tuple[str, int]]:
    """(name, size) of the job's predictions files, in name order."""
    found: list[tuple[str, int]] = []
    after = ""
    while True:
        page = p.store.list_page(p.work_bucket, prefix, start_after=after, limit=_PAGE)
        found += [(item.name, item.size) for item in page if item.name.endswith(".jsonl")]
        if len(page) < _PAGE:
            return found
        after = page[-1].name


def _staged_lines(p: Pipeline, record: dict[str, Any], msg: JobFinished, stack: ExitStack, tally: _Tally,
                  only: list[int] | None) -> tuple[Any, joining.Failure | None]:
    """The part's staged lines (with `only`, those of these rows, plus any line not in row order), and the
    failure that replaces the job's for rows that did not come back when they cannot be sent again (None: the
    usual rules apply)."""
    staged = layout.staged_name(msg.run, msg.part)

    def opened() -> IO[bytes]:
        return stack.enter_context(p.store.open_read(p.work_bucket, staged))

    try:
        if only is None:
            return iter_lines(opened()), None
        return prediction_lines.lines_of_rows(opened(), only, lambda: iter_lines(opened())), None
    except ObjectMissing:
        pass
    rebuilt = lost_input.restaged_lines(p, record, msg.part, stack)
    if rebuilt is not None:
        tally.note = (f"the staged input of part {msg.part} was gone (expired or deleted); its rows were "
                      f"staged again from {record['input']['uri']}")
        log.warning("run.repaired", f"{msg.run}/{msg.part}: {tally.note}", run=msg.run, part=msg.part,
                    repair="restage_part", input=record["input"]["uri"])
        return rebuilt, None
    tally.note = (f"the staged input of part {msg.part} and the input {record['input']['uri']} are both gone "
                  "(expired or deleted): its rows that did not come back cannot be sent again")
    log.error("rows.failed", f"{msg.run}/{msg.part}: {tally.note}", run=msg.run, part=msg.part,
              input=record["input"]["uri"], stage="missing")
    return lost_input.unknown_rows(p, record, msg.part), joining.Failure(
        0, 404, "NOT_FOUND", tally.note + (" (the row number may name a blank line of the input)"), False)


def _settle(p: Pipeline, record: dict[str, Any], msg: JobFinished, attempt: int, max_attempts: int,
            seen: harvest.RowSet, failures: dict[int, joining.Failure], errors: IO[bytes], stack: ExitStack,
            retry_part: str, tally: _Tally, retry_sums: RowSums, only: list[int] | None) -> tuple[int, int]:
    """Pass 2: the staged input in row order (with `only`, the lines of those rows: every other row came back
    and succeeded). Writes error lines and the retry part's staged file (its rows added to `retry_sums`). In a
    run an operator cancelled, nothing is retried: rows that did not come back fail as CANCELLED."""
    job_failure = _job_failure(msg)
    cancelled = record.get("cancelled")
    if cancelled and job_failure.retryable:
        job_failure = cancellation.failure(cancelled)
    missing_stage = "job" if msg.state == "JOB_STATE_FAILED" else "missing"
    retry_writer: IO[bytes] | None = None
    retry_rows = retry_bytes = 0
    lines, lost = _staged_lines(p, record, msg, stack, tally, only)
    if lost is not None:
        job_failure, missing_stage = lost, "missing"
    for raw in lines:
        if not raw:
            continue
        row = prediction_lines.staged_row(raw)  # most rows succeeded: their lines are never parsed
        if row is not None and row in seen and row not in failures:
            continue  # succeeded
        record = orjson.loads(raw)
        row = joining.row_of(record)
        if row in seen and row not in failures:
            continue  # succeeded
        failure, stage = (failures[row], "prediction") if row in seen else (job_failure, missing_stage)
        if failure.retryable and attempt < max_attempts and lost is None and not cancelled:
            if retry_writer is None:
                retry_writer = stack.enter_context(
                    p.store.open_write(p.work_bucket, layout.staged_name(msg.run, retry_part)))
            line = raw + b"\n"
            retry_writer.write(line)
            retry_sums.add(row)
            retry_rows += 1
            retry_bytes += len(line)
            tally.retried += 1
            continue
        has_key, key = joining.key_of(record)
        errors.write(joining.error_line(row, has_key, key, stage=stage, code=failure.code, status=failure.status,
                                        message=failure.message, retryable=failure.retryable, attempts=attempt,
                                        request=record.get("request")))
        tally.by_stage[stage] += 1
        tally.by_reason[failure.status or str(failure.code)] += 1
    return retry_rows, retry_bytes
