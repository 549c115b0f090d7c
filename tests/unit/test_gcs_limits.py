"""The GCS limits proxy's pure rules: which call writes which object, the token bucket, the 10 s peak, switches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from local.gcs_limits import SPECS, SwitchError
from local.gcs_limits._ledger import Ledger, Outcome, RateLimiter
from local.gcs_limits._routes import Kind, classify, commits, first_part_name, multipart_boundary, upload_id_of
from local.gcs_limits._switches import Switches, coerce, from_env

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


def test_only_the_session_request_carrying_the_last_byte_commits_a_resumable_upload():
    query = {"uploadType": "resumable", "upload_id": "u1", "name": "big"}
    path = "/upload/storage/v1/b/bk/o"
    assert classify("PUT", path, query, "bytes 0-9/*").final is False
    assert classify("PUT", path, query, "bytes 10-19/20").final is True
    assert classify("PUT", path, query, "bytes */*").final is False  # a status query
    assert classify("PUT", path, query, "bytes */20").final is True
    assert classify("PUT", path, query, None).final is True  # the whole object in one request
    assert classify("DELETE", path, query, None).final is False  # cancelling a session writes nothing
    call = classify("PUT", path, query, "bytes 0-9/10")
    assert (call.kind, call.upload_id, call.name) == (Kind.RESUMABLE_PUT, "u1", "big")
    assert commits("bytes 0-9/11") is False and commits("garbage") is False
    assert upload_id_of("http://h:1/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=ab%2Bc") == "ab+c"
    assert upload_id_of("http://h:1/upload") is None


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
