"""Structured logging for Cloud Logging: one JSON object per line on stdout.

Cloud Logging parses `severity` and `message`, and lifts `logging.googleapis.com/labels` into entry labels,
so log-based metrics and alerts can key on the stable dotted `event` name and the run/job/input labels.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

_SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


def log(severity: str, event: str, message: str, *, run: str | None = None, job: str | None = None,
        input: str | None = None, **fields: Any) -> None:  # noqa: A002 - `input` is the contract's label name
    """Write one structured log line. `fields` carry counts and durations (JSON-serialisable values)."""
    assert severity in _SEVERITIES, severity
    entry: dict[str, Any] = {"severity": severity, "message": message, "event": event}
    labels = {k: v for k, v in (("run", run), ("job", job), ("input", input)) if v}
    if labels:
        entry["logging.googleapis.com/labels"] = labels
    entry.update(fields)
    now = time.time()  # one reading: seconds and milliseconds from two readings could straddle a second
    entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    sys.stdout.buffer.write(orjson.dumps(entry, default=str) + b"\n")
    sys.stdout.flush()


def info(event: str, message: str, **kw: Any) -> None:
    log("INFO", event, message, **kw)


def warning(event: str, message: str, **kw: Any) -> None:
    log("WARNING", event, message, **kw)


def error(event: str, message: str, **kw: Any) -> None:
    log("ERROR", event, message, **kw)
