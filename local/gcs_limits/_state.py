"""`Limits`: what every request handler of one proxy shares, and the admin endpoint that shows and changes it.

Shared: the storage backend, the live switches, the fault dice (one seeded `random.Random`; a new `seed`
restarts it), the per-object rate limiter, the counters, the resumable upload sessions and their spooled bytes
(`_uploads`), and the fences: a write whose precondition the proxy checks itself (the storage behind ignores
it) holds its object's fence from the check to the storage's answer, so two such writes of one object cannot
both pass the check.

Admin endpoint, under `/emulator/v1` (never limited, delayed or failed):
`GET /switches` (all values), `POST|PATCH /switches` (a JSON object of changes, all or nothing; 400 names a bad
switch), `DELETE /switches` (back to the start values), `GET /stats`, `POST /stats/reset`, `GET /health`.
"""

from __future__ import annotations

import random
import threading
import zlib

import orjson

from local.gcs_limits import _errors
from local.gcs_limits._ledger import Ledger, RateLimiter
from local.gcs_limits._routes import ADMIN
from local.gcs_limits._switches import SwitchError, Switches
from local.gcs_limits._uploads import Sessions
from local.gcs_limits._wire import Backend

FENCES = 64  # object names share this many locks (by hash): bounded memory, and rarely a wait on another name


class Limits:
    def __init__(self, backend: Backend, switches: Switches):
        self.backend = backend
        self.switches = switches
        self.limiter = RateLimiter()
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self._rng = random.Random(switches.get("seed"))
        self._lock = threading.Lock()
        self._fences = [threading.Lock() for _ in range(FENCES)]
        self.uploads = Sessions()

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

    def fence(self, key: str) -> threading.Lock:
        """The lock held while a write of `key` with a precondition the proxy checks is checked and written
        (compose, rewrite and copy with `ifGenerationMatch`; the commit of a conditional resumable upload)."""
        return self._fences[zlib.crc32(key.encode()) % FENCES]

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
