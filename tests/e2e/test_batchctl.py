"""batchctl against the whole local cloud: the commands an operator runs (drop, runs --watch, show, verify,
logs, retry, cancel, redrive, doctor), their --json documents and exit codes, on real runs."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner, Result

from batchctl import cli
from bench import batchctl_runs
from local.cloud import CONSUMERS, DEAD_LETTER, pubsub_clients
from shared import verify
from tests.e2e.conftest import body


def prompt(text: str) -> dict:
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}]}}


@pytest.fixture(scope="module")
def ctl(cloud):
    """batchctl with the environment `. .local/env` gives (plus the dead-letter subscriptions)."""
    env = {**cloud.env, "DEAD_LETTER_SUBSCRIPTIONS": ",".join(c.dead_letter_watch for c in CONSUMERS)}

    def run(*args: str, code: int | None = 0) -> Result:
        result = CliRunner(env=env).invoke(cli, list(args))
        assert code is None or result.exit_code == code, (result.exit_code, result.output)
        return result

    run.json = lambda *args, code=0: json.loads(run(*args, "--json", code=code).stdout)
    return run


def _wait(check, timeout: float = 45.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _shown(ctl, run: str) -> dict | None:
    """`show RUN --json`, or None while the run has no record yet."""
    result = ctl("show", run, "--json", "--no-errors", code=None)
    return json.loads(result.stdout) if result.exit_code == 0 else None


def test_drop_watch_show_verify_and_logs(ctl, cloud, tmp_path):
    lines = [prompt(f"question {i}") for i in range(1, 8)] + ["", "{broken"]
    path = tmp_path / "ops.jsonl"
    path.write_bytes(body(lines))
    [dropped] = ctl.json("drop", str(path), "--prefix", "ctl")["dropped"]
    run = dropped["run"]
    assert dropped["uri"] == f"gs://{cloud.env['INPUT_BUCKET']}/incoming/ctl/ops.jsonl" and dropped["invalid"] == 1
    _wait(lambda: _shown(ctl, run), what="the run to be claimed")
    watched = ctl.json("runs", "--watch", "--interval", "0.3", "--since", "10m")
    mine = next(r for r in watched["runs"] if r["run"] == run)
    assert (mine["label"], mine["total"], mine["done"], mine["failed"], mine["jobs"]) == ("partial", 8, 8, 1, 2)
    shown = ctl.json("show", "ctl/ops.jsonl")
    assert shown["run"] == run and [p["jobState"] for p in shown["parts"]] == ["JOB_STATE_SUCCEEDED"] * 2
    assert shown["errors"][0]["example"]["row"] == 9 and shown["cost"]["estimate"]
    assert "parts" in ctl("show", run).stdout
    assert ctl("verify", run).stdout.startswith(f"ok: run {run}: all 8 rows")
    logs = ctl.json("logs", run, "--logs-dir", str(cloud.workdir / "logs"))["entries"]
    events = [e["event"] for e in logs]
    assert events[0] == "run.received" and "run.finished" in events
    assert {e["function"] for e in logs} >= {"submit", "collect"}


def test_retry_runs_the_failed_rows_again_with_another_model(ctl, env, tmp_path):
    lines = [prompt("one"), prompt("two"), "{broken"]
    path = tmp_path / "nomodel.jsonl"
    path.write_bytes(body(lines))
    [dropped] = ctl.json("drop", str(path), "--model", "no-such-model")["dropped"]
    report = env.report("nomodel.jsonl", int(dropped["generation"]))
    assert report["rows"]["failed"] == 3
    retried = ctl.json("retry", dropped["run"], "--model", "gemini-2.5-flash")
    assert (retried["rows"], retried["skippedNoRequest"]) == (2, 1)
    again = env.report("nomodel.retry.jsonl", int(retried["generation"]))
    assert again["run"] == retried["newRun"] and again["rows"]["succeeded"] == 2
    assert ctl("verify", retried["newRun"]).exit_code == 0


def test_cancel_ends_the_run_with_cancelled_rows_and_a_report(ctl, env, tmp_path):
    env.switches(queue_latency=60)  # the jobs wait in Vertex's queue until they are cancelled
    try:
        lines = [prompt(f"slow {i}") for i in range(1, 8)]
        path = tmp_path / "slow.jsonl"
        path.write_bytes(body(lines))
        [dropped] = ctl.json("drop", str(path))["dropped"]
        run = dropped["run"]
        _wait(lambda: (doc := _shown(ctl, run)) and doc["parts"] and
              all(p["state"] == "submitted" for p in doc["parts"]), what="both jobs to be created")
        dry = ctl.json("cancel", run, "--dry-run")
        assert len(dry["jobs"]) == 2 and dry["dryRun"]
        done = ctl.json("cancel", run, "--reason", "e2e")
        assert sorted(j["part"] for j in done["jobs"]) == ["p0001-a1", "p0002-a1"]
        report = env.report("slow.jsonl", int(dropped["generation"]))
    finally:
        env.switches(queue_latency=0)
    assert report["rows"]["failedByReason"] == {"CANCELLED": 7} and "e2e" in report["note"]
    assert {j["state"] for j in report["jobs"]} == {"JOB_STATE_CANCELLED"}
    results, errors = env.outputs("slow.jsonl")
    assert verify.check("slow", verify.expected_rows(body(lines)), report, results, errors) == []
    assert ctl("verify", run).exit_code == 0
    assert "nothing left to cancel" in ctl("cancel", run, code=1).stderr


def test_redrive_moves_a_dead_letter_back_and_doctor_checks_the_wiring(ctl, cloud):
    publisher, subscriber = pubsub_clients(cloud.env)
    project = cloud.env["GOOGLE_CLOUD_PROJECT"]
    mine = "batchctl-e2e-dead-letters"
    subscriber.create_subscription(request={"name": subscriber.subscription_path(project, mine),
                                            "topic": publisher.topic_path(project, DEAD_LETTER)})
    upload = {"bucket": cloud.env["INPUT_BUCKET"], "name": "outside/not-an-input.txt", "generation": "1"}
    publisher.publish(publisher.topic_path(project, DEAD_LETTER), json.dumps(upload).encode(),
                      bucketId=upload["bucket"], objectId=upload["name"], objectGeneration="1",
                      eventType="OBJECT_FINALIZE", payloadFormat="JSON_API_V1").result(timeout=30)
    dry = ctl.json("redrive", "--subscription", mine, "--dry-run")
    assert (dry["found"], dry["moved"]) == (1, 0)
    moved = ctl.json("redrive", "--subscription", mine)
    assert (moved["found"], moved["moved"]) == (1, 1) and moved["subscriptions"][0]["topics"] == ["uploads"]
    assert ctl.json("redrive", "--subscription", mine)["found"] == 0
    doctor = ctl.json("doctor")
    assert doctor["ok"], doctor
    statuses = {c["name"]: c["status"] for c in doctor["checks"]}
    assert statuses["notification"] == "skip" and statuses["vertex"] == statuses["push to submit"] == "ok"
    publisher.transport.close()
    subscriber.transport.close()


def test_a_missing_bucket_is_exit_2_and_storage_that_does_not_answer_exit_3(cloud):
    missing = CliRunner(env={**cloud.env, "OUTPUT_BUCKET": "no-such-bucket"}).invoke(cli, ["runs"])
    assert missing.exit_code == 2
    assert missing.stderr.strip() == "batchctl: error: OUTPUT_BUCKET: gs://no-such-bucket does not exist"
    started = time.monotonic()
    down = CliRunner(env={**cloud.env, "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}).invoke(cli, ["runs"])
    assert down.exit_code == 3 and "does not answer" in down.stderr and time.monotonic() - started < 15


def test_the_runs_benchmark_runs_at_a_tiny_scale():
    result = batchctl_runs.measure(runs=40, repeat=1, threads=4)
    assert result["listed"] == 40 and result["batchctl_runs_json_seconds"]["best"] > 0
