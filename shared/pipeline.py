"""The one object the core works with: configuration plus the three adapters, built once per instance."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.config import Config
from shared.publisher import DeadLetters, Publisher
from shared.storage import ObjectStore
from shared.vertex import VertexJobs


@dataclass
class Pipeline:
    config: Config
    store: ObjectStore
    vertex: VertexJobs
    publisher: Publisher
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)
    # Called by the core at each step boundary with the step's name ("submit.claimed", ...). A no-op here
    # and in every deployed function: only tests install a hook (from outside the deployed code) that
    # crashes at a chosen step, to prove the run still finishes.
    checkpoint: Callable[[str], None] = field(default=lambda step: None)
    # Dead-letter subscriptions the reconciliation reads (None where there is no Pub/Sub, as in unit tests).
    dead_letters: DeadLetters | None = None

    @classmethod
    def from_env(cls, *, vertex_at_start: bool = False) -> Pipeline:
        """The pipeline the environment configures. The Vertex adapter is built on its first call, or here with
        `vertex_at_start` (`shared/vertex/deferred.py`)."""
        from shared.publisher import PubSubDeadLetters, PubSubPublisher
        from shared.storage.gcs import GcsStore, make_client
        from shared.vertex.deferred import DeferredVertexJobs

        config = Config.from_env()

        def vertex_jobs() -> VertexJobs:
            # The SDK is imported here: on the first Vertex call, or now with `vertex_at_start`.
            from shared.vertex.genai import GenaiVertexJobs
            from shared.vertex.genai import make_client as make_vertex_client

            return GenaiVertexJobs(make_vertex_client(config.project, config.location, config.vertex_base_url,
                                                      timeout_ms=config.vertex_call_seconds * 1000))

        vertex = DeferredVertexJobs(vertex_jobs)
        if vertex_at_start:
            vertex.build_now()
        return cls(
            config=config,
            store=GcsStore(make_client(config.project)),
            vertex=vertex,
            publisher=PubSubPublisher(config.project),
            dead_letters=PubSubDeadLetters(config.project) if config.dead_letter_subscriptions else None,
        )

    @property
    def work_bucket(self) -> str:
        return self.config.output_bucket

    def now(self) -> str:
        """RFC 3339 UTC timestamp of the pipeline clock."""
        return datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
