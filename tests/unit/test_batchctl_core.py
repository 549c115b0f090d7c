"""The core pieces batchctl stands on: the shared row-accounting checker, the run index, the local-directory
store, the cancellation rules the functions follow, exit codes and prices."""

from __future__ import annotations

import io

import orjson
import pytest

from batchctl import _pricing
from batchctl._exit import Exit, Failed, describe, exit_code
from shared import cancel, cancellation, layout, runindex, runstate, scheduler, verify
from shared.errors import ConfigError, PermanentError, StateConflictError, TransientError, VertexTransientError
from shared.lines import iter_lines
from shared.storage import mutate_json
from shared.storage.base import INDEX_KEY, ObjectMissing
from shared.storage.localfs import LocalFsStore
from shared.storage.memory import MemoryStore
from shared.validation import LineValidator
from tests.unit.flows import lines
from tests.unit.healing import World

# --------------------------------------------------------------------------------------------- the checker


@pytest.mark.parametrize("line", [b"", b"  ", b"\t\r", b"\r", b"\xef\xbb\xbf", b"\xef\xbb\xbf  ", b"\x0c",
                                  b"\x0b", b"{}", b" x", b"\xa0"])
def test_the_checker_and_the_validator_agree_on_what_a_blank_line_is(line):
    for row in (1, 2):
        assert verify.is_blank(row, line) == (LineValidator().validate(row, line) is None)


def test_input_rows_streams_the_rows_of_an_input_as_the_pipeline_numbers_them():
    data = b'{"a":1}\n\n  \r\n{"b":2}\nnot json\n'
    assert list(verify.input_rows(iter_lines(io.BytesIO(data)))) == verify.expected_rows(data) == [1, 4, 5]


def test_check_takes_bytes_raw_lines_or_parsed_lines_alike():
    report = {"rows": {"total": 3, "succeeded": 2, "failed": 1}}
    results, errors = [{"row": 4}, {"row": 1}], [{"row": 3}]
    raw = [orjson.dumps(r) for r in results]
    assert verify.check("x", [1, 3, 4], report, results, errors) == []
    assert verify.check("x", iter([1, 3, 4]), report, raw, (orjson.dumps(e) for e in errors)) == []
    assert verify.check("x", [1, 3, 4], report, b"\n".join(raw) + b"\n", orjson.dumps(errors[0])) == []


def test_check_spells_out_a_few_rows_and_counts_the_rest_with_bounded_memory():
    report = {"rows": {"total": 100, "succeeded": 0, "failed": 3}}
    errors = [{"row": 5}, {"row": 10**12}, {"row": "x"}]
    problems = verify.check("x", range(1, 101), report, [], errors)
    assert problems[0] == f"x: rows missing from results and errors: {list(range(1, 5)) + list(range(6, 22))} " \
                          "and 79 more"
    assert problems[1] == "x: rows that are not input rows: [1000000000000, 'x']"


# --------------------------------------------------------------------------------------------- the run index


def _record(run: str, received: str, state: str = runstate.RUNNING) -> dict:
    rec = runstate.new_run(run=run, bucket="in", name=f"incoming/{run}.jsonl", generation=1, rel=run, model="m",
                           now=received)
    rec = runstate.staged(rec, parts={"p0001-a1": runstate.new_part(1, 1, 4, 100)}, total=5,
                          validation={"failed": 1, "byReason": {"invalid_json": 1}}, note=None, now=0.0)
    if state == runstate.DONE:
        rec = runstate.part_collected(rec, "p0001-a1", {"succeeded": 4, "failedByStage": {}}, None, None, 1.0)
        rec = runstate.finished(rec, now=received, superseded=False)
    return rec


def test_every_transition_renews_the_index_that_the_listing_carries():
    store = MemoryStore()
    rec = _record("r" + "1" * 20, "2026-01-01T00:00:00.000+00:00")
    assert rec[INDEX_KEY]["state"] == "running" and rec[INDEX_KEY]["done"] == "1"
    store.write_json("out", layout.run_state_name(rec["run"]), rec, if_generation_match=0)
    [listed] = store.list_page("out", runindex.RUNS_PREFIX)
    assert listed.metadata == rec[INDEX_KEY]
    mutate_json(store, "out", layout.run_state_name(rec["run"]),
                lambda r: runstate.cancelled(r, now="2026-01-01T00:01:00.000+00:00", reason="x"))
    [summary] = runindex.list_runs(store, "out")
    assert summary.cancelled == "2026-01-01T00:01:00.000+00:00" and summary.label == "cancelling"
    assert (summary.total, summary.done, summary.failed, summary.jobs) == (5, 1, 1, 1)


