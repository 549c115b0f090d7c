"""The storage contract, run against both implementations: GcsStore on the rate-limited local Cloud Storage
(fake-gcs-server behind the limits proxy) and the in-memory double the unit tests use, so the two can never
drift: the generation rules state depends on, streaming, listing a page at a time, compose."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from local._process import free_port
from shared.errors import TransientError
from shared.storage import mutate_json
from shared.storage.base import ObjectMissing, ObjectUnreadable
from shared.storage.gcs import GcsStore, make_client
from shared.storage.memory import MemoryStore


@pytest.fixture(params=["gcs", "memory"])
def store(request, storage_client):
    return GcsStore(storage_client) if request.param == "gcs" else MemoryStore()


@pytest.fixture
def gcs_store(storage_client):
    return GcsStore(storage_client)


def test_create_if_absent_and_compare_and_swap(store, bucket):
    gen = store.write_json(bucket.name, "state/a.json", {"n": 1}, if_generation_match=0)
    assert gen and store.write_json(bucket.name, "state/a.json", {"n": 9}, if_generation_match=0) is None
    found = store.read_json(bucket.name, "state/a.json")
    assert found.value == {"n": 1} and found.generation == gen
    assert store.write_json(bucket.name, "state/a.json", {"n": 2}, if_generation_match=gen)
    assert store.write_json(bucket.name, "state/a.json", {"n": 3}, if_generation_match=gen) is None
    assert store.read_json(bucket.name, "state/a.json").value == {"n": 2}
    assert store.read_json(bucket.name, "state/none.json") is None


def test_concurrent_mutations_lose_no_update(store, bucket, fake_gcs):
    # About compare-and-swap, not the write rate: 60 writes to one name would take a minute at 1 write/s.
    fake_gcs.set_switches(rate_per_object=0)

    def bump(_):
        for _ in range(10):
            mutate_json(store, bucket.name, "state/counter.json",
                        lambda cur: {"n": (cur or {"n": 0})["n"] + 1})

    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(bump, range(6)))
    finally:
        fake_gcs.reset_switches()
    assert store.read_json(bucket.name, "state/counter.json").value["n"] == 60


def test_streaming_read_is_pinned_to_a_generation(store, bucket):
    old = store.write_bytes(bucket.name, "in/x.jsonl", b"old\n")
    new = store.write_bytes(bucket.name, "in/x.jsonl", b"new\n")
    with store.open_read(bucket.name, "in/x.jsonl", new) as stream:
        assert stream.read() == b"new\n"
    with pytest.raises(ObjectMissing), store.open_read(bucket.name, "in/x.jsonl", old) as stream:
        stream.read()


@pytest.mark.parametrize("start", [0, 1, 4095, 65_536, 199_999, 200_000])
def test_a_streaming_read_can_start_at_any_byte(store, bucket, start):
    body = bytes(range(256)) * 782  # 200,192 bytes: more than one read of the client's
    store.write_bytes(bucket.name, "vertex/x.jsonl", body[:200_000])
    with store.open_read(bucket.name, "vertex/x.jsonl", start=start) as stream:
        assert stream.read(10) == body[start:min(start + 10, 200_000)]
        assert stream.read() == body[start + 10:200_000]
    with store.open_read(bucket.name, "vertex/x.jsonl", start=start, length=7) as stream:
        assert stream.read() == body[start:200_000]  # a length is a hint: reading on still works


def test_a_store_that_can_be_opened_in_another_process_reads_the_same_objects(store, bucket):
    store.write_bytes(bucket.name, "vertex/x.jsonl", b"shared\n")
    opener = store.opener()
    if isinstance(store, MemoryStore):
        assert opener is None  # its objects live in one process: collect then works without workers
        return
    import pickle

    with pickle.loads(pickle.dumps(opener))().open_read(bucket.name, "vertex/x.jsonl", start=2) as stream:
        assert stream.read() == b"ared\n"


def test_streaming_write_and_compose_of_more_than_32_sources(store, bucket):
    names = []
    for i in range(70):
        with store.open_write(bucket.name, f"parts/{i:03d}.jsonl") as out:
            out.write(f"{i}\n".encode())
        names.append(f"parts/{i:03d}.jsonl")
    store.compose(bucket.name, names, "results/all.jsonl", "scratch/all-")
    assert store.read_bytes(bucket.name, "results/all.jsonl") == b"".join(f"{i}\n".encode() for i in range(70))
    store.compose(bucket.name, [], "results/empty.jsonl", "scratch/empty-")
    assert store.read_bytes(bucket.name, "results/empty.jsonl") == b""
    assert list(store.list_names(bucket.name, "parts/"))[:2] == ["parts/000.jsonl", "parts/001.jsonl"]


def test_a_failed_streaming_write_leaves_no_object(store, bucket):
    with pytest.raises(RuntimeError), store.open_write(bucket.name, "half.jsonl") as out:
        out.write(b"partial\n")
        raise RuntimeError("boom")
    assert store.read_bytes(bucket.name, "half.jsonl") is None


def test_list_page_walks_a_prefix_a_page_at_a_time_in_name_order(store, bucket):
    import time

    target = store
    target.write_bytes(bucket.name, "other/x", b"")
    names = [f"incoming/{c}/{i}.jsonl" for c in "ab" for i in range(3)] + ["incoming/é.jsonl"]
    for name in reversed(names):
        target.write_bytes(bucket.name, name, b"x\n")
    seen, after = [], ""
    while True:
        page = target.list_page(bucket.name, "incoming/", start_after=after, limit=3)
        seen += page
        if len(page) < 3:
            break
        after = page[-1].name
    assert [o.name for o in seen] == sorted(names)
    assert all(o.size == 2 and o.generation > 0 and abs(o.created - time.time()) < 60 for o in seen)


def test_compose_writes_the_destination_only_at_the_expected_generation(store, bucket):
    target = store
    for name in ("a", "b"):
        target.write_bytes(bucket.name, name, name.encode())
    first = target.compose(bucket.name, ["a", "b"], "out", "scratch/", if_generation_match=0)
    assert first and target.read_bytes(bucket.name, "out") == b"ab"
    assert target.compose(bucket.name, ["b", "a"], "out", "scratch/", if_generation_match=0) is None
    assert target.compose(bucket.name, ["b", "a"], "out", "scratch/", if_generation_match=first + 12345) is None
    assert target.read_bytes(bucket.name, "out") == b"ab"
    assert target.compose(bucket.name, ["b", "a"], "out", "scratch/", if_generation_match=first)
    assert target.read_bytes(bucket.name, "out") == b"ba"


def test_an_object_uploaded_gzip_encoded_is_read_decompressed_and_streamed(gcs_store, bucket):
    store = gcs_store
    import gzip

    body = b"".join(b'{"request": {"n": %d}}\n' % i for i in range(20_000))
    blob = bucket.blob("incoming/zipped.jsonl")
    blob.content_encoding = "gzip"
    blob.upload_from_string(gzip.compress(body), content_type="application/x-ndjson")
    with store.open_read(bucket.name, "incoming/zipped.jsonl") as stream:
        assert stream.read() == body
    with store.open_read(bucket.name, "incoming/zipped.jsonl", start=123_457) as stream:
        assert stream.read() == body[123_457:]  # offsets count the decompressed bytes


@pytest.mark.parametrize("damage", ["not gzip", "cut short", "corrupt", "cut at a line's end"])
def test_an_object_stored_gzip_encoded_with_damaged_bytes_reads_up_to_the_damage_then_says_so(gcs_store, bucket,
                                                                                               damage):
    import gzip
    import zlib

    body = b"".join(b'{"request": {"n": %d, "pad": "%s"}}\n' % (i, b"x" * (i % 50)) for i in range(60_000))
    packed = gzip.compress(body)
    whole_lines = body[:body.index(b"\n", 99_000) + 1]
    stored = {"not gzip": body, "cut short": packed[:len(packed) // 2],
              "corrupt": packed[:5000] + bytes(4000) + packed[9000:],
              "cut at a line's end": gzip.compress(whole_lines)[:-8]}  # (no checksum and size at the end)
    blob = bucket.blob(f"incoming/{damage}.jsonl")
    blob.content_encoding = "gzip"
    blob.upload_from_string(stored[damage], content_type="application/x-ndjson")
    got = bytearray()
    with gcs_store.open_read(bucket.name, blob.name) as stream, pytest.raises(ObjectUnreadable) as raised:
        while data := stream.read(1 << 20):
            got += data
    if damage == "cut short":  # all the stream held before it ends, but what the last deflate step kept back
        decompressed = zlib.decompressobj(wbits=31).decompress(stored[damage])
        assert body.startswith(got) and decompressed.startswith(got) and len(decompressed) - len(got) < 1024
    if damage == "cut at a line's end":
        assert got == whole_lines
    if damage == "not gzip":
        assert got == b""
    first_unread = got.count(b"\n") + 1 + (bool(got) and not got.endswith(b"\n"))
    assert raised.value.line == first_unread
    message = str(raised.value)
    assert f"gs://{bucket.name}/{blob.name}" in message and f"from line {first_unread} on" in message


def test_downloads_come_in_large_pieces():
    from google.cloud.storage._media.requests import _request_helpers

    from shared.storage import gcs

    assert _request_helpers._SINGLE_GET_CHUNK_SIZE == gcs.DOWNLOAD_PIECE  # see gcs.DOWNLOAD_PIECE: why


def test_a_write_not_retried_that_gets_no_answer_is_a_transient_failure():
    """No storage on the port: with the client's retries off, the connection error comes back at once as the
    pipeline's TransientError (change_json then reads back to tell whether it committed)."""
    store = GcsStore(make_client("p", endpoint=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(TransientError):
        store.write_json("b", "state/x.json", {"n": 1}, if_generation_match=0, retry=False)
