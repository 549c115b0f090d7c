"""`batchctl retry RUN`: the failed rows of a finished run, as a new run. Its errors file is already a valid
input (each line carries the row's request), so the retry is that file, filtered, dropped back under the
input prefix next to the original: `<name>.retry.jsonl`, with the original's model. Retrying the same run
again replaces that file (a new generation: a new run whose outputs replace the previous retry's)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click
import orjson

from batchctl._context import Ops
from batchctl._exit import Failed
from batchctl._output import emit_json, pairs
from batchctl._resolve import run_record
from shared import layout, runstate
from shared.lines import iter_lines
from shared.storage.base import ObjectMissing


def retry_name(ops: Ops, record: dict[str, Any]) -> str:
    """The retry's object name in the input bucket: the original's, `.retry` before `.jsonl`."""
    name = record["input"]["name"]
    if record["input"]["bucket"] != ops.config.input_bucket or not name.startswith(ops.config.input_prefix):
        name = ops.config.input_prefix + record["rel"]
    return name.removesuffix(".jsonl") + ".retry.jsonl"


def select_rows(lines, out, *, only_retryable: bool) -> dict[str, int]:
    """Copy the error lines worth running again into `out`; returns what was kept and skipped, by why."""
    counts = {"rows": 0, "skippedValidation": 0, "skippedNoRequest": 0, "skippedNotRetryable": 0}
    for raw in lines:
        if not raw.strip():
            continue
        line = orjson.loads(raw)
        if "request" not in line:
            counts["skippedNoRequest"] += 1  # the line was not JSON: it cannot be sent as it is
        elif line.get("stage") == "validation":
            counts["skippedValidation"] += 1  # it would fail the same way: fix it first
        elif only_retryable and not line.get("retryable"):
            counts["skippedNotRetryable"] += 1
        else:
            out.write(raw + b"\n")
            counts["rows"] += 1
    return counts


@click.command("retry", short_help="Run a finished run's failed rows again, as a new run.")
@click.argument("target", metavar="RUN|INPUT")
@click.option("--only-retryable", is_flag=True, help="Only rows whose error is retryable (429, 5xx, missing).")
@click.option("--model", help="Run them with this model instead of the run's.")
@click.option("--dry-run", is_flag=True, help="Say what would be dropped, and drop nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def retry(ops: Ops, target: str, only_retryable: bool, model: str | None, dry_run: bool, as_json: bool) -> None:
    """Resubmit the failed rows of a finished run as a new run.

    The run's errors file is filtered (rows that failed validation, or were not JSON, would fail again and
    are left out) and dropped as <input>.retry.jsonl with the run's model (or --model). Its rows are
    numbered by line of that file; each carries the original row number and key."""
    cfg, store = ops.config, ops.storage()
    record = run_record(ops, target)
    report = store.read_json(cfg.output_bucket, layout.report_name(record["rel"]))
    if record["state"] != runstate.DONE and (report is None or report.value.get("run") != record["run"]):
        raise Failed(f"run {record['run']} is {record['state']}: retry a run once it is done")
    if report is None or report.value.get("run") != record["run"]:
        raise Failed(f"run {record['run']} has no outputs of its own (a newer upload of "
                     f"{record['input']['uri']} replaced them): retry that run instead")
    name = retry_name(ops, record)
    uri = f"gs://{cfg.input_bucket}/{name}"
    with tempfile.NamedTemporaryFile(prefix="batchctl-retry-", suffix=".jsonl") as scratch:
        try:
            with store.open_read(cfg.output_bucket, layout.errors_name(record["rel"])) as stream:
                counts = select_rows(iter_lines(stream), scratch, only_retryable=only_retryable)
        except ObjectMissing:
            raise Failed(f"the errors file of run {record['run']} is gone") from None
        scratch.flush()
        doc: dict[str, Any] = {"run": record["run"], "input": record["input"]["uri"], "retry": uri,
                               "model": model or record["model"], "dryRun": dry_run, **counts}
        if counts["rows"] and not dry_run:
            generation = ops.bucket_admin().upload(cfg.input_bucket, name, Path(scratch.name),
                                                   metadata={"model": doc["model"], "retry-of": record["run"]},
                                                   content_type="application/jsonl")
            doc.update(generation=str(generation), newRun=layout.run_id(cfg.input_bucket, name, generation))
    if as_json:
        emit_json(doc)
    else:
        skipped = [f"{counts[k]} {why}" for k, why in (("skippedValidation", "failed validation"),
                                                       ("skippedNoRequest", "were not JSON"),
                                                       ("skippedNotRetryable", "are not retryable")) if counts[k]]
        verb = "would drop" if dry_run else "dropped"
        lines = [("rows", f"{counts['rows']} to run again" + (f" (left out: {', '.join(skipped)})" if skipped else "")),
                 (verb, uri if counts["rows"] else "nothing: no row to run again")]
        if doc.get("newRun"):
            lines.append(("new run", doc["newRun"]))
        pairs(lines, tty=ops.tty, title=f"retry of run {record['run']}")
