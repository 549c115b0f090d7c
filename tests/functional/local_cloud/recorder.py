"""A stand-in for functions/main.py: each target records the CloudEvent it got, so tests see the wiring.

`gs://$OUTPUT_BUCKET/recorded/<target>/<event id>.json` holds the event type, the decoded Pub/Sub
message (data parsed as JSON when it is JSON) and the subscription. A message with attribute
`fail_first=1` is refused once (HTTP 500) to show that a failed push is redelivered.

Like functions/main.py it has a `PIPELINE` whose `checkpoint` the crash hook replaces; each target passes
the step `<target>.recording` before it writes its record. Each instance says on stderr that it started.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import functions_framework
from google.api_core.exceptions import PreconditionFailed

from shared.storage.gcs import make_client

_bucket = None
print(f"recorder instance of {os.environ.get('K_SERVICE')} started, pid {os.getpid()}", file=sys.stderr, flush=True)


class _Pipeline:
    """Just the crash hook's way in: the pipeline's checkpoint, a no-op unless the hook replaces it."""

    def checkpoint(self, step: str) -> None:
        pass


PIPELINE = _Pipeline()
# The variables a record shows: the wiring's and the platform's defaults, and one from function_env.
ENV = ("JOB_FINISHED_TOPIC", "RUN_FINISHED_TOPIC", "UPLOADS_TOPIC", "DEAD_LETTER_SUBSCRIPTIONS", "K_SERVICE",
       "FUNCTION_TARGET", "LOG_EXECUTION_ID", "CLOUD_RUN_TIMEOUT_SECONDS", "THREADED_TIMEOUT_ENABLED",
       "FUNCTION_TIMEOUT_SECONDS", "MODEL")


def _output():
    global _bucket
    if _bucket is None:
        client = make_client(os.environ["GOOGLE_CLOUD_PROJECT"])
        _bucket = client.bucket(os.environ["OUTPUT_BUCKET"])
    return _bucket


def _record(target: str, event) -> None:
    message = event.data["message"]
    raw = base64.b64decode(message.get("data", ""))
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw.decode("utf-8", "replace")
    attributes = message.get("attributes", {})
    if attributes.get("fail_first") == "1":
        try:  # the marker exists only after the first delivery
            _output().blob(f"recorded/failed-once/{message['messageId']}").upload_from_string(
                b"", if_generation_match=0)
        except PreconditionFailed:
            pass
        else:
            raise RuntimeError("refusing the first delivery on purpose")
    PIPELINE.checkpoint(f"{target}.recording")
    record = {"type": event["type"], "source": event["source"], "id": event["id"], "data": data,
              "attributes": attributes, "messageId": message.get("messageId"),
              "subscription": event.data.get("subscription"),
              "env": {k: os.environ.get(k) for k in ENV}}
    _output().blob(f"recorded/{target}/{event['id']}.json").upload_from_string(json.dumps(record))


@functions_framework.cloud_event
def submit(event):
    _record("submit", event)


@functions_framework.cloud_event
def poll(event):
    _record("poll", event)


@functions_framework.cloud_event
def collect(event):
    _record("collect", event)


@functions_framework.cloud_event
def reconcile(event):
    _record("reconcile", event)
