"""VertexJobs on the google-genai SDK in Vertex mode (the real service, or the local emulator).

The SDK has no labels field and drops labels when it parses a job: labels go out through `extra_body`, and
jobs are recognised later by name (stored in run state) or found by a label filter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from shared.errors import VertexAmbiguousError, VertexDeniedError, VertexRejectedError, VertexTransientError
from shared.vertex.base import JobInfo, label_filter

_RETRYABLE_HTTP = {408, 429, 500, 502, 503, 504}


def make_client(project: str, location: str, base_url: str | None = None,
                timeout_ms: int = 60_000) -> genai.Client:
    """A Vertex-mode client. With `base_url` (local emulator) it uses static credentials: the SDK then
    skips Google auth entirely, which anonymous credentials cannot do."""
    options = types.HttpOptions(api_version="v1", timeout=timeout_ms, base_url=base_url or None)
    kwargs: dict = {}
    if base_url:
        from google.oauth2.credentials import Credentials

        kwargs["credentials"] = Credentials(token="local")
    return genai.Client(vertexai=True, project=project, location=location, http_options=options, **kwargs)


def _info(job: types.BatchJob) -> JobInfo:
    state = job.state.value if hasattr(job.state, "value") else str(job.state or "JOB_STATE_UNSPECIFIED")
    return JobInfo(
        name=job.name or "",
        state=state,
        create_time=job.create_time,
        start_time=job.start_time,
        end_time=job.end_time,
        error_code=job.error.code if job.error else None,
        error_message=job.error.message if job.error else None,
        display_name=job.display_name,
    )


class GenaiVertexJobs:
    def __init__(self, client: genai.Client) -> None:
        self._client = client

    def create(self, *, model: str, source_uri: str, destination_prefix: str, display_name: str,
               labels: Mapping[str, str]) -> JobInfo:
        config = types.CreateBatchJobConfig(
            dest=destination_prefix,
            display_name=display_name,
            http_options=types.HttpOptions(extra_body={"labels": dict(labels)}),
        )
        try:
            return _info(self._client.batches.create(model=model, src=source_uri, config=config))
        except genai_errors.APIError as exc:
            if exc.code in _RETRYABLE_HTTP:
                # 429 means "not created"; 5xx and 408 may hide a job that exists: both are retried, and the
                # caller looks for the job by label before every new create anyway.
                cls = VertexTransientError if exc.code == 429 else VertexAmbiguousError
                raise cls(f"create {display_name}: {exc.code} {exc.status}: {exc.message}") from exc
            if exc.code in (401, 403):
                raise VertexDeniedError(f"create {display_name}: {exc.code} {exc.status}: {exc.message}",
                                        exc.code, exc.status or "PERMISSION_DENIED") from exc
            raise VertexRejectedError(f"create {display_name}: {exc.message}", exc.code,
                                      exc.status or "INVALID_ARGUMENT") from exc
        except Exception as exc:  # timeouts and connection errors from the HTTP stack: ambiguous
            raise VertexAmbiguousError(f"create {display_name}: {type(exc).__name__}: {exc}") from exc

    def find(self, labels: Mapping[str, str]) -> JobInfo | None:
        found = list(self.list(label_filter(labels)))
        if not found:
            return None
        return max(found, key=lambda j: j.recency)

    def list(self, filter: str, page_size: int = 100) -> Iterator[JobInfo]:  # noqa: A002
        config = types.ListBatchJobsConfig(filter=filter, page_size=page_size)
        try:
            for job in self._client.batches.list(config=config):
                yield _info(job)
        except genai_errors.APIError as exc:
            if exc.code in _RETRYABLE_HTTP:
                raise VertexTransientError(f"list: {exc.code} {exc.status}: {exc.message}") from exc
            raise VertexRejectedError(f"list: {exc.message}", exc.code, exc.status or "") from exc
        except Exception as exc:
            raise VertexTransientError(f"list: {type(exc).__name__}: {exc}") from exc

    def get(self, name: str) -> JobInfo | None:
        try:
            return _info(self._client.batches.get(name=name))
        except genai_errors.APIError as exc:
            if exc.code == 404:
                return None
            if exc.code in _RETRYABLE_HTTP:
                raise VertexTransientError(f"get {name}: {exc.code} {exc.status}") from exc
            raise VertexRejectedError(f"get {name}: {exc.message}", exc.code, exc.status or "") from exc
        except Exception as exc:
            raise VertexTransientError(f"get {name}: {type(exc).__name__}: {exc}") from exc

    def cancel(self, name: str) -> None:
        try:
            self._client.batches.cancel(name=name)
        except genai_errors.APIError as exc:
            if exc.code == 404 or exc.status == "FAILED_PRECONDITION":
                return  # gone, or already in a final state: nothing to cancel
            if exc.code in _RETRYABLE_HTTP:
                raise VertexTransientError(f"cancel {name}: {exc.code} {exc.status}") from exc
            raise VertexRejectedError(f"cancel {name}: {exc.message}", exc.code, exc.status or "") from exc
        except Exception as exc:
            raise VertexTransientError(f"cancel {name}: {type(exc).__name__}: {exc}") from exc
