"""submit: an upload under INPUT_PREFIX becomes a run: claim, validate and stage, split, queue, start jobs."""

from __future__ import annotations

from shared import layout, log, runstate, staging, validation
from shared.events import StorageObjectEvent
from shared.pipeline import Pipeline
from shared.progress import resume
from shared.storage import change_json, mutate_json
from shared.storage.base import ObjectMissing


def ignore_reason(p: Pipeline, obj: StorageObjectEvent) -> str | None:
    """Why this object is not an input (None when it is one)."""
    cfg = p.config
    if obj.event_type != "OBJECT_FINALIZE":
        return f"event type {obj.event_type!r} is not OBJECT_FINALIZE"
    if obj.bucket != cfg.input_bucket:
        return f"bucket {obj.bucket} is not INPUT_BUCKET ({cfg.input_bucket})"
    if obj.bucket == cfg.output_bucket and obj.name.startswith(cfg.own_prefixes):
        return "the pipeline's own output"
    if not obj.name.startswith(cfg.input_prefix):
        return f"outside INPUT_PREFIX ({cfg.input_prefix})"
    if obj.name.endswith("/"):
        return "a folder placeholder, not a file"
    return None


def handle_upload(p: Pipeline, obj: StorageObjectEvent) -> str:
    """Returns what happened: "ignored", "duplicate" or "staged"."""
    reason = ignore_reason(p, obj)
    if reason:
        log.info("run.ignored", f"ignoring {obj.uri}: {reason}", input=obj.uri)
        return "ignored"
    cfg = p.config
    run = layout.run_id(obj.bucket, obj.name, obj.generation)
    state_name = layout.run_state_name(run)
    model = (obj.metadata.get("model") or cfg.model).strip()
    rel, renamed = layout.output_rel(layout.relative_name(obj.name, cfg.input_prefix))
    note = None
    if renamed:
        note = (f"the input's name is too long for Cloud Storage's 1,024-byte object names once prefixed with "
                f"results/, errors/ or reports/: its outputs are named after the shortened {rel!r}")
    owned = _own_output_names(p, rel, obj)
    if owned != rel:
        note = (f"{note}; " if note else "") + (
            f"another input already owns the output names of {rel!r} (such as incoming/x and incoming/x.jsonl): "
            f"this one's outputs are named after {owned!r}")
        rel, renamed = owned, True
    record = runstate.new_run(run=run, bucket=obj.bucket, name=obj.name, generation=obj.generation,
                              rel=rel, model=model, now=p.now(), note=note)
    # The open marker goes first: a run record without one would be invisible to the reconciliation.
    marked = p.store.write_json(cfg.output_bucket, layout.open_marker_name(run), open_marker(obj, p.clock()),
                                if_generation_match=0) is not None
    if p.store.write_json(cfg.output_bucket, state_name, record, if_generation_match=0) is None:
        existing = p.store.read_json(cfg.output_bucket, state_name)
        if existing is not None and existing.value["state"] != runstate.STAGING:
            log.info("run.duplicate", f"{obj.uri}#{obj.generation} is already run {run}", run=run, input=obj.uri)
            if existing.value["state"] == runstate.DONE and marked:
                p.store.delete(cfg.output_bucket, layout.open_marker_name(run))  # only ours: the run is over
            resume(p, existing.value)
            return "duplicate"
        # Still staging: an earlier delivery died midway, or is still at it. Staging is deterministic and
        # its outputs are overwritten, so doing it again is safe; the state change below happens once.
        record = existing.value if existing else record
    log.info("run.received", f"run {run} for {obj.uri} (generation {obj.generation}, model {record['model']})",
             run=run, input=obj.uri, generation=str(obj.generation), size=obj.size)
    if renamed:
        log.warning("run.renamed", f"run {run}: {note}", run=run, input=obj.uri, rel=rel)
    p.checkpoint("submit.claimed")

    try:
        staged = staging.stage(p, run, obj.bucket, obj.name, obj.generation, obj.size)
    except ObjectMissing:
        # The generation was replaced or deleted before we could read it; a newer generation has its own
        # run. Nothing of this one was billed; say so and stop.
        log.warning("run.superseded", f"{obj.uri}#{obj.generation} no longer exists; nothing to do",
                    run=run, input=obj.uri)
        # Only a run still staging is closed here: a concurrent delivery may have staged it already.
        closed = mutate_json(p.store, cfg.output_bucket, state_name,
                             lambda r: runstate.finished(r, now=p.now(), superseded=True)
                             if r and r["state"] == runstate.STAGING else None)
        if closed and closed["state"] == runstate.DONE:
            p.store.delete(cfg.output_bucket, layout.open_marker_name(run))
        return "ignored"

    p.checkpoint("submit.written")
    note = _note(obj, staged)
    new, won = change_json(p.store, cfg.output_bucket, state_name,
                           lambda r: runstate.staged(r, parts=staged.parts, total=staged.total,
                                                     validation=staged.validation(), note=note,
                                                     now=p.clock()) if r else None)
    if not won:
        # A concurrent delivery finished staging first (same bytes, same parts); it logs and moves on.
        log.info("run.duplicate", f"{obj.uri}#{obj.generation} was staged by another delivery", run=run,
                 input=obj.uri)
        if new is not None:
            resume(p, new)  # idempotent; covers that delivery dying before it moves the run on
        return "duplicate"
    if staged.failed:
        log.error("rows.failed", f"{staged.failed} of {staged.total} lines of {obj.uri} failed validation",
                  run=run, input=obj.uri, stage="validation", failed=staged.failed,
                  byReason=dict(staged.failed_by_reason), examples=staged.samples)
    log.info("run.staged", f"run {run}: {staged.total} rows, {staged.total - staged.failed} staged in "
             f"{len(staged.parts)} part(s) in {staged.seconds:.2f} s ({staged.read_seconds:.2f} s of it waiting "
             f"for the input's bytes, {staged.write_seconds:.2f} s for the staged files to be written)", run=run,
             input=obj.uri, rows=staged.total, failed=staged.failed, parts=len(staged.parts),
             seconds=round(staged.seconds, 3), readSeconds=round(staged.read_seconds, 3),
             writeSeconds=round(staged.write_seconds, 3))
    p.checkpoint("submit.staged")
    resume(p, new)
    return "staged"


