"""batchctl through CliRunner over in-memory doubles (MemoryStore, FakeVertex, MemoryPublisher, the CLI's own
memory backends): every command's output, --json shape and exit code, on runs the in-memory pipeline made."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from batchctl import cli
from batchctl._context import Ops
from batchctl._memory import MemoryAdmin, MemoryBuckets
from shared import layout, runstate, submit, verify
from shared.events import StorageObjectEvent
from tests.unit.fakes import retryable
from tests.unit.flows import GOOD, lines
from tests.unit.healing import World

ENV = {"GOOGLE_CLOUD_PROJECT": "p", "INPUT_BUCKET": "in-bucket", "OUTPUT_BUCKET": "out-bucket"}
COMMANDS = ["drop", "runs", "show", "retry", "cancel", "redrive", "doctor", "validate", "postprocess", "verify",
            "logs"]


class Cli:
    """A world (the pipeline in memory, driven step by step) and batchctl pointed at it."""

    def __init__(self, **env) -> None:
        self.world = World(**env)
        self.store = self.world.store
        self.buckets = MemoryBuckets(self.store, {"in-bucket", "out-bucket"})
        self.admin = MemoryAdmin()
        self.environ = {**ENV, **{k: str(v) for k, v in env.items()}}

    def ops(self) -> Ops:
        w = self.world
        return Ops(self.environ, store=w.store, vertex=w.vertex, publisher=w.publisher, buckets=self.buckets,
                   pubsub=self.admin, clock=lambda: w.now, config_=w.p.config, interactive=False)

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), obj=self.ops(), catch_exceptions=False)

    def json(self, *args: str, code: int = 0) -> dict:
        result = self(*args, "--json")
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)

    def run_file(self, rel: str, body: bytes, *, settle: bool = True) -> str:
        """Drop incoming/<rel>.jsonl into the world (its notification delivered); returns the run id."""
        event = self.world.drop(f"incoming/{rel}.jsonl", body)
        if settle:
            self.world.settle([rel])
        return layout.run_id(event.bucket, event.name, event.generation)

    def record(self, run: str) -> dict:
        return self.store.read_json("out-bucket", layout.run_state_name(run)).value


BODY = b"\n".join([GOOD % 1, GOOD % 2, b"{broken", GOOD % 4, b"", GOOD % 6]) + b"\n"


def _failing(rows: set[str]):
    return lambda line: retryable(500, "INTERNAL") if line["gbp_row"] in rows else None


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage: batchctl " + command in result.output
    assert len(result.output.splitlines()) > 4


def test_missing_configuration_is_one_line_naming_the_variable_and_exit_2():
    result = CliRunner().invoke(cli, ["runs"], obj=Ops({"INPUT_BUCKET": "in-bucket"}))
    assert result.exit_code == 2
    assert result.stderr.strip() == "batchctl: error: GOOGLE_CLOUD_PROJECT is required and not set"
    assert "Traceback" not in result.output


def test_an_unknown_run_is_exit_1_and_a_bad_option_exit_2():
    c = Cli()
    unknown = c("show", "r" + "0" * 20)
    assert unknown.exit_code == 1 and unknown.stderr.startswith("batchctl: error: no run r000")
    assert c("runs", "--state", "sleepy").exit_code == 2
    assert c("runs", "--since", "soon").exit_code == 2
    assert c("drop", "/no/such/file.jsonl").exit_code == 2


def test_drop_validates_uploads_with_the_model_and_names_the_run(tmp_path):
    c = Cli()
    good = tmp_path / "good.jsonl"
    good.write_bytes(BODY)
    doc = c.json("drop", str(good), "--model", "gemini-2.5-pro", "--prefix", "team-a")
    [entry] = doc["dropped"]
    assert entry["uri"] == "gs://in-bucket/incoming/team-a/good.jsonl" and entry["rows"] == 5
    assert entry["invalid"] == 1 and entry["invalidByReason"] == {"invalid_json": 1}
    info = c.store.object_info("in-bucket", "incoming/team-a/good.jsonl")
    assert info["metadata"] == {"model": "gemini-2.5-pro"}
    assert entry["run"] == layout.run_id("in-bucket", "incoming/team-a/good.jsonl", int(entry["generation"]))
    submit.handle_upload(c.world.p, StorageObjectEvent(bucket="in-bucket", name="incoming/team-a/good.jsonl",
                                                       generation=int(entry["generation"]),
                                                       metadata={"model": "gemini-2.5-pro"}))
    assert c.record(entry["run"])["model"] == "gemini-2.5-pro"


def test_drop_refuses_a_file_whose_every_line_fails_unless_forced(tmp_path):
    c = Cli()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{broken\n[1, 2]\n")
    refused = c("drop", str(bad))
    assert refused.exit_code == 1
    assert "refused" in refused.stderr and "invalid_json 1" in refused.stderr and "not_object 1" in refused.stderr
    assert c.store.object_info("in-bucket", "incoming/bad.jsonl") is None
    assert c("drop", str(bad), "--force").exit_code == 0
    assert c.store.object_info("in-bucket", "incoming/bad.jsonl") is not None


def test_runs_lists_newest_first_with_rows_state_and_filters():
    c = Cli(MAX_ROWS_PER_JOB=2)
    first = c.run_file("a", BODY)
    c.world.now += 3600
    second = c.run_file("b", b"\n".join(lines(3)) + b"\n")
    c.world.now += 60
    open_run = c.run_file("c", b"\n".join(lines(2)) + b"\n", settle=False)
    doc = c.json("runs")
    assert [r["run"] for r in doc["runs"]] == [open_run, second, first] and doc["total"] == 3
    done = {r["run"]: r for r in doc["runs"]}
    assert done[first]["label"] == "partial" and (done[first]["total"], done[first]["done"]) == (5, 5)
    assert done[first]["failed"] == 1 and done[first]["jobs"] == 2
    assert done[second]["label"] == "succeeded" and done[open_run]["state"] == "running"
    assert [r["run"] for r in c.json("runs", "--state", "open")["runs"]] == [open_run]
    assert [r["run"] for r in c.json("runs", "--state", "partial")["runs"]] == [first]
    assert [r["run"] for r in c.json("runs", "--since", "30m")["runs"]] == [open_run, second]
    assert c.json("runs", "--limit", "1")["shown"] == 1
    text = c("runs").stdout.splitlines()
    assert text[0].split() == ["RUN", "INPUT", "STATE", "ROWS", "FAILED", "JOBS", "AGE"]
    assert text[1].split()[:4] == [open_run, "c.jsonl", "running", "0/2"]
    assert text[3].split()[1:4] == ["a.jsonl", "partial", "5/5"] and text[3].split()[-1] == "1h"


def test_runs_watch_waits_until_every_shown_run_is_done(monkeypatch):
    c = Cli()
    c.run_file("w", b"\n".join(lines(2)) + b"\n", settle=False)

    def tick(_):  # the pipeline moves on while batchctl waits (its log lines are not batchctl's output)
        with contextlib.redirect_stdout(io.StringIO()):
            c.world.run_jobs()
            c.world.tick()
            c.world.pump()
        c.world.now += 5

    monkeypatch.setattr("batchctl._runs.time.sleep", tick)
    doc = c.json("runs", "--watch", "--interval", "0.2")
    assert [r["label"] for r in doc["runs"]] == ["succeeded"]
    text = c("runs", "--watch").stdout
    assert "succeeded" in text


def test_show_has_parts_errors_by_reason_cost_outputs_and_repairs():
    c = Cli(MAX_ROWS_PER_JOB=2, MAX_ATTEMPTS=2)
    c.world.outcome = _failing({"r2"})
    c.world.lose.add("job-finished")  # one announcement lost: the reconciliation repairs it
    run = c.run_file("s", BODY)
    doc = c.json("show", run)
    assert doc["label"] == "partial" and doc["rows"]["total"] == 5 and doc["rows"]["failed"] == 2
    assert [p["part"] for p in doc["parts"]] == ["p0001-a1", "p0001-a2", "p0002-a1"]
    assert all(p["jobState"] == "JOB_STATE_SUCCEEDED" for p in doc["parts"])
    groups = {(g["stage"], g["status"]): g for g in doc["errors"]}
    assert groups[("validation", "INVALID_ARGUMENT")]["example"]["row"] == 3
    assert groups[("prediction", "INTERNAL")]["rows"] == 1
    assert doc["cost"]["estimate"] is True and doc["cost"]["model"] == "gemini-2.5-flash"
    assert doc["cost"]["usd"] == pytest.approx((3 * 3 * 0.15 + 3 * 5 * 1.25) / 1e6)
    assert doc["outputs"]["written"] and doc["outputs"]["errors"] == "gs://out-bucket/errors/s.jsonl"
    assert doc["repairs"]["reannounce"]["count"] == 1
    # the same run by its input name, and the text form
    assert c.json("show", "s")["run"] == run == c.json("show", "gs://in-bucket/incoming/s.jsonl")["run"]
    text = c("show", run, "--price", "gemini-2.5-flash=1/2").stdout
    for word in ("parts", "errors by reason", "row 3: line 3: invalid JSON", "estimate", "repair reannounce"):
        assert word in text
    assert "~$0.0000" in text or "$0.00" in text


def test_show_says_when_a_model_has_no_price():
    c = Cli(MODEL="some-other-model")
    run = c.run_file("m", b"\n".join(lines(1)) + b"\n")
    assert c.json("show", run)["cost"] is None
    assert "no price for some-other-model" in c("show", run).stdout
    assert c.json("show", run, "--price", "some-other-model=1/1")["cost"]["usd"] == pytest.approx(8e-6)
    assert c("show", run, "--price", "nonsense").exit_code == 2


def test_retry_drops_the_failed_rows_that_can_run_again_as_a_new_run():
    c = Cli(MAX_ATTEMPTS=1)
    c.world.outcome = lambda line: ('Bad Request: {"error": {"code": 400, "message": "no", "status": '
                                    '"INVALID_ARGUMENT"}}') if line["gbp_row"] == "r1" else \
        (retryable() if line["gbp_row"] == "r2" else None)
    run = c.run_file("r", BODY)
    dry = c.json("retry", run, "--dry-run")
    assert dry["rows"] == 2 and dry["skippedNoRequest"] == 1 and "newRun" not in dry
    assert c.store.object_info("in-bucket", "incoming/r.retry.jsonl") is None
    only = c.json("retry", run, "--only-retryable")
    assert only["rows"] == 1 and only["skippedNotRetryable"] == 1 and only["retry"] == "gs://in-bucket/incoming/r.retry.jsonl"
    retried = [orjson.loads(x) for x in c.store.read_bytes("in-bucket", "incoming/r.retry.jsonl").splitlines()]
    assert [(x["row"], x["status"]) for x in retried] == [(2, "UNAVAILABLE")]
    assert c.store.object_info("in-bucket", "incoming/r.retry.jsonl")["metadata"] == {
        "model": "gemini-2.5-flash", "retry-of": run}
    c.world.outcome = lambda line: None
    submit.handle_upload(c.world.p, StorageObjectEvent(bucket="in-bucket", name="incoming/r.retry.jsonl",
                                                       generation=int(only["generation"])))
    c.world.settle(["r.retry"])
    assert c.record(only["newRun"])["state"] == "done"
    results = [orjson.loads(x) for x in c.store.read_bytes("out-bucket", "results/r.retry.jsonl").splitlines()]
    assert results[0]["row"] == 1 and "key" not in results[0]


def test_retry_refuses_a_run_that_is_not_done():
    c = Cli()
    run = c.run_file("n", b"\n".join(lines(2)) + b"\n", settle=False)
    result = c("retry", run)
    assert result.exit_code == 1 and "retry a run once it is done" in result.stderr


def _running_world() -> tuple[Cli, str]:
    """A run of 3 parts: one job running (the cap is 1), two parts queued."""
    c = Cli(MAX_ROWS_PER_JOB=2, MAX_ACTIVE_JOBS=1)
    run = c.run_file("x", b"\n".join(lines(6)) + b"\n", settle=False)
    c.world.tick()
    assert [j["state"] for j in c.world.vertex.jobs.values()] == ["JOB_STATE_PENDING"]
    return c, run


def test_cancel_dry_run_says_what_it_would_do_and_changes_nothing():
    c, run = _running_world()
    doc = c.json("cancel", run, "--dry-run")
    assert doc["dryRun"] and [j["part"] for j in doc["jobs"]] == ["p0001-a1"]
    assert doc["queuedParts"] == ["p0002-a1", "p0003-a1"] and doc["queuedRows"] == 4
    assert "cancelled" not in c.record(run)
    assert [j["state"] for j in c.world.vertex.jobs.values()] == ["JOB_STATE_PENDING"]
    assert "would cancel jobs" in c("cancel", run, "--dry-run").stdout


def test_cancel_stops_jobs_and_queued_parts_and_the_run_ends_with_cancelled_rows_in_errors():
    c, run = _running_world()
    doc = c.json("cancel", run, "--reason", "wrong prompt")
    assert [j["part"] for j in doc["jobs"]] == ["p0001-a1"] and not doc["alreadyCancelled"]
    assert [j["state"] for j in c.world.vertex.jobs.values()] == ["JOB_STATE_CANCELLED"]
    assert not list(c.store.list_names("out-bucket", layout.QUEUE_PREFIX))
    c.world.settle(["x"])
    report = orjson.loads(c.store.read_bytes("out-bucket", "reports/x.json"))
    assert report["rows"] == {"total": 6, "succeeded": 0, "failed": 6, "failedByStage": {"missing": 6},
                              "failedByReason": {"CANCELLED": 6}}
    assert "cancelled by an operator" in report["note"] and "wrong prompt" in report["note"]
    errors = [orjson.loads(x) for x in c.store.read_bytes("out-bucket", "errors/x.jsonl").splitlines()]
    assert {(e["status"], e["code"], e["retryable"]) for e in errors} == {("CANCELLED", 499, False)}
    assert "request" in errors[0]  # still a valid input: it can be dropped again
    assert len(c.world.vertex.jobs) == 1  # nothing was retried or started
    assert verify.check("x", list(range(1, 7)), report, c.store.read_bytes("out-bucket", "results/x.jsonl"),
                        c.store.read_bytes("out-bucket", "errors/x.jsonl")) == []
    assert c.json("runs")["runs"][0]["cancelled"]
    again = c("cancel", run)
    assert again.exit_code == 1 and "nothing left to cancel" in again.stderr


def test_cancel_keeps_what_a_job_returned_before_it_was_cancelled():
    c, run = _running_world()
    [name] = c.world.vertex.jobs
    c.world.vertex.run(name, state="JOB_STATE_RUNNING", keep=0.5)  # one of two rows exported, still running
    c.json("cancel", run)
    c.world.settle(["x"])
    report = orjson.loads(c.store.read_bytes("out-bucket", "reports/x.json"))
    assert report["rows"]["succeeded"] == 1 and report["rows"]["failedByReason"] == {"CANCELLED": 5}
    assert report["state"] == "partial"


def test_a_run_cancelled_while_staging_ends_without_a_job():
    c = Cli(MAX_ROWS_PER_JOB=2)
    c.world.crash_once_at("submit.written")
    run = c.run_file("st", b"\n".join(lines(3)) + b"\n", settle=False)
    assert c.record(run)["state"] == runstate.STAGING
    assert c.json("cancel", run)["state"] == "staging"
    c.world.settle(["st"])
    report = orjson.loads(c.store.read_bytes("out-bucket", "reports/st.json"))
    assert report["rows"]["failedByReason"] == {"CANCELLED": 3} and not c.world.vertex.jobs


def _wire(admin: MemoryAdmin) -> None:
    for topic in ("uploads", "job-finished", "run-finished", "poll-ticks"):
        admin.add_topic(topic)
    admin.add_subscription("uploads-submit", "uploads", push_endpoint="https://submit.example",
                           dead_letter_topic="uploads-dead-letter")
    admin.add_subscription("job-finished-collect", "job-finished", push_endpoint="https://collect.example",
                           dead_letter_topic="job-finished-dead-letter")
    admin.add_subscription("uploads-dead-letter-watch", "uploads-dead-letter")
    admin.add_subscription("job-finished-dead-letter-watch", "job-finished-dead-letter")


def test_redrive_dry_run_counts_and_keeps_then_redrive_moves_them_back():
    c = Cli(DEAD_LETTER_SUBSCRIPTIONS="uploads-dead-letter-watch,job-finished-dead-letter-watch")
    _wire(c.admin)
    for n in range(3):
        c.admin.publish("uploads-dead-letter", b'{"name": "incoming/%d"}' % n, {"objectId": f"incoming/{n}"})
    c.admin.publish("job-finished-dead-letter", b'{"run": "r1"}', {})
    dry = c.json("redrive", "--dry-run")
    assert (dry["found"], dry["moved"]) == (4, 0) and len(c.admin.waiting("uploads-dead-letter-watch")) == 3
    assert not c.admin.pushed
    doc = c.json("redrive")
    assert (doc["found"], doc["moved"]) == (4, 4)
    assert [s["topics"] for s in doc["subscriptions"]] == [["uploads"], ["job-finished"]]
    assert [m.attributes["objectId"] for m in c.admin.pushed["uploads-submit"]] == [f"incoming/{n}" for n in range(3)]
    assert c.admin.pushed["job-finished-collect"][0].data == b'{"run": "r1"}'
    assert not c.admin.waiting("uploads-dead-letter-watch")
    assert "0 message(s) found" in c("redrive").stderr


def test_redrive_finds_the_dead_letter_subscriptions_from_the_wiring_or_says_which_setting():
    c = Cli()
    result = c("redrive")
    assert result.exit_code == 1 and "DEAD_LETTER_SUBSCRIPTIONS" in result.stderr
    _wire(c.admin)
    c.admin.publish("job-finished-dead-letter", b'{"run": "r1"}', {})
    doc = c.json("redrive")
    assert [s["subscription"] for s in doc["subscriptions"]] == ["job-finished-dead-letter-watch",
                                                                  "uploads-dead-letter-watch"]
    assert doc["moved"] == 1
    c.admin.add_subscription("orphan", "nowhere")
    result = c("redrive", "--subscription", "orphan")
    assert result.exit_code == 1 and "no subscription dead-letters into topic nowhere" in result.stderr


def test_doctor_checks_every_part_of_the_wiring_one_line_each():
    from batchctl._backends import Notification

    c = Cli(DEAD_LETTER_SUBSCRIPTIONS="uploads-dead-letter-watch")
    _wire(c.admin)
    c.buckets._notifications = {"in-bucket": [Notification("uploads", "incoming/", ("OBJECT_FINALIZE",),
                                                           "JSON_API_V1")]}
    doc = c.json("doctor")
    assert doc["ok"] and {ch["status"] for ch in doc["checks"]} == {"ok"}
    names = [ch["name"] for ch in doc["checks"]]
    assert names == ["config", "input bucket", "output bucket", "topic uploads", "topic job-finished",
                     "topic run-finished", "subscriptions", "push to submit", "push to collect",
                     "dead letters uploads-dead-letter-watch", "notification", "vertex", "pipeline state"]
    c.admin.topics.discard("run-finished")
    c.buckets.names.discard("out-bucket")
    c.buckets._notifications = None
    result = c("doctor")
    assert result.exit_code == 1
    lines_ = {line.split()[1] + " " + line.split()[2]: line for line in result.stdout.splitlines()}
    assert lines_["output bucket"].startswith("FAIL") and "OUTPUT_BUCKET" in lines_["output bucket"]
    assert lines_["topic run-finished"].startswith("FAIL") and "RUN_FINISHED_TOPIC" in lines_["topic run-finished"]
    assert result.stdout.count("\n") == len(names) and "skip  notification" in result.stdout


def test_verify_says_ok_or_names_what_is_wrong():
    c = Cli(MAX_ROWS_PER_JOB=2)
    run = c.run_file("v", BODY)
    ok = c("verify", run)
    assert ok.exit_code == 0 and ok.stdout.startswith(f"ok: run {run}: all 5 rows")
    results = c.store.read_bytes("out-bucket", "results/v.jsonl").splitlines()
    c.store.put("out-bucket", "results/v.jsonl", b"\n".join(results[1:] + results[:1] * 2) + b"\n")
    doc = c.json("verify", run, code=1)
    assert not doc["ok"] and any("more than once" in p for p in doc["problems"])
    assert any("report says 4 succeeded" in p for p in doc["problems"])
    assert c("verify", run).exit_code == 1


def test_verify_checks_one_vertex_job_per_part():
    c = Cli()
    run = c.run_file("j", b"\n".join(lines(2)) + b"\n")
    [job] = c.world.vertex.jobs.values()
    c.world.vertex.jobs["projects/p/locations/l/batchPredictionJobs/extra"] = dict(job)
    doc = c.json("verify", run, code=1)
    assert any("more than once" in p or "more than one Vertex job" in p for p in doc["problems"])
    assert c.json("verify", run, "--no-jobs")["ok"]


def test_logs_locally_reads_the_run_s_lines_from_the_function_logs(tmp_path):
    c = Cli(VERTEX_BASE_URL="http://127.0.0.1:1")
    run = "r" + "a" * 20
    labels = "logging.googleapis.com/labels"
    (tmp_path / "submit.log").write_text("\n".join([
        "[gunicorn] booting",
        json.dumps({"severity": "INFO", "event": "run.received", "message": "got it", "time": "2026-01-01T00:00:01Z",
                    labels: {"run": run, "execution_id": "x"}}),
        json.dumps({"severity": "INFO", "event": "run.received", "message": "other", "time": "2026-01-01T00:00:02Z",
                    labels: {"run": "r" + "b" * 20}}),
    ]) + "\n")
    (tmp_path / "collect.log").write_text(json.dumps({
        "severity": "ERROR", "event": "rows.failed", "message": "3 rows", "time": "2026-01-01T00:00:00Z",
        labels: {"run": run}}) + "\n")
    doc = c.json("logs", run, "--logs-dir", str(tmp_path))
    assert [(e["function"], e["event"]) for e in doc["entries"]] == [("collect", "rows.failed"),
                                                                      ("submit", "run.received")]
    text = c("logs", run, "--logs-dir", str(tmp_path)).stdout
    assert "rows.failed" in text.splitlines()[0] and "got it" in text
    missing = c("logs", run, "--logs-dir", str(tmp_path / "none"))
    assert missing.exit_code == 2 and "make up" in missing.stderr


def test_logs_in_the_cloud_prints_the_filter_of_the_run():
    c = Cli()
    run = c.run_file("l", b"\n".join(lines(1)) + b"\n")
    result = c("logs", "l")
    assert result.exit_code == 0
    assert result.stdout.strip() == f'resource.type="cloud_run_revision" AND labels.run="{run}"'
    assert "gcloud logging read" in result.stderr
    assert c.json("logs", run)["filter"].endswith(f'labels.run="{run}"')


def test_a_transient_storage_failure_is_exit_3():
    from shared.errors import TransientError

    class Down:
        def list_page(self, *a, **k):
            raise TransientError("Cloud Storage: 503 Service Unavailable")

    c = Cli()
    ops = c.ops()
    ops.store = Down()
    result = CliRunner().invoke(cli, ["runs"], obj=ops)
    assert result.exit_code == 3 and "transient: try again later" in result.stderr


def test_a_record_written_before_the_index_is_still_listed():
    c = Cli()
    run = c.run_file("old", b"\n".join(lines(1)) + b"\n")
    record = c.record(run)
    record.pop("_i")
    c.store.put("out-bucket", layout.run_state_name(run), orjson.dumps(record))  # no metadata
    [listed] = c.json("runs")["runs"]
    assert listed["run"] == run and listed["label"] == "succeeded"


def test_validate_and_postprocess_round_trip_a_file(tmp_path: Path):
    c = Cli()
    source = tmp_path / "in.jsonl"
    source.write_bytes(BODY)
    staged = c.json("validate", str(source), "--out", str(tmp_path / "v"), "--max-rows", "2")
    assert (staged["rows"], staged["valid"], staged["invalid"]) == (5, 4, 1)
    assert [p["rows"] for p in staged["parts"]] == [2, 2]
    predictions = []
    for part in staged["parts"]:
        for raw in Path(part["file"]).read_bytes().splitlines():
            line = orjson.loads(raw)
            if line["gbp_row"] == "r4":
                continue  # never came back
            line.update(status="", response={"candidates": [{"content": {"parts": [{"text": "ok"}]},
                                                             "finishReason": "STOP"}],
                                             "usageMetadata": {"totalTokenCount": 2}})
            predictions.append(orjson.dumps(line))
    (tmp_path / "pred.jsonl").write_bytes(b"\n".join(predictions) + b"\n")
    out = c.json("postprocess", str(tmp_path / "pred.jsonl"), "--out", str(tmp_path / "p"), "--name", "in",
                 *[a for part in staged["parts"] for a in ("--staged", part["file"])],
                 "--validation-errors", staged["errors"])
    assert out["report"]["rows"]["total"] == 5 and out["report"]["rows"]["succeeded"] == 3
    assert out["report"]["rows"]["failedByStage"] == {"missing": 1, "validation": 1}
    results = Path(out["files"]["results"]).read_bytes()
    errors = Path(out["files"]["errors"]).read_bytes()
    assert verify.check("in", verify.expected_rows(BODY), out["report"], results, errors) == []
    # without the staged parts only the rows in the predictions count
    alone = c.json("postprocess", str(tmp_path / "pred.jsonl"), "--out", str(tmp_path / "q"))
    assert alone["report"]["rows"] == {"total": 3, "succeeded": 3, "failed": 0, "failedByStage": {},
                                       "failedByReason": {}}
    text = c("postprocess", str(tmp_path / "pred.jsonl"), "--out", str(tmp_path / "q")).stdout
    assert "3 total, 3 succeeded, 0 failed" in text


def test_validate_exits_1_when_no_line_is_valid_and_postprocess_needs_row_ids(tmp_path: Path):
    c = Cli()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"nope\n")
    result = c("validate", str(bad), "--out", str(tmp_path / "v"))
    assert result.exit_code == 1 and "no line is a valid request" in result.stderr
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_bytes(b'{"request": {}, "response": {}}\n')
    result = c("postprocess", str(foreign), "--out", str(tmp_path / "p"))
    assert result.exit_code == 1 and "row id" in result.stderr


def test_logs_run_in_the_cloud_needs_gcloud(monkeypatch):
    c = Cli()
    monkeypatch.setattr("batchctl._logs.shutil.which", lambda name: None)
    result = c("logs", "r" + "e" * 20, "--run")
    assert result.exit_code == 2 and "gcloud is not on PATH" in result.stderr


def test_drop_refuses_an_empty_file(tmp_path):
    c = Cli()
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    doc = c.json("drop", str(empty), code=1)
    assert doc["refused"][0]["refused"] == "it has no rows" and doc["dropped"] == []
