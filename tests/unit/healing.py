"""A whole pipeline in memory with a clock the test moves, messages it can lose, and crashes at named steps:
enough to prove that stored state alone finishes every run."""

from __future__ import annotations

import base64
import contextlib

import orjson

from shared import collect, layout, poll, reconcile, submit
from shared.events import PUBSUB_PUBLISHED, StorageObjectEvent
from tests.unit.fakes import make_pipeline
from tests.unit.flows import upload


class Crash(BaseException):
    """An instance dying mid-step: no `except Exception` in the core catches it, as nothing survives SIGKILL."""


def pubsub_event(payload: dict, attributes: dict) -> dict:
    return {"type": PUBSUB_PUBLISHED, "id": "m1", "data": {"message": {
        "data": base64.b64encode(orjson.dumps(payload)).decode(), "attributes": attributes}}}


class World:
    """The functions, the platform's message delivery and the Vertex jobs, driven one step at a time."""

    def __init__(self, **env) -> None:
        env.setdefault("FUNCTION_TIMEOUT_SECONDS", 10)
        self.p, self.store, self.vertex, self.publisher = make_pipeline(**env)
        self.now = 1_800_000_000.0
        self.p.clock = lambda: self.now
        self.store.clock = lambda: self.now
        self.vertex.clock = lambda: self.now
        self.delivered = 0
        self.crashes: list[str] = []
        self.lose: set[str] = set()  # topics whose next message is lost (once each)
        self._crash_at: set[str] = set()
        self.p.checkpoint = self._checkpoint
        self.outcome = lambda line: None

    # --- faults --------------------------------------------------------------------------------------------
    def crash_once_at(self, step: str) -> None:
        self._crash_at.add(step)

    def _checkpoint(self, step: str) -> None:
        if step in self._crash_at:
            self._crash_at.discard(step)
            self.crashes.append(step)
            raise Crash(step)

    # --- the platform ----------------------------------------------------------------------------------------
    def drop(self, name: str, body: bytes, metadata=None) -> StorageObjectEvent:
        """Upload an input; its notification is delivered to submit unless lost (a crash loses it too)."""
        event = upload(self.store, name, body, metadata)
        if "uploads" in self.lose:
            self.lose.discard("uploads")
        else:
            self._guarded(lambda: submit.handle_upload(self.p, event))
        return event

    def _guarded(self, work) -> None:
        # The instance died; its message is treated as lost: only stored state is left.
        with contextlib.suppress(Crash):
            work()

    def pump(self) -> None:
        """Deliver every message published since the last pump (uploads to submit, job-finished to collect)."""
        while self.delivered < len(self.publisher.messages):
            topic, payload, attributes = self.publisher.messages[self.delivered]
            self.delivered += 1
            if topic in self.lose:
                self.lose.discard(topic)
                continue
            if topic == self.p.config.uploads_topic:
                event = StorageObjectEvent.from_cloud_event(pubsub_event(payload, attributes))
                self._guarded(lambda e=event: submit.handle_upload(self.p, e))
            elif topic == self.p.config.job_finished_topic:
                message = collect.JobFinished.from_payload(payload)
                self._guarded(lambda m=message: collect.handle_job_finished(self.p, m))

    def run_jobs(self) -> None:
        for name, job in list(self.vertex.jobs.items()):
            if job["state"] == "JOB_STATE_PENDING":
                self.vertex.run(name, outcome=self.outcome)

    def tick(self) -> None:
        self._guarded(lambda: poll.handle_tick(self.p))
        self._guarded(lambda: reconcile.handle_tick(self.p))

    def settle(self, rels: list[str], *, step: float = 5.0, limit: int = 60) -> int:
        """Run jobs, tick, deliver, and move the clock until every rel has a report and no run is open.
        Returns the simulated seconds it took."""
        start = self.now
        for _ in range(limit):
            self.run_jobs()
            self.tick()
            self.pump()
            if all(self.store.read_bytes("out-bucket", layout.report_name(rel)) for rel in rels) and \
                    not list(self.store.list_names("out-bucket", layout.OPEN_PREFIX)):
                return int(self.now - start)
            self.now += step
        raise AssertionError(f"not settled after {limit} rounds; open runs: "
                             f"{list(self.store.list_names('out-bucket', layout.OPEN_PREFIX))}")

    # --- looking at the outcome -------------------------------------------------------------------------------
    def outputs(self, rel: str) -> tuple[list[bytes], list[bytes], dict]:
        results = sorted(self.store.read_bytes("out-bucket", layout.results_name(rel)).splitlines())
        errors = sorted(self.store.read_bytes("out-bucket", layout.errors_name(rel)).splitlines())
        report = orjson.loads(self.store.read_bytes("out-bucket", layout.report_name(rel)))
        return results, errors, report

    def jobs_per_part(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.vertex.jobs.values():
            counts[job["labels"]["part"]] = counts.get(job["labels"]["part"], 0) + 1
        return counts
