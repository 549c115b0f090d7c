"""In-memory stand-ins for Vertex and the clock, so the core's flows can be unit-tested without servers.

FakeVertex keeps jobs in a dict and, when a test "runs" a job, writes Vertex-format prediction lines into
the MemoryStore under the job's output prefix (in reverse order: Vertex does not keep input order).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.config import Config
from shared.errors import VertexAmbiguousError, VertexRejectedError, VertexTransientError
from shared.pipeline import Pipeline
from shared.publisher import MemoryPublisher
from shared.storage.memory import MemoryStore
from shared.vertex import TERMINAL_STATES, JobInfo


class FakeVertex:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.jobs: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1000)
        self.create_faults: list[str] = []  # "ambiguous-created", "ambiguous-lost", "throttled", "rejected"
        self.calls: list[str] = []
        self.clock = lambda: datetime.now(UTC).timestamp()  # when a job ends (tests may move it)

    def create(self, *, model: str, source_uri: str, destination_prefix: str, display_name: str,
               labels: Mapping[str, str]) -> JobInfo:
        self.calls.append("create")
        fault = self.create_faults.pop(0) if self.create_faults else None
        if fault == "throttled":
            raise VertexTransientError("429 RESOURCE_EXHAUSTED")
        if fault == "rejected":
            raise VertexRejectedError(f"The PublisherModel {model} does not exist.", 404, "NOT_FOUND")
        if fault == "ambiguous-lost":
            raise VertexAmbiguousError("timeout before the job was created")
        name = f"projects/p/locations/l/batchPredictionJobs/{next(self._ids)}"
        self.jobs[name] = {"state": "JOB_STATE_PENDING", "labels": dict(labels), "src": source_uri,
                           "display_name": display_name,
                           "dest": destination_prefix, "model": model, "created": datetime.now(UTC),
                           "error": None}
        if fault == "ambiguous-created":
            raise VertexAmbiguousError("500 after the job was created")
        return self._info(name)

    def _info(self, name: str) -> JobInfo:
        job = self.jobs[name]
        err = job["error"] or (None, None)
        return JobInfo(name=name, state=job["state"], create_time=job["created"], error_code=err[0],
                       error_message=err[1], end_time=job.get("ended"), display_name=job.get("display_name"))

    def find(self, labels: Mapping[str, str]) -> JobInfo | None:
        self.calls.append("find")
        for name, job in reversed(self.jobs.items()):
            if all(job["labels"].get(k) == v for k, v in labels.items()):
                return self._info(name)
        return None

    def list(self, filter: str, page_size: int = 100) -> Iterator[JobInfo]:  # noqa: A002
        self.calls.append("list")
        for name in list(self.jobs):
            yield self._info(name)

    def get(self, name: str) -> JobInfo | None:
        self.calls.append("get")
        return self._info(name) if name in self.jobs else None

    def cancel(self, name: str) -> None:
        """Like Vertex: a job that has not ended stops now (CANCELLED), keeping what it had exported."""
        self.calls.append("cancel")
        job = self.jobs.get(name)
        if job is not None and job["state"] not in TERMINAL_STATES:
            job["state"] = "JOB_STATE_CANCELLED"
            job["ended"] = datetime.fromtimestamp(self.clock(), UTC)

    # --- test controls ---------------------------------------------------------------------------------
    def staged_lines(self, name: str) -> list[dict[str, Any]]:
        bucket, obj = self.jobs[name]["src"][5:].split("/", 1)
        return [orjson.loads(line) for line in self.store.read_bytes(bucket, obj).splitlines() if line]

    def run(self, name: str, *, state: str = "JOB_STATE_SUCCEEDED", error: tuple[int, str] | None = None,
            outcome: Callable[[dict[str, Any]], str | None] = lambda line: None, keep: float = 1.0) -> None:
        """Finish a job: each staged line is answered unless `keep` cuts the output short; `outcome` returns
        a failure status for a line (None = success)."""
        lines = self.staged_lines(name)
        lines = lines[: int(len(lines) * keep)]
        out = []
        for line in reversed(lines):
            status = outcome(line)
            record = {k: v for k, v in line.items()}
            record["status"] = status or ""
            record["processed_time"] = "2026-11-21T10:00:00.000+00:00"
            if not status:
                text = "answer to " + line["request"]["contents"][0]["parts"][0].get("text", "?")
                record["response"] = {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                    "modelVersion": "gemini-2.5-flash-001",
                    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8},
                }
            out.append(orjson.dumps(record))
        bucket, prefix = self.jobs[name]["dest"][5:].split("/", 1)
        self.store.put(bucket, f"{prefix}/prediction-model-2026-11-21T10:00:00.000000Z/predictions.jsonl",
                       b"\n".join(out) + b"\n" if out else b"")
        self.jobs[name]["state"] = state
        self.jobs[name]["error"] = error
        self.jobs[name]["ended"] = datetime.fromtimestamp(self.clock(), UTC)


def retryable(code: int = 503, status: str = "UNAVAILABLE") -> str:
    return f'Service Unavailable: {{"error": {{"code": {code}, "message": "try later", "status": "{status}"}}}}'


def make_pipeline(**overrides: Any) -> tuple[Pipeline, MemoryStore, FakeVertex, MemoryPublisher]:
    env = {"GOOGLE_CLOUD_PROJECT": "p", "INPUT_BUCKET": "in-bucket", "OUTPUT_BUCKET": "out-bucket"}
    env.update({k: str(v) for k, v in overrides.items()})
    store = MemoryStore()
    vertex = FakeVertex(store)
    publisher = MemoryPublisher()
    clock = itertools.count(1_800_000_000, 1)
    return Pipeline(Config.from_env(env), store, vertex, publisher, clock=lambda: float(next(clock)),
                    sleep=lambda s: None), \
        store, vertex, publisher
