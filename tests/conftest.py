"""Session-wide fixtures shared by every tier: a real fake-gcs-server for functional and e2e tests."""

from __future__ import annotations

import os
import uuid

import pytest

from local import gcs


@pytest.fixture(scope="session")
def fake_gcs():
    """One fake-gcs-server for the whole test session (in memory, ~40 ms to start)."""
    server = gcs.start()
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    yield server
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old
    server.stop()


@pytest.fixture(scope="session")
def storage_client(fake_gcs):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test-project", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": fake_gcs.url})


@pytest.fixture
def bucket(storage_client):
    """A fresh, uniquely named bucket per test so tests never see each other's objects."""
    return storage_client.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