def test_select_filters_by_state_outcome_age_and_input_newest_first():
    done = runindex.RunSummary.from_record(_record("r" + "a" * 20, "2026-01-01T00:00:00+00:00", runstate.DONE))
    running = runindex.RunSummary.from_record(_record("r" + "b" * 20, "2026-01-02T00:00:00+00:00"))
    now = running.age_seconds(0) * -1 + 3600  # an hour after the newer one
    runs = [done, running]
    assert runindex.select(runs, now=now) == [running, done]
    assert runindex.select(runs, state="open", now=now) == [running]
    assert runindex.select(runs, state="partial", now=now) == [done] and done.label == "partial"
    assert runindex.select(runs, state="failed", now=now) == []
    assert runindex.select(runs, since_seconds=7200, now=now) == [running]
    assert runindex.select(runs, input_uri=done.input, now=now) == [done]


# --------------------------------------------------------------------------------------------- local store


@pytest.fixture(params=["memory", "localfs"])
def store(request, tmp_path):
    return MemoryStore() if request.param == "memory" else LocalFsStore(tmp_path)


def test_stores_create_if_absent_and_compare_and_swap(store):
    gen = store.write_json("b", "state/a.json", {"n": 1}, if_generation_match=0)
    assert gen and store.write_json("b", "state/a.json", {"n": 9}, if_generation_match=0) is None
    found = store.read_json("b", "state/a.json")
    assert found.value == {"n": 1} and found.generation == gen
    newer = store.write_json("b", "state/a.json", {"n": 2}, if_generation_match=gen)
    assert newer and newer != gen
    assert store.write_json("b", "state/a.json", {"n": 3}, if_generation_match=gen) is None
    assert store.read_json("b", "state/none.json") is None and store.read_bytes("b", "none") is None


def test_stores_pin_reads_to_a_generation_and_drop_a_failed_write(store):
    old = store.write_bytes("b", "in/x.jsonl", b"old\n")
    new = store.write_bytes("b", "in/x.jsonl", b"new\n")
    with store.open_read("b", "in/x.jsonl", new) as stream:
        assert stream.read() == b"new\n"
    with pytest.raises(ObjectMissing), store.open_read("b", "in/x.jsonl", old) as stream:
        stream.read()
    with pytest.raises(RuntimeError), store.open_write("b", "out/y.jsonl") as out:
        out.write(b"half")
        raise RuntimeError("died")
    assert store.object_info("b", "out/y.jsonl") is None
    assert store.object_info("b", "in/x.jsonl")["generation"] == new


def test_stores_list_pages_in_name_order_and_compose_at_the_expected_generation(store):
    for name in ("a/1", "a/2", "a/10", "b/1", "a/sub/3"):
        store.write_bytes("b", name, name.encode())
    assert list(store.list_names("b", "a/")) == ["a/1", "a/10", "a/2", "a/sub/3"]
    page = store.list_page("b", "a/", start_after="a/10", limit=2)
    assert [x.name for x in page] == ["a/2", "a/sub/3"]
    assert store.compose("b", ["a/1", "a/2"], "c/all", "scratch/") is not None
    assert store.read_bytes("b", "c/all") == b"a/1a/2"
    assert store.compose("b", ["a/1"], "c/all", "scratch/", if_generation_match=0) is None
    with pytest.raises(ObjectMissing):
        store.compose("b", ["a/none"], "c/other", "scratch/")
    store.delete("b", "c/all")
    store.delete("b", "c/all")
    assert store.object_info("b", "c/all") is None


def test_the_local_store_refuses_names_that_leave_its_directory(tmp_path):
    store = LocalFsStore(tmp_path)
    for name in ("../x", "a/../../x", "/etc/passwd", "a//b", ""):
        with pytest.raises(ValueError):
            store.write_bytes("b", name, b"x")


