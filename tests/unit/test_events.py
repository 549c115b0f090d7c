"""Typed views over the CloudEvents the functions receive (JSON fixtures of each wiring)."""

import json
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

from shared.collect import JobFinished
from shared.errors import BadEventError
from shared.events import PubSubMessage, StorageObjectEvent

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def as_cloud_event(doc: dict) -> CloudEvent:
    attrs = {k: v for k, v in doc.items() if k != "data"}
    return CloudEvent(attrs, doc["data"])


@pytest.mark.parametrize("fixture", ["gcs-notification.json", "storage-finalized.json"])
def test_both_storage_wirings_give_the_same_object(fixture):
    for event in (load(fixture), as_cloud_event(load(fixture))):
        obj = StorageObjectEvent.from_cloud_event(event)
        assert (obj.bucket, obj.name, obj.generation) == ("in", "incoming/a/b.jsonl", 1763700000000000)
        assert obj.event_type == "OBJECT_FINALIZE" and obj.size == 1234
        assert obj.metadata["model"] == "gemini-2.5-pro" and obj.uri == "gs://in/incoming/a/b.jsonl"
        with pytest.raises(TypeError):
            obj.metadata["model"] = "x"  # read-only view


def test_notification_event_type_is_kept_so_deletes_can_be_ignored():
    assert StorageObjectEvent.from_cloud_event(load("gcs-notification-delete.json")).event_type == "OBJECT_DELETE"


def test_job_finished_payload():
    msg = PubSubMessage.from_cloud_event(as_cloud_event(load("job-finished.json")))
    finished = JobFinished.from_payload(msg.json())
    assert finished.part == "p0001-a1" and finished.state == "JOB_STATE_SUCCEEDED" and finished.error is None
    assert msg.message_id == "4004"


@pytest.mark.parametrize("bad", [
    {"type": "google.cloud.storage.object.v1.deleted", "data": {}},
    {"type": "google.cloud.pubsub.topic.v1.messagePublished", "data": {"nomessage": 1}},
    {"type": "google.cloud.storage.object.v1.finalized", "data": {"bucket": "b"}},
    {"type": "google.cloud.storage.object.v1.finalized", "data": {"bucket": "b", "name": "n", "generation": "x"}},
])
def test_malformed_events_are_permanent_errors(bad):
    with pytest.raises(BadEventError):
        StorageObjectEvent.from_cloud_event(bad)


def test_tick_payload_that_is_not_json_is_rejected_only_when_json_is_needed():
    msg = PubSubMessage.from_cloud_event(load("poll-tick.json"))
    assert msg.data == b"tick"
    with pytest.raises(BadEventError):
        msg.json()
    with pytest.raises(BadEventError):
        JobFinished.from_payload({"run": "r"})
