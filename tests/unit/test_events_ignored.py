"""Pub/Sub-wrapped GCS notifications other than OBJECT_FINALIZE reach submit (a notification config without an
event-type filter sends them all): they are acknowledged and ignored, with the reason logged, and start nothing."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import orjson
import pytest
from cloudevents.http import CloudEvent

from shared import handlers
from tests.unit.fakes import make_pipeline
from tests.unit.flows import lines, settle

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"
NAME = "incoming/a/b.jsonl"


def notification(event_type: str, generation: int, *, as_cloud_event: bool) -> dict | CloudEvent:
    """The fixture notification, re-pointed at the unit pipeline's input bucket and a stored generation."""
    doc = copy.deepcopy(json.loads((FIXTURES / "gcs-notification.json").read_text()))
    message = doc["data"]["message"]
    resource = json.loads(base64.b64decode(message["data"]))
    resource.update(bucket="in-bucket", generation=str(generation), metadata={})
    message["data"] = base64.b64encode(json.dumps(resource).encode()).decode()
    message["attributes"].update(bucketId="in-bucket", objectGeneration=str(generation), eventType=event_type)
    if not as_cloud_event:
        return doc
    return CloudEvent({k: v for k, v in doc.items() if k != "data"}, doc["data"])


def logged(out: str) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("as_cloud_event", [False, True], ids=["dict", "CloudEvent"])
@pytest.mark.parametrize("event_type", ["OBJECT_DELETE", "OBJECT_METADATA_UPDATE", "OBJECT_ARCHIVE"])
def test_a_notification_that_is_not_object_finalize_is_acknowledged_and_ignored(event_type, as_cloud_event,
                                                                                capsys):
    p, store, vertex, publisher = make_pipeline()
    generation = store.put("in-bucket", NAME, b"\n".join(lines(2)))
    capsys.readouterr()
    # Returning normally is what acknowledges the message (a raise would make Pub/Sub redeliver).
    assert handlers.on_upload(p, notification(event_type, generation, as_cloud_event=as_cloud_event)) == "ignored"
    entries = logged(capsys.readouterr().out)
    assert [e["event"] for e in entries] == ["run.ignored"]
    assert entries[0]["severity"] == "INFO"  # not an error: nothing is wrong with such a notification
    assert event_type in entries[0]["message"] and "OBJECT_FINALIZE" in entries[0]["message"]
    assert entries[0]["logging.googleapis.com/labels"]["input"] == f"gs://in-bucket/{NAME}"
    assert not list(store.list_names("out-bucket", ""))  # no run claimed, nothing staged or written
    assert vertex.calls == [] and publisher.messages == []


def test_the_same_notification_as_object_finalize_does_start_a_run(capsys):
    """Control for the test above: the rewritten fixture is a usable upload event when it is a finalize."""
    p, store, vertex, publisher = make_pipeline()
    generation = store.put("in-bucket", NAME, b"\n".join(lines(2)))
    assert handlers.on_upload(p, notification("OBJECT_FINALIZE", generation, as_cloud_event=True)) == "staged"
    assert len(vertex.jobs) == 1
    assert "run.received" in [e["event"] for e in logged(capsys.readouterr().out)]


def test_deleting_an_input_after_its_run_leaves_the_outputs_alone():
    p, store, vertex, publisher = make_pipeline()
    generation = store.put("in-bucket", NAME, b"\n".join(lines(3)))
    assert handlers.on_upload(p, notification("OBJECT_FINALIZE", generation, as_cloud_event=False)) == "staged"
    settle(p, vertex, publisher)
    names = sorted(store.list_names("out-bucket", ""))
    before = {name: store.read_bytes("out-bucket", name) for name in names}
    assert "reports/a/b.json" in before
    sent = len(publisher.messages)
    store.delete("in-bucket", NAME)
    for event_type in ("OBJECT_DELETE", "OBJECT_ARCHIVE"):
        assert handlers.on_upload(p, notification(event_type, generation, as_cloud_event=True)) == "ignored"
    after = {name: store.read_bytes("out-bucket", name) for name in store.list_names("out-bucket", "")}
    assert after == before
    assert len(publisher.messages) == sent and len(vertex.jobs) == 1
