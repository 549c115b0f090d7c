"""A compose of one object reaches fake-gcs-server as a rewrite of it (its own compose copies and hashes the bytes
again, three times slower): the client gets the object a compose gives, with the compose's preconditions, limits
and errors; any other compose goes to the storage as it is."""

from __future__ import annotations

import os

import pytest
from google.api_core import exceptions

from local.gcs_limits import _proxy
from local.gcs_limits._proxy import single_source
from tests.functional.gcs_limits._support import counts, make_client

pytestmark = pytest.mark.functional

SAME = ("size", "content_type", "metadata", "crc32c", "md5_hash", "component_count", "storage_class")


@pytest.fixture
def chosen(monkeypatch):
    """What `single_source` decided for each compose through the proxy."""
    found: list[str | None] = []

    def spy(path: str, query: dict, body: bytes | None) -> str | None:
        source = single_source(path, query, body)
        if "/compose" in path:
            found.append(source)
        return source

    monkeypatch.setattr(_proxy, "single_source", spy)
    return found


def _composed(bucket, sources: list[str], name: str, **kwargs):
    target = bucket.blob(name)
    target.content_type = "application/x-ndjson"
    target.metadata = {"run": "r1"}
    target.compose([bucket.blob(s) for s in sources], **kwargs)
    return target


def test_a_compose_of_one_object_gives_the_object_the_storage_composes_itself(raw_gcs, proxy, pbucket, chosen):
    data = os.urandom(300_000) + b"\n"
    pbucket.blob("parts/p1").upload_from_string(data, content_type="text/plain")
    answered = _composed(pbucket, ["parts/p1"], "results/all.jsonl")
    direct = make_client(raw_gcs.url).bucket(pbucket.name)
    _composed(direct, ["parts/p1"], "results/direct.jsonl")
    assert chosen == ["parts/p1"]
    stored, wanted = pbucket.get_blob("results/all.jsonl"), direct.get_blob("results/direct.jsonl")
    assert [getattr(stored, f) for f in SAME] == [getattr(wanted, f) for f in SAME]
    assert stored.download_as_bytes() == data and stored.content_type == "application/x-ndjson"
    assert answered.generation == stored.generation and answered.name == "results/all.jsonl"  # the compose answer
    assert counts(proxy, pbucket, "results/all.jsonl")["writes"] == 1


def test_its_preconditions_and_the_write_limit_are_those_of_a_compose(proxy, pbucket, chosen):
    pbucket.blob("p1").upload_from_string(b"a\n")
    first = _composed(pbucket, ["p1"], "out", if_generation_match=0).generation
    with pytest.raises(exceptions.PreconditionFailed):
        _composed(pbucket, ["p1"], "out", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        _composed(pbucket, ["p1"], "out", if_generation_match=first + 1)
    assert _composed(pbucket, ["p1"], "out", if_generation_match=first).generation != first
    with pytest.raises(exceptions.NotFound):
        _composed(pbucket, ["missing"], "out2")
    proxy.set_switches(burst=1)
    _composed(pbucket, ["p1"], "limited")
    with pytest.raises(exceptions.TooManyRequests):
        _composed(pbucket, ["p1"], "limited", retry=None)
    # The 412s came from the proxy's own check; the 429 was answered before the body was looked at.
    assert chosen == ["p1"] * 4 + ["missing", "p1"]


def test_a_compose_of_several_objects_goes_to_the_storage_as_it_is(pbucket, chosen):
    pbucket.blob("a").upload_from_string(b"a\n")
    pbucket.blob("b").upload_from_string(b"b\n")
    assert _composed(pbucket, ["a", "b"], "ab").download_as_bytes() == b"a\nb\n"
    assert chosen == [None]


@pytest.mark.parametrize(("body", "query", "wanted"), [
    (b'{"sourceObjects":[{"name":"a/b c"}],"destination":{"contentType":"x","metadata":{"k":"v"},"name":"d"}}',
     {}, "a/b c"),
    (b'{"kind":"storage#composeRequest","sourceObjects":[{"name":"a"}]}', {"ifGenerationMatch": "0"}, "a"),
    (b'{"sourceObjects": [{"name": "a", "generation": null}], "destination": {"contentType": "x"}}',
     {"prettyPrint": "false"}, "a"),  # what google-cloud-storage sends
    (b'{"sourceObjects":[{"name":"a"},{"name":"b"}],"destination":{}}', {}, None),
    (b'{"sourceObjects":[{"name":"a","generation":"7"}],"destination":{}}', {}, None),
    (b'{"sourceObjects":[{"name":"a","objectPreconditions":{"ifGenerationMatch":"7"}}]}', {}, None),
    (b'{"sourceObjects":[{"name":"a"}],"destination":{"cacheControl":"no-store"}}', {}, None),
    (b'{"sourceObjects":[{"name":"a"}],"destination":{}}', {"kmsKeyName": "k"}, None),
    (b'{"sourceObjects":[{"name":"a"}],"destination":{}}', {"destinationPredefinedAcl": "private"}, None),
    (b'{"sourceObjects":[{"name":""}]}', {}, None),
    (b'{"sourceObjects":[]}', {}, None),
    (b'not json', {}, None),
    (b'[1]', {}, None),
    (None, {}, None),
])
def test_only_a_compose_a_rewrite_can_stand_for_is_sent_as_one(body, query, wanted):
    assert single_source("/storage/v1/b/bk/o/dest%2Fx/compose", query, body) == wanted
    assert single_source("/storage/v1/b/bk/o/dest%2Fx", query, body) is None  # not a compose
