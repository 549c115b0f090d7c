"""Jobs in memory: the resource as the REST surface shows it, the create-body rules, list and paging.

A `Job` holds the mutable state; every change goes through `JobStore.transition` under one lock, so a
cancel racing the worker that finishes the job can never leave a half-updated resource. The REST view
(`Job.resource`) follows the real resource shape: camelCase, int64 counters as strings,
`completionStats` null until the job runs, `incompleteCount` "-1" while unknown, RFC 3339 times.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from local.vertex._errors import ApiError, fault_error
from local.vertex._filter import FilterError, compile_filter
from local.vertex._gcs import parse_gs
from local.vertex._switches import REFUSED_CREATES, JobSettings, SwitchError, Switches

TERMINAL = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
                      "JOB_STATE_PARTIALLY_SUCCEEDED"})
WAITING = frozenset({"JOB_STATE_PENDING", "JOB_STATE_QUEUED"})
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_MODEL = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/([^/@]+)(?:@[^/]+)?$")
# Top-level fields of the v1 BatchPredictionJob message; anything else is an unknown field (400).
_KNOWN_FIELDS = frozenset({
    "name", "displayName", "model", "modelVersionId", "unmanagedContainerModel", "inputConfig",
    "instanceConfig", "modelParameters", "outputConfig", "dedicatedResources", "serviceAccount",
    "manualBatchTuningParameters", "generateExplanation", "explanationSpec", "labels", "encryptionSpec",
    "disableContainerLogging", "satisfiesPzs", "satisfiesPzi",
})


def now() -> datetime:
    return datetime.now(UTC)


def fmt_time(dt: datetime | None) -> str | None:
    """RFC 3339 with microseconds and a Z, as Vertex prints resource times."""
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(eq=False)
class Job:
    name: str
    parent: str
    seq: int
    display_name: str
    model: str
    model_id: str
    input_uris: list[str]
    output_prefix: str
    labels: dict[str, str]
    settings: JobSettings
    create_time: datetime
    state: str = "JOB_STATE_PENDING"
    update_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: dict | None = None
    stats: dict | None = None  # {"successfulCount": int, "failedCount": int, "incompleteCount": int}
    output_dir_set: bool = False
    # Set on cancel and on emulator stop so a worker sleeping on this job wakes at once.
    wake: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    call_faults_left: int = 0  # get/cancel/delete calls on this job its `call_fault` still hits

    @property
    def output_dir(self) -> str:
        stamp = self.create_time.strftime("%Y-%m-%dT%H:%M:%S.%f")
        return f"{self.output_prefix.rstrip('/')}/prediction-model-{stamp}Z"

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def resource(self) -> dict:
        out = {
            "name": self.name,
            "displayName": self.display_name,
            "model": self.model,
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": list(self.input_uris)}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": self.output_prefix}},
        }
        if self.output_dir_set:
            out["outputInfo"] = {"gcsOutputDirectory": self.output_dir}
        out["state"] = self.state
        if self.error is not None:
            out["error"] = dict(self.error)
        # null (not absent) until the job runs, as the real resource sends it
        out["completionStats"] = None if self.stats is None else {k: str(v) for k, v in self.stats.items()}
        out["createTime"] = fmt_time(self.create_time)
        if self.start_time:
            out["startTime"] = fmt_time(self.start_time)
        if self.end_time:
            out["endTime"] = fmt_time(self.end_time)
        out["updateTime"] = fmt_time(self.update_time or self.create_time)
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ApiError("INVALID_ARGUMENT", message)


def _check_create_body(body) -> tuple[str, str, list[str], str, dict]:
    """Validate a create body like the real API; return (display name, model, uris, prefix, labels)."""
    _require(isinstance(body, dict), "Invalid JSON payload received. Expected a BatchPredictionJob object.")
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    _require(not unknown, f'Invalid JSON payload received. Unknown name "{unknown[0] if unknown else ""}" at '
             "'batch_prediction_job': Cannot find field.")
    display = body.get("displayName")
    _require(isinstance(display, str) and display != "", "BatchPredictionJob.display_name is required.")
    _require(len(display) <= 128, "BatchPredictionJob.display_name must be at most 128 characters.")
    model = body.get("model")
    _require(isinstance(model, str) and model != "", "BatchPredictionJob.model is required.")
    inp = body.get("inputConfig")
    _require(isinstance(inp, dict), "BatchPredictionJob.input_config is required.")
    _require(inp.get("instancesFormat") == "jsonl",
             f"Unsupported instances format {inp.get('instancesFormat')!r}: this emulator supports jsonl.")
    uris = (inp.get("gcsSource") or {}).get("uris") if isinstance(inp.get("gcsSource"), dict) else None
    _require(isinstance(uris, list) and uris != [], "BatchPredictionJob.input_config.gcs_source.uris is required.")
    for uri in uris:
        try:
            _, name = parse_gs(uri)
        except ValueError:
            name = ""
        _require(bool(name), f"Invalid input URI {uri!r}: expected gs://bucket/object.")
    out = body.get("outputConfig")
    _require(isinstance(out, dict), "BatchPredictionJob.output_config is required.")
    _require(out.get("predictionsFormat") == "jsonl",
             f"Unsupported predictions format {out.get('predictionsFormat')!r}: this emulator supports jsonl.")
    dest = out.get("gcsDestination")
    prefix = dest.get("outputUriPrefix") if isinstance(dest, dict) else None
    try:
        parse_gs(prefix)
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", "BatchPredictionJob.output_config.gcs_destination."
                       "output_uri_prefix must be a gs:// URI.") from None
    labels = body.get("labels") or {}
    _require(isinstance(labels, dict), "BatchPredictionJob.labels must be a map of strings.")
    _require(len(labels) <= 64, "A resource can have at most 64 labels.")
    for key, value in labels.items():
        _require(isinstance(value, str) and bool(_LABEL_KEY.match(key)) and bool(_LABEL_VALUE.match(value)),
                 f"Invalid label {key!r}: {value!r}. Keys must start with a lowercase letter; keys and values "
                 "may hold only lowercase letters, digits, '_' and '-', at most 63 characters.")
    return display, model, list(uris), prefix, dict(labels)


class JobStore:
    """All jobs of the emulator, in creation order (`seq`), guarded by one lock."""

    def __init__(self, switches: Switches, seed: int = 0):
        self.lock = threading.RLock()
        self._switches = switches
        self._jobs: dict[str, Job] = {}
        self._ids: set[int] = set()
        self._rng = random.Random(seed)
        self._seq = 0
        self._operations: dict[str, dict] = {}
        # Jobs not yet in a final state, now and at most at once: a client's job cap is checked against this.
        self.active = 0
        self.peak_active = 0

    # --- create / get -------------------------------------------------------------------------------
    def create(self, parent: str, body) -> Job:
        display, model, uris, prefix, labels = _check_create_body(body)
        m = _MODEL.match(model)
        model_id = m.group(1) if m else model.rsplit("/", 1)[-1]
        if not m or not self._switches.model_known(model_id):
            raise ApiError("NOT_FOUND", f"The PublisherModel {model_id} does not exist.")
        try:
            settings = self._switches.job_settings(labels)
        except SwitchError as exc:
            raise ApiError("INVALID_ARGUMENT", str(exc)) from None
        if settings.create_fault in REFUSED_CREATES:
            # Refused like a quota or availability error: answered before anything is stored.
            raise fault_error(int(settings.create_fault))
        with self.lock:
            job_id = self._rng.randrange(10**18, 9 * 10**18)
            while job_id in self._ids:
                job_id = self._rng.randrange(10**18, 9 * 10**18)
            self._ids.add(job_id)
            self._seq += 1
            created = now()
            job = Job(name=f"{parent}/batchPredictionJobs/{job_id}", parent=parent, seq=self._seq,
                      display_name=display, model=model, model_id=model_id, input_uris=uris,
                      output_prefix=prefix, labels=labels, settings=settings, create_time=created,
                      update_time=created, call_faults_left=settings.call_fault_next)
            self._jobs[job.name] = job
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        return job

    def get(self, name: str) -> Job:
        with self.lock:
            job = self._jobs.get(name)
        if job is None:
            raise ApiError("NOT_FOUND", f"The BatchPredictionJob {name} does not exist.")
        return job

    def resource(self, name: str) -> dict:
        """The REST view of one job, rendered under the lock so it is never half-updated."""
        job = self.get(name)
        with self.lock:
            return job.resource()

    def take_call_fault(self, name: str) -> tuple[str, float] | None:
        """Consume one unit of the job's `call_fault`: (fault, hang seconds) when this call is one of
        the N it hits, else None. An unknown job raises NOT_FOUND, as the call itself would."""
        job = self.get(name)
        with self.lock:
            if job.settings.call_fault == "none" or job.call_faults_left <= 0:
                return None
            job.call_faults_left -= 1
        return job.settings.call_fault, job.settings.http_hang_seconds

    def reset_peak(self) -> None:
        with self.lock:
            self.peak_active = self.active

    def all_jobs(self) -> list[Job]:
        with self.lock:
            return list(self._jobs.values())

    # --- state --------------------------------------------------------------------------------------
    def transition(self, job: Job, state: str, *, only_from=None, error=None, stats=None) -> bool:
        """Move a job to `state` (setting startTime/endTime); refuse when it is not in `only_from`."""
        with self.lock:
            if only_from is not None and job.state not in only_from:
                return False
            if job.terminal:
                return False
            stamp = now()
            job.state = state
            job.update_time = stamp
            if state == "JOB_STATE_RUNNING" and job.start_time is None:
                job.start_time = stamp
                job.output_dir_set = True
                job.stats = {"successfulCount": 0, "failedCount": 0, "incompleteCount": -1}
            if error is not None:
                job.error = error
            if stats is not None:
                job.stats = stats
            if state in TERMINAL:
                job.end_time = stamp
                self.active -= 1
            return True

    def set_stats(self, job: Job, stats: dict) -> None:
        with self.lock:
            job.stats = dict(stats)
            job.update_time = now()

    def cancel(self, name: str) -> None:
        job = self.get(name)
        with self.lock:
            if job.terminal:
                raise ApiError("FAILED_PRECONDITION",
                               f"The BatchPredictionJob {name} is in state {job.state} and cannot be cancelled.")
            job.cancel_requested = True
            if job.state in WAITING:
                self.transition(job, "JOB_STATE_CANCELLED", error={"code": 1, "message": "CANCELED"})
            elif job.state == "JOB_STATE_RUNNING":
                self.transition(job, "JOB_STATE_CANCELLING")
        job.wake.set()

    def delete(self, name: str) -> dict:
        job = self.get(name)
        with self.lock:
            if not job.terminal:
                raise ApiError("FAILED_PRECONDITION",
                               f"The BatchPredictionJob {name} is in state {job.state} and cannot be deleted; "
                               "cancel it first.")
            del self._jobs[name]
            stamp = fmt_time(now())
            op_name = f"{job.parent}/operations/{self._rng.randrange(10**18, 9 * 10**18)}"
            op = {
                "name": op_name,
                "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata",
                             "genericMetadata": {"createTime": stamp, "updateTime": stamp}},
                "done": True,
                "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
            }
            self._operations[op_name] = op
        return op

    def operation(self, name: str) -> dict:
        with self.lock:
            op = self._operations.get(name)
        if op is None:
            raise ApiError("NOT_FOUND", f"Operation {name} does not exist.")
        return op

    # --- list ---------------------------------------------------------------------------------------
    def list(self, parent: str, filter_text: str | None, page_size, page_token: str | None):
        """One page, newest first; the token is a cursor (the last job's sequence number), so jobs
        created while a client pages never shift or repeat what it sees."""
        try:
            predicate = compile_filter(filter_text)
        except FilterError as exc:
            raise ApiError("INVALID_ARGUMENT", f"Invalid filter: {exc}") from None
        try:
            size = int(page_size) if page_size not in (None, "") else 0
        except ValueError:
            raise ApiError("INVALID_ARGUMENT", f"Invalid value for pageSize: {page_size!r}") from None
        if size < 0:
            raise ApiError("INVALID_ARGUMENT", "pageSize must not be negative.")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        check = hashlib.sha256(f"{parent}\n{filter_text or ''}".encode()).hexdigest()[:16]
        cursor = None
        if page_token:
            try:
                token = orjson.loads(base64.urlsafe_b64decode(page_token.encode() + b"==="))
                cursor = int(token["s"])
                if token["f"] != check:
                    raise ValueError
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                raise ApiError("INVALID_ARGUMENT", "Invalid page token.") from None
        with self.lock:
            jobs = list(self._jobs.values())
        page, more = [], False
        with self.lock:
            for job in reversed(jobs):
                if job.parent != parent or (cursor is not None and job.seq >= cursor) or not predicate(job):
                    continue
                if len(page) == size:
                    more = True
                    break
                page.append(job.resource())
                last = job.seq
        next_token = None
        if more:
            next_token = base64.urlsafe_b64encode(orjson.dumps({"s": last, "f": check})).decode().rstrip("=")
        return page, next_token
