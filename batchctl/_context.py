"""What a command works with: the configuration and the clients, built once, lazily, from the environment
read at the edge (`Ops.from_env`). Tests hand in doubles instead (`Ops(environ, store=..., vertex=...)`).

Clients are built only when a command first needs them, so `batchctl runs` never imports the Vertex or
Pub/Sub libraries, and a command that needs no configuration (`validate`, `postprocess`) runs without any.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchctl._backends import Admin, Buckets
from shared.config import Config
from shared.errors import ConfigError, TransientError
from shared.pipeline import Pipeline
from shared.publisher import Publisher
from shared.storage import ObjectStore
from shared.vertex import VertexJobs

DEFAULT_LOGS = Path(".local") / "logs"


@dataclass
class Ops:
    environ: Mapping[str, str]
    store: ObjectStore | None = None
    vertex: VertexJobs | None = None
    publisher: Publisher | None = None
    buckets: Buckets | None = None
    pubsub: Admin | None = None
    clock: Callable[[], float] = time.time
    verbose: bool = False
    interactive: bool | None = None  # None: when stdout is a terminal
    config_: Config | None = None
    _pipeline: Pipeline | None = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)  # google-cloud-storage, shared by the store and buckets

    @classmethod
    def from_env(cls) -> Ops:
        return cls(dict(os.environ))

    # ---------------------------------------------------------------------------------------------- config
    @property
    def config(self) -> Config:
        """The functions' configuration; raises ConfigError naming the variable (exit 2)."""
        if self.config_ is None:
            self.config_ = Config.from_env(self.environ)
        return self.config_

    @property
    def local(self) -> bool:
        """Pointed at the local cloud (its Vertex emulator), not at Google Cloud."""
        return bool(self.config.vertex_base_url)

    @property
    def tty(self) -> bool:
        return sys.stdout.isatty() if self.interactive is None else self.interactive

    # ---------------------------------------------------------------------------------------------- clients
    def storage(self) -> ObjectStore:
        if self.store is None:
            from shared.storage.gcs import GcsStore

            self.store = GcsStore(self._storage_client())
        return self.store

    def _storage_client(self) -> Any:
        if self._client is None:
            from shared.storage.gcs import make_client

            self._client = make_client(self.config.project)
            _probe(self._client, self.config.output_bucket)
        return self._client

    def jobs(self) -> VertexJobs:
        if self.vertex is None:
            from shared.vertex.genai import GenaiVertexJobs, make_client

            cfg = self.config
            self.vertex = GenaiVertexJobs(make_client(cfg.project, cfg.location, cfg.vertex_base_url,
                                                      timeout_ms=30_000))
        return self.vertex

    def messages(self) -> Publisher:
        if self.publisher is None:
            from shared.publisher import PubSubPublisher

            self.publisher = PubSubPublisher(self.config.project)
        return self.publisher

    def bucket_admin(self) -> Buckets:
        if self.buckets is None:
            from batchctl._backends import GcsBuckets

            self.buckets = GcsBuckets(self._storage_client())
        return self.buckets

    def pubsub_admin(self) -> Admin:
        if self.pubsub is None:
            from batchctl._backends import PubSubAdmin

            self.pubsub = PubSubAdmin(self.config.project)
        return self.pubsub

    def pipeline(self) -> Pipeline:
        """The core's view (store, Vertex, Pub/Sub), for commands that change runs."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.config, self.storage(), _Lazy(self.jobs), _Lazy(self.messages),
                                      clock=self.clock)
        return self._pipeline

    # ---------------------------------------------------------------------------------------------- core
    @contextlib.contextmanager
    def quiet_core(self) -> Iterator[None]:
        """Core log lines (JSON, written to stdout by `shared/log.py`) go to stderr with --verbose and
        nowhere otherwise: stdout is for the command's data."""
        sink = sys.stderr if self.verbose else io.StringIO()
        with contextlib.redirect_stdout(sink):
            yield


class _Lazy:
    """A client built on first use (so a command that never publishes never builds a Pub/Sub client)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build

    def __getattr__(self, name: str) -> Any:
        return getattr(self._build(), name)


def _probe(client: Any, bucket: str) -> None:
    """One quick call, not retried, before any other: the client library retries a refused connection for
    two minutes, so an unreachable storage (a local cloud that is down) would hang every command. Raises
    TransientError (exit 3) when Cloud Storage does not answer, ConfigError (exit 2) when OUTPUT_BUCKET does
    not exist; a caller not allowed to read the bucket's metadata goes on (its objects may still be visible)."""
    from google.api_core import exceptions as gexc

    try:
        client.get_bucket(bucket, timeout=(5, 20), retry=None)
    except gexc.NotFound:
        raise ConfigError(f"OUTPUT_BUCKET: gs://{bucket} does not exist") from None
    except gexc.Forbidden:
        return
    except (gexc.TooManyRequests, gexc.ServerError) as exc:
        raise TransientError(f"Cloud Storage: {exc}") from exc
    except Exception as exc:  # connection refused, timeouts: from requests, whose classes we do not import here
        where = getattr(client, "_connection", None)
        endpoint = getattr(where, "API_BASE_URL", "") if where is not None else ""
        raise TransientError(f"Cloud Storage does not answer{' at ' + endpoint if endpoint else ''}: "
                             f"{type(exc).__name__}") from exc
