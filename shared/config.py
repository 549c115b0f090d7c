"""One frozen configuration object, read from the environment once, at the edge.

Bad configuration fails at start with a message naming the variable, instead of failing later inside a
half-finished run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ConfigError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{1,63}$")
# Vertex refuses a job over 200,000 lines or 1 GB: these are the ceilings, lower values are allowed.
VERTEX_MAX_ROWS = 200_000
VERTEX_MAX_BYTES = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Config:
    project: str
    location: str
    input_bucket: str
    output_bucket: str
    input_prefix: str = "incoming/"
    model: str = "gemini-2.5-flash"
    max_active_jobs: int = 8
    max_rows_per_job: int = VERTEX_MAX_ROWS
    max_bytes_per_job: int = VERTEX_MAX_BYTES
    max_attempts: int = 3
    job_finished_topic: str = "job-finished"
    run_finished_topic: str = "run-finished"
    vertex_base_url: str | None = None
    pipeline_label: str = "gemini-batch-pipeline"
    uploads_topic: str = "uploads"
    pending_warn_seconds: int = 3 * 3600
    running_warn_seconds: int = 12 * 3600
    # The functions' timeout (540 s in the cloud for work a push starts, tens of seconds on the local cloud).
    # Every lease and deadline derives from it (see `deadline_seconds`), so the local cloud heals in seconds
    # while the cloud never takes a slow invocation for a dead one.
    function_timeout_seconds: int = 540
    # A job reservation without a Vertex job name older than this is adopted by the poller: the function
    # that made it died between reserving the slot and recording the job. None: `deadline_seconds`.
    stuck_create_seconds: int | None = None
    # Vertex allows 60 job creations per minute per region; the scheduler stays under this.
    max_creates_per_minute: int = 60
    # 401/403 at create is retried this long (IAM changes take minutes to propagate), then the rows fail.
    permission_grace_seconds: int = 900
    # Pull subscriptions on the dead-letter topics that the reconciliation reads, reports and repairs.
    dead_letter_subscriptions: tuple[str, ...] = ()
    # Unfinished runs the reconciliation visits per tick (it resumes where it stopped on the next tick).
    reconcile_batch: int = 500
    # Processes that turn a large job output into result lines side by side; 0: one per CPU the instance has.
    collect_workers: int = 0
    # Processes that validate a large input side by side; 0: one per CPU the instance has.
    submit_workers: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        cfg = cls(
            project=reader.required("GOOGLE_CLOUD_PROJECT"),
            location=reader.text("GOOGLE_CLOUD_LOCATION", "us-central1"),
            input_bucket=reader.bucket("INPUT_BUCKET"),
            output_bucket=reader.bucket("OUTPUT_BUCKET"),
            input_prefix=reader.prefix("INPUT_PREFIX", "incoming/"),
            model=reader.text("MODEL", _default("model")),
            max_active_jobs=reader.integer("MAX_ACTIVE_JOBS", _default("max_active_jobs"), 1, 10_000),
            max_rows_per_job=reader.integer("MAX_ROWS_PER_JOB", _default("max_rows_per_job"), 1, VERTEX_MAX_ROWS),
            max_bytes_per_job=reader.integer("MAX_BYTES_PER_JOB", _default("max_bytes_per_job"), 1024,
                                             VERTEX_MAX_BYTES),
            max_attempts=reader.integer("MAX_ATTEMPTS", _default("max_attempts"), 1, 20),
            job_finished_topic=reader.text("JOB_FINISHED_TOPIC", _default("job_finished_topic")),
            run_finished_topic=reader.text("RUN_FINISHED_TOPIC", _default("run_finished_topic")),
            vertex_base_url=reader.text("VERTEX_BASE_URL", "") or None,
            pipeline_label=reader.label("PIPELINE_LABEL", _default("pipeline_label")),
            pending_warn_seconds=reader.integer("PENDING_WARN_SECONDS", _default("pending_warn_seconds"), 1, 10**7),
            running_warn_seconds=reader.integer("RUNNING_WARN_SECONDS", _default("running_warn_seconds"), 1, 10**7),
            uploads_topic=reader.text("UPLOADS_TOPIC", _default("uploads_topic")),
            function_timeout_seconds=reader.integer("FUNCTION_TIMEOUT_SECONDS", _default("function_timeout_seconds"),
                                                    5, 3600),
            stuck_create_seconds=reader.optional_integer("STUCK_CREATE_SECONDS", 1, 10**6),
            max_creates_per_minute=reader.integer("MAX_CREATES_PER_MINUTE", _default("max_creates_per_minute"),
                                                  1, 10_000),
            permission_grace_seconds=reader.integer("PERMISSION_GRACE_SECONDS",
                                                    _default("permission_grace_seconds"), 0, 10**6),
            dead_letter_subscriptions=reader.names("DEAD_LETTER_SUBSCRIPTIONS"),
            reconcile_batch=reader.integer("RECONCILE_BATCH", _default("reconcile_batch"), 1, 100_000),
            collect_workers=reader.integer("COLLECT_WORKERS", _default("collect_workers"), 0, 64),
            submit_workers=reader.integer("SUBMIT_WORKERS", _default("submit_workers"), 0, 64),
        )
        if cfg.input_bucket == cfg.output_bucket and cfg.input_prefix in ("", "/"):
            raise ConfigError("INPUT_PREFIX must not be empty when INPUT_BUCKET is also OUTPUT_BUCKET")
        return cfg

    @property
    def deadline_seconds(self) -> int:
        """After this long, any invocation that started before has ended (the platform stops it at its
        timeout): a lease, reservation or unfinished step older than this belongs to a dead invocation."""
        return self.function_timeout_seconds + max(5, self.function_timeout_seconds // 10)

    @property
    def vertex_call_seconds(self) -> int:
        """The HTTP timeout of one Vertex call: a quarter of the function's timeout, at most a minute, so
        one invocation's calls fit in it."""
        return max(2, min(60, self.function_timeout_seconds // 4))

    @property
    def last_create_seconds(self) -> float:
        """No create is sent later than this after a slot was reserved: it must land before a poller may
        adopt the reservation (at the deadline) and look the job up."""
        return max(self.function_timeout_seconds / 2, self.function_timeout_seconds - 2 * self.vertex_call_seconds)

    @property
    def create_stuck_seconds(self) -> int:
        return self.stuck_create_seconds if self.stuck_create_seconds is not None else self.deadline_seconds

    @property
    def own_prefixes(self) -> tuple[str, ...]:
        """Prefixes the pipeline writes itself: never treated as input, even if a notification says so."""
        return ("results/", "errors/", "reports/", "state/", "staging/", "vertex/")


def _default(name: str):
    """A field's declared default (slots=True dataclasses do not keep defaults as class attributes)."""
    return Config.__dataclass_fields__[name].default


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _get(self, name: str) -> str | None:
        value = self._env.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    def required(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            raise ConfigError(f"{name} is required and not set")
        return value

    def text(self, name: str, default: str) -> str:
        value = self._get(name)
        return default if value is None else value

    def bucket(self, name: str) -> str:
        value = self.required(name)
        if value.startswith("gs://"):
            raise ConfigError(f"{name} must be a bucket name, not a URI: {value!r}")
        if not _BUCKET.match(value):
            raise ConfigError(f"{name} is not a valid bucket name: {value!r}")
        return value

    def prefix(self, name: str, default: str) -> str:
        value = self._get(name)
        if value is None:
            return default
        value = value.lstrip("/")
        return value if value.endswith("/") else value + "/"

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self._get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        return None if self._get(name) is None else self.integer(name, 0, low, high)

    def names(self, name: str) -> tuple[str, ...]:
        value = self._get(name)
        return tuple(n.strip() for n in value.split(",") if n.strip()) if value else ()

    def label(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _LABEL_VALUE.match(value):
            raise ConfigError(f"{name} must be a valid label value (a-z, 0-9, _ and -, at most 63), got {value!r}")
        return value
