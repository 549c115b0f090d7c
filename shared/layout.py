"""Where everything lives: object names for outputs, state, staging and Vertex output, and the ids.

One module owns naming so the contract paths (results/, errors/, reports/) and the pipeline's own prefixes
are spelled once.
"""

from __future__ import annotations

import hashlib

RUN_ID_HEX = 20


def run_id(bucket: str, name: str, generation: int) -> str:
    """A run is one generation of one input object. The id is derived, so every duplicate or replayed event
    for that generation names the same run (the claim on it is what makes submit idempotent). Letter
    prefixed and lowercase so it is a valid Vertex label value."""
    digest = hashlib.sha256(f"{bucket}\0{name}\0{generation}".encode()).hexdigest()
    return "r" + digest[:RUN_ID_HEX]


def relative_name(object_name: str, input_prefix: str) -> str:
    """`<rel>` of the contract: the name after the input prefix, byte for byte, without a final `.jsonl`."""
    rel = object_name[len(input_prefix):] if object_name.startswith(input_prefix) else object_name
    return rel[: -len(".jsonl")] if rel.endswith(".jsonl") else rel


# Cloud Storage object names are at most 1,024 bytes of UTF-8.
MAX_OBJECT_NAME = 1024
_OUTPUT_PREFIX_LEN = max(len("results/") + len(".jsonl"), len("errors/") + len(".jsonl"),
                         len("reports/") + len(".json"))
_HASH_SUFFIX = 17  # "~" + 16 hex digits


def output_rel(rel: str) -> tuple[str, bool]:
    """The `<rel>` the outputs are named after: `rel` itself, or, when an output name would pass GCS's
    1,024-byte limit, a prefix of it cut at a character boundary plus `~` and a hash of the whole of it
    (distinct inputs never share outputs). Returns (name, shortened)."""
    raw = rel.encode()
    if len(raw) + _OUTPUT_PREFIX_LEN <= MAX_OBJECT_NAME:
        return rel, False
    budget = MAX_OBJECT_NAME - _OUTPUT_PREFIX_LEN - _HASH_SUFFIX
    head = raw[:budget].decode(errors="ignore")  # drops a multi-byte character cut in half
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}", True


def name_owner_name(rel: str) -> str:
    """Which input owns the output names of `<rel>` (first come, for good)."""
    return f"state/names/{hashlib.sha256(rel.encode()).hexdigest()[:32]}.json"


def disambiguated_rel(rel: str, bucket: str, name: str) -> str:
    """The `<rel>` of an input whose natural one belongs to another input (incoming/x and incoming/x.jsonl):
    the same name plus `~` and a hash of the input's own name, shortened like any other if too long."""
    return output_rel(f"{rel}~{hashlib.sha256(f'{bucket}/{name}'.encode()).hexdigest()[:12]}")[0]


def part_id(chunk: int, attempt: int) -> str:
    """A part is one chunk of a run's rows at one attempt; retries of chunk 3 are p0003-a2, p0003-a3..."""
    return f"p{chunk:04d}-a{attempt}"


def next_attempt(part: str) -> str:
    chunk, attempt = part[1:].split("-a")
    return part_id(int(chunk), int(attempt) + 1)


def queue_id(run: str, part: str) -> str:
    """How the global scheduler names a part of a run."""
    return f"{run}:{part}"


def split_queue_id(qid: str) -> tuple[str, str]:
    run, part = qid.split(":", 1)
    return run, part


def results_name(rel: str) -> str:
    return f"results/{rel}.jsonl"


def errors_name(rel: str) -> str:
    return f"errors/{rel}.jsonl"


def report_name(rel: str) -> str:
    return f"reports/{rel}.json"


def run_state_name(run: str) -> str:
    return f"state/runs/{run}.json"


SCHEDULER_NAME = "state/scheduler.json"
QUEUE_PREFIX = "state/queue/"


def queue_entry_name(since: float, qid: str) -> str:
    """One waiting part. `since` (when the part was made) leads, zero-padded, so names sort in FIFO order;
    the same part always gets the same name, so enqueuing twice is one object and a part handed back keeps
    its place."""
    return f"{QUEUE_PREFIX}{queue_since_prefix(since)}-{qid}.json"


def queue_since_prefix(since: float) -> str:
    return f"{int(round(since * 1000)):016d}"


def qid_of_display_name(pipeline: str, display_name: str | None) -> str | None:
    """The queue id of a job from its display name (`job_display_name`), or None for another job."""
    if not display_name or not display_name.startswith(pipeline + "-"):
        return None
    rest = display_name[len(pipeline) + 1:]
    run, _, part = rest.partition("-")
    return queue_id(run, part) if run.startswith("r") and part.startswith("p") else None


def job_display_name(pipeline: str, run: str, part: str) -> str:
    return f"{pipeline}-{run}-{part}"

# One small marker per unfinished run, created before its run record and deleted after the run is done: the
# reconciliation lists this prefix (never every run ever) to find the runs it must drive forward.
OPEN_PREFIX = "state/open/"


def open_marker_name(run: str) -> str:
    return f"{OPEN_PREFIX}{run}.json"


def run_of_marker(name: str) -> str:
    return name[len(OPEN_PREFIX):].removesuffix(".json")


def job_marker_prefix(run: str) -> str:
    """One small object per part that has a Vertex job: the run record is not written per job, which would
    make it a hot object for a run of many parts."""
    return f"state/jobs/{run}/"


def job_marker_name(run: str, part: str) -> str:
    return f"{job_marker_prefix(run)}{part}.json"


def repairs_name(run: str) -> str:
    """What the reconciliation did to a run, and when (so a repair is not repeated every tick)."""
    return f"state/repairs/{run}.json"


RECONCILE_CURSOR_NAME = "state/reconcile.json"


def latest_name(bucket: str, object_name: str) -> str:
    """Pointer to the newest generation of an input whose outputs were published (hash: names can be long)."""
    return f"state/latest/{hashlib.sha256(f'{bucket}/{object_name}'.encode()).hexdigest()[:32]}.json"


def staged_name(run: str, part: str) -> str:
    return f"staging/{run}/{part}.jsonl"


def validation_errors_name(run: str) -> str:
    return f"staging/{run}/validation-errors.jsonl"


def part_results_name(run: str, part: str) -> str:
    return f"staging/{run}/out/{part}.results.jsonl"


def part_errors_name(run: str, part: str) -> str:
    return f"staging/{run}/out/{part}.errors.jsonl"


def compose_scratch_prefix(run: str, what: str) -> str:
    return f"staging/{run}/compose/{what}-"


def vertex_output_prefix(run: str, part: str) -> str:
    """Each job gets its own output prefix: two jobs created in the same instant under one prefix would
    overwrite each other's predictions."""
    return f"vertex/{run}/{part}"


def job_labels(pipeline: str, run: str, part: str) -> dict[str, str]:
    """Labels every job carries: they name the pipeline and the run, and find a job after an ambiguous create."""
    return {"pipeline": pipeline, "run": run, "part": f"{run}-{part}"}
