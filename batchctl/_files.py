"""`batchctl validate` and `batchctl postprocess`: the submit and collect paths on local files, with the code
the functions run (`shared/staging.py`, `shared/collect.py`, `shared/finalize.py`) over a directory
(`shared/storage/localfs.py`), streaming.

    validate FILE --out DIR        -> DIR/staging/<run>/p0001-a1.jsonl ... (the parts a run would send to
                                      Vertex) and DIR/staging/<run>/validation-errors.jsonl
    postprocess PRED... --out DIR  -> DIR/results/<name>.jsonl, DIR/errors/<name>.jsonl, DIR/reports/<name>.json

Neither needs the pipeline's configuration: the splitting limits are read from MAX_ROWS_PER_JOB and
MAX_BYTES_PER_JOB when set (or the options), everything else is local.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import click
import orjson

from batchctl._context import Ops
from batchctl._exit import Failed
from batchctl._output import Column, emit_json, pairs, table
from shared import collect, harvest, joining, layout, runstate, staging, workers
from shared.collect import JobFinished
from shared.config import Config
from shared.errors import BadEventError
from shared.lines import MAX_LINE_BYTES, READ_SIZE, iter_lines
from shared.pipeline import Pipeline
from shared.prediction_lines import BLANK_FIRST, StagedRowSums, newlines_unless_blank
from shared.progress import resume
from shared.publisher import MemoryPublisher
from shared.rowsums import RowSums
from shared.storage.localfs import LocalFsStore
from shared.vertex import JobInfo

LOCAL_INPUT, LOCAL_OUTPUT = "local-input", "local-output"
PART = layout.part_id(1, 1)


class _NoVertex:
    """The local paths never talk to Vertex; a call here is a bug, said plainly."""

    def _refuse(self, *args: Any, **kwargs: Any) -> JobInfo:
        raise RuntimeError("the local submit and collect paths do not call Vertex")

    create = find = list = get = cancel = _refuse


def local_config(environ: Mapping[str, str], *, max_rows: int | None = None, max_bytes: int | None = None,
                 max_attempts: int | None = None) -> Config:
    """The functions' configuration for local files: limits from the environment (or the options), local
    buckets, no project needed."""
    env = {"GOOGLE_CLOUD_PROJECT": "local", **{k: v for k, v in environ.items()
                                               if k in ("MAX_ROWS_PER_JOB", "MAX_BYTES_PER_JOB", "MAX_ATTEMPTS",
                                                        "MODEL", "COLLECT_WORKERS", "SUBMIT_WORKERS")},
           "INPUT_BUCKET": LOCAL_INPUT, "OUTPUT_BUCKET": LOCAL_OUTPUT}
    for name, value in (("MAX_ROWS_PER_JOB", max_rows), ("MAX_BYTES_PER_JOB", max_bytes),
                        ("MAX_ATTEMPTS", max_attempts)):
        if value is not None:
            env[name] = str(value)
    return Config.from_env(env)


class _Sink(io.RawIOBase):
    """Where a check-only staging writes: nowhere."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


class _CheckOnly(LocalFsStore):
    """Reads local files, keeps nothing it is given to write: validation alone, with no copy on disk."""

    @contextlib.contextmanager
    def open_write(self, bucket: str, name: str, content_type: str = "application/x-ndjson") -> Iterator[IO[bytes]]:
        yield _Sink()


def local_pipeline(config: Config, input_dir: Path, out_dir: Path | None) -> Pipeline:
    """A pipeline over local directories (`out_dir` None: writes are dropped)."""
    buckets = {LOCAL_INPUT: input_dir, LOCAL_OUTPUT: out_dir or input_dir}
    store = LocalFsStore(out_dir, buckets) if out_dir is not None else _CheckOnly(input_dir, buckets)
    return Pipeline(config, store, _NoVertex(), MemoryPublisher())


def stage_file(config: Config, path: Path, out_dir: Path | None) -> tuple[str, staging.Staged]:
    """Validate and split a local file as submit does, into `out_dir` (None: only validate, keep nothing).
    Returns (run id, what was staged)."""
    path = path.resolve()
    p = local_pipeline(config, path.parent, out_dir)
    generation = path.stat().st_mtime_ns
    run = layout.run_id("local", str(path), generation)
    return run, staging.stage(p, run, LOCAL_INPUT, path.name, generation, path.stat().st_size)


