"""The Vertex interface the core talks to, and the facts about job states it relies on."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

TERMINAL_STATES = frozenset({
    "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
})


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What the pipeline needs to know about one Vertex batch job."""

    name: str
    state: str
    create_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    display_name: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def job_id(self) -> str:
        """The trailing numeric id, short enough for log labels."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def recency(self) -> tuple[float, str]:
        """Orders the jobs of one part: the latest created is the one that counts (ties by name)."""
        return (self.create_time.timestamp() if self.create_time else 0, self.name)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def label_filter(labels: Mapping[str, str]) -> str:
    """A Vertex list filter matching jobs that carry all these labels."""
    return " AND ".join(f"labels.{k}={_quote(v)}" for k, v in sorted(labels.items()))


class VertexJobs(Protocol):
    def create(self, *, model: str, source_uri: str, destination_prefix: str, display_name: str,
               labels: Mapping[str, str]) -> JobInfo:
        """Create a batch job. Raises VertexAmbiguousError when it may have been created anyway."""

    def find(self, labels: Mapping[str, str]) -> JobInfo | None:
        """The job carrying all these labels (newest first), or None."""

    def list(self, filter: str, page_size: int = 100) -> Iterator[JobInfo]:  # noqa: A002 - the API's name
        """Every job matching a Vertex list filter, following pages."""

    def get(self, name: str) -> JobInfo | None:
        """One job, or None when it does not exist."""

    def cancel(self, name: str) -> None:
        """Ask Vertex to cancel a job. Asynchronous: the job moves to CANCELLING, then CANCELLED, and its
        partial output stays (collect harvests it). A job that has ended or does not exist is left alone.
        Raises VertexTransientError when Vertex cannot be reached (repeating the call is harmless)."""
