"""Each function through functions-framework's own app (the deployed entry points), in process, against real
local servers: fake-gcs-server, Google's Pub/Sub emulator and the Vertex emulator. The events are built as
the platform builds them; job-finished messages are pulled from the real topic and handed to collect."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from pathlib import Path

import orjson
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from local import pubsub
from local.vertex import start_server
from shared import layout
from shared.errors import TransientError
from shared.storage.gcs import GcsStore

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")
PROJECT = "func-project"


@pytest.fixture(scope="module")
def servers(fake_gcs, storage_client):
    emulator = pubsub.launch()
    vertex = start_server(project=PROJECT)
    try:
        pubsub.wait_ready(emulator)
        suffix = uuid.uuid4().hex[:8]
        env = {"GOOGLE_CLOUD_PROJECT": PROJECT, "GOOGLE_CLOUD_LOCATION": "us-central1",
               "INPUT_BUCKET": f"fin-{suffix}", "OUTPUT_BUCKET": f"fout-{suffix}",
               "PUBSUB_EMULATOR_HOST": emulator.host,
               "VERTEX_BASE_URL": vertex.url, "MAX_ROWS_PER_JOB": "3", "MAX_ACTIVE_JOBS": "4",
               "STUCK_CREATE_SECONDS": "1", "FUNCTION_TIMEOUT_SECONDS": "5"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        storage_client.create_bucket(env["INPUT_BUCKET"])
        storage_client.create_bucket(env["OUTPUT_BUCKET"])
        from google.cloud import pubsub_v1

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for topic in ("job-finished", "run-finished"):
            publisher.create_topic(name=publisher.topic_path(PROJECT, topic))
            subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, f"{topic}-pull"),
                                           topic=publisher.topic_path(PROJECT, topic))
        yield env, subscriber, vertex
    finally:
        for k, v in locals().get("saved", {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        vertex.stop()
        emulator.process.terminate()
        emulator.process.wait(10)


@pytest.fixture(scope="module")
def apps(servers):
    import functions_framework

    return {name: functions_framework.create_app(name, MAIN, "cloudevent").test_client()
            for name in ("submit", "poll", "collect", "reconcile")}


def post(client, event: CloudEvent):
    headers, body = to_structured(event)
    return client.post("/", headers=headers, data=body)


def pubsub_event(data: bytes, attributes: dict | None = None, topic: str = "uploads") -> CloudEvent:
    message = {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex, "attributes": attributes or {}}
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished",
                       "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}"},
                      {"message": message, "subscription": f"projects/{PROJECT}/subscriptions/{topic}-push"})


def notification(blob) -> CloudEvent:
    resource = {"bucket": blob.bucket.name, "name": blob.name, "generation": str(blob.generation),
                "size": str(blob.size), "metadata": blob.metadata or {}}
    return pubsub_event(json.dumps(resource).encode(), {
        "bucketId": blob.bucket.name, "objectId": blob.name, "objectGeneration": str(blob.generation),
        "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"})


def direct(blob) -> CloudEvent:
    return CloudEvent({"type": "google.cloud.storage.object.v1.finalized",
                       "source": f"//storage.googleapis.com/projects/_/buckets/{blob.bucket.name}"},
                      {"bucket": blob.bucket.name, "name": blob.name, "generation": str(blob.generation)})


def upload(storage_client, env, name: str, n: int):
    blob = storage_client.bucket(env["INPUT_BUCKET"]).blob(name)
    lines = [{"request": {"contents": [{"role": "user", "parts": [{"text": f"{name} {i}"}]}]}} for i in range(n)]
    blob.upload_from_string(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return blob


def pull(subscriber, topic: str, want: int, timeout: float = 20) -> list[dict]:
    path = subscriber.subscription_path(PROJECT, f"{topic}-pull")
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        answer = subscriber.pull(subscription=path, max_messages=50, timeout=5)
        if answer.received_messages:
            subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in answer.received_messages])
        got += [json.loads(m.message.data) for m in answer.received_messages]
    return got


def run_record(storage_client, env, blob) -> dict:
    run = layout.run_id(blob.bucket.name, blob.name, blob.generation)
    return orjson.loads(storage_client.bucket(env["OUTPUT_BUCKET"]).blob(layout.run_state_name(run))
                        .download_as_bytes())


@pytest.mark.parametrize("wiring", [notification, direct])
def test_submit_poll_collect_through_the_real_entry_points(servers, apps, storage_client, wiring):
    env, subscriber, _ = servers
    blob = upload(storage_client, env, f"incoming/{wiring.__name__}.jsonl", 7)  # 3 parts of <= 3 rows
    assert post(apps["submit"], wiring(blob)).status_code == 200
    assert post(apps["submit"], wiring(blob)).status_code == 200  # duplicate delivery
    record = run_record(storage_client, env, blob)
    assert record["state"] == "running" and len(record["parts"]) == 3
    assert len(jobs_of(apps, servers[2], record["run"], 3)) == 3  # one job per part, the duplicate added none

    finished: list[dict] = []
    deadline = time.monotonic() + 30
    while len(finished) < 3 and time.monotonic() < deadline:
        assert post(apps["poll"], pubsub_event(b"tick", topic="poll-ticks")).status_code == 200
        finished += [m for m in pull(subscriber, "job-finished", 3, timeout=1) if m["run"] == record["run"]]
    assert sorted(m["part"] for m in finished) == ["p0001-a1", "p0002-a1", "p0003-a1"]
    assert all(m["state"] == "JOB_STATE_SUCCEEDED" for m in finished)
    for message in finished + finished[:1]:  # one replayed
        event = pubsub_event(json.dumps(message).encode(), topic="job-finished")
        assert post(apps["collect"], event).status_code == 200
    done = [m for m in pull(subscriber, "run-finished", 1) if m["run"] == record["run"]]
    assert done and done[0]["state"] == "succeeded" and done[0]["rows"]["total"] == 7
    out = storage_client.bucket(env["OUTPUT_BUCKET"])
    rel = layout.relative_name(blob.name, "incoming/")
    rows = sorted(orjson.loads(x)["row"] for x in out.blob(f"results/{rel}.jsonl").download_as_bytes().splitlines())
    assert rows == list(range(1, 8))
    assert out.blob(f"errors/{rel}.jsonl").download_as_bytes() == b""
    assert run_record(storage_client, env, blob)["state"] == "done"


def test_ignored_and_malformed_events_are_acknowledged(servers, apps, storage_client, capsys):
    env, _, _ = servers
    outside = upload(storage_client, env, "elsewhere/x.jsonl", 1)
    assert post(apps["submit"], notification(outside)).status_code == 200
    assert "run.ignored" in capsys.readouterr().out
    bad = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "//storage"}, {"bucket": "b"})
    assert post(apps["submit"], bad).status_code == 200
    logged = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert any(e["severity"] == "ERROR" and e["event"] == "submit.rejected" for e in logged)
    assert post(apps["collect"], pubsub_event(b"not json", topic="job-finished")).status_code == 200


def test_a_transient_failure_answers_500_and_the_redelivery_completes(servers, apps, storage_client, monkeypatch):
    env, _, _ = servers
    blob = upload(storage_client, env, "incoming/flaky-storage.jsonl", 2)
    real = GcsStore.open_write
    calls = []

    def failing_once(self, *args, **kwargs):
        if not calls:
            calls.append(1)
            raise TransientError("Cloud Storage: 503 Service Unavailable")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GcsStore, "open_write", failing_once)
    assert post(apps["submit"], notification(blob)).status_code == 500
    assert run_record(storage_client, env, blob)["state"] == "staging"  # claimed, not staged
    assert post(apps["submit"], notification(blob)).status_code == 200  # the platform's redelivery
    record = run_record(storage_client, env, blob)
    assert record["state"] == "running" and len(jobs_of(apps, servers[2], record["run"], 1)) == 1


def test_vertex_down_after_staging_leaves_a_reservation_the_poller_adopts(servers, apps, storage_client):
    env, subscriber, vertex = servers
    blob = upload(storage_client, env, "incoming/flaky-vertex.jsonl", 2)
    vertex.set_switches(http_error_next=1000, http_error_code=503)
    try:
        assert post(apps["submit"], notification(blob)).status_code == 200  # state is durable: acknowledged
    finally:
        vertex.set_switches(http_error_next=0)
    record = run_record(storage_client, env, blob)
    assert [(p["state"], p["job"]) for p in record["parts"].values()] == [("queued", None)]
    time.sleep(1.1)  # STUCK_CREATE_SECONDS
    assert post(apps["poll"], pubsub_event(b"tick", topic="poll-ticks")).status_code == 200
    record = run_record(storage_client, env, blob)
    assert len(jobs_of(apps, vertex, record["run"], 1)) == 1


def jobs_of(apps, vertex, run: str, want: int, timeout: float = 15) -> list[dict]:
    """The run's jobs once there are `want` of them. Submit starts jobs at once unless the slots object was
    written within the last two seconds (then the next poll tick does): tick until they are there."""
    deadline = time.monotonic() + timeout
    while len(vertex_jobs(vertex, run)) < want and time.monotonic() < deadline:
        assert post(apps["poll"], pubsub_event(b"tick", topic="poll-ticks")).status_code == 200
        time.sleep(0.3)
    time.sleep(0.5)  # and no more than that appear
    return vertex_jobs(vertex, run)


def vertex_jobs(vertex, run: str) -> list[dict]:
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"filter": f'labels.run="{run}"'})
    url = f"{vertex.url}/v1/projects/{PROJECT}/locations/us-central1/batchPredictionJobs?{query}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read()).get("batchPredictionJobs", [])


def test_a_lost_job_finished_is_announced_again_by_the_reconcile_entry_point(servers, apps, storage_client):
    env, subscriber, _ = servers
    blob = upload(storage_client, env, "incoming/lost-announcement.jsonl", 2)
    assert post(apps["submit"], notification(blob)).status_code == 200
    run = run_record(storage_client, env, blob)["run"]
    deadline = time.monotonic() + 30
    lost = []
    while not lost and time.monotonic() < deadline:  # poll announces; the announcement is lost
        assert post(apps["poll"], pubsub_event(b"tick", topic="poll-ticks")).status_code == 200
        lost = [m for m in pull(subscriber, "job-finished", 1, timeout=1) if m["run"] == run]
    assert lost
    again: list[dict] = []
    deadline = time.monotonic() + 30  # the deadline is 10 s with a 5 s function timeout
    while not again and time.monotonic() < deadline:
        assert post(apps["reconcile"], pubsub_event(b"tick", topic="poll-ticks")).status_code == 200
        again = [m for m in pull(subscriber, "job-finished", 1, timeout=1) if m["run"] == run]
    assert again and again[0]["part"] == lost[0]["part"]
    assert post(apps["collect"], pubsub_event(json.dumps(again[0]).encode(), topic="job-finished")).status_code == 200
    assert run_record(storage_client, env, blob)["state"] == "done"
    rel = layout.relative_name(blob.name, "incoming/")
    assert storage_client.bucket(env["OUTPUT_BUCKET"]).blob(f"reports/{rel}.json").exists()


def test_log_lines_survive_the_runtime_s_execution_id_wrapper(servers, storage_client, monkeypatch, capfd):
    """With LOG_EXECUTION_ID=true the runtime swaps stdout for a text-only writer that adds its label."""
    import functions_framework

    env, _, _ = servers
    monkeypatch.setenv("LOG_EXECUTION_ID", "true")
    client = functions_framework.create_app("submit", MAIN, "cloudevent").test_client()
    outside = upload(storage_client, env, "elsewhere/wrapped.jsonl", 1)  # logs run.ignored
    headers, body = to_structured(notification(outside))
    answer = client.post("/", headers={**headers, "Function-Execution-Id": "exec-42"}, data=body)
    assert answer.status_code == 200
    entries = [json.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    assert entries and all(e["logging.googleapis.com/labels"]["execution_id"] == "exec-42" for e in entries)
