"""Switches: the limits and faults of the proxy, declared once.

One table (`SPECS`) describes every switch; from it come the CLI flags (`--rate-per-object`), the
environment variables (`GCS_LIMITS_RATE_PER_OBJECT`), the admin endpoint's JSON keys and the keyword
arguments of `start_server` (`rate_per_object`). One table means the spellings cannot drift apart.

`Switches` holds the live values: thread-safe, changed all-or-nothing (every value is validated before any
is applied), and `reset()` returns to the values given at start.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "GCS_LIMITS_"


class SwitchError(ValueError):
    """A switch name or value that cannot be accepted (the message names the switch)."""


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # float | int
    default: float | int
    help: str
    lo: float | None = None
    hi: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("rate_per_object", "float", 1.0,
         "sustained mutations per second allowed on one object name; beyond it 429 (0: no limit)", lo=0),
    Spec("burst", "float", 3.0, "mutations one object name may take at once before the rate applies", lo=1),
    Spec("commit_then_503", "float", 0.0,
         "fraction of mutations forwarded and committed, then answered 503 (the reply is lost)", lo=0, hi=1),
    Spec("commit_then_hang", "float", 0.0,
         "fraction of mutations forwarded and committed, then answered only after hang_seconds", lo=0, hi=1),
    Spec("hang_seconds", "float", 75.0,
         "how long a commit_then_hang answer is held (longer than the client's timeout; the google-cloud-storage "
         "default is 60 s)", lo=0),
    Spec("random_429", "float", 0.0, "fraction of all calls answered 429 without reaching storage", lo=0, hi=1),
    Spec("random_503", "float", 0.0, "fraction of all calls answered 503 without reaching storage", lo=0, hi=1),
    Spec("latency_ms", "float", 0.0, "milliseconds added before every call is forwarded", lo=0),
    Spec("upload_session_seconds", "float", 3600.0,
         "an unfinished resumable upload unused this long is dropped with the bytes the proxy holds for it "
         "(Cloud Storage keeps a session a week)", lo=0.01),
    Spec("seed", "int", 0, "seeds the fault dice; setting it at runtime restarts the dice"),
)}


def coerce(name: str, value: Any) -> float | int:
    """Validate one value given as JSON (a number) or as text (a flag or an environment variable)."""
    spec = SPECS.get(name)
    if spec is None:
        raise SwitchError(f"unknown switch {name!r}; known: {', '.join(SPECS)}")
    try:
        if isinstance(value, bool):
            raise TypeError
        if spec.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            out: float | int = int(value)
        else:
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError
    except (TypeError, ValueError):
        raise SwitchError(f"switch {name}: cannot use {value!r} as {spec.kind}") from None
    if spec.lo is not None and out < spec.lo:
        raise SwitchError(f"switch {name}: {value} is below {spec.lo}")
    if spec.hi is not None and out > spec.hi:
        raise SwitchError(f"switch {name}: {value} is above {spec.hi}")
    return out


def defaults() -> dict[str, float | int]:
    return {name: spec.default for name, spec in SPECS.items()}


def from_env(environ) -> dict[str, float | int]:
    """Switch values given as GCS_LIMITS_<NAME> environment variables (empty ones are ignored)."""
    out = {}
    for name, spec in SPECS.items():
        raw = environ.get(spec.env)
        if raw is not None and raw != "":
            out[name] = coerce(name, raw)
    return out


class Switches:
    """The live switches of one proxy."""

    def __init__(self, initial: dict[str, Any] | None = None):
        self._lock = threading.Lock()
        base = defaults()
        base.update(validate(initial or {}))
        self._start = dict(base)
        self._values = dict(base)

    def snapshot(self) -> dict[str, float | int]:
        with self._lock:
            return dict(self._values)

    def get(self, name: str) -> float | int:
        with self._lock:
            return self._values[name]

    def update(self, changes: dict[str, Any]) -> dict[str, float | int]:
        """Apply several changes atomically; returns every switch's value."""
        clean = validate(changes)
        with self._lock:
            self._values.update(clean)
            return dict(self._values)

    def reset(self) -> dict[str, float | int]:
        with self._lock:
            self._values = dict(self._start)
            return dict(self._values)


def validate(changes: dict[str, Any]) -> dict[str, float | int]:
    return {name: coerce(name, value) for name, value in changes.items()}
