"""End to end: files dropped with google-cloud-storage into the local cloud, outputs checked against the
output contract (README), row accounting included."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import datetime

import orjson
import pytest

from shared import verify
from shared.storage.base import ObjectUnreadable
from shared.storage.gcs import GcsStore
from tests.e2e.conftest import assert_accounted


def prompt(text: str, **extra) -> dict:
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}]}, **extra}


def overlap(jobs: list[dict]) -> int:
    """The most Vertex jobs that were alive at the same instant."""
    points = []
    for job in jobs:
        points.append((datetime.fromisoformat(job["createTime"]), 1))
        points.append((datetime.fromisoformat(job["endTime"]), -1))
    alive = peak = 0
    for _, step in sorted(points, key=lambda p: (p[0], p[1])):
        alive += step
        peak = max(peak, alive)
    return peak


def test_several_files_at_once_split_and_capped(env):
    env.switches(queue_latency=0.3)  # keep jobs alive long enough for the cap to matter
    try:
        files = {
            "batch/big.jsonl": [prompt(f"Big question {i}") for i in range(1, 13)],   # 12 rows: 3 jobs of <= 5
            "batch/medium.jsonl": [prompt(f"Medium question {i}") for i in range(1, 8)],  # 7 rows: 2 jobs
            "batch/small.jsonl": [prompt("Small one"), "", "{broken", prompt("Small two")],
        }
        generations = {}
        threads = [threading.Thread(target=lambda r=rel, lines=lines: generations.__setitem__(r, env.drop(r, lines)))
                   for rel, lines in files.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reports = {rel: env.report(rel, generations[rel]) for rel in files}
    finally:
        env.switches(queue_latency=0)
    for rel, lines in files.items():
        assert_accounted(env, rel, lines, reports[rel])
    assert [len(reports[r]["jobs"]) for r in files] == [3, 2, 1]
    assert reports["batch/big.jsonl"]["state"] == "succeeded"
    assert reports["batch/small.jsonl"]["state"] == "partial"
    assert reports["batch/small.jsonl"]["rows"]["failedByReason"] == {"invalid_json": 1}
    jobs = [j for rel in files for j in env.jobs(reports[rel]["run"])]
    assert len(jobs) == 6 and all(j["state"] == "JOB_STATE_SUCCEEDED" for j in jobs)
    assert overlap(jobs) == 2  # MAX_ACTIVE_JOBS, across all three runs: reached, never exceeded
    results, _ = env.outputs("batch/big.jsonl")
    assert {r["row"]: r["text"] for r in results}.keys() == set(range(1, 13))
    assert all(r["finishReason"] and r["usage"]["totalTokenCount"] > 0 and r["modelVersion"] for r in results)


def test_user_keys_round_trip_and_a_reupload_replaces_the_outputs(env):
    first = [prompt("alpha", key="q-001"), prompt("beta", key=42), prompt("gamma"), prompt("delta", key="000123"),
             prompt("eps", key={"id": 7, "tag": "x"})]
    gen1 = env.drop("keys.jsonl", first)
    report1 = env.report("keys.jsonl", gen1)
    results, errors = assert_accounted(env, "keys.jsonl", first, report1)
    assert errors == []
    keys = {r["row"]: r.get("key", "<absent>") for r in results}
    assert keys == {1: "q-001", 2: 42, 3: "<absent>", 4: "000123", 5: {"id": 7, "tag": "x"}}

    second = [prompt("only one now", key=7), "not json"]
    gen2 = env.drop("keys.jsonl", second)
    assert gen2 > gen1
    report2 = env.report("keys.jsonl", gen2)
    assert report2["run"] != report1["run"]
    results, errors = assert_accounted(env, "keys.jsonl", second, report2)
    assert [(r["row"], r["key"]) for r in results] == [(1, 7)]
    assert [(e["row"], e["stage"], e["line"]) for e in errors] == [(2, "validation", "not json")]


def test_a_retry_round_from_retryable_row_failures(env):
    env.switches(retryable_fraction=0.4)
    try:
        lines = [prompt(f"Retry me {i}", key=f"k{i}") for i in range(1, 21)]
        gen = env.drop("retry/rows.jsonl", lines)
        report = env.report("retry/rows.jsonl", gen)
    finally:
        env.switches(retryable_fraction=0)
    results, errors = assert_accounted(env, "retry/rows.jsonl", lines, report)
    assert report["retriedRows"] > 0
    assert any(r["attempts"] > 1 for r in results)
    assert max(j["attempt"] for j in report["jobs"]) >= 2
    for e in errors:  # only rows that failed retryably three times may remain
        assert (e["stage"], e["retryable"], e["attempts"]) == ("prediction", True, 3) and e["code"] in (429, 500, 503)
        assert e["request"]["contents"][0]["parts"][0]["text"].startswith("Retry me")  # re-droppable


def test_an_unusable_object_still_gets_a_report_and_an_errors_file(env):
    gen = env.drop("notes.txt", [b"\x89PNG\x00\xff binary junk", "plain words"])
    report = env.report("notes.txt", gen)
    results, errors = assert_accounted(env, "notes.txt", ["x", "y"], report)
    assert results == [] and report["state"] == "failed" and "not a JSONL file" in report["note"]
    assert [e["row"] for e in errors] == [1, 2] and all(e["stage"] == "validation" for e in errors)
    assert report["jobs"] == []


@pytest.mark.parametrize("damage", ["cut short", "not gzip"])
def test_an_input_stored_gzip_encoded_with_damaged_bytes_runs_up_to_the_damage_and_reports_the_rest(env, damage):
    # `gcloud storage cp -Z` stores a file gzip-encoded; an upload cut short, or the encoding set on a plain file,
    # leaves bytes that cannot be decompressed to the end. The run still ends, every row accounted for.
    lines = [prompt(f"question {i}: what is {i * 7919 % 10007} times {i * 104729 % 9973}?") for i in range(40)]
    plain = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    rel = f"zipped/{damage.replace(' ', '-')}.jsonl"
    blob = env.input.blob(f"incoming/{rel}")
    blob.content_encoding = "gzip"
    packed = gzip.compress(plain)
    blob.upload_from_string(plain if damage == "not gzip" else packed[:len(packed) // 2],
                            content_type="application/x-ndjson")
    got = bytearray()  # what can be read of it, as the pipeline reads it
    with GcsStore(env.gcs).open_read(env.input.name, blob.name) as stream, \
            pytest.raises(ObjectUnreadable) as raised:
        while data := stream.read(1 << 20):
            got += data
    report = env.report(rel, blob.generation)
    rows = verify.expected_rows(bytes(got)) + [raised.value.line]
    results, errors = env.outputs(rel)
    problems = verify.check(rel, rows, report, results, errors)
    assert problems == [], "\n".join(problems)
    assert errors[-1]["row"] == raised.value.line and errors[-1]["stage"] == "validation"
    assert report["rows"]["failedByReason"]["unreadable_input"] == 1
    assert "could not be read to its end" in report["note"] and "gzip" in report["note"]
    if damage == "not gzip":
        assert rows == [1] and results == [] and report["state"] == "failed"
    else:
        assert len(results) >= 5 and report["state"] == "partial"


def test_model_from_object_metadata_and_an_unknown_model(env):
    lines = [prompt("hi")]
    gen = env.drop("models/pro.jsonl", lines, metadata={"model": "gemini-2.5-pro"})
    report = env.report("models/pro.jsonl", gen)
    assert report["model"] == "gemini-2.5-pro" and report["state"] == "succeeded"
    assert_accounted(env, "models/pro.jsonl", lines, report)
    lines = [prompt("hi"), prompt("there")]
    gen = env.drop("models/nope.jsonl", lines, metadata={"model": "gemini-0-nope"})
    report = env.report("models/nope.jsonl", gen)
    _, errors = assert_accounted(env, "models/nope.jsonl", lines, report)
    assert report["state"] == "failed"
    assert {(e["stage"], e["code"], e["status"]) for e in errors} == {("job", 404, "NOT_FOUND")}


def test_a_replayed_upload_notification_changes_nothing(env, cloud):
    from local.cloud import pubsub_clients

    lines = [prompt("once"), prompt("only")]
    gen = env.drop("replay.jsonl", lines)
    report = env.report("replay.jsonl", gen)
    before = env.output.blob("results/replay.jsonl").download_as_bytes()
    publisher, _ = pubsub_clients(env.env)
    blob = env.input.get_blob("incoming/replay.jsonl")
    topic = publisher.topic_path(env.env["GOOGLE_CLOUD_PROJECT"], "uploads")
    resource = {"bucket": blob.bucket.name, "name": blob.name, "generation": str(blob.generation)}
    attrs = {"bucketId": blob.bucket.name, "objectId": blob.name, "objectGeneration": str(blob.generation),
             "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"}
    for _ in range(3):
        publisher.publish(topic, json.dumps(resource).encode(), **attrs).result(timeout=10)
    # Nothing observable may change; give the duplicates time to be delivered and handled.
    import time

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert len(env.jobs(report["run"])) == 1
        time.sleep(0.3)
    assert env.output.blob("results/replay.jsonl").download_as_bytes() == before
    assert_accounted(env, "replay.jsonl", lines, env.report("replay.jsonl", gen))
    assert "run.duplicate" in cloud.logs("submit")
