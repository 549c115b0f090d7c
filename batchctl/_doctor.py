"""`batchctl doctor`: is the pipeline there and wired as it expects? One line per check: configuration,
buckets, topics, the push subscriptions feeding submit and collect (endpoint, dead-letter policy), the
dead-letter subscriptions, the input bucket's notification, Vertex AI, and the pipeline's own state."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import click

from batchctl._context import Ops
from batchctl._exit import Exit, Failed, describe, exit_code
from batchctl._output import emit_json
from shared import layout, scheduler_state
from shared.errors import ConfigError
from shared.redrive import Subscription, source_topics
from shared.vertex.base import label_filter


class Status(StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"


OK, FAIL, SKIP = Status.OK, Status.FAIL, Status.SKIP


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    transient: bool = False

    def to_json(self) -> dict:
        return {"name": self.name, "status": str(self.status), "detail": self.detail}


class _Skip(Exception):
    """A check that cannot be made here (said why)."""


class _Wrong(Exception):
    """A check that failed: what to fix."""


def _run(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, OK, probe())
    except _Skip as why:
        return Check(name, SKIP, str(why))
    except _Wrong as what:
        return Check(name, FAIL, str(what))
    except Exception as exc:  # noqa: BLE001 - a check that cannot be made is a failed check, said in one line
        return Check(name, FAIL, describe(exc), transient=exit_code(exc) == Exit.TRANSIENT)


def _reachable(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), 2):
            return True
    except OSError:
        return False


def checks(ops: Ops) -> list[Check]:
    cfg = ops.config
    found: list[Check] = [Check("config", OK, f"project {cfg.project}, Vertex region {cfg.location}, input "
                                              f"gs://{cfg.input_bucket}/{cfg.input_prefix}, output "
                                              f"gs://{cfg.output_bucket}/, model {cfg.model}")]
    buckets = ops.bucket_admin()

    def bucket(name: str, what: str) -> Callable[[], str]:
        def probe() -> str:
            if not buckets.exists(name):
                raise _Wrong(f"gs://{name} does not exist or is not visible to you ({what})")
            return f"gs://{name} exists"
        return probe

    found.append(_run("input bucket", bucket(cfg.input_bucket, "INPUT_BUCKET")))
    if cfg.output_bucket != cfg.input_bucket:
        found.append(_run("output bucket", bucket(cfg.output_bucket, "OUTPUT_BUCKET")))
    pubsub = ops.pubsub_admin()
    wiring: list[Subscription] = []

    def topic(name: str, variable: str) -> Callable[[], str]:
        def probe() -> str:
            if not pubsub.topic_exists(name):
                raise _Wrong(f"topic {name} does not exist (check {variable})")
            return f"topic {name} exists"
        return probe

    for name, variable in ((cfg.uploads_topic, "UPLOADS_TOPIC"), (cfg.job_finished_topic, "JOB_FINISHED_TOPIC"),
                           (cfg.run_finished_topic, "RUN_FINISHED_TOPIC")):
        found.append(_run(f"topic {name}", topic(name, variable)))

    def load_wiring() -> str:
        wiring.extend(pubsub.subscriptions())
        return f"{len(wiring)} subscription(s) in project {cfg.project}"

    listed = _run("subscriptions", load_wiring)
    found.append(listed)
    if listed.status == OK:
        for name, function in ((cfg.uploads_topic, "submit"), (cfg.job_finished_topic, "collect")):
            found.append(_run(f"push to {function}", lambda n=name, f=function: _push(ops, wiring, n, f)))
    for name in cfg.dead_letter_subscriptions:
        found.append(_run(f"dead letters {name}", lambda n=name: _dead_letters(pubsub, wiring, n)))
    found.append(_run("notification", lambda: _notification(ops)))
    found.append(_run("vertex", lambda: _vertex(ops)))
    found.append(_run("pipeline state", lambda: _state(ops)))
    return found


def _push(ops: Ops, wiring: list[Subscription], topic: str, function: str) -> str:
    pushes = [s for s in wiring if s.topic == topic and s.push_endpoint]
    if not pushes:
        raise _Wrong(f"no push subscription on topic {topic}: nothing delivers to {function}")
    problems, said = [], []
    for sub in pushes:
        if not sub.dead_letter_topic:
            problems.append(f"{sub.name} has no dead-letter policy (undeliverable messages would be retried "
                            "forever and never seen)")
        endpoint = sub.push_endpoint or ""
        if ops.local and not _reachable(endpoint):
            problems.append(f"{sub.name} pushes to {endpoint}, which does not answer")
        elif not ops.local and not endpoint.startswith("https://"):
            problems.append(f"{sub.name} pushes to {endpoint}, not an https endpoint")
        said.append(f"{sub.name} -> {endpoint}" + (f" (dead letters: {sub.dead_letter_topic})"
                                                   if sub.dead_letter_topic else ""))
    if problems:
        raise _Wrong("; ".join(problems))
    return "; ".join(said)


def _dead_letters(pubsub, wiring: list[Subscription], name: str) -> str:
    sub = pubsub.subscription(name)
    if sub is None:
        raise _Wrong(f"subscription {name} does not exist (DEAD_LETTER_SUBSCRIPTIONS)")
    sources = source_topics(sub, wiring)
    if not sources:
        raise _Wrong(f"{name} reads topic {sub.topic}, which no subscription dead-letters into")
    return f"{name} keeps the dead letters of {', '.join(sources)} (topic {sub.topic})"


def _notification(ops: Ops) -> str:
    cfg = ops.config
    found = ops.bucket_admin().notifications(cfg.input_bucket)
    if found is None:
        raise _Skip("this storage cannot list notifications (the local cloud wires it when fake-gcs-server starts)")
    mine = [n for n in found if n.topic == cfg.uploads_topic]
    if not mine:
        raise _Wrong(f"gs://{cfg.input_bucket} has no notification to topic {cfg.uploads_topic}: uploads start "
                     "no run (until the reconciliation's sweep finds them)")
    n = mine[0]
    problems = []
    if n.prefix and not cfg.input_prefix.startswith(n.prefix):
        problems.append(f"it filters prefix {n.prefix!r}, not INPUT_PREFIX {cfg.input_prefix!r}")
    if n.event_types and "OBJECT_FINALIZE" not in n.event_types:
        problems.append(f"it sends {', '.join(n.event_types)}, not OBJECT_FINALIZE")
    if n.payload_format and n.payload_format != "JSON_API_V1":
        problems.append(f"its payload is {n.payload_format}, not JSON_API_V1")
    if problems:
        raise _Wrong("; ".join(problems))
    return f"gs://{cfg.input_bucket}/{n.prefix or ''} OBJECT_FINALIZE -> {n.topic}"


def _vertex(ops: Ops) -> str:
    cfg = ops.config
    jobs = ops.jobs().list(label_filter({"pipeline": cfg.pipeline_label}), page_size=1)
    first = next(iter(jobs), None)
    where = cfg.vertex_base_url or f"{cfg.location}-aiplatform.googleapis.com"
    return f"Vertex AI answers at {where}" + (f" (latest job {first.job_id} {first.state})" if first else "")


def _state(ops: Ops) -> str:
    store, bucket = ops.storage(), ops.config.output_bucket
    open_runs = store.list_page(bucket, layout.OPEN_PREFIX, limit=1000)
    slots = store.read_json(bucket, layout.SCHEDULER_NAME)
    active = scheduler_state.upgrade(slots.value if slots else None)["active"]
    queued = store.list_page(bucket, layout.QUEUE_PREFIX, limit=1000)
    more = "+" if len(open_runs) == 1000 else ""
    return (f"{len(open_runs)}{more} unfinished run(s), {len(active)} of {ops.config.max_active_jobs} job slots "
            f"taken, {len(queued)}{'+' if len(queued) == 1000 else ''} part(s) queued")


@click.command("doctor", short_help="Check the configuration and the wiring, one line per check.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def doctor(ops: Ops, as_json: bool) -> None:
    """Check the configuration and that buckets, topics, subscriptions (with their push endpoints and
    dead-letter policies), the input notification and Vertex AI are there and wired as the pipeline
    expects. One line per check: ok, or what to fix. Exits 1 when a check fails (3 if only transient)."""
    try:
        _ = ops.config
    except ConfigError as exc:
        if as_json:
            emit_json({"ok": False, "checks": [{"name": "config", "status": str(FAIL), "detail": str(exc)}]})
        else:
            click.echo(f"FAIL  config  {exc}")
        raise Failed(str(exc), Exit.USAGE) from None
    found = checks(ops)
    if as_json:
        emit_json({"ok": all(c.status != FAIL for c in found), "checks": [c.to_json() for c in found]})
    else:
        width = max(len(c.name) for c in found)
        for c in found:
            click.echo(f"{c.status.value:4}  {c.name.ljust(width)}  {c.detail}")
    failed = [c for c in found if c.status == FAIL]
    if failed:
        raise Failed(f"{len(failed)} check(s) failed: {', '.join(c.name for c in failed)}",
                     Exit.TRANSIENT if all(c.transient for c in failed) else Exit.PERMANENT)
