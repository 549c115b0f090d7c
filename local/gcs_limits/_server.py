"""`GcsLimits`: a running proxy (server thread, shared state), in-process or behind `python -m`."""

from __future__ import annotations

import threading
from typing import Any

from local import _serving
from local.gcs_limits._proxy import Handler
from local.gcs_limits._state import Limits
from local.gcs_limits._switches import Switches
from local.gcs_limits._wire import Backend

REAP_EVERY = 1.0  # seconds between sweeps of abandoned upload sessions


class Server(_serving.Server):
    """Stdlib threaded HTTP/1.1 server: one thread per client connection, blocking streams in each.

    Chosen over asyncio after measuring both (see README.md, "Cost"): it streams large objects faster and keeps
    the streaming code plain; it answers fewer small calls per second at high concurrency, still far above
    what the pipeline makes.
    """

    request_queue_size = 1024

    def __init__(self, address, limits: Limits):
        super().__init__(address, Handler, limits=limits)


class GcsLimits(_serving.Running):
    """A running proxy in front of one Cloud Storage endpoint (fake-gcs-server locally).

    `url` is what clients use as their endpoint (`STORAGE_EMULATOR_HOST`, or `client_options={"api_endpoint":
    url}`). Switches and counters are the same as the admin endpoint's (`/emulator/v1/switches`, `/stats`).
    """

    def __init__(self, backend_url: str, host: str = "127.0.0.1", port: int = 0, switches: dict | None = None):
        self._limits = Limits(Backend(backend_url), Switches(switches))
        self._server = Server((host, port), self._limits)
        self._server.start("gcs-limits-http")
        self._reaper = threading.Thread(target=self._reap, name="gcs-limits-uploads", daemon=True)
        self._reaper.start()
        self._stopped = False

    def _reap(self) -> None:
        """Drop abandoned upload sessions and their spooled bytes, once a second (`upload_session_seconds`)."""
        limits = self._limits
        while not limits.stopping.wait(REAP_EVERY):
            limits.uploads.expire(limits.switches.get("upload_session_seconds"))

    @property
    def backend_url(self) -> str:
        return self._limits.backend.url

    @property
    def spool_dir(self) -> str:
        """Where the bytes of unfinished resumable uploads are kept, one file per session (made when first needed,
        removed on stop)."""
        return self._limits.uploads.directory

    def switches(self) -> dict[str, Any]:
        return self._limits.switches.snapshot()

    def set_switches(self, changes: dict[str, Any] | None = None, /, **more) -> dict[str, Any]:
        """Change switches at runtime, all or nothing (`SwitchError` names a bad one); returns every value."""
        return self._limits.set_switches({**(changes or {}), **more})

    def reset_switches(self) -> dict[str, Any]:
        """Back to the values the proxy started with."""
        return self._limits.reset_switches()

    def stats(self) -> dict[str, Any]:
        """Counters per object name and totals (the document `GET /emulator/v1/stats` answers)."""
        return self._limits.ledger.snapshot()

    def reset_stats(self) -> dict[str, Any]:
        """Zero every counter (the rate limiter keeps its tokens)."""
        return self._limits.ledger.reset()

    def stop(self) -> None:
        """Stop answering, wake held answers and close every connection. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._limits.stopping.set()
        self._server.stop()
        self._limits.backend.close()
        self._reaper.join(timeout=5)
        self._limits.uploads.close()


def start_server(backend_url: str, host: str = "127.0.0.1", port: int = 0, **switches: Any) -> GcsLimits:
    """Start the proxy in background threads of this process and return its handle.

    `backend_url` is the storage to guard (`http://HOST:PORT`; a bad one raises ValueError). `port=0` lets the
    kernel pick a free port; a taken one raises OSError. Keyword arguments are start values of switches
    (`rate_per_object=1, burst=3, ...`; see `SPECS`); a bad one raises `SwitchError`.
    """
    return GcsLimits(backend_url, host, port, switches)
