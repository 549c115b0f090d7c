"""`VertexEmulator`: wires the store, the worker pool and the HTTP server, in-process or standalone."""

from __future__ import annotations

from typing import Any

from local import _serving
from local.vertex._gcs import Storage
from local.vertex._http import Api, Server
from local.vertex._runner import Runner
from local.vertex._store import JobStore
from local.vertex._switches import Switches


class VertexEmulator(_serving.Running):
    """A running Vertex AI batch prediction emulator (state in memory only).

    `url` is the base URL for `HttpOptions(base_url=...)`; switches are read and changed with
    `switches()`, `set_switches(...)` and `reset_switches()` (same names and values as the admin
    endpoint `POST /emulator/v1/switches`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, workers: int = 8,
                 switches: dict[str, Any] | None = None, seed: int = 0, project: str = "local",
                 answer_processes: int | None = None):
        self._switches = Switches(switches)
        self._store = JobStore(self._switches, seed=seed)
        self._runner = Runner(self._store, Storage(project), workers=workers, answer_processes=answer_processes)
        self._api = Api(self._store, self._runner, self._switches, seed=seed)
        try:
            self._server = Server((host, port), self._api)
        except OSError:
            self._runner.stop()
            raise
        self._server.start("vertex-http")
        self._stopped = False

    def switches(self) -> dict[str, Any]:
        return self._switches.as_json()

    def set_switches(self, changes: dict[str, Any] | None = None, /, **more) -> dict[str, Any]:
        """Change switches at runtime (validated all-or-nothing); returns every switch's value."""
        return self._switches.update({**(changes or {}), **more})

    def reset_switches(self) -> dict[str, Any]:
        """Back to the values the emulator started with."""
        return self._switches.reset()

    def stop(self) -> None:
        """Stop answering, wake hanging calls and sleeping jobs, and join the threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._api.stopping.set()
        self._server.stop()
        self._runner.stop()


def start_server(host: str = "127.0.0.1", port: int = 0, *, workers: int = 8,
                 switches: dict[str, Any] | None = None, seed: int = 0, project: str = "local",
                 answer_processes: int | None = None) -> VertexEmulator:
    """Start the emulator in background threads of this process and return its handle.

    `port=0` lets the kernel choose a free port (no race). `workers` bounds how many jobs run at once;
    `switches` sets start values (see `local.vertex.SPECS`); `seed` fixes job ids and the fault dice;
    `answer_processes` how many processes answer the rows of large jobs (None: one per CPU; 0 or 1: none).
    """
    return VertexEmulator(host, port, workers=workers, switches=switches, seed=seed, project=project,
                          answer_processes=answer_processes)
