"""Local servers the benchmarks start as processes of their own, as the local cloud runs them (the limits
proxy, the Vertex emulator): each prints its URL on the first line of its stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def spawn(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m ARGS...` and the URL it serves on."""
    process = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                               env={**os.environ, **(env or {})})
    url = process.stdout.readline().strip()
    if not url:
        process.kill()
        process.wait()
        raise RuntimeError(f"python -m {args[0]} did not start")
    return process, url


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def limited_storage(bucket: str) -> Iterator[tuple[Any, Any, str]]:
    """fake-gcs-server behind the limits proxy (in a process of its own), with `bucket` made through the proxy:
    (a storage client on the proxy, a `GcsStore` over it, the proxy's URL); both servers stop after."""
    from local import gcs
    from shared.storage.gcs import GcsStore, make_client

    fake = gcs.start()
    process = None
    try:
        process, url = spawn(["local.gcs_limits", "--backend", fake.url])
        client = make_client("bench", endpoint=url)
        client.create_bucket(bucket)
        yield client, GcsStore(client), url
    finally:
        stop(process)
        fake.stop()
