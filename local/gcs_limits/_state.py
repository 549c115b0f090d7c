"""`Limits`: what every request handler of one proxy shares, and the admin endpoint that shows and changes it.

Shared: the storage backend, the live switches, the fault dice (one seeded `random.Random`; a new `seed`
restarts it), the per-object rate limiter, the counters, and the open resumable upload sessions (upload id ->
`bucket/name`, so the request that commits a session is charged to the object it writes).

Admin endpoint, under `/emulator/v1` (never limited, delayed or failed):
`GET /switches` (all values), `POST|PATCH /switches` (a JSON object of changes, all or nothing; 400 names a bad
switch), `DELETE /switches` (back to the start values), `GET /stats`, `POST /stats/reset`, `GET /health`.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict

import orjson

from local.gcs_limits import _errors
from local.gcs_limits._ledger import Ledger, RateLimiter
from local.gcs_limits._routes import ADMIN
from local.gcs_limits._switches import SwitchError, Switches
from local.gcs_limits._wire import Backend

MAX_SESSIONS = 100_000  # resumable upload sessions remembered (the oldest is forgotten first)


class Limits:
    def __init__(self, backend: Backend, switches: Switches):
        self.backend = backend
        self.switches = switches
        self.limiter = RateLimiter()
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self._rng = random.Random(switches.get("seed"))
        self._lock = threading.Lock()
        # Held while a compose or rewrite with a generation precondition is checked and forwarded: the storage
        # behind ignores that precondition, so the proxy enforces it (see `_proxy.Handler.check_destination`).
        self.destination_lock = threading.Lock()
        self._sessions: OrderedDict[str, str] = OrderedDict()

    def set_switches(self, changes: dict) -> dict:
        values = self.switches.update(changes)
        if "seed" in changes:
            self.reseed(values["seed"])
        return values

    def reset_switches(self) -> dict:
        values = self.switches.reset()
        self.reseed(values["seed"])
        return values

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def draw(self) -> float:
        """One throw of the fault dice, in [0, 1)."""
        with self._lock:
            return self._rng.random()

    def remember_session(self, upload_id: str, key: str) -> None:
        with self._lock:
            self._sessions[upload_id] = key
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)

    def session(self, upload_id: str | None, *, forget: bool = False) -> str | None:
        """The `bucket/name` an upload session writes, or None when unknown; `forget` drops it (committed)."""
        if not upload_id:
            return None
        with self._lock:
            return self._sessions.pop(upload_id, None) if forget else self._sessions.get(upload_id)

    def admin(self, method: str, path: str, raw: bytes) -> tuple[int, bytes]:
        """Answer one admin call (`path` is what follows `/emulator/v1`): (status, JSON body)."""
        if path == "/switches" and method == "GET":
            return 200, orjson.dumps(self.switches.snapshot())
        if path == "/switches" and method in ("POST", "PATCH"):
            try:
                changes = orjson.loads(raw) if raw.strip() else None
            except orjson.JSONDecodeError as exc:
                return 400, _errors.bad_request(f"Invalid JSON: {exc}")
            if not isinstance(changes, dict):
                return 400, _errors.bad_request("Send a JSON object of switch names and values.")
            try:
                return 200, orjson.dumps(self.set_switches(changes))
            except SwitchError as exc:
                return 400, _errors.bad_request(str(exc))
        if path == "/switches" and method == "DELETE":
            return 200, orjson.dumps(self.reset_switches())
        if path == "/stats" and method == "GET":
            return 200, orjson.dumps(self.ledger.snapshot())
        if path == "/stats/reset" and method == "POST":
            return 200, orjson.dumps(self.ledger.reset())
        if path == "/health" and method == "GET":
            return 200, orjson.dumps({"status": "ok", "backend": self.backend.url})
        return 404, _errors.not_found(f"No admin endpoint {method} {ADMIN}{path}.")
