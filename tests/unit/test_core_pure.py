"""Pure pieces: configuration, naming, line streaming, joining prediction lines, run state and reports."""

import io

import orjson
import pytest

from shared import joining, layout, report, runstate
from shared.config import Config
from shared.errors import ConfigError
from shared.lines import TooLong, iter_lines

ENV = {"GOOGLE_CLOUD_PROJECT": "p", "INPUT_BUCKET": "in-b", "OUTPUT_BUCKET": "out-b"}


def test_config_defaults_and_overrides():
    cfg = Config.from_env(ENV)
    assert (cfg.location, cfg.input_prefix, cfg.max_rows_per_job, cfg.max_attempts) == \
        ("us-central1", "incoming/", 200_000, 3)
    cfg = Config.from_env({**ENV, "INPUT_PREFIX": "drop", "MAX_ACTIVE_JOBS": "2", "MODEL": "gemini-2.5-pro"})
    assert (cfg.input_prefix, cfg.max_active_jobs, cfg.model) == ("drop/", 2, "gemini-2.5-pro")
    with pytest.raises(AttributeError):
        cfg.model = "x"  # frozen


@pytest.mark.parametrize(("env", "names"), [
    ({"INPUT_BUCKET": "in-b", "OUTPUT_BUCKET": "out-b"}, "GOOGLE_CLOUD_PROJECT"),
    ({**ENV, "MAX_ACTIVE_JOBS": "many"}, "MAX_ACTIVE_JOBS"),
    ({**ENV, "MAX_ROWS_PER_JOB": "300000"}, "MAX_ROWS_PER_JOB"),
    ({**ENV, "OUTPUT_BUCKET": "gs://out-b"}, "OUTPUT_BUCKET"),
    ({**ENV, "INPUT_BUCKET": "Bad_Bucket"}, "INPUT_BUCKET"),
    ({**ENV, "PIPELINE_LABEL": "Has Spaces"}, "PIPELINE_LABEL"),
])
def test_bad_configuration_names_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        Config.from_env(env)


def test_relative_names_keep_folders_and_drop_only_a_final_jsonl():
    assert layout.relative_name("incoming/a/b.jsonl", "incoming/") == "a/b"
    assert layout.relative_name("incoming/x.jsonl.jsonl", "incoming/") == "x.jsonl"
    assert layout.relative_name("incoming/notes.txt", "incoming/") == "notes.txt"
    assert layout.results_name("a/b") == "results/a/b.jsonl" and layout.report_name("a/b") == "reports/a/b.json"


def test_run_ids_are_stable_label_values():
    a = layout.run_id("b", "incoming/x.jsonl", 1)
    assert a == layout.run_id("b", "incoming/x.jsonl", 1) != layout.run_id("b", "incoming/x.jsonl", 2)
    assert a[0] == "r" and a.islower() and len(layout.job_labels("gemini-batch-pipeline", a, "p0001-a1")["part"]) <= 63
    assert layout.next_attempt("p0003-a1") == "p0003-a2"


def test_iter_lines_keeps_physical_numbering_across_reads():
    data = b"a\n\nbb\r\nccc"
    assert list(iter_lines(io.BytesIO(data), read_size=2)) == [b"a", b"", b"bb\r", b"ccc"]
    assert list(iter_lines(io.BytesIO(b"x\n"))) == [b"x"]


def test_iter_lines_reports_an_overlong_line_without_holding_it():
    data = b"ok\n" + b"y" * 5000 + b"\nafter\n"
    out = list(iter_lines(io.BytesIO(data), max_line=1000, read_size=300))
    assert out[0] == b"ok" and isinstance(out[1], TooLong) and out[1].length == 5000 and out[2] == b"after"


def test_staged_lines_carry_letter_prefixed_string_ids():
    line = orjson.loads(joining.staged_line(17, {"contents": []}, True, 42))
    assert line["gbp_row"] == "r17" and line["gbp_key"] == "k42"
    assert joining.row_of(line) == 17 and joining.key_of(line) == (True, 42)
    assert joining.key_of(orjson.loads(joining.staged_line(1, {}, False, None))) == (False, None)
    with pytest.raises(joining.JoinError):
        joining.row_of({"gbp_row": 17})


