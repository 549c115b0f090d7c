"""Finishing a settled run: merge the part files into results/ and errors/ with server-side compose, write
the report last, announce it on run-finished.

A re-upload starts a new run; its outputs replace the old ones only if its generation is newer, so
finishing first moves the input's "latest" pointer forward (compare-and-swap) and a run that lost to a
newer generation writes nothing under results/, errors/ or reports/.
"""

from __future__ import annotations

from typing import Any

from shared import layout, log, report, runstate, scheduler
from shared.pipeline import Pipeline
from shared.storage import mutate_json


def finalize(p: Pipeline, run: str) -> None:
    bucket = p.work_bucket
    found = p.store.read_json(bucket, layout.run_state_name(run))
    if found is None or found.value["state"] != runstate.FINALIZING:
        return
    record = found.value
    generation = int(record["input"]["generation"])
    if not _claim_latest(p, record, generation):
        log.warning("run.superseded", f"run {run}: a newer generation of {record['input']['uri']} already "
                    "published its outputs; this run's are not written", run=run, input=record["input"]["uri"])
        _done(p, record, superseded=True, report_doc=None)
        return

    rel = record["rel"]
    parts = sorted(record["parts"].items(), key=lambda kv: (kv[1]["chunk"], kv[1]["attempt"]))
    results_sources = [layout.part_results_name(run, name) for name, _ in parts]
    errors_sources = [layout.validation_errors_name(run)] + [layout.part_errors_name(run, name) for name, _ in parts]
    p.store.compose(bucket, results_sources, layout.results_name(rel), layout.compose_scratch_prefix(run, "results"))
    p.store.compose(bucket, errors_sources, layout.errors_name(rel), layout.compose_scratch_prefix(run, "errors"))
    finished = p.now()
    doc = report.build(record, finished=finished, results_uri=f"gs://{bucket}/{layout.results_name(rel)}",
                       errors_uri=f"gs://{bucket}/{layout.errors_name(rel)}")
    if not _still_latest(p, record, generation):
        log.warning("run.superseded", f"run {run}: overtaken by a newer generation while finishing",
                    run=run, input=record["input"]["uri"])
        _done(p, record, superseded=True, report_doc=None)
        return
    p.store.write_json(bucket, layout.report_name(rel), doc, if_generation_match=None)
    _done(p, record, superseded=False, report_doc=doc)


def _claim_latest(p: Pipeline, record: dict[str, Any], generation: int) -> bool:
    name = layout.latest_name(record["input"]["bucket"], record["input"]["name"])
    stored = mutate_json(p.store, p.work_bucket, name,
                         lambda cur: None if cur and cur["generation"] >= generation
                         else {"generation": generation, "run": record["run"]})
    return stored is not None and stored["generation"] == generation


def _still_latest(p: Pipeline, record: dict[str, Any], generation: int) -> bool:
    found = p.store.read_json(p.work_bucket, layout.latest_name(record["input"]["bucket"], record["input"]["name"]))
    return found is None or found.value["generation"] <= generation


def _done(p: Pipeline, record: dict[str, Any], *, superseded: bool, report_doc: dict[str, Any] | None) -> None:
    """Announce, then mark done: a crash in between repeats the announcement (at least once), never loses it."""
    run = record["run"]
    payload = {"run": run, "input": record["input"], "superseded": superseded}
    if report_doc is not None:
        payload.update(state=report_doc["state"], rows=report_doc["rows"],
                       report=f"gs://{p.work_bucket}/{layout.report_name(record['rel'])}",
                       results=report_doc["results"], errors=report_doc["errors"])
    p.publisher.publish(p.config.run_finished_topic, payload)
    mutate_json(p.store, p.work_bucket, layout.run_state_name(run),
                lambda r: runstate.finished(r, now=p.now(), superseded=superseded) if r else None)
    scheduler.forget_run(p, run)
    if report_doc is not None:
        log.info("run.finished", f"run {run} {report_doc['state']}: {report_doc['rows']['succeeded']} of "
                 f"{report_doc['rows']['total']} rows succeeded", run=run, input=record["input"]["uri"],
                 state=report_doc["state"], rows=report_doc["rows"], tokens=report_doc["tokens"],
                 seconds=report_doc["seconds"], jobs=len(report_doc["jobs"]))
