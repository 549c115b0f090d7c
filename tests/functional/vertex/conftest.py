"""Fixtures for the Vertex emulator tests: one in-process emulator per test session (per xdist worker),
switches reset after every test, and an SDK client built the way the pipeline builds it."""

from __future__ import annotations

import uuid

import pytest

from local.vertex import start_server
from tests.functional.vertex._support import make_client


@pytest.fixture(scope="session")
def vertex(fake_gcs):
    """The shared emulator (fake_gcs first: its STORAGE_EMULATOR_HOST must be set before jobs run)."""
    emulator = start_server(workers=8)
    yield emulator
    emulator.stop()


@pytest.fixture
def emu(vertex):
    """The shared emulator, with every switch back to its start value after the test."""
    yield vertex
    vertex.reset_switches()


@pytest.fixture
def client(emu):
    return make_client(emu.url)


@pytest.fixture
def prefix(bucket):
    """A unique output prefix (every job gets its own, as the reference advises)."""
    return f"gs://{bucket.name}/out/{uuid.uuid4().hex[:8]}"
