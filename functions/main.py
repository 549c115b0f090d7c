"""The four Cloud Functions' entry points (deployed as they are, and served locally by functions-framework).

Configuration is read once, at import: a bad environment fails the instance at start, naming the variable. The
Vertex SDK is imported on the first Vertex call instead (`shared/vertex/deferred.py`): an instance that makes none
starts in about half the CPU.
"""

import functions_framework

from shared import handlers
from shared.pipeline import Pipeline

PIPELINE = Pipeline.from_env()


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
