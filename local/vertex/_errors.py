"""Google API errors as the emulator answers them.

Every answer that is not a success goes out in Google's JSON error shape
(`{"error": {"code": <http>, "message": ..., "status": <gRPC name>}}`), because that is what the SDK
parses into `errors.ClientError` / `errors.ServerError`. Handlers raise `ApiError`; the HTTP layer renders it.
"""

from __future__ import annotations

import json

# gRPC canonical codes: name -> (numeric code used in job.error.code, HTTP status used on the wire).
GRPC = {
    "OK": (0, 200),
    "CANCELLED": (1, 499),
    "UNKNOWN": (2, 500),
    "INVALID_ARGUMENT": (3, 400),
    "DEADLINE_EXCEEDED": (4, 504),
    "NOT_FOUND": (5, 404),
    "ALREADY_EXISTS": (6, 409),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "FAILED_PRECONDITION": (9, 400),
    "ABORTED": (10, 409),
    "OUT_OF_RANGE": (11, 400),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
    "DATA_LOSS": (15, 500),
    "UNAUTHENTICATED": (16, 401),
}

# The reason phrase Vertex puts in front of a failed prediction line's status ("Bad Request: {...}").
HTTP_REASON = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# HTTP status -> the gRPC status name Google pairs with it in error bodies.
STATUS_FOR_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Canned messages for injected faults, worded like the real service's.
FAULT_MESSAGES = {
    429: "Resource exhausted. Please try again later. Please refer to "
         "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "Deadline exceeded.",
}


class ApiError(Exception):
    """An error answer of the REST surface: a gRPC status name and a message."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        if status not in GRPC:
            raise ValueError(f"unknown gRPC status {status}")
        self.status = status
        self.message = message

    @property
    def http_status(self) -> int:
        return GRPC[self.status][1]

    def body(self) -> dict:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def fault_error(http_code: int) -> ApiError:
    """The error an injected control-plane fault answers with (429, 500, 503, ...)."""
    status = STATUS_FOR_HTTP.get(http_code, "INTERNAL")
    return ApiError(status, FAULT_MESSAGES.get(http_code, "Internal error encountered."))


def row_status(http_code: int, message: str) -> str:
    """The `status` string of a failed prediction line, byte-compatible with Vertex's.

    Vertex writes the reason phrase, a colon and the JSON error body formatted with Python-style
    separators, e.g. `Bad Request: {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}`.
    """
    body = {"error": {"code": http_code, "message": message, "status": STATUS_FOR_HTTP.get(http_code, "UNKNOWN")}}
    return f"{HTTP_REASON.get(http_code, 'Error')}: {json.dumps(body)}"
