"""Helpers for the GCS limits proxy tests: clients, raw HTTP calls, and reading the proxy's counters."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import orjson
from google.cloud import storage

from shared.storage import gcs


def make_client(url: str) -> storage.Client:
    return gcs.make_client("test-project", endpoint=url)


def call(url: str, method: str, path: str, body=None, headers: dict | None = None,
         conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, bytes]:
    """One raw HTTP call: (status, headers with lower-case names, body)."""
    own = conn is None
    if own:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        if own:
            conn.close()


def admin(url: str, method: str, path: str, payload=None) -> tuple[int, dict]:
    body = orjson.dumps(payload) if payload is not None else None
    status, _, data = call(url, method, "/emulator/v1" + path, body,
                           {"Content-Type": "application/json"} if body else None)
    return status, orjson.loads(data)


def counts(proxy, bucket, name: str) -> dict:
    """The proxy's counters of one object name (all zero when it never saw it)."""
    return proxy.stats()["objects"].get(f"{bucket.name}/{name}", {})
