"""Switches: the knobs that make the emulator slow, flaky or faulty on purpose.

One table (`SPECS`) describes every switch once; from it come the CLI flags (`--run-latency`), the
environment variables (`VERTEX_EMULATOR_RUN_LATENCY`), the admin endpoint's JSON keys (`run_latency`) and,
for job-scoped switches, the job labels (`emulator_run_latency`). Keeping one table means the four
spellings can never drift apart.

Job-scoped switches are resolved ONCE, when a job is created (labels win over the switches in force),
into a frozen `JobSettings`, so changing a switch later never changes a job already accepted.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from dataclasses import dataclass, field
from typing import Any

LABEL_PREFIX = "emulator_"
ENV_PREFIX = "VERTEX_EMULATOR_"

JOB_FAULTS = ("none", "fail", "expire", "cancel", "partial", "permission")
HTTP_CALLS = ("create", "get", "list", "cancel", "delete")
# What one job's own create call answers (`create_fault`): 429 and 503 refuse it (no job is created),
# 500 creates the job and answers an error anyway, hang creates it and answers late.
CREATE_FAULTS = ("none", "429", "503", "500", "hang")
REFUSED_CREATES = ("429", "503")
# What the next `call_fault_next` get/cancel/delete calls naming one job answer (`call_fault`).
CALL_FAULTS = ("none", "429", "500", "503", "hang")
RETRYABLE_CODES = (429, 500, 503, 504)

# Models accepted by default. Override with the `models` switch (glob patterns allowed: "gemini-*").
DEFAULT_MODELS = (
    "gemini-2.0-flash", "gemini-2.0-flash-001", "gemini-2.0-flash-lite", "gemini-2.0-flash-lite-001",
    "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro",
    "gemini-2.5-flash-preview-*", "gemini-2.5-pro-preview-*", "gemini-2.5-flash-lite-preview-*",
    "gemini-3-pro-preview", "gemini-3-flash-preview", "gemini-3.1-pro-preview",
)


class SwitchError(ValueError):
    """A switch name or value that cannot be accepted (the message names the switch)."""


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # float | int | choice | codes | strs
    default: Any
    help: str
    job: bool = False  # settable per job through a label
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()


SPECS: dict[str, Spec] = {s.name: s for s in (
    # --- per job (also labels emulator_<name>) ---
    Spec("queue_latency", "float", 0.0, "seconds a new job stays PENDING before it may run", True, 0),
    Spec("run_latency", "float", 0.0, "seconds a job spends RUNNING (spread over its rows)", True, 0),
    Spec("cancel_latency", "float", 0.0, "seconds a cancelled running job stays CANCELLING", True, 0),
    Spec("queue_timeout", "float", 259200.0, "seconds a job may wait (PENDING/QUEUED) before it is EXPIRED",
         True, 0),
    Spec("retryable_fraction", "float", 0.0,
         "fraction of rows failing with a retryable 429/500/503 status (draw per job name and row)", True, 0, 1),
    Spec("retryable_codes", "codes", (429, 500, 503), "HTTP codes the retryable row failures use", True,
         choices=RETRYABLE_CODES),
    Spec("export_every", "int", 10000, "rows per exported output shard", True, 1),
    Spec("job_fault", "choice", "none",
         "whole-job fault: none, fail (code 13), expire (code 4 midway; in the queue with fault_at 0), cancel, "
         "partial (PARTIALLY_SUCCEEDED), permission (code 7)", True, choices=JOB_FAULTS),
    Spec("fault_at", "float", 0.5,
         "fraction of rows exported before a fail/cancel/partial/expire fault hits (expire with 0: in the queue)",
         True, 0, 1),
    Spec("create_fault", "choice", "none",
         "what the job's create call answers: none, 429 or 503 (refused, no job), 500 (job created, answer "
         "500), hang (job created, answer after http_hang_seconds)", True, choices=CREATE_FAULTS),
    Spec("call_fault", "choice", "none",
         "what the next call_fault_next get/cancel/delete calls on the job answer: none, 429, 500 or 503 "
         "(nothing done), hang (done, answer after http_hang_seconds)", True, choices=CALL_FAULTS),
    Spec("call_fault_next", "int", 1, "how many get/cancel/delete calls on the job call_fault hits", True, 0),
    Spec("http_hang_seconds", "float", 30.0,
         "how long a hanging call waits (after doing its work); frozen per job for its create/call faults",
         True, 0),
    # --- emulator-wide ---
    Spec("job_fault_jobs", "int", -1,
         "how many next created jobs get job_fault (-1: every job while it is set); at 0 job_fault resets", lo=-1),
    Spec("readonly_prefixes", "strs", (),
         "gs:// prefixes the service agent may not write: jobs writing there FAIL with code 7"),
    Spec("models", "strs", DEFAULT_MODELS, "accepted model ids (glob patterns allowed, e.g. gemini-*)"),
    Spec("http_error_next", "int", 0, "the next N REST calls answer http_error_code", lo=0),
    Spec("http_error_fraction", "float", 0.0, "fraction of REST calls answering http_error_code", lo=0, hi=1),
    Spec("http_error_code", "int", 503, "status of injected REST errors: 429, 500 or 503",
         choices=(429, 500, 503)),
    Spec("http_hang_next", "int", 0, "the next N REST calls wait http_hang_seconds before answering", lo=0),
    Spec("http_hang_fraction", "float", 0.0, "fraction of REST calls that hang", lo=0, hi=1),
    Spec("create_500_next", "int", 0, "the next N creates create the job but answer 500 INTERNAL", lo=0),
    Spec("http_fault_calls", "strs", HTTP_CALLS,
         "calls the http_error/http_hang faults apply to: create, get, list, cancel, delete",
         choices=HTTP_CALLS),
)}


def _check_range(spec: Spec, value):
    if spec.lo is not None and value < spec.lo:
        raise SwitchError(f"switch {spec.name}: {value} is below {spec.lo}")
    if spec.hi is not None and value > spec.hi:
        raise SwitchError(f"switch {spec.name}: {value} is above {spec.hi}")
    return value


def coerce(name: str, value: Any) -> Any:
    """Validate a switch value given as JSON (number, string, list) or as text from a flag or env var."""
    spec = SPECS.get(name)
    if spec is None:
        raise SwitchError(f"unknown switch {name!r}; known: {', '.join(SPECS)}")
    try:
        if spec.kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return _check_range(spec, float(value))
        if spec.kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            out = _check_range(spec, int(value))
            if spec.choices and out not in spec.choices:
                raise SwitchError(f"switch {name}: {out} is not one of {spec.choices}")
            return out
        if spec.kind == "choice":
            out = str(value).strip().lower()
            if out not in spec.choices:
                raise SwitchError(f"switch {name}: {value!r} is not one of {', '.join(spec.choices)}")
            return out
        items = _split(value)
        if spec.kind == "codes":
            out = tuple(int(x) for x in items)
            bad = [c for c in out if c not in spec.choices]
            if bad or not out:
                raise SwitchError(f"switch {name}: codes must be a non-empty subset of {spec.choices}")
            return out
        out = tuple(str(x) for x in items)
        if spec.choices and any(x not in spec.choices for x in out):
            raise SwitchError(f"switch {name}: values must be among {', '.join(spec.choices)}")
        return out
    except SwitchError:
        raise
    except (TypeError, ValueError):
        raise SwitchError(f"switch {name}: cannot use {value!r} as {spec.kind}") from None


def _split(value) -> list:
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    raise TypeError


_LABEL_NUMBER = re.compile(r"^\d+(-\d+)?$")


def from_label(name: str, raw: str) -> Any:
    """Decode a label value: label values allow only [a-z0-9_-], so `-` stands for the decimal point
    in numbers ("0-25" is 0.25) and separates codes in lists ("429-503")."""
    spec = SPECS[name]
    if spec.kind in ("float", "int"):
        if not _LABEL_NUMBER.match(raw):
            raise SwitchError(f"label {LABEL_PREFIX}{name}: {raw!r} is not a number written like 2 or 0-25")
        return coerce(name, raw.replace("-", "."))
    if spec.kind == "codes":
        return coerce(name, raw.replace("-", ","))
    return coerce(name, raw)


def defaults() -> dict[str, Any]:
    return {name: spec.default for name, spec in SPECS.items()}


def from_env(environ) -> dict[str, Any]:
    """Switch values given as VERTEX_EMULATOR_<NAME> environment variables."""
    out = {}
    for name in SPECS:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            out[name] = coerce(name, raw)
    return out


@dataclass(frozen=True)
class JobSettings:
    """The job-scoped switches one job runs with, frozen at creation."""

    queue_latency: float = 0.0
    run_latency: float = 0.0
    cancel_latency: float = 0.0
    queue_timeout: float = 259200.0
    retryable_fraction: float = 0.0
    retryable_codes: tuple = (429, 500, 503)
    export_every: int = 10000
    job_fault: str = "none"
    fault_at: float = 0.5
    create_fault: str = "none"
    call_fault: str = "none"
    call_fault_next: int = 1
    http_hang_seconds: float = 30.0
    readonly_prefixes: tuple = field(default_factory=tuple)


class Switches:
    """The emulator's live switches: thread-safe, changed at runtime through the admin endpoint or the
    python handle; `reset()` returns to the values given at start."""

    def __init__(self, initial: dict[str, Any] | None = None):
        self._lock = threading.Lock()
        base = defaults()
        for name, value in (initial or {}).items():
            base[name] = coerce(name, value)
        self._start = dict(base)
        self._values = dict(base)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def as_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.snapshot().items()}

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply several changes atomically: all are validated before any is applied."""
        clean = {name: coerce(name, value) for name, value in changes.items()}
        with self._lock:
            self._values.update(clean)
        return self.as_json()

    def reset(self) -> dict[str, Any]:
        with self._lock:
            self._values = dict(self._start)
        return self.as_json()

    def get(self, name: str) -> Any:
        with self._lock:
            return self._values[name]

    def take(self, name: str) -> bool:
        """Consume one unit of an `*_next` counter; True when this call is one of the N."""
        with self._lock:
            if self._values[name] > 0:
                self._values[name] -= 1
                return True
            return False

    def model_known(self, model_id: str) -> bool:
        patterns = self.get("models")
        return any(fnmatch.fnmatchcase(model_id, p) for p in patterns)

    def job_settings(self, labels: dict[str, str]) -> JobSettings:
        """Resolve the settings of a new job: the switches in force, overridden by `emulator_*` labels.

        A job-wide `job_fault` set with `job_fault_jobs` = N is consumed here, so exactly the next N
        created jobs get it (labels can still set a fault on any job). Labels are checked first, and a
        create refused by its `create_fault` consumes nothing: neither creates a job.
        """
        overrides = {}
        for key, raw in labels.items():
            if not key.startswith(LABEL_PREFIX):
                continue
            name = key[len(LABEL_PREFIX):]
            if name not in SPECS or not SPECS[name].job:
                allowed = ", ".join(LABEL_PREFIX + n for n, s in SPECS.items() if s.job)
                raise SwitchError(f"unknown emulator label {key!r}; known: {allowed}")
            overrides[name] = from_label(name, raw)
        with self._lock:
            values = {name: self._values[name] for name in SPECS if SPECS[name].job}
            values["readonly_prefixes"] = self._values["readonly_prefixes"]
            refused = overrides.get("create_fault", values["create_fault"]) in REFUSED_CREATES
            if self._values["job_fault"] != "none" and self._values["job_fault_jobs"] != -1 and not refused:
                if self._values["job_fault_jobs"] > 0:
                    self._values["job_fault_jobs"] -= 1
                else:
                    values["job_fault"] = "none"
                if self._values["job_fault_jobs"] == 0:
                    self._values["job_fault"] = "none"
                    self._values["job_fault_jobs"] = -1
        values.update(overrides)
        return JobSettings(**values)
