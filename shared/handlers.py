"""Event translation for the four functions: parse the CloudEvent, call the core, map exceptions.

PermanentError -> logged at ERROR and acknowledged (return normally, the platform stops redelivering).
ConfigError    -> logged at CRITICAL and re-raised: a bad deploy must not eat the events it meets.
TransientError -> logged at WARNING and re-raised: the function answers 500 and Pub/Sub / Eventarc redelivers;
                  every core step is idempotent, so the redelivery is safe. Expected weather (a 429 or 5xx from
                  storage or Vertex, a lost compare-and-swap, two deliveries of one event at once), which heals
                  by itself: an operator alerting on ERROR is not paged for it.
Anything else  -> logged at ERROR and re-raised, redelivered the same way: an exception the code did not
                  expect is a bug or an outage worth a look, even when a redelivery gets past it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared import collect, log, poll, reconcile, submit
from shared.errors import ConfigError, PermanentError, TransientError
from shared.events import PubSubMessage, StorageObjectEvent
from shared.pipeline import Pipeline


def _guard(function: str, work: Callable[[], Any]) -> Any:
    started = time.monotonic()
    try:
        return work()
    except ConfigError as exc:
        log.critical(f"{function}.misconfigured", f"{function}: configuration error: {exc} (will be retried)",
                     error=type(exc).__name__)
        raise
    except PermanentError as exc:
        log.error(f"{function}.rejected", f"{function}: {type(exc).__name__}: {exc} (acknowledged, not retried)",
                  error=type(exc).__name__)
        return None
    except TransientError as exc:
        log.warning(f"{function}.failed", f"{function}: {type(exc).__name__}: {exc} (will be retried)",
                    error=type(exc).__name__, seconds=round(time.monotonic() - started, 3))
        raise
    except Exception as exc:
        log.error(f"{function}.failed", f"{function}: {type(exc).__name__}: {exc} (will be retried)",
                  error=type(exc).__name__, seconds=round(time.monotonic() - started, 3))
        raise


def on_upload(p: Pipeline, event: Any) -> Any:
    return _guard("submit", lambda: submit.handle_upload(p, StorageObjectEvent.from_cloud_event(event)))


def on_tick(p: Pipeline, event: Any) -> Any:
    # The tick's payload carries nothing we need; parsing it still rejects events from a wrong wiring.
    return _guard("poll", lambda: (PubSubMessage.from_cloud_event(event), poll.handle_tick(p))[1])


def on_job_finished(p: Pipeline, event: Any) -> Any:
    return _guard("collect", lambda: collect.handle_job_finished(
        p, collect.JobFinished.from_payload(PubSubMessage.from_cloud_event(event).json())))


def on_reconcile(p: Pipeline, event: Any) -> Any:
    return _guard("reconcile", lambda: (PubSubMessage.from_cloud_event(event), reconcile.handle_tick(p))[1])