# --------------------------------------------------------------------------------------------- cancellation


def test_rows_a_cancelled_run_would_retry_end_in_errors_with_their_own_failure():
    world = World(MAX_ROWS_PER_JOB=10, MAX_ATTEMPTS=3)
    world.outcome = lambda line: '{"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}}'
    event = world.drop("incoming/c.jsonl", b"\n".join(lines(2)) + b"\n")
    run = layout.run_id(event.bucket, event.name, event.generation)
    world.tick()
    world.run_jobs()
    world.tick()  # job-finished published, not delivered yet
    # The operator cancels before the finished job is collected.
    mutate_json(world.store, "out-bucket", layout.run_state_name(run),
                lambda r: runstate.cancelled(r, now="2026-01-01T00:00:00+00:00"))
    world.settle(["c"])
    report = orjson.loads(world.store.read_bytes("out-bucket", "reports/c.json"))
    assert report["rows"]["failedByReason"] == {"UNAVAILABLE": 2} and report["retriedRows"] == 0
    errors = [orjson.loads(x) for x in world.store.read_bytes("out-bucket", "errors/c.jsonl").splitlines()]
    assert {(e["stage"], e["retryable"], e["attempts"]) for e in errors} == {("prediction", True, 1)}
    assert len(world.vertex.jobs) == 1  # the retryable rows were not sent again


def test_a_cancel_racing_a_collect_that_adds_a_retry_part_still_ends_the_run_without_a_new_job():
    world = World(MAX_ROWS_PER_JOB=10, MAX_ATTEMPTS=3)
    world.outcome = lambda line: '{"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}}'
    event = world.drop("incoming/race.jsonl", b"\n".join(lines(2)) + b"\n")
    run = layout.run_id(event.bucket, event.name, event.generation)

    def cancel_mid_collect(step: str) -> None:  # collect read the record before the cancel
        if step == "collect.written":
            mutate_json(world.store, "out-bucket", layout.run_state_name(run),
                        lambda r: runstate.cancelled(r, now="2026-01-01T00:00:00+00:00"))

    world.p.checkpoint = cancel_mid_collect
    world.settle(["race"])
    report = orjson.loads(world.store.read_bytes("out-bucket", "reports/race.json"))
    assert report["retriedRows"] == 2 and report["rows"]["failedByReason"] == {"CANCELLED": 2}
    assert [j["part"] for j in report["jobs"]] == ["p0001-a1", "p0001-a2"] and len(world.vertex.jobs) == 1


def test_the_scheduler_announces_a_queued_part_of_a_cancelled_run_instead_of_creating_its_job():
    world = World(MAX_ROWS_PER_JOB=1, MAX_ACTIVE_JOBS=2)
    world.crash_once_at("submit.staged")  # staged, nothing queued yet
    event = world.drop("incoming/q.jsonl", b"\n".join(lines(2)) + b"\n")
    run = layout.run_id(event.bucket, event.name, event.generation)
    record = mutate_json(world.store, "out-bucket", layout.run_state_name(run),
                         lambda r: runstate.cancelled(r, now="2026-01-01T00:00:00+00:00"))
    scheduler.enqueue(world.p, record, ["p0001-a1", "p0002-a1"])  # as a repair would queue them
    before = len(world.publisher.messages)
    assert scheduler.drain(world.p) == 0  # reserved, then dropped and announced: no job
    announced = [m for _, m, _ in world.publisher.messages[before:]]
    assert announced == [cancellation.announcement(run, part, {"at": "2026-01-01T00:00:00+00:00", "reason": None})
                         for part in ("p0001-a1", "p0002-a1")]
    assert announced[0]["error"]["httpCode"] == 499 and not world.vertex.jobs
    assert not scheduler.read(world.p)["active"]
    world.settle(["q"])
    report = orjson.loads(world.store.read_bytes("out-bucket", "reports/q.json"))
    assert report["rows"]["failedByReason"] == {"CANCELLED": 2}


