"""Fault switches: replies lost after a commit, random 429/503, added latency, and changing them at runtime."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import pytest
import requests
from google.api_core import exceptions

from shared.errors import TransientError
from shared.storage import change_json
from shared.storage.gcs import GcsStore
from tests.functional.gcs_limits._support import admin, call, counts

pytestmark = pytest.mark.functional


def test_commit_then_503_writes_the_object_yet_an_unconditional_write_sees_503(proxy, pbucket):
    proxy.set_switches(commit_then_503=1)
    with pytest.raises(exceptions.ServiceUnavailable):
        pbucket.blob("lost-reply").upload_from_string(b"new", retry=None)
    assert pbucket.blob("lost-reply").download_as_bytes() == b"new"
    mine = counts(proxy, pbucket, "lost-reply")
    assert (mine["writes"], mine["committed503"]) == (1, 1)


def test_a_conditional_write_whose_reply_is_lost_is_retried_by_the_client_and_gets_412(proxy, pbucket):
    """google-cloud-storage retries a write with if_generation_match; the retry finds its own commit."""
    proxy.set_switches(commit_then_503=1)
    with pytest.raises(exceptions.PreconditionFailed):
        pbucket.blob("state.json").upload_from_string(b'{"v": 1}', if_generation_match=0)
    assert pbucket.blob("state.json").download_as_bytes() == b'{"v": 1}'  # the first attempt did commit
    mine = counts(proxy, pbucket, "state.json")
    assert (mine["writes"], mine["committed503"], mine["writesRefused"]) == (2, 1, 1)


def test_a_state_change_whose_reply_is_lost_is_told_by_reading_and_written_once(proxy, client, pbucket):
    """The pipeline's conditional writes are not sent again by the client: the re-read finds the commit."""
    proxy.set_switches(commit_then_503=1)
    store = GcsStore(client)
    value, wrote = change_json(store, pbucket.name, "state.json", lambda cur: {"v": 1})
    assert wrote and value["v"] == 1
    proxy.set_switches(commit_then_503=0)
    assert store.read_json(pbucket.name, "state.json").value["v"] == 1
    mine = counts(proxy, pbucket, "state.json")
    assert (mine["writes"], mine["committed503"], mine["writesRefused"]) == (1, 1, 0)


def test_state_changes_over_the_objects_write_rate_wait_for_it_and_each_lands_once(proxy, client, pbucket):
    proxy.set_switches(burst=1)  # one write a second to one object, no burst
    store = GcsStore(client)
    for n in range(1, 4):
        value, wrote = change_json(store, pbucket.name, "hot.json", lambda cur: {"n": (cur or {"n": 0})["n"] + 1})
        assert wrote and value["n"] == n
    mine = counts(proxy, pbucket, "hot.json")
    assert mine["rejected429"] >= 1 and (mine["writes"], mine["writesRefused"]) == (3, 0)


def test_a_write_not_retried_reports_a_server_error_as_transient(proxy, client, pbucket):
    proxy.set_switches(random_503=1)
    with pytest.raises(TransientError):
        GcsStore(client).write_json(pbucket.name, "s.json", {"v": 1}, if_generation_match=0, retry=False)
    assert proxy.stats()["totals"]["random503"] == 1  # one call: the client did not send it again


def test_commit_then_hang_writes_the_object_and_the_client_times_out(proxy, pbucket):
    proxy.set_switches(commit_then_hang=1, hang_seconds=5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        pbucket.blob("slow").upload_from_string(b"late", retry=None, timeout=0.5)
    assert time.monotonic() - started < 3
    assert pbucket.blob("slow").download_as_bytes() == b"late"
    assert counts(proxy, pbucket, "slow")["committedHang"] == 1
    # stop() (the fixture's teardown) wakes the held answer instead of waiting for it


def test_random_429_and_503_follow_their_fractions_and_repeat_with_the_seed(proxy, pbucket):
    proxy.set_switches(random_429=0.2, random_503=0.1, seed=7, rate_per_object=0)
    parts = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    path = f"/storage/v1/b/{pbucket.name}/o"

    def statuses(n: int) -> list[int]:
        return [call(proxy.url, "GET", path, conn=conn)[0] for _ in range(n)]

    first = statuses(400)
    assert 50 <= first.count(429) <= 110 and 20 <= first.count(503) <= 60
    assert set(first) == {200, 429, 503}  # the connection survives refusals
    totals = proxy.stats()["totals"]
    assert (totals["random429"], totals["random503"]) == (first.count(429), first.count(503))
    assert admin(proxy.url, "POST", "/switches", {"seed": 7})[0] == 200  # setting the seed restarts the dice
    assert statuses(400) == first
    conn.close()


def test_random_faults_reach_the_client_as_its_own_exceptions(proxy, pbucket):
    pbucket.blob("r").upload_from_string(b"r")
    proxy.set_switches(random_503=1)
    with pytest.raises(exceptions.ServiceUnavailable):
        pbucket.get_blob("r", retry=None)
    proxy.set_switches(random_503=0, random_429=1)
    with pytest.raises(exceptions.TooManyRequests):
        pbucket.get_blob("r", retry=None)
    assert counts(proxy, pbucket, "r")["random429"] == 1  # counted under the object the call names


def test_latency_is_added_to_every_call_but_not_to_admin_calls(proxy, pbucket):
    proxy.set_switches(latency_ms=150)
    started = time.monotonic()
    call(proxy.url, "GET", f"/storage/v1/b/{pbucket.name}/o")
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    assert admin(proxy.url, "GET", "/switches")[1]["latency_ms"] == 150
    assert time.monotonic() - started < 0.1


def test_switches_change_at_runtime_through_the_admin_endpoint_all_or_nothing(proxy, pbucket):
    status, values = admin(proxy.url, "POST", "/switches", {"rate_per_object": 0})
    assert status == 200 and values["rate_per_object"] == 0 and values["burst"] == 3
    for i in range(6):
        pbucket.blob("free").upload_from_string(b"%d" % i, retry=None)

    status, error = admin(proxy.url, "POST", "/switches", {"burst": 5, "random_429": 2})
    assert status == 400 and "random_429" in error["error"]["message"]
    status, error = admin(proxy.url, "POST", "/switches", {"rate_per_objekt": 1})
    assert status == 400 and "rate_per_objekt" in error["error"]["message"]
    assert admin(proxy.url, "GET", "/switches")[1]["burst"] == 3  # nothing of the refused change applied

    status, values = admin(proxy.url, "DELETE", "/switches")
    assert status == 200 and values["rate_per_object"] == 1
    with pytest.raises(exceptions.TooManyRequests):
        for _ in range(4):
            pbucket.blob("limited").upload_from_string(b"x", retry=None)