def _own_output_names(p: Pipeline, rel: str, obj: StorageObjectEvent) -> str:
    """The `<rel>` this input's outputs use: its natural one unless another input owns it (first come, kept
    for good, so every generation of one input keeps its names and two inputs never share them)."""
    owner = {"bucket": obj.bucket, "name": obj.name}
    name = layout.name_owner_name(rel)
    p.store.write_json(p.config.output_bucket, name, owner, if_generation_match=0)
    found = p.store.read_json(p.config.output_bucket, name)
    if found is None or {k: found.value.get(k) for k in owner} == owner:
        return rel
    return layout.disambiguated_rel(rel, obj.bucket, obj.name)


def open_marker(obj: StorageObjectEvent, now: float) -> dict:
    """What the reconciliation needs to start the run again from nothing but this marker."""
    return {"bucket": obj.bucket, "name": obj.name, "generation": str(obj.generation), "since": now}


def _note(obj: StorageObjectEvent, staged: staging.Staged) -> str | None:
    if staged.unreadable:
        return (f"the input could not be read to its end: {staged.unreadable}; the lines from there on count as "
                f"one failed row (reason {validation.UNREADABLE_INPUT})")
    if staged.total == 0:
        return "the file has no rows (it is empty or only blank lines)"
    if staged.failed == staged.total and not obj.name.endswith(".jsonl"):
        return "the object is not a JSONL file (its name does not end in .jsonl and no line is a valid request)"
    if staged.failed == staged.total:
        return "no line of the file is a valid request"
    return None
