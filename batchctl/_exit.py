"""Exit codes, decided in one place: 0 done, 1 permanent, 2 usage or configuration, 3 transient.

The pipeline's own classes say most of it (`shared/errors.py`); the clients' errors that reach the CLI
(unreachable servers, missing credentials, refused calls) are mapped here too, so a script can tell
"try later" (3) from "fix it" (1, 2). Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

from enum import IntEnum

from shared.errors import ConfigError, PermanentError, PipelineError


class Exit(IntEnum):
    DONE = 0
    PERMANENT = 1
    USAGE = 2
    TRANSIENT = 3


class Failed(Exception):
    """A command's own verdict (a check failed, a file was refused): its message and exit code."""

    def __init__(self, message: str, code: Exit = Exit.PERMANENT) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> Exit:
    """The exit code of an exception that ended a command."""
    if isinstance(exc, Failed):
        return exc.code
    if isinstance(exc, ConfigError):
        return Exit.USAGE
    if isinstance(exc, PermanentError):
        return Exit.PERMANENT
    if isinstance(exc, PipelineError):
        return Exit.TRANSIENT  # TransientError and its kin: retry = True
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return Exit.USAGE
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if name == "DefaultCredentialsError" or name == "RefreshError":
        return Exit.USAGE  # no or expired credentials: a configuration problem
    if module.startswith("google.api_core"):
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.DeadlineExceeded | gexc.RetryError):
            return Exit.TRANSIENT
        return Exit.PERMANENT  # NotFound, Forbidden, BadRequest: fix the setup
    if isinstance(exc, ConnectionError | TimeoutError) or _is_connection_error(exc):
        return Exit.TRANSIENT
    return Exit.PERMANENT


def _is_connection_error(exc: BaseException) -> bool:
    """requests' and urllib3's connection failures (neither is imported unless it was already)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        module = type(exc).__module__ or ""
        if module.startswith(("requests", "urllib3", "httpx", "httpcore", "grpc")) and \
                any(word in type(exc).__name__ for word in ("Connect", "Timeout", "Unavailable", "Protocol")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def describe(exc: BaseException) -> str:
    """One line saying what went wrong (and, for a transient failure, that trying later may help)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, Failed | PipelineError):
        pass
    elif _is_connection_error(exc) or isinstance(exc, ConnectionError | TimeoutError):
        text = f"cannot reach the service ({type(exc).__name__}: {_short(text)}); check the endpoint and network"
    elif type(exc).__name__ == "DefaultCredentialsError":
        text = ("no Google credentials: run `gcloud auth application-default login`, or `. .local/env` for the "
                "local cloud")
    elif not isinstance(exc, OSError):
        text = f"{type(exc).__name__}: {_short(text)}"
    if exit_code(exc) == Exit.TRANSIENT and "try again" not in text:
        text += " (transient: try again later)"
    return text


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
