"""`batchctl verify RUN|INPUT`: re-check a finished run's books from its input and outputs with the shared
checker (`shared/verify.py`): every input row exactly once in results or errors, report counts equal to the
files, and one Vertex job per part, the one the report names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from batchctl._context import Ops
from batchctl._exit import Failed
from batchctl._output import emit_json
from batchctl._resolve import run_record
from shared import layout, runstate, verify
from shared.cancel import jobs_of
from shared.errors import VertexError
from shared.lines import iter_lines
from shared.storage.base import ObjectMissing


def _lines(ops: Ops, bucket: str, name: str, generation: int | None = None) -> Iterator[bytes]:
    with ops.storage().open_read(bucket, name, generation) as stream:
        yield from iter_lines(stream)


def _jobs(ops: Ops, run: str) -> list[dict[str, Any]]:
    """The run's Vertex jobs, as the checker takes them (name, and the label part `<run>-<part>`)."""
    return [{"name": job.name, "labels": {"part": f"{run}-{part}"}} for job, part in jobs_of(ops.pipeline(), run)]


@click.command("verify", short_help="Re-check a finished run's row accounting.")
@click.argument("target", metavar="RUN|INPUT")
@click.option("--no-jobs", is_flag=True, help="Do not check the run's Vertex jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def verify_run(ops: Ops, target: str, no_jobs: bool, as_json: bool) -> None:
    """Re-check a finished run's row accounting from its input and outputs (streamed).

    Every non-blank input line must be in the results or the errors file exactly once, under its line
    number; the report's counts must equal the files; each part must have exactly one Vertex job, the one
    the report names. Says what is wrong and exits 1, or exits 0 when the books balance."""
    cfg, store = ops.config, ops.storage()
    record = run_record(ops, target)
    run, rel = record["run"], record["rel"]
    report = store.read_json(cfg.output_bucket, layout.report_name(rel))
    if record["state"] != runstate.DONE and (report is None or report.value.get("run") != run):
        raise Failed(f"run {run} is {record['state']}: verify a run once it is done")
    if report is None or report.value.get("run") != run:  # its report is written last: then it is done
        raise Failed(f"run {run} has no outputs of its own: a newer upload of {record['input']['uri']} "
                     f"replaced them (verify run {report.value.get('run') if report else '?'} instead)")
    source = record["input"]
    notes = []
    generation = int(source["generation"])
    try:
        if store.object_info(source["bucket"], source["name"], generation) is not None:
            expected: Any = verify.input_rows(_lines(ops, source["bucket"], source["name"], generation))
        else:
            notes.append(f"the input {source['uri']}#{generation} is gone: the outputs' own rows stand in for it")
            expected = _rows_of_outputs(ops, rel)
        problems = verify.check(rel, expected, report.value,
                                _lines(ops, cfg.output_bucket, layout.results_name(rel)),
                                _lines(ops, cfg.output_bucket, layout.errors_name(rel)))
    except ObjectMissing as exc:
        problems = [f"{rel}: an output file is missing: {exc}"]
    if not no_jobs:
        try:
            problems += verify.check_jobs(rel, report.value, _jobs(ops, run))
        except VertexError as exc:
            notes.append(f"Vertex jobs not checked: {exc}")
    doc = {"run": run, "input": source["uri"], "rows": report.value["rows"], "ok": not problems,
           "problems": problems, "notes": notes}
    if as_json:
        emit_json(doc)
    else:
        for note in notes:
            click.echo(f"note: {note}", err=True)
        for problem in problems:
            click.echo(problem)
        if not problems:
            rows = report.value["rows"]
            click.echo(f"ok: run {run}: all {rows['total']} rows accounted for exactly once "
                       f"({rows['succeeded']} results, {rows['failed']} errors)")
    if problems:
        raise Failed(f"run {run}: {len(problems)} problem(s) with its accounting")


def _rows_of_outputs(ops: Ops, rel: str) -> list[int]:
    """Without the input, the outputs' own rows stand in (duplicates and report counts are still checked)."""
    import orjson

    rows = set()
    for name in (layout.results_name(rel), layout.errors_name(rel)):
        for raw in _lines(ops, ops.config.output_bucket, name):
            if raw.strip():
                row = orjson.loads(raw).get("row")
                if isinstance(row, int):
                    rows.add(row)
    return sorted(rows)
