"""Cloud Storage's JSON API errors as the proxy answers them.

GCS answers `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}]}}`; the
google-cloud-storage client turns the status into `google.api_core.exceptions.<Class>` (429
`TooManyRequests`, 503 `ServiceUnavailable`, 502 `BadGateway`), so every answer the proxy makes up itself
uses that shape and nothing else.
"""

from __future__ import annotations

import orjson

RATE_LIMIT_DOC = "https://cloud.google.com/storage/docs/gcs429"


def body(code: int, message: str, reason: str, domain: str = "global") -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message,
                                   "errors": [{"message": message, "domain": domain, "reason": reason}]}})


def object_rate_limited(bucket: str, name: str) -> bytes:
    """The 429 of a mutation beyond the per-object rate, worded as GCS words it."""
    message = (f"The object {bucket}/{name} exceeded the rate limit for object mutation operations (create, "
               f"update, and delete). Please reduce your request rate. See {RATE_LIMIT_DOC}.")
    return body(429, message, "rateLimitExceeded", "usageLimits")


def random_429() -> bytes:
    return body(429, "The request rate is too high. Please reduce your request rate and retry with backoff.",
                "rateLimitExceeded", "usageLimits")


def unavailable() -> bytes:
    return body(503, "We encountered an internal error. Please try again.", "backendError")


def bad_gateway(detail: str) -> bytes:
    return body(502, f"The storage behind this proxy did not answer: {detail}", "backendError")


def bad_request(message: str, code: int = 400) -> bytes:
    return body(code, message, "invalid" if code == 400 else "notImplemented")


def not_found(message: str) -> bytes:
    return body(404, message, "notFound")


def precondition_failed() -> bytes:
    return body(412, "At least one of the pre-conditions you specified did not hold.", "conditionNotMet")


def no_upload_session() -> bytes:
    """A request to a resumable upload session that is not open (never started here, expired or cancelled)."""
    return body(404, "No such upload session: it does not exist, expired, or was cancelled.", "notFound")


def upload_cancelled() -> bytes:
    return body(499, "The upload session was cancelled.", "clientClosedRequest")
