"""VertexJobs whose client is built on the first call, not when the instance starts.

Importing the google-genai SDK and building its client take ~0.6-1.0 CPU-s, about half of what a function
instance spends before it can take its first event (`python -m bench.cold_start`). Collect mostly finishes a part
without a Vertex call (it starts jobs only when parts are queued), so its instances, which a burst of finished
jobs starts by the several, build it on their first call, and most never pay for it. Poll calls Vertex on every
tick, submit on nearly every upload, and reconcile whenever a part's job has ended and its part is not collected
yet (which, with a pipeline at work, is most ticks): their instances build it as they start, as before
(`Pipeline.from_env`), so that an event does not wait for it (reconcile deferring it took ~1.5 CPU-s in the middle
of the end-to-end run's collect). Not on a thread of its own: functions-framework imports the functions' module
and then forks its server's worker, which would inherit the lock the thread held, held for good. Configuration is
still read and checked at start (`Config.from_env`); what the SDK itself may refuse surfaces at the first call, as
any other Vertex error of that call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

from shared.vertex.base import JobInfo, VertexJobs


class DeferredVertexJobs:
    """VertexJobs that builds the real one with `build()` on its first call (once, whichever thread calls)."""

    def __init__(self, build: Callable[[], VertexJobs]) -> None:
        self._build = build
        self._jobs: VertexJobs | None = None
        self._lock = threading.Lock()

    def _real(self) -> VertexJobs:
        jobs = self._jobs
        if jobs is None:
            with self._lock:
                if self._jobs is None:
                    self._jobs = self._build()
                jobs = self._jobs
        return jobs

    @property
    def built(self) -> bool:
        return self._jobs is not None

    def build_now(self) -> None:
        """Build it now (as an instance starts) rather than on the first call."""
        self._real()

    def create(self, *, model: str, source_uri: str, destination_prefix: str, display_name: str,
               labels: Mapping[str, str]) -> JobInfo:
        return self._real().create(model=model, source_uri=source_uri, destination_prefix=destination_prefix,
                                   display_name=display_name, labels=labels)

    def find(self, labels: Mapping[str, str]) -> JobInfo | None:
        return self._real().find(labels)

    def list(self, filter: str, page_size: int = 100) -> Iterator[JobInfo]:  # noqa: A002 - the API's name
        return self._real().list(filter, page_size)

    def get(self, name: str) -> JobInfo | None:
        return self._real().get(name)

    def cancel(self, name: str) -> None:
        self._real().cancel(name)
