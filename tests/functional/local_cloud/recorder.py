"""A stand-in for functions/main.py: each target records the CloudEvent it got, so tests see the wiring.

`gs://$OUTPUT_BUCKET/recorded/<target>/<event id>.json` holds the event type, the decoded Pub/Sub
message (data parsed as JSON when it is JSON) and the subscription. A message with attribute
`fail_first=1` is refused once (HTTP 500) to show that a failed push is redelivered.
"""

from __future__ import annotations

import base64
import json
import os

import functions_framework
from google.api_core.exceptions import PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

_bucket = None


def _output():
    global _bucket
    if _bucket is None:
        client = storage.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]})
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
    record = {"type": event["type"], "source": event["source"], "id": event["id"], "data": data,
              "attributes": attributes, "messageId": message.get("messageId"),
              "subscription": event.data.get("subscription"),
              "env": {k: os.environ.get(k) for k in ("JOB_FINISHED_TOPIC", "RUN_FINISHED_TOPIC", "MODEL")}}
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
