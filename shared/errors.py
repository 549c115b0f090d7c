"""The pipeline's exception hierarchy. Every exception maps to one of two platform answers:

- acknowledge (`PermanentError`): retrying cannot help (bad input, a bad event); log at ERROR and return,
  so Pub/Sub or Eventarc does not redeliver forever;
- retry (`TransientError` and anything unexpected): raise, the function answers 500 and the platform
  redelivers the event later. Every handler is idempotent, so a redelivery is safe.
"""


class PipelineError(Exception):
    """Base of everything the pipeline raises on purpose."""

    retry = True


class TransientError(PipelineError):
    """Something outside us failed in a way that may pass (5xx, 429, timeouts, lost CAS races)."""


class PermanentError(PipelineError):
    """Retrying the same event cannot succeed."""

    retry = False


class ConfigError(PipelineError):
    """The environment is misconfigured, naming the variable. Never acknowledged like bad input: met while
    handling an event (a lazily read setting, a topic that does not exist), the event is redelivered, so
    fixing the deploy lets it through instead of losing it."""


class BadEventError(PermanentError):
    """The event is not one this function understands (wrong type, missing fields)."""


class StateConflictError(TransientError):
    """A compare-and-swap kept losing to concurrent writers; the event is retried."""


class VertexError(PipelineError):
    """Base for failures talking to Vertex AI."""


class VertexTransientError(VertexError, TransientError):
    """429 / 5xx / timeouts from Vertex: try again later."""


class VertexAmbiguousError(VertexTransientError):
    """A create that may or may not have created the job (timeout or 5xx): find it by label before retrying."""


class VertexDeniedError(VertexTransientError):
    """401/403 at create: often IAM still propagating after a deploy, so retried for a bounded time before
    the rows fail with a message naming the permission problem."""

    def __init__(self, message: str, code: int = 403, status: str = "PERMISSION_DENIED") -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class VertexRejectedError(VertexError, PermanentError):
    """Vertex refused the request for good (unknown model, invalid argument)."""

    def __init__(self, message: str, code: int = 400, status: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.code = code
        self.status = status