def reasons(staged: staging.Staged) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in staged.failed_by_reason.most_common())


@click.command("validate", short_help="Submit's path on a local file: its parts and its errors.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the staged parts and the validation errors.")
@click.option("--max-rows", type=click.IntRange(1), help="Rows per part (default: MAX_ROWS_PER_JOB or 200000).")
@click.option("--max-bytes", type=click.IntRange(1024), help="Bytes per part (default: MAX_BYTES_PER_JOB or 1 GB).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def validate(ops: Ops, file: Path, out_dir: Path, max_rows: int | None, max_bytes: int | None,
             as_json: bool) -> None:
    """Validate FILE as submit would, before anything is billed, and write the parts a run would send to
    Vertex (split by the same limits) and the validation errors (the errors-file format) under DIR.

    Exits 1 when no line of FILE is a valid request."""
    config = local_config(ops.environ, max_rows=max_rows, max_bytes=max_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ops.quiet_core():
        run, staged = stage_file(config, file, out_dir)
    errors = out_dir / layout.validation_errors_name(run)
    part_docs = [{"part": name, "rows": part["rows"], "bytes": part["bytes"], "firstRow": part.get("firstRow"),
                  "lastRow": part.get("lastRow"), "file": str(out_dir / layout.staged_name(run, name))}
                 for name, part in sorted(staged.parts.items())]
    doc = {"file": str(file), "rows": staged.total, "valid": staged.total - staged.failed, "invalid": staged.failed,
           "invalidByReason": dict(staged.failed_by_reason.most_common()), "examples": staged.samples,
           "parts": part_docs, "errors": str(errors)}
    if as_json:
        emit_json(doc)
    else:
        pairs([("rows", str(staged.total)), ("valid", str(doc["valid"])),
               ("invalid", f"{staged.failed}" + (f" ({reasons(staged)})" if staged.failed else "")),
               ("errors", str(errors))], tty=ops.tty, title=str(file))
        for example in staged.samples:
            click.echo(f"  - {example}")
        if part_docs:
            table([Column("PART"), Column("ROWS", True), Column("BYTES", True), Column("FILE")],
                  [[d["part"], str(d["rows"]), str(d["bytes"]), d["file"]] for d in part_docs], tty=ops.tty)
    if staged.total == staged.failed:
        raise Failed(f"{file}: no line is a valid request" if staged.total else f"{file}: the file has no rows")


# ------------------------------------------------------------------------------------------------ postprocess
class _SummingFile:
    """A file being written that also sums the row ids of the staged lines written to it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f, self.rows = f, StagedRowSums()

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self.rows.feed(data)


def _combined(paths: Iterable[Path], out: Path) -> tuple[int, int, RowSums]:
    """Concatenate files of lines into `out` (streamed), each line ending in a newline, blank lines left out.
    Returns (non-blank lines, bytes, the lines' row sums)."""
    rows = size = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        sink = _SummingFile(f)
        for path in paths:
            with open(path, "rb") as source:
                got = _copy_lines(source, sink)
            rows += got[0]
            size += got[1]
    return rows, size, sink.rows.close()


def _linked_or_combined(paths: tuple[Path, ...], out: Path) -> tuple[int, int, RowSums]:
    """`_combined`, without copying one file that needs no change (every line ends in a newline and none is
    blank): it is linked into place. A staged part is often most of the bytes postprocess reads; collect reads
    it from where `validate` wrote it, as the function reads it where submit staged it.

    The row sums go into the part's record, as submit records them: with them, collect's pass 2 searches for
    the lines of the rows that failed (when every row came back) instead of stepping through every staged line:
    0.11-0.15 s of ~0.45 s for the bench's 174 MB part, 0.3 s for 200,000 short rows."""
    if len(paths) == 1 and (counted := _clean_lines(paths[0])) is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        try:
            os.symlink(paths[0].resolve(), out)
            return counted
        except OSError:
            pass
    return _combined(paths, out)


def _clean_lines(path: Path) -> tuple[int, int, RowSums] | None:
    """(lines, bytes, row sums) of a file `_copy_lines` would copy unchanged; None when it would change it (a
    blank line, no newline at the end, a line too long to read)."""
    rows = size = since = 0  # since: bytes after the last newline
    sums = StagedRowSums()
    with open(path, "rb") as f:
        while chunk := f.read(READ_SIZE):
            # A blank line starts with whitespace right after a newline (or the file's start): _copy_lines' test.
            if since == 0 and chunk[:1] in BLANK_FIRST:
                return None
            newlines = sums.feed_unless_blank(chunk)
            if newlines is None:
                return None
            if not newlines:
                since += len(chunk)
            else:
                if since + chunk.find(b"\n") > MAX_LINE_BYTES:
                    return None
                since = len(chunk) - chunk.rfind(b"\n") - 1
                rows += newlines
            size += len(chunk)
    return (rows, size, sums.close()) if since == 0 and size else None


def _copy_lines(f: IO[bytes], sink: IO[bytes] | _SummingFile) -> tuple[int, int]:
    """The lines of `iter_lines(f)` that are not blank, each with a newline, to `sink`: (lines, bytes).

    A read's whole lines are copied as they are when no line in them can be blank (`newlines_unless_blank`);
    otherwise they are split and filtered. After a line longer than MAX_LINE_BYTES, iter_lines takes over from
    its start, so its preview is what is written, as before."""
    rows = size = 0
    pending = b""
    while chunk := f.read(READ_SIZE):
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if cut:
            block = data[:cut]
            newlines = None if block[:1] in BLANK_FIRST else newlines_unless_blank(block)
            if newlines is None:
                kept = [raw for raw in block.split(b"\n")[:-1] if raw.strip()]
                block = b"\n".join(kept) + b"\n" if kept else b""
                rows += len(kept)
            else:
                rows += newlines
            sink.write(block)
            size += len(block)
        if len(pending) > MAX_LINE_BYTES:
            f.seek(-len(pending), io.SEEK_CUR)
            pending = b""
            for raw in iter_lines(f, MAX_LINE_BYTES, READ_SIZE):
                if raw.strip():
                    sink.write(raw + b"\n")
                    rows += 1
                    size += len(raw) + 1
            break
    if pending.strip():
        sink.write(pending + b"\n")
        rows += 1
        size += len(pending) + 1
    return rows, size


def _staged_from_predictions(paths: Iterable[Path], out: Path) -> tuple[int, int, RowSums]:
    """The staged input rebuilt from prediction lines (each echoes its row id, key and request): rows that
    never came back cannot be known this way. Returns (lines, bytes, their row sums)."""
    seen: set[int] = set()
    sums = RowSums()
    rows = size = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as sink:
        for path in paths:
            with open(path, "rb") as f:
                for raw in iter_lines(f):
                    if not raw.strip():
                        continue
                    try:
                        record = orjson.loads(raw)
                        row = joining.row_of(record)
                    except (orjson.JSONDecodeError, joining.JoinError, AttributeError) as exc:
                        raise Failed(f"{path}: a line without the pipeline's row id ({exc}): postprocess reads "
                                     "the output of parts staged by the pipeline (`batchctl validate`)") from None
                    if row in seen:
                        continue
                    seen.add(row)
                    sums.add(row)
                    has_key, key = joining.key_of(record)
                    line = joining.staged_line(row, record.get("request"), has_key, key)
                    sink.write(line)
                    rows += 1
                    size += len(line)
    return rows, size, sums


def _validation(path: Path | None, out: Path) -> tuple[int, dict[str, int]]:
    """Copy a validation errors file into the run (or write an empty one): (rows, rows by status)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if path is None:
        out.write_bytes(b"")
        return 0, {}
    rows, _, _ = _combined([path], out)
    by: Counter[str] = Counter()
    with open(out, "rb") as f:
        for raw in iter_lines(f):
            if raw.strip():
                by[str(orjson.loads(raw).get("status") or "INVALID_ARGUMENT")] += 1
    return rows, dict(by)


@click.command("postprocess", short_help="Collect's path on Vertex output downloaded by hand.")
@click.argument("predictions", nargs=-1, required=True, metavar="PREDICTIONS...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for results/, errors/ and reports/.")
@click.option("--staged", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The staged part(s) the predictions answer (from `validate`): rows missing from the "
                   "predictions then go to errors too. Without it, only the rows in the predictions count.")
@click.option("--validation-errors", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A validation errors file (from `validate`) to include in the errors and the counts.")
@click.option("--name", help="Output name (<rel>): results/<name>.jsonl ... (default: the first file's stem).")
@click.option("--model", default="unknown", show_default=True, help="The model, for the report.")
@click.option("--job-state", default="JOB_STATE_SUCCEEDED", show_default=True,
              type=click.Choice(sorted(["JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED", "JOB_STATE_FAILED",
                                        "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"])),
              help="How the Vertex job ended (decides how rows missing from the predictions are reported).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the report and the files).")
@click.pass_obj
def postprocess(ops: Ops, predictions: tuple[Path, ...], out_dir: Path, staged: tuple[Path, ...],
                validation_errors: Path | None, name: str | None, model: str, job_state: str, as_json: bool) -> None:
    """Turn Vertex prediction files downloaded by hand into the pipeline's results, errors and report, with
    the code collect runs: rows joined back by their row id, failed and missing rows in errors (nothing is
    retried), and the row accounting of the output contract.

    Exits 1 when the report's counts do not add up."""
    config = local_config(ops.environ, max_attempts=1)
    rel = name or predictions[0].name.removesuffix(".jsonl")
    digest = hashlib.sha256("\0".join(str(p.resolve()) for p in predictions).encode()).hexdigest()
    run = layout.run_id("local", f"postprocess:{digest}", 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "staging" / run, out_dir / "vertex" / run):
        shutil.rmtree(stale, ignore_errors=True)
    p = local_pipeline(config, out_dir, out_dir)
    # Collect's workers start while the staged input is checked (their imports would otherwise delay pass 1).
    harvest.prepare(p.store, config.collect_workers or workers.available_cpus(),
                    sum(path.stat().st_size for path in predictions))
    staged_path = out_dir / layout.staged_name(run, PART)
    rows, size, sums = _linked_or_combined(staged, staged_path) if staged \
        else _staged_from_predictions(predictions, staged_path)
    invalid, by_status = _validation(validation_errors, out_dir / layout.validation_errors_name(run))
    output = out_dir / layout.vertex_output_prefix(run, PART)
    output.mkdir(parents=True, exist_ok=True)
    for n, path in enumerate(predictions):
        target = output / f"predictions-{n:04d}.jsonl"
        try:
            os.symlink(path.resolve(), target)
        except OSError:
            shutil.copyfile(path, target)
    now = p.now()
    record = runstate.new_run(run=run, bucket="local", name=str(predictions[0].resolve()), generation=0, rel=rel,
                              model=model, now=now)
    record["input"]["uri"] = predictions[0].resolve().as_uri()
    part = runstate.new_part(1, 1, rows, size, row_sums=sums.value())
    record = runstate.staged(record, parts={PART: part} if rows else {},
                             total=rows + invalid, validation={"failed": invalid, "byReason": by_status}, note=None,
                             now=p.clock())
    if rows:
        record = runstate.job_submitted(record, PART, "local")
    p.store.write_json(LOCAL_OUTPUT, layout.run_state_name(run), record, if_generation_match=None)
    with ops.quiet_core():
        try:
            if rows:
                collect.handle_job_finished(p, JobFinished(run=run, part=PART, job="local", state=job_state,
                                                           error=None))
            else:
                resume(p, record)
        except BadEventError as exc:
            raise Failed(str(exc)) from None
    report = p.store.read_json(LOCAL_OUTPUT, layout.report_name(rel))
    if report is None:
        raise Failed(f"no report was written under {out_dir}")
    doc = report.value
    files = {"results": str(out_dir / layout.results_name(rel)), "errors": str(out_dir / layout.errors_name(rel)),
             "report": str(out_dir / layout.report_name(rel))}
    if as_json:
        emit_json({"report": doc, "files": files})
    else:
        counts = doc["rows"]
        pairs([("rows", f"{counts['total']} total, {counts['succeeded']} succeeded, {counts['failed']} failed"),
               ("failed by", ", ".join(f"{k} {v}" for k, v in counts["failedByReason"].items()) or "-"),
               ("tokens", f"{doc['tokens']['total']}"), *files.items()], tty=ops.tty, title=f"postprocessed {rel}")
    counts = doc["rows"]
    if counts["total"] != counts["succeeded"] + counts["failed"]:
        raise Failed(f"the report's counts do not add up: {counts}")
