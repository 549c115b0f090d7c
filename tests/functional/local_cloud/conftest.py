"""One local cloud per test worker, running the recorder functions instead of the pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from local.cloud import LocalCloud, storage_client, vertex_available

RECORDER = Path(__file__).with_name("recorder.py")
# The Vertex emulator is written in parallel: the wiring is tested without it until it can start.
VERTEX = vertex_available()
TICK = 0.5


def wait_for(fetch, what: str, cloud: LocalCloud | None = None, timeout: float = 10.0):
    """Poll `fetch()` until it returns something truthy; fail with the logs if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{cloud.log_tails() if cloud else ''}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("cloud"), functions_source=RECORDER, tick_seconds=TICK,
                    function_env={"MODEL": "model-from-function-env"}, vertex=VERTEX,
                    vertex_args=["--run-latency=0.25"]) as running:
        yield running


@pytest.fixture(scope="module")
def gcs(cloud):
    return storage_client(cloud.env)


@pytest.fixture
def recorded(cloud, gcs):
    """recorded(target) -> the records the recorder function wrote for that target so far."""
    def read(target: str) -> list[dict]:
        blobs = gcs.list_blobs(cloud.env["OUTPUT_BUCKET"], prefix=f"recorded/{target}/")
        return [json.loads(b.download_as_bytes()) for b in blobs]
    return read