def test_classify_the_documented_success_and_failure_lines():
    success = {"gbp_row": "r3", "status": "", "processed_time": "2024-11-01T18:13:16.826+00:00",
               "request": {"contents": []},
               "response": {"candidates": [{"avgLogprobs": -0.57, "content": {"parts": [{"text": "Hi"}],
                                                                              "role": "model"},
                                            "finishReason": "STOP"}],
                            "modelVersion": "gemini-2.0-flash-001@default",
                            "usageMetadata": {"candidatesTokenCount": 36, "promptTokenCount": 29180,
                                              "totalTokenCount": 29216}}}
    outcome = joining.classify(success)
    assert isinstance(outcome, joining.Success) and outcome.row == 3
    assert joining.first_text(outcome.response) == "Hi" and joining.usage_tokens(outcome.response) == (29180, 36, 29216)
    failed = {"gbp_row": "r4", "status": 'Bad Request: {"error": {"code": 400, "message": "Please use a valid role: '
              'user, model.", "status": "INVALID_ARGUMENT"}}', "request": {}}
    outcome = joining.classify(failed)
    assert outcome == joining.Failure(4, 400, "INVALID_ARGUMENT", "Please use a valid role: user, model.", False)
    assert joining.classify({"gbp_row": "r5", "status": "Too Many Requests: {\"error\": {\"code\": 429}}"}).retryable
    assert joining.classify({"gbp_row": "r6", "status": "weird"}).retryable  # unknown = system error


def test_rows_failed_with_one_status_share_its_parsed_message(monkeypatch):
    # Collect keeps every failed row until its second pass: one copy of a status's message, not one a row.
    monkeypatch.setattr(joining, "_PARSED", {})
    monkeypatch.setattr(joining, "_PARSED_MAX", 3)
    statuses = ['Bad Request: {"error": {"code": 400, "message": "Request contains an invalid argument.", '
                '"status": "INVALID_ARGUMENT"}}', "Too Many Requests: 429", "weird", "", None]
    a, b = (joining.classify({"gbp_row": f"r{row}", "status": statuses[0]}) for row in (1, 2))
    assert a.message == "Request contains an invalid argument." and a.message is b.message
    for row in range(1, 60):
        status = statuses[row % len(statuses)]
        failure = joining.classify({"gbp_row": f"r{row}", "status": status})
        code, name, message = joining.parse_status(status) if status else \
            (500, "INTERNAL", "row came back without a response")
        assert failure == joining.Failure(row, code, name, message,
                                          code in joining.RETRYABLE_HTTP or name in joining.RETRYABLE_STATUS)
        assert len(joining._PARSED) <= 3
    with pytest.raises(AttributeError):  # a status of another type: as before the cache
        joining.classify({"gbp_row": "r1", "status": {"code": 400}})


def test_job_failures_map_grpc_codes_and_retryability():
    assert joining.job_failure("JOB_STATE_FAILED", 3, "Failed to import data.") == \
        joining.Failure(0, 400, "INVALID_ARGUMENT", "job ended FAILED: Failed to import data.", False)
    assert joining.job_failure("JOB_STATE_FAILED", 13, "System error.").retryable
    assert joining.job_failure("JOB_STATE_CANCELLED", None, None).retryable
    assert not joining.job_failure("JOB_STATE_FAILED", 7, "no permission").retryable


def test_error_lines_cut_raw_text_at_10_kb():
    line = orjson.loads(joining.error_line(2, False, None, stage="validation", code=400, status="INVALID_ARGUMENT",
                                           message="m", retryable=False, attempts=0, line="é" * 10_000))
    assert len(line["line"].encode()) <= 10 * 1024 and "request" not in line and "key" not in line


def test_run_outcomes_and_report():
    record = runstate.new_run(run="r1", bucket="b", name="incoming/x.jsonl", generation=5, rel="x",
                              model="gemini-2.5-flash", now="2026-11-21T10:00:00.000+00:00")
    record = runstate.staged(record, parts={"p0001-a1": runstate.new_part(1, 1, 3, 300)}, total=4,
                             validation={"failed": 1, "byReason": {"invalid_json": 1}}, note=None, now=5.0)
    assert record["state"] == runstate.RUNNING and runstate.staged(record, parts={}, total=0, validation={},
                                                                    note=None, now=6.0) is None
    outcome = {"succeeded": 2, "retried": 0, "failedByStage": {"prediction": 1},
               "failedByReason": {"INVALID_ARGUMENT": 1}, "tokens": {"prompt": 6, "candidates": 10, "total": 16},
               "jobState": "JOB_STATE_SUCCEEDED", "jobError": None, "job": "projects/p/l/j/1"}
    record = runstate.part_collected(record, "p0001-a1", outcome, None, None, 7.0)
    assert record["state"] == runstate.FINALIZING and record["finalizingSince"] == 7.0
    assert runstate.part_collected(record, "p0001-a1", outcome, None, None, 8.0) is None
    doc = report.build(record, finished="2026-11-21T10:00:12.500+00:00", results_uri="gs://o/results/x.jsonl",
                       errors_uri="gs://o/errors/x.jsonl")
    assert doc["state"] == "partial" and doc["seconds"] == 12.5
    assert doc["rows"] == {"total": 4, "succeeded": 2, "failed": 2,
                           "failedByStage": {"prediction": 1, "validation": 1},
                           "failedByReason": {"INVALID_ARGUMENT": 1, "invalid_json": 1}}
    assert doc["jobs"] == [{"part": "p0001-a1", "name": "projects/p/l/j/1", "attempt": 1, "rows": 3,
                            "state": "JOB_STATE_SUCCEEDED", "error": None}]
