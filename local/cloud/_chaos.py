"""The chaos switch: kill a random function instance every ~N seconds, as crashes, out-of-memory kills and
deploys do in the cloud. The supervisor replaces what it kills.

The pause before each kill is drawn uniformly from 0.2 N to 1.8 N (mean N), so kills sometimes come close
together and sometimes far apart; an instance still being replaced is never the one killed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from local.cloud._supervisor import Kill


class Chaos:
    """One chaos period; `kills` grows as it goes, `join` waits for its end."""

    def __init__(self, kill: Callable[[random.Random], Kill | None], every: float, duration: float | None = None,
                 seed: int | None = None, say: Callable[[str], None] = lambda _: None):
        if every <= 0:
            raise ValueError(f"chaos needs a positive interval, got {every}")
        self.every, self.duration = every, duration
        self.kills: list[Kill] = []
        self.started_at: float | None = None
        self._kill, self._say = kill, say
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-cloud-chaos", daemon=True)

    def start(self) -> Chaos:
        self.started_at = time.time()
        span = f"for {self.duration:g}s" if self.duration else "until stopped"
        self._say(f"chaos: killing a random function instance every ~{self.every:g}s {span}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the period to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def last_kill(self) -> Kill | None:
        return self.kills[-1] if self.kills else None

    def _run(self) -> None:
        end = time.monotonic() + self.duration if self.duration else float("inf")
        while True:
            pause = self._rng.uniform(0.2 * self.every, 1.8 * self.every)
            if time.monotonic() + pause >= end:
                self._stop.wait(max(0.0, end - time.monotonic()))
                break
            if self._stop.wait(pause):
                break
            kill = self._kill(self._rng)
            if kill is not None:
                self.kills.append(kill)
        self._say(f"chaos: over after {len(self.kills)} kills")
