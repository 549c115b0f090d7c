"""The four Cloud Functions' entry points (deployed as they are, and served locally by functions-framework).

Configuration is read once, at import: a bad environment fails the instance at start, naming the variable. The
Vertex SDK is not imported then by collect (`shared/vertex/deferred.py`): it imports it on its first Vertex call,
which most of its instances never make, and starts in about half the CPU. Poll, submit and reconcile, which call
Vertex on most events, import it as they start, so that an event does not wait for it.
"""

import os

import functions_framework

from shared import handlers
from shared.pipeline import Pipeline

# The platform names the function an instance serves (as the local cloud does).
VERTEX_ON_MOST_EVENTS = ("poll", "submit", "reconcile")
PIPELINE = Pipeline.from_env(vertex_at_start=os.environ.get("FUNCTION_TARGET") in VERTEX_ON_MOST_EVENTS)


@functions_framework.cloud_event
def submit(cloud_event):
    """An object was finalized in the input bucket (Pub/Sub-wrapped notification or Eventarc direct)."""
    handlers.on_upload(PIPELINE, cloud_event)


@functions_framework.cloud_event
def poll(cloud_event):
    """A Cloud Scheduler tick through Pub/Sub."""
    handlers.on_tick(PIPELINE, cloud_event)


@functions_framework.cloud_event
def collect(cloud_event):
    """A job-finished message."""
    handlers.on_job_finished(PIPELINE, cloud_event)


@functions_framework.cloud_event
def reconcile(cloud_event):
    """A Cloud Scheduler tick through Pub/Sub: drive every unfinished run forward from stored state."""
    handlers.on_reconcile(PIPELINE, cloud_event)
