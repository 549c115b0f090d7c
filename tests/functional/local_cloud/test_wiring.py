"""The local cloud routes events like the cloud wiring: real servers, the recorder functions as targets."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid

import pytest

from local.cloud import CONSUMERS, DEAD_LETTER, DEAD_LETTER_WATCH, RUN_FINISHED_WATCH, pubsub_clients

from .conftest import VERTEX, wait_for

pytestmark = pytest.mark.functional

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


def _by_object(records: list[dict], name: str) -> list[dict]:
    return [r for r in records if r["attributes"].get("objectId") == name]


def test_upload_under_the_prefix_reaches_submit_as_a_gcs_notification(cloud, gcs, recorded):
    name = f"incoming/{uuid.uuid4().hex}/x.jsonl"
    blob = gcs.bucket(cloud.env["INPUT_BUCKET"]).blob(name)
    blob.upload_from_string(b'{"request": {}}\n')

    [record] = wait_for(lambda: _by_object(recorded("submit"), name), "the notification at submit", cloud)
    assert record["type"] == MESSAGE_PUBLISHED
    attributes = record["attributes"]
    assert attributes["bucketId"] == cloud.env["INPUT_BUCKET"] == "gbp-local-input"
    assert attributes["objectId"] == name
    assert attributes["objectGeneration"] == str(blob.generation)
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["payloadFormat"] == "JSON_API_V1"
    assert record["data"]["name"] == name
    assert record["data"]["bucket"] == "gbp-local-input"
    assert record["data"]["size"] == "16"
    # The functions get the wiring's names, the platform's defaults and whatever function_env adds.
    assert record["env"] == {
        "JOB_FINISHED_TOPIC": "job-finished", "RUN_FINISHED_TOPIC": "run-finished", "UPLOADS_TOPIC": "uploads",
        "DEAD_LETTER_SUBSCRIPTIONS": "uploads-dead-letter-watch,poll-ticks-dead-letter-watch,"
                                     "poll-ticks-reconcile-dead-letter-watch,job-finished-dead-letter-watch",
        "K_SERVICE": "submit", "FUNCTION_TARGET": "submit", "LOG_EXECUTION_ID": "true",
        "CLOUD_RUN_TIMEOUT_SECONDS": "20", "THREADED_TIMEOUT_ENABLED": "true", "FUNCTION_TIMEOUT_SECONDS": "20",
        "MODEL": "model-from-function-env"}


def test_upload_outside_the_prefix_does_not_reach_submit(cloud, gcs, recorded):
    bucket = gcs.bucket(cloud.env["INPUT_BUCKET"])
    tag = uuid.uuid4().hex
    outside = [f"media/{tag}.png", f"results/{tag}.jsonl", f"x-incoming/{tag}.jsonl"]
    for name in outside:
        bucket.blob(name).upload_from_string(b"{}\n")
    # Notifications arrive in order, so one upload under the prefix after them is the barrier.
    barrier = f"incoming/{tag}-barrier.jsonl"
    bucket.blob(barrier).upload_from_string(b"{}\n")
    wait_for(lambda: _by_object(recorded("submit"), barrier), "the barrier upload at submit", cloud)
    seen = {r["attributes"].get("objectId") for r in recorded("submit")}
    assert barrier in seen
    assert not seen & set(outside)


def test_ticks_reach_poll_and_reconcile(cloud, recorded):
    for target in ("poll", "reconcile"):
        ticks = wait_for(lambda t=target: [r for r in recorded(t) if r["type"] == MESSAGE_PUBLISHED][2:],
                         f"three ticks at {target}", cloud)
        numbers = sorted(r["data"]["tick"] for r in recorded(target))
        assert numbers[:3] == [1, 2, 3]
        assert all(r["attributes"] == {"source": "local-scheduler"} for r in ticks)
        assert {r["env"]["K_SERVICE"] for r in ticks} == {target}
    assert "publishing a tick to poll-ticks every 0.5s" in cloud.logs("scheduler")


def test_job_finished_reaches_collect(cloud, recorded):
    publisher, _ = pubsub_clients(cloud.env)
    job = f"projects/local-project/locations/us-central1/batchPredictionJobs/{uuid.uuid4().int % 10**9}"
    topic = publisher.topic_path("local-project", "job-finished")
    publisher.publish(topic, json.dumps({"job": job}).encode(), run="r1").result(timeout=10)

    [record] = wait_for(lambda: [r for r in recorded("collect") if r["data"] == {"job": job}],
                        "the job-finished message at collect", cloud)
    assert record["type"] == MESSAGE_PUBLISHED
    assert record["attributes"] == {"run": "r1"}


def test_a_failed_push_is_redelivered(cloud, gcs, recorded):
    publisher, _ = pubsub_clients(cloud.env)
    marker = uuid.uuid4().hex
    topic = publisher.topic_path("local-project", "job-finished")
    message_id = publisher.publish(topic, marker.encode(), fail_first="1").result(timeout=10)

    [record] = wait_for(lambda: [r for r in recorded("collect") if r["data"] == marker],
                        "the redelivered message at collect", cloud, timeout=15)
    assert record["messageId"] == message_id
    assert gcs.bucket(cloud.env["OUTPUT_BUCKET"]).blob(f"recorded/failed-once/{message_id}").exists()


def test_each_function_has_a_push_subscription_with_a_dead_letter_topic_that_keeps_its_messages(cloud):
    _, subscriber = pubsub_clients(cloud.env)
    project = "projects/local-project"
    expected = {"uploads-submit": ("uploads", "submit", "uploads-dead-letter"),
                "poll-ticks-poll": ("poll-ticks", "poll", "poll-ticks-dead-letter"),
                "poll-ticks-reconcile": ("poll-ticks", "reconcile", "poll-ticks-reconcile-dead-letter"),
                "job-finished-collect": ("job-finished", "collect", "job-finished-dead-letter")}
    assert {c.subscription: (c.topic, c.function, c.dead_letter) for c in CONSUMERS} == expected
    for name, (topic, function, dead_letter) in expected.items():
        sub = subscriber.get_subscription(subscription=f"{project}/subscriptions/{name}")
        assert sub.topic == f"{project}/topics/{topic}"
        assert sub.push_config.push_endpoint == f"http://127.0.0.1:{cloud.ports[function]}/"
        assert sub.ack_deadline_seconds == 80  # the function timeout (20 s) and a minute
        assert sub.dead_letter_policy.dead_letter_topic == f"{project}/topics/{dead_letter}"
        assert sub.dead_letter_policy.max_delivery_attempts == 5
        watch = subscriber.get_subscription(subscription=f"{project}/subscriptions/{dead_letter}-watch")
        assert watch.topic == f"{project}/topics/{dead_letter}" and not watch.push_config.push_endpoint
    assert (DEAD_LETTER, DEAD_LETTER_WATCH) == ("uploads-dead-letter", "uploads-dead-letter-watch")


def test_run_finished_has_a_pull_subscription_to_wait_on(cloud):
    publisher, subscriber = pubsub_clients(cloud.env)
    publisher.publish(publisher.topic_path("local-project", "run-finished"), b'{"run": "r9"}',
                      input="gs://b/incoming/x.jsonl").result(timeout=10)
    path = subscriber.subscription_path("local-project", RUN_FINISHED_WATCH)
    response = wait_for(lambda: subscriber.pull(subscription=path, max_messages=10, timeout=5).received_messages,
                        "a message on run-finished-watch", cloud)
    assert [m.message.data for m in response] == [b'{"run": "r9"}']
    assert dict(response[0].message.attributes) == {"input": "gs://b/incoming/x.jsonl"}
    subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response])


def test_env_file_exports_every_variable_and_each_server_answers(cloud):
    names = ["STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
             "INPUT_BUCKET", "INPUT_PREFIX", "OUTPUT_BUCKET"] + (["VERTEX_BASE_URL"] if VERTEX else [])
    script = f'. "{cloud.workdir / "env"}" && ' + " && ".join(f'echo "{n}=${n}"' for n in names)
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={}, check=True)
    exported = dict(line.split("=", 1) for line in shell.stdout.splitlines())
    assert exported == cloud.env
    assert set(exported) == set(names)
    assert exported["GOOGLE_CLOUD_PROJECT"] == "local-project"
    assert exported["GOOGLE_CLOUD_LOCATION"] == "us-central1"
    assert exported["INPUT_PREFIX"] == "incoming/"
    assert exported["OUTPUT_BUCKET"] == "gbp-local-output"
    assert exported["PUBSUB_EMULATOR_HOST"] == f"127.0.0.1:{cloud.ports['pubsub']}"
    with urllib.request.urlopen(f"http://{exported['PUBSUB_EMULATOR_HOST']}/", timeout=5) as r:
        assert r.read().strip() == b"Ok"
    with urllib.request.urlopen(f"{exported['STORAGE_EMULATOR_HOST']}/storage/v1/b?project=x", timeout=5) as r:
        assert {b["name"] for b in json.load(r)["items"]} == {"gbp-local-input", "gbp-local-output"}
    if VERTEX:
        assert exported["VERTEX_BASE_URL"] == f"http://127.0.0.1:{cloud.ports['vertex']}"
        with urllib.request.urlopen(f"{exported['VERTEX_BASE_URL']}/emulator/v1/health", timeout=5) as r:
            assert json.load(r) == {"status": "ok"}


@pytest.mark.skipif(not VERTEX, reason="the Vertex emulator (local.vertex) is not there yet")
def test_vertex_args_reach_the_vertex_emulator(cloud):
    with urllib.request.urlopen(f"{cloud.env['VERTEX_BASE_URL']}/emulator/v1/switches", timeout=5) as r:
        switches = json.load(r)
    assert switches["run_latency"] == 0.25  # from vertex_args=["--run-latency=0.25"]
