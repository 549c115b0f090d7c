"""`batchctl show RUN|INPUT`: one run in full: parts and Vertex jobs, rows and errors by reason with an
example each, tokens and an estimated cost, where the outputs are, and the repairs the reconciliation made."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import orjson

from batchctl import _pricing
from batchctl._context import Ops
from batchctl._output import Column, emit_json, pairs, table
from batchctl._resolve import run_record
from batchctl._runs import age_text
from shared import layout, runstate
from shared.errors import VertexError
from shared.lines import iter_lines
from shared.runindex import RunSummary
from shared.storage.base import ObjectMissing
from shared.vertex.base import label_filter

SCAN_LINES = 200_000  # error lines read for the examples (the counts by reason come from the run record)
_EXAMPLE = 160


def _when(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _jobs(ops: Ops, record: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Vertex's view of the run's jobs (part -> details, from one label-filtered list), and a warning if
    Vertex failed. The run record names a part's job only once it is collected: asking Vertex covers the
    jobs still running too."""
    if record["state"] not in (runstate.RUNNING, runstate.FINALIZING, runstate.DONE):
        return {}, None
    cfg = ops.config
    try:
        listed = list(ops.jobs().list(label_filter({"pipeline": cfg.pipeline_label, "run": record["run"]})))
    except VertexError as exc:
        return {}, f"Vertex jobs not shown: {exc}"
    found: dict[str, dict[str, Any]] = {}
    for job in sorted(listed, key=lambda j: j.create_time or datetime.min.replace(tzinfo=UTC)):
        qid = layout.qid_of_display_name(cfg.pipeline_label, job.display_name)
        if qid is not None:
            found[layout.split_queue_id(qid)[1]] = {
                "name": job.name, "state": job.state, "created": _when(job.create_time),
                "started": _when(job.start_time), "ended": _when(job.end_time), "error": job.error_message}
    return found, None


def parts(record: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, part in sorted(record["parts"].items(), key=lambda kv: (kv[1]["chunk"], kv[1]["attempt"])):
        job = jobs.get(name, {})
        state = part["state"]
        if state == runstate.QUEUED and job:
            state = runstate.SUBMITTED  # its job exists; the record learns it when the part is collected
        out.append({"part": name, "attempt": part["attempt"], "rows": part["rows"], "state": state,
                    "job": part.get("job") or job.get("name"), "jobState": job.get("state") or part.get("jobState"),
                    "created": job.get("created"), "started": job.get("started"), "ended": job.get("ended"),
                    "succeeded": part.get("succeeded"), "retried": part.get("retried"),
                    "error": job.get("error") or (part.get("jobError") or {}).get("message")
                    or (part.get("rejection") or {}).get("message")})
    return out


def _error_sources(ops: Ops, record: dict[str, Any], report: dict[str, Any] | None) -> list[str]:
    run = record["run"]
    if report is not None:
        return [layout.errors_name(record["rel"])]
    return [layout.validation_errors_name(run)] + [layout.part_errors_name(run, name) for name, part
                                                    in sorted(record["parts"].items())
                                                    if part["state"] == runstate.COLLECTED]


def error_groups(ops: Ops, names: list[str]) -> tuple[list[dict[str, Any]], int, bool]:
    """Error lines grouped by stage and status with the first line of each as the example; streamed, at
    most SCAN_LINES lines. Returns (groups, lines read, whether the scan stopped early)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    read = 0
    store = ops.storage()
    for name in names:
        try:
            with store.open_read(ops.config.output_bucket, name) as stream:
                for raw in iter_lines(stream):
                    if not raw.strip():
                        continue
                    if read >= SCAN_LINES:
                        return list(groups.values()), read, True
                    read += 1
                    try:
                        line = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        continue
                    key = (str(line.get("stage")), str(line.get("status") or line.get("code")))
                    group = groups.get(key)
                    if group is None:
                        message = str(line.get("message") or "")
                        groups[key] = {"stage": key[0], "status": key[1], "rows": 1,
                                       "example": {"row": line.get("row"), "message": message}}
                    else:
                        group["rows"] += 1
        except ObjectMissing:
            continue
    return sorted(groups.values(), key=lambda g: -g["rows"]), read, False


def _report(ops: Ops, record: dict[str, Any]) -> dict[str, Any] | None:
    found = ops.storage().read_json(ops.config.output_bucket, layout.report_name(record["rel"]))
    return found.value if found and found.value.get("run") == record["run"] else None


def document(ops: Ops, record: dict[str, Any], prices: dict[str, tuple[float, float]],
             with_errors: bool = True) -> dict[str, Any]:
    cfg, store, run = ops.config, ops.storage(), record["run"]
    summary = RunSummary.from_record(record)
    report = _report(ops, record) if record["state"] == runstate.DONE else None
    jobs, warning = _jobs(ops, record)
    rows = runstate.counts(record)
    groups, scanned, cut = error_groups(ops, _error_sources(ops, record, report)) if with_errors else ([], 0, False)
    cost = _pricing.estimate(record["model"], rows["tokens"], prices)
    repairs = store.read_json(cfg.output_bucket, layout.repairs_name(run))
    bucket = cfg.output_bucket
    outputs = {"results": f"gs://{bucket}/{layout.results_name(record['rel'])}",
               "errors": f"gs://{bucket}/{layout.errors_name(record['rel'])}",
               "report": f"gs://{bucket}/{layout.report_name(record['rel'])}",
               "written": report is not None}
    doc = {"run": run, "input": record["input"], "state": record["state"], "label": summary.label,
           "model": record["model"], "received": record["received"], "finished": record.get("finished"),
           "seconds": report.get("seconds") if report else None, "cancelled": record.get("cancelled"),
           "note": record.get("note"), "rows": rows, "parts": parts(record, jobs), "errors": groups,
           "errorsScanned": scanned, "errorsScanCut": cut, "cost": cost.to_json() if cost else None,
           "outputs": outputs, "repairs": (repairs.value.get("kinds") if repairs else {}) or {}}
    if warning:
        doc["warning"] = warning
    return doc


@click.command("show", short_help="One run in full: parts, jobs, errors by reason, cost.")
@click.argument("target", metavar="RUN|INPUT")
@click.option("--price", "price", multiple=True, metavar="MODEL=IN/OUT",
              help="Batch price in USD per million input/output tokens for the cost estimate (repeatable).")
@click.option("--no-errors", is_flag=True, help="Do not read the error lines for examples.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def show(ops: Ops, target: str, price: tuple[str, ...], no_errors: bool, as_json: bool) -> None:
    """Show one run: its parts and Vertex jobs with states and times, rows and errors grouped by reason
    with an example line each, tokens and the estimated cost, the outputs, and the repairs made.

    RUN|INPUT is a run id, gs://bucket/name, or a name under the input prefix (the run of its newest
    upload). The cost is an estimate: tokens times the model's batch price (see --price)."""
    try:
        prices = _pricing.parse_overrides(price)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--price") from None
    record = run_record(ops, target)
    doc = document(ops, record, prices, with_errors=not no_errors)
    if as_json:
        emit_json(doc)
        return
    _render(ops, doc)


