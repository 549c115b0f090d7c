"""Fixtures for the GCS limits proxy tests: a fresh in-process proxy per test in front of the session's
fake-gcs-server, and the unmodified google-cloud-storage client pointed at it."""

from __future__ import annotations

import uuid

import pytest

from local.gcs_limits import start_server
from tests.functional.gcs_limits._support import make_client


@pytest.fixture
def proxy(raw_gcs):
    """A proxy with the default limits (1 write/s per object name, burst 3, no faults); its own counters."""
    server = start_server(raw_gcs.url)
    yield server
    server.stop()


@pytest.fixture
def client(proxy):
    return make_client(proxy.url)


@pytest.fixture
def pbucket(client):
    """A fresh bucket, created through the proxy."""
    return client.create_bucket(f"lim-{uuid.uuid4().hex[:12]}")
