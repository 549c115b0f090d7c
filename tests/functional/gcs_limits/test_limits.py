"""The per-object mutation rate, as the unmodified google-cloud-storage client meets it."""

from __future__ import annotations

import threading
import time

import pytest
from google.api_core import exceptions

from tests.functional.gcs_limits._support import admin, counts

pytestmark = pytest.mark.functional


def write(bucket, name: str, data: bytes = b"x", **kw) -> None:
    bucket.blob(name).upload_from_string(data, retry=None, **kw)


def test_the_fourth_rapid_write_to_one_name_is_refused_with_gcs_429_while_other_names_pass(proxy, pbucket):
    for i in range(3):
        write(pbucket, "hot.json", b"v%d" % i)
    with pytest.raises(exceptions.TooManyRequests) as refused:
        write(pbucket, "hot.json", b"v3")
    assert (f"The object {pbucket.name}/hot.json exceeded the rate limit for object mutation operations"
            in refused.value.message)
    error = refused.value.response.json()["error"]
    assert error["code"] == 429 and error["errors"][0]["reason"] == "rateLimitExceeded"
    assert error["errors"][0]["domain"] == "usageLimits" and error["errors"][0]["message"] == error["message"]
    for i in range(5):
        write(pbucket, f"cold-{i}.json")
    assert pbucket.blob("hot.json").download_as_bytes() == b"v2"  # the refused write changed nothing


def test_a_write_passes_again_after_a_second(proxy, pbucket):
    for _ in range(3):
        write(pbucket, "o")
    with pytest.raises(exceptions.TooManyRequests):
        write(pbucket, "o")
    time.sleep(1.05)
    write(pbucket, "o", b"later")
    with pytest.raises(exceptions.TooManyRequests):
        write(pbucket, "o")
    assert pbucket.blob("o").download_as_bytes() == b"later"


def test_the_default_client_retries_a_rate_limited_write_and_gets_through(proxy, pbucket):
    """google-cloud-storage 3 retries uploads on 429 by default (backoff from 1 s): what really happens."""
    started = time.monotonic()
    for i in range(5):
        pbucket.blob("retried").upload_from_string(b"v%d" % i)
    assert pbucket.blob("retried").download_as_bytes() == b"v4"
    mine = counts(proxy, pbucket, "retried")
    assert mine["writes"] == 5 and mine["rejected429"] >= 2
    assert time.monotonic() - started >= 1.0  # two writes over the burst at 1/s


def test_counters_count_writes_refusals_and_the_busiest_10_s_window(proxy, pbucket):
    for _ in range(3):
        write(pbucket, "a/b c")  # a name with a slash and a space: one name, however it is spelt on the wire
    for _ in range(2):
        with pytest.raises(exceptions.TooManyRequests):
            write(pbucket, "a/b c")
    write(pbucket, "z")
    pbucket.blob("a/b c").download_as_bytes()
    list(pbucket.list_blobs())  # reads and lists are not limited and not counted as writes

    stats = proxy.stats()
    hot = stats["objects"][f"{pbucket.name}/a/b c"]
    assert (hot["writes"], hot["rejected429"], hot["peakPer10s"], hot["writesRefused"]) == (3, 2, 3, 0)
    assert stats["objects"][f"{pbucket.name}/z"]["writes"] == 1
    totals = stats["totals"]
    assert (totals["writes"], totals["rejected429"], totals["peakPer10s"]) == (4, 2, 3)
    assert totals["busiest"] == f"{pbucket.name}/a/b c"
    assert totals["requests"] >= 8
    assert admin(proxy.url, "GET", "/stats") == (200, stats)

    status, cleared = admin(proxy.url, "POST", "/stats/reset")
    assert status == 200 and cleared["objects"] == {} and cleared["totals"]["writes"] == 0
    with pytest.raises(exceptions.TooManyRequests):  # resetting counters does not refill the tokens
        write(pbucket, "a/b c")


def test_compose_rewrite_copy_patch_and_delete_count_as_mutations_of_the_name_they_change(proxy, pbucket):
    proxy.set_switches(rate_per_object=0)
    a, b = pbucket.blob("in/a"), pbucket.blob("in/b")
    a.upload_from_string(b"aa")
    b.upload_from_string(b"bb")
    joined = pbucket.blob("out/joined")
    joined.compose([a, b])
    pbucket.blob("out/rewritten").rewrite(joined)
    pbucket.copy_blob(joined, pbucket, "out/copied")
    a.metadata = {"k": "v"}
    a.patch()
    b.delete()

    objects = {key.split("/", 1)[1]: value for key, value in proxy.stats()["objects"].items()}
    assert {name: value["writes"] for name, value in objects.items()} == {
        "in/a": 2, "in/b": 2, "out/joined": 1, "out/rewritten": 1, "out/copied": 1}
    assert pbucket.blob("out/copied").download_as_bytes() == b"aabb"


def test_a_patch_or_delete_over_the_rate_is_refused_like_an_upload(proxy, pbucket):
    proxy.set_switches(burst=1)
    blob = pbucket.blob("meta")
    blob.upload_from_string(b"x")
    blob.metadata = {"k": "v"}
    with pytest.raises(exceptions.TooManyRequests):
        blob.patch(retry=None)
    with pytest.raises(exceptions.TooManyRequests):
        blob.delete(retry=None)
    with pytest.raises(exceptions.TooManyRequests):
        pbucket.blob("meta").compose([pbucket.blob("meta")], retry=None)
    assert counts(proxy, pbucket, "meta")["rejected429"] == 3


def test_a_resumable_upload_over_8_mib_passes_intact_and_counts_one_write(proxy, pbucket):
    data = bytes(range(256)) * (9 * 4096) + b"tail!!!"  # 9 MiB and 7 bytes: the client goes resumable
    blob = pbucket.blob("big/object.bin")
    blob.chunk_size = 4 * 1024 * 1024  # three session requests; only the last one writes the object
    blob.upload_from_string(data)
    assert pbucket.blob("big/object.bin").download_as_bytes() == data
    assert counts(proxy, pbucket, "big/object.bin")["writes"] == 1


def test_the_commit_of_a_resumable_upload_is_limited_like_any_write(proxy, pbucket):
    proxy.set_switches(burst=1)
    write(pbucket, "session")
    blob = pbucket.blob("session")
    blob.chunk_size = 256 * 1024
    with pytest.raises(exceptions.TooManyRequests):
        blob.upload_from_string(b"y" * (9 * 1024 * 1024), retry=None)
    assert pbucket.blob("session").download_as_bytes() == b"x"
    assert (counts(proxy, pbucket, "session")["writes"], counts(proxy, pbucket, "session")["rejected429"]) == (1, 1)


def test_concurrent_writes_to_one_name_get_exactly_the_burst_through(proxy, pbucket):
    outcomes: list[str] = []

    def one_write(i: int) -> None:
        try:
            pbucket.blob("contended").upload_from_string(b"%d" % i, retry=None)
            outcomes.append("ok")
        except exceptions.TooManyRequests:
            outcomes.append("429")

    threads = [threading.Thread(target=one_write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["429"] * 5 + ["ok"] * 3
    mine = counts(proxy, pbucket, "contended")
    assert (mine["writes"], mine["rejected429"], mine["peakPer10s"]) == (3, 5, 3)