def _render(ops: Ops, doc: dict[str, Any]) -> None:
    tty, rows = ops.tty, doc["rows"]
    head = [("input", f"{doc['input']['uri']} (generation {doc['input']['generation']})"),
            ("state", doc["label"]), ("model", doc["model"]),
            ("received", f"{doc['received']} ({age_text(ops.clock() - _epoch(doc['received']))} ago)")]
    if doc["finished"]:
        head.append(("finished", f"{doc['finished']}" + (f" ({doc['seconds']:.1f}s)" if doc["seconds"] else "")))
    if doc["cancelled"]:
        head.append(("cancelled", f"{doc['cancelled'].get('at')}" + (f" ({doc['cancelled']['reason']})"
                                                                      if doc["cancelled"].get("reason") else "")))
    if doc["note"]:
        head.append(("note", doc["note"]))
    head.append(("rows", f"{rows['total']} total, {rows['succeeded']} succeeded, {rows['failed']} failed, "
                         f"{rows['retried']} retried"))
    if rows["failedByReason"]:
        head.append(("failed by", ", ".join(f"{k} {v}" for k, v in rows["failedByReason"].items())))
    pairs(head, tty=tty, title=f"run {doc['run']}")
    click.echo("")
    part_rows = [[p["part"], str(p["attempt"]), str(p["rows"]), p["state"], (p["job"] or "-").rsplit("/", 1)[-1],
                  (p["jobState"] or "-").removeprefix("JOB_STATE_"), p["created"] or "-", p["ended"] or "-"]
                 for p in doc["parts"]]
    if part_rows:
        table([Column("PART"), Column("ATTEMPT", True), Column("ROWS", True), Column("STATE"), Column("JOB"),
               Column("VERTEX"), Column("CREATED"), Column("ENDED")], part_rows, tty=tty, title="parts")
        click.echo("")
    if doc.get("warning"):
        click.echo(f"warning: {doc['warning']}", err=True)
    if doc["errors"]:
        table([Column("STAGE"), Column("STATUS"), Column("ROWS", True), Column("EXAMPLE")],
              [[g["stage"], g["status"], str(g["rows"]), _example(g["example"])] for g in doc["errors"]], tty=tty,
              title="errors by reason" + (f" (first {doc['errorsScanned']} lines)" if doc["errorsScanCut"] else ""))
        click.echo("")
    tokens = rows["tokens"]
    cost = doc["cost"]
    money = (f"~${cost['usd']:.4f} (estimate: {cost['model']} batch ${cost['pricePerMillion']['input']}/"
             f"${cost['pricePerMillion']['output']} per million input/output tokens)") if cost else \
        f"no price for {doc['model']} (give one with --price MODEL=IN/OUT)"
    out = doc["outputs"]
    tail = [("tokens", f"{tokens['prompt']} prompt, {tokens['candidates']} response, {tokens['total']} total"),
            ("cost", money),
            ("results", out["results"]), ("errors", out["errors"]),
            ("report", out["report"] + ("" if out["written"] else " (not written yet)"))]
    tail += [(f"repair {kind}", f"{v.get('count')} time(s), last at {v.get('last')}")
             for kind, v in sorted(doc["repairs"].items())]
    pairs(tail, tty=tty)


def _example(example: dict[str, Any]) -> str:
    message = " ".join(str(example.get("message") or "").split())
    if len(message) > _EXAMPLE:
        message = message[:_EXAMPLE - 3] + "..."
    return f"row {example.get('row')}: {message}"


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
