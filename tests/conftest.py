"""Session-wide fixtures shared by every tier: Cloud Storage as strict as the real one.

`fake_gcs` is fake-gcs-server behind the limits proxy (`local.gcs_limits`: about one write per second per
object name, 429 beyond, compose/rewrite preconditions enforced), so no test can pass on a kindness the cloud
does not offer. `raw_gcs` is fake-gcs-server alone, for the proxy's own tests.
"""

from __future__ import annotations

import os
import uuid

import pytest

from local import gcs
from local.gcs_limits import start_server


@pytest.fixture(scope="session")
def raw_gcs():
    """One fake-gcs-server for the whole test session (in memory, ~40 ms to start)."""
    server = gcs.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs(raw_gcs):
    """The session's Cloud Storage with GCS's limits; STORAGE_EMULATOR_HOST points at it."""
    limited = start_server(raw_gcs.url)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = limited.url
    yield limited
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old
    limited.stop()


@pytest.fixture(scope="session")
def storage_client(fake_gcs):
    from shared.storage.gcs import make_client

    return make_client("test-project", endpoint=fake_gcs.url)


@pytest.fixture
def bucket(storage_client):
    """A fresh, uniquely named bucket per test so tests never see each other's objects."""
    return storage_client.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
