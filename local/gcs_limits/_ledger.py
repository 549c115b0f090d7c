"""Per-object rate limiting and counters: the proxy's memory of what each object name went through.

`RateLimiter` is a token bucket per object name (`bucket/name`): it holds at most `burst` tokens, refills at
`rate_per_object` tokens a second, and every mutation forwarded to storage spends one. A mutation that finds no
token is refused with 429 and spends nothing, so a client that backs off gets through at the sustained rate.
Rate and burst are read on every call, so runtime changes apply at once (a smaller burst also caps the tokens
already saved).

`Ledger` counts, per object name, what reached storage and what the proxy answered instead, and keeps the
peak number of writes within any `WINDOW` seconds (a sliding window over the times of the last writes), so
a test can assert "no object above 1 write/s averaged over any 10 s window" as `peakPer10s <= 10`.
Counters are reset on demand; the limiter's tokens are not (they are the storage's state, not statistics).

The clock is injected (`time.monotonic` by default) so both are tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

WINDOW = 10.0
SWEEP_EVERY = 10_000  # admitted calls between sweeps of the refilled buckets


class Outcome(StrEnum):
    """What the proxy did with one call, as counted per object name (the JSON keys of `/stats`)."""

    WRITE = "writes"  # a mutation forwarded to storage
    WRITE_REFUSED = "writesRefused"  # ... that storage answered with an error (412, 404, ...)
    REJECTED_429 = "rejected429"  # a mutation over the object's rate: answered 429, not forwarded
    COMMITTED_503 = "committed503"  # a mutation committed by storage, answered 503 (commit_then_503)
    COMMITTED_HANG = "committedHang"  # a mutation committed by storage, answered late (commit_then_hang)
    RANDOM_429 = "random429"  # any call answered 429 by the dice, not forwarded
    RANDOM_503 = "random503"  # any call answered 503 by the dice, not forwarded


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, time of last refill]
        self._calls = 0

    def _sweep(self, now: float, rate: float, burst: float) -> None:
        """Forget the buckets that have refilled: a full bucket and no bucket are the same (memory stays bounded
        by the objects written within the last few seconds)."""
        full = [key for key, (tokens, since) in self._buckets.items() if tokens + (now - since) * rate >= burst]
        for key in full:
            del self._buckets[key]

    def admit(self, key: str, rate: float, burst: float) -> bool:
        """Spend one token of `key` if it has one; True when the mutation may go on. `rate` 0 admits all."""
        if rate <= 0:
            return True
        now = self._clock()
        with self._lock:
            self._calls += 1
            if self._calls % SWEEP_EVERY == 0:
                self._sweep(now, rate, burst)
            state = self._buckets.get(key)
            if state is None:
                state = self._buckets[key] = [burst, now]
            tokens = min(burst, state[0] + (now - state[1]) * rate)
            state[1] = now
            if tokens >= 1.0:
                state[0] = tokens - 1.0
                return True
            state[0] = tokens
            return False


@dataclass
class _ObjectCounts:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    recent: deque = field(default_factory=deque)  # times of the writes within the last WINDOW seconds
    peak: int = 0
    first_write: float | None = None
    last_write: float | None = None

    def as_json(self) -> dict:
        out: dict = {outcome.value: self.counts[outcome] for outcome in Outcome}
        out["peakPer10s"] = self.peak
        if self.first_write is not None and self.last_write is not None:
            out["writeSpanSeconds"] = round(self.last_write - self.first_write, 3)
        return out


class Ledger:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._objects: dict[str, _ObjectCounts] = {}
        self._totals = dict.fromkeys(Outcome, 0)
        self._requests = 0
        self._since = datetime.now(UTC)

    def request(self) -> None:
        """Count one call that is not an admin call."""
        with self._lock:
            self._requests += 1

    def record(self, outcome: Outcome, key: str | None) -> None:
        """Count one outcome, under `key` when the call names an object (totals always)."""
        with self._lock:
            self._totals[outcome] += 1
            if key is None:
                return
            counts = self._objects.get(key)
            if counts is None:
                counts = self._objects[key] = _ObjectCounts()
            counts.counts[outcome] += 1
            if outcome is Outcome.WRITE:
                now = self._clock()
                recent = counts.recent
                recent.append(now)
                while recent and recent[0] <= now - WINDOW:
                    recent.popleft()
                counts.peak = max(counts.peak, len(recent))
                if counts.first_write is None:
                    counts.first_write = now
                counts.last_write = now

    def snapshot(self) -> dict:
        """`{"objects": {key: {...}}, "totals": {...}, "since": ISO time}`; totals also name the busiest object
        (highest `peakPer10s`, then most writes) and its peak."""
        with self._lock:
            objects = {key: counts.as_json() for key, counts in sorted(self._objects.items())}
            totals: dict = {outcome.value: self._totals[outcome] for outcome in Outcome}
            totals["requests"] = self._requests
            since = self._since
        busiest = max(objects.items(), key=lambda kv: (kv[1]["peakPer10s"], kv[1]["writes"]), default=None)
        totals["objects"] = len(objects)
        totals["peakPer10s"] = busiest[1]["peakPer10s"] if busiest else 0
        totals["busiest"] = busiest[0] if busiest else None
        return {"objects": objects, "totals": totals, "windowSeconds": WINDOW,
                "since": since.isoformat(timespec="milliseconds").replace("+00:00", "Z")}

    def reset(self) -> dict:
        with self._lock:
            self._reset_locked()
        return self.snapshot()
