"""The storage emulator fixture itself: round trip and the generation preconditions the pipeline relies on."""

import pytest
from google.api_core.exceptions import PreconditionFailed


def test_create_if_absent_and_compare_and_swap(bucket):
    blob = bucket.blob("state/x.json")
    blob.upload_from_string(b"{}", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("state/x.json").upload_from_string(b"{}", if_generation_match=0)
    blob.reload()
    bucket.blob("state/x.json").upload_from_string(b'{"a":1}', if_generation_match=blob.generation)
    with pytest.raises(PreconditionFailed):
        bucket.blob("state/x.json").upload_from_string(b'{"a":2}', if_generation_match=blob.generation)
    assert bucket.blob("state/x.json").download_as_bytes() == b'{"a":1}'