@pytest.mark.parametrize("cancel_fails", [False, True])
def test_a_cancel_that_lists_the_jobs_while_one_is_being_created_still_stops_it(cancel_fails):
    # Submit read the run record before the cancel; the cancel lists the run's jobs before the create lands.
    # The record is read again after the create, and the job just made is cancelled.
    world = World(MAX_ROWS_PER_JOB=10)
    create = world.vertex.create
    cancelled = []

    def create_after_a_cancel(**kwargs):
        run = kwargs["labels"]["run"]
        cancelled.append(cancel.cancel(world.p, run, reason="changed my mind"))
        if cancel_fails:
            world.vertex.cancel = lambda name: (_ for _ in ()).throw(VertexTransientError("503"))
        return create(**kwargs)

    world.vertex.create = create_after_a_cancel
    world.drop("incoming/late.jsonl", b"\n".join(lines(3)) + b"\n")
    assert not cancelled[0].jobs and cancelled[0].parts == ("p0001-a1",)  # no job yet: the part is announced
    [job] = world.vertex.jobs.values()
    assert job["state"] == ("JOB_STATE_PENDING" if cancel_fails else "JOB_STATE_CANCELLED")
    world.settle(["late"])
    report = orjson.loads(world.store.read_bytes("out-bucket", "reports/late.json"))
    rows = report["rows"]
    assert rows["total"] == rows["succeeded"] + rows["failed"] == 3 and len(world.vertex.jobs) == 1
    # A job left running (its cancel failed) and done before the part is collected gives its rows: once.
    assert rows["failedByReason"] == ({} if cancel_fails else {"CANCELLED": 3})


def test_the_cancelled_transition_is_once_and_only_while_work_remains():
    rec = _record("r" + "c" * 20, "2026-01-01T00:00:00+00:00")
    new = runstate.cancelled(rec, now="t", reason="why")
    assert new["cancelled"] == {"at": "t", "reason": "why"} and new["note"] == "cancelled by an operator at t (why)"
    assert runstate.cancelled(new, now="t2") is None
    done = _record("r" + "d" * 20, "2026-01-01T00:00:00+00:00", runstate.DONE)
    assert runstate.cancelled(done, now="t") is None


# --------------------------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(("exc", "code"), [
    (ConfigError("X is required"), Exit.USAGE),
    (PermanentError("no run"), Exit.PERMANENT),
    (TransientError("503"), Exit.TRANSIENT),
    (StateConflictError("contended"), Exit.TRANSIENT),
    (VertexTransientError("429"), Exit.TRANSIENT),
    (Failed("refused"), Exit.PERMANENT),
    (Failed("bad flag", Exit.USAGE), Exit.USAGE),
    (FileNotFoundError("x.jsonl"), Exit.USAGE),
    (ConnectionRefusedError("refused"), Exit.TRANSIENT),
    (ValueError("bug"), Exit.PERMANENT),
])
def test_exit_codes_are_decided_in_one_place(exc, code):
    assert exit_code(exc) == code
    assert "\n" not in describe(exc)


def test_client_errors_map_to_exit_codes_too():
    import requests
    from google.api_core import exceptions as gexc

    assert exit_code(gexc.ServiceUnavailable("down")) == Exit.TRANSIENT
    assert exit_code(gexc.NotFound("gone")) == Exit.PERMANENT
    try:
        try:
            raise requests.exceptions.ConnectionError("Max retries exceeded")
        except requests.exceptions.ConnectionError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert exit_code(outer) == Exit.TRANSIENT and "cannot reach the service" in describe(outer)


# --------------------------------------------------------------------------------------------- prices


def test_prices_match_versioned_and_qualified_model_names_and_overrides_win():
    assert _pricing.price_of("gemini-2.5-flash-001")[0] == "gemini-2.5-flash"
    assert _pricing.price_of("publishers/google/models/gemini-2.5-flash-lite")[0] == "gemini-2.5-flash-lite"
    assert _pricing.price_of("mystery") is None
    assert _pricing.price_of("gemini-2.5-flash", {"gemini-2.5-flash": (1.0, 2.0)}) == ("gemini-2.5-flash", 1.0, 2.0)
    cost = _pricing.estimate("gemini-2.5-flash", {"prompt": 1_000_000, "candidates": 500_000, "total": 2_000_000})
    assert cost.usd == pytest.approx(0.15 + 1.0 * 1.25)  # thinking tokens bill as output
    with pytest.raises(ValueError):
        _pricing.parse_overrides(["gemini=cheap"])
