"""The GCS limits proxy's pure rules: which call writes which object, the token bucket, the 10 s peak, switches,
and how a resumable upload session takes its chunks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from local.gcs_limits import SPECS, SwitchError
from local.gcs_limits._ledger import Ledger, Outcome, RateLimiter
from local.gcs_limits._routes import Kind, classify, first_part_name, multipart_boundary, upload_id_of
from local.gcs_limits._switches import Switches, coerce, from_env
from local.gcs_limits._uploads import Sessions, Step, content_range_of, plan, range_header
from local.gcs_limits._wire import ClientGone

README = Path(__file__).resolve().parents[2] / "local" / "gcs_limits" / "README.md"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("POST", "/upload/storage/v1/b/bk/o", {"uploadType": "media", "name": "a/b"}, (Kind.MUTATION, "bk", "a/b")),
    ("POST", "/upload/storage/v1/b/bk/o", {"uploadType": "multipart"}, (Kind.MULTIPART, "bk", None)),
    ("POST", "/upload/storage/v1/b/bk/o", {"uploadType": "resumable"}, (Kind.RESUMABLE_START, "bk", None)),
    ("PATCH", "/storage/v1/b/bk/o/a%2Fb%20c", {}, (Kind.MUTATION, "bk", "a/b c")),
    ("PUT", "/storage/v1/b/bk/o/x", {}, (Kind.MUTATION, "bk", "x")),
    ("DELETE", "/storage/v1/b/bk/o/x", {}, (Kind.MUTATION, "bk", "x")),
    ("POST", "/storage/v1/b/bk/o/x/acl", {}, (Kind.MUTATION, "bk", "x")),
    ("POST", "/storage/v1/b/bk/o/out%2Fjoined/compose", {}, (Kind.MUTATION, "bk", "out/joined")),
    ("POST", "/storage/v1/b/src/o/a%2Fb/rewriteTo/b/dst/o/c%2Fd", {}, (Kind.MUTATION, "dst", "c/d")),
    ("POST", "/storage/v1/b/src/o/a/rewriteTo/b/dst/o/d", {"rewriteToken": "t"}, (Kind.READ, "dst", None)),
    ("POST", "/storage/v1/b/src/o/a/copyTo/b/dst/o/e", {}, (Kind.MUTATION, "dst", "e")),
    ("GET", "/storage/v1/b/bk/o/x", {"alt": "media"}, (Kind.READ, "bk", "x")),
    ("GET", "/download/storage/v1/b/bk/o/x", {"alt": "media"}, (Kind.READ, "bk", "x")),
    ("GET", "/storage/v1/b/bk/o", {}, (Kind.READ, None, None)),
    ("POST", "/storage/v1/b", {"project": "p"}, (Kind.READ, None, None)),
    ("DELETE", "/storage/v1/b/bk", {}, (Kind.READ, None, None)),
    ("GET", "/emulator/v1/stats", {}, (Kind.ADMIN, None, None)),
])
def test_each_call_is_sorted_by_the_object_it_writes(method, path, query, expected):
    call = classify(method, path, query)
    assert (call.kind, call.bucket, call.name) == expected


def test_every_later_request_of_a_resumable_session_goes_to_the_session():
    query = {"uploadType": "resumable", "upload_id": "u1", "name": "big"}
    for method in ("PUT", "POST", "DELETE"):
        call = classify(method, "/upload/storage/v1/b/bk/o", query)
        assert (call.kind, call.bucket, call.upload_id, call.name) == (Kind.RESUMABLE_PUT, "bk", "u1", "big")
    assert upload_id_of("http://h:1/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=ab%2Bc") == "ab+c"
    assert upload_id_of("http://h:1/upload") is None


@pytest.mark.parametrize(("held", "total", "content_range", "length", "expected"), [
    (0, None, "bytes 0-9/*", 10, (Step.APPEND, 0, 10, None)),
    (10, None, "bytes 10-19/*", 10, (Step.APPEND, 0, 10, None)),
    (10, None, "bytes 0-9/*", 10, (Step.APPEND, 10, 10, None)),  # sent again after a lost reply: nothing new
    (10, None, "bytes 5-14/*", 10, (Step.APPEND, 5, 10, None)),  # overlaps: only the last 5 bytes are new
    (10, None, "bytes 10-19/30", 10, (Step.APPEND, 0, 10, 30)),  # the size is known, more is to come
    (10, None, "bytes 10-19/20", 10, (Step.COMMIT, 0, 10, 20)),  # the last byte
    (20, None, "bytes 10-19/20", 10, (Step.COMMIT, 10, 10, 20)),  # the last request again, never committed
    (20, None, "bytes */20", 0, (Step.COMMIT, 0, 0, 20)),  # every byte is here: finalize
    (10, None, "bytes */20", 0, (Step.STATUS, 0, None, None)),  # not yet: how far did it get
    (10, None, "bytes */*", 0, (Step.STATUS, 0, None, None)),
    (0, None, None, 5, (Step.COMMIT, 0, 5, 5)),  # no Content-Range: the whole object in one request
    (0, None, None, None, (Step.COMMIT, 0, None, None)),  # ... chunked: its size is what arrives
])
def test_a_session_request_adds_bytes_reports_progress_or_commits_by_the_bytes_held(
        held, total, content_range, length, expected):
    step = plan(held, total, content_range, length)
    assert (step.step, step.skip, step.expect, step.total) == expected


@pytest.mark.parametrize(("held", "total", "content_range", "length", "says"), [
    (10, None, "bytes 20-29/*", 10, "exceeds already uploaded size of 10 byte(s)"),  # a gap
    (0, None, "bytes 0-9/*", 11, "announces 10 bytes, the body has 11"),
    (0, 30, "bytes 0-9/20", 10, "differs from the 30 announced before"),
    (20, None, "bytes */10", 0, "less than the 20 bytes received"),
    (0, None, "bytes 9-0/*", 0, "Invalid Content-Range"),
    (0, None, "bytes 0-20/20", 21, "Invalid Content-Range"),
    (0, None, "octets 0-9/*", 10, "Invalid Content-Range"),
])
def test_a_session_request_that_cannot_fit_the_bytes_held_is_refused(held, total, content_range, length, says):
    step = plan(held, total, content_range, length)
    assert step.step is Step.INVALID and says in step.error


def test_the_storage_gets_the_whole_object_in_one_range_and_a_308_names_the_bytes_held():
    assert (range_header(0), range_header(10)) == (None, "bytes=0-9")
    assert (content_range_of(0), content_range_of(5)) == ("bytes */0", "bytes 0-4/5")


class Body:
    """A request body in pieces; `broken` raises where a client goes away half-way."""

    def __init__(self, *pieces: bytes, broken: bool = False):
        self._pieces, self._broken = list(pieces), broken

    def read(self) -> bytes:
        if self._pieces:
            return self._pieces.pop(0)
        if self._broken:
            raise ClientGone("gone")
        return b""


def test_a_session_spools_new_bytes_only_and_keeps_nothing_of_a_broken_or_mislabelled_request():
    uploads = Sessions(Clock())
    try:
        session = uploads.open("u1", "bk/big", {})
        assert uploads._directory is None  # nothing spooled, nothing on disk
        assert session.take(Body(b"abc", b"def"), 0, 6) and session.held == 6
        assert session.take(Body(b"cdefgh"), 4, 6) and session.held == 8  # c..f were held already
        with pytest.raises(ClientGone):
            session.take(Body(b"ijk", broken=True), 0, 10)
        assert session.held == 8
        assert not session.take(Body(b"ij"), 0, 3) and session.held == 8  # shorter than its Content-Range
        spooled = os.listdir(uploads.directory)
        assert len(spooled) == 1
        assert (Path(uploads.directory) / spooled[0]).read_bytes() == b"abcdefgh"
        session.finish("the answer")
        assert os.listdir(uploads.directory) == [] and session.answer == "the answer"
        directory = uploads.directory
    finally:
        uploads.close()
    assert not os.path.exists(directory)


def test_an_abandoned_session_is_dropped_with_its_file_after_the_idle_time_unless_a_request_holds_it():
    clock = Clock()
    uploads = Sessions(clock)
    try:
        idle, busy = uploads.open("idle", "bk/a", {}), uploads.open("busy", "bk/b", {})
        for session in (idle, busy):
            session.take(Body(b"x" * 10), 0, 10)
        clock.now += 30
        assert uploads.expire(60) == 0
        clock.now += 31
        with busy.lock:
            assert uploads.expire(60) == 1
        assert idle.gone and uploads.get("idle") is None and uploads.get("busy") is busy
        assert len(os.listdir(uploads.directory)) == 1
        uploads.touch(busy)
        assert uploads.expire(60) == 0
    finally:
        uploads.close()


def test_a_multipart_body_names_its_object_in_the_first_part():
    boundary = multipart_boundary('multipart/related; boundary="===1234=="')
    assert boundary == b"===1234=="
    body = (b'--===1234==\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{"name": "state/x.json"}'
            b"\r\n--===1234==\r\ncontent-type: text/plain\r\n\r\ndata\r\n--===1234==--")
    assert first_part_name(body, boundary) == (True, "state/x.json")
    assert first_part_name(body[:40], boundary) == (False, None)  # read more first
    assert first_part_name(body.replace(b'"name"', b'"nom"'), boundary) == (True, None)
    assert multipart_boundary("application/json") is None


def test_the_token_bucket_allows_a_burst_then_one_write_per_second():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.admit("b/o", 1.0, 3) for _ in range(4)] == [True, True, True, False]
    assert limiter.admit("b/other", 1.0, 3)
    clock.now += 0.5
    assert not limiter.admit("b/o", 1.0, 3)  # a refusal spends nothing...
    clock.now += 0.5
    assert limiter.admit("b/o", 1.0, 3)  # ...so one second after the burst, one write passes
    assert not limiter.admit("b/o", 1.0, 3)
    clock.now += 100
    assert [limiter.admit("b/o", 1.0, 3) for _ in range(4)] == [True, True, True, False]  # never above the burst
    assert all(limiter.admit("b/o", 0, 3) for _ in range(10))  # rate 0: no limit
    clock.now += 100
    assert [limiter.admit("b/o", 1.0, 1) for _ in range(2)] == [True, False]  # a smaller burst caps saved tokens


def test_the_peak_is_the_most_writes_within_any_10_s_window():
    clock = Clock()
    ledger = Ledger(clock)
    for step in (0, 1, 2, 9.5, 9.9, 10.5, 30):
        clock.now = 1000 + step
        ledger.record(Outcome.WRITE, "b/o")
    ledger.record(Outcome.REJECTED_429, "b/o")
    ledger.record(Outcome.RANDOM_503, None)
    stats = ledger.snapshot()
    hot = stats["objects"]["b/o"]
    assert (hot["writes"], hot["rejected429"], hot["peakPer10s"], hot["writeSpanSeconds"]) == (7, 1, 5, 30.0)
    assert stats["totals"]["random503"] == 1 and stats["totals"]["busiest"] == "b/o"
    assert ledger.reset()["objects"] == {}


def test_switches_are_validated_and_spelt_from_one_table():
    assert coerce("burst", "5") == 5.0 and coerce("seed", 3.0) == 3
    for name, value in (("burst", 0), ("random_429", 1.5), ("seed", 1.5), ("latency_ms", True), ("nope", 1)):
        with pytest.raises(SwitchError, match=name):
            coerce(name, value)
    assert from_env({"GCS_LIMITS_COMMIT_THEN_503": "0.25", "GCS_LIMITS_BURST": ""}) == {"commit_then_503": 0.25}
    assert SPECS["rate_per_object"].flag == "--rate-per-object"
    switches = Switches({"burst": 4})
    with pytest.raises(SwitchError):
        switches.update({"burst": 2, "random_503": -1})
    assert switches.get("burst") == 4  # all or nothing
    switches.update({"burst": 2})
    assert switches.reset()["burst"] == 4


def test_the_readme_lists_every_switch_with_its_spellings_and_default():
    text = README.read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", text, re.MULTILINE)}
    assert set(rows) == set(SPECS)
    for name, spec in SPECS.items():
        assert f"`{spec.flag}`" in rows[name] and f"`{spec.env}`" in rows[name], name
        assert f"| {spec.default:g} |" in rows[name], name


def test_refilled_buckets_are_forgotten_so_memory_stays_bounded(monkeypatch):
    from local.gcs_limits import _ledger

    monkeypatch.setattr(_ledger, "SWEEP_EVERY", 4)
    clock = Clock()
    limiter = RateLimiter(clock)
    for key in ("b/1", "b/2", "b/3"):
        limiter.admit(key, 1.0, 3)
    assert len(limiter._buckets) == 3
    clock.now += 5
    limiter.admit("b/4", 1.0, 3)  # the fourth call sweeps: the three refilled buckets go
    assert set(limiter._buckets) == {"b/4"}
