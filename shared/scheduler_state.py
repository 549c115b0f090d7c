"""The scheduler's state and its transitions, as pure functions: `(state, ...) -> new state | None`.

No object is hot. Cloud Storage takes about one write per second to one object name, so the state is split:

- the queue is one small object per waiting part, `state/queue/<since>-<run>:<part>.json` (`since`: when
  the part was made, zero-padded milliseconds, so names sort in FIFO order and the same part always gets the
  same name: enqueuing is create-if-absent, and a part handed back keeps its place). Submit and collect
  write only these, never a shared object;
- `state/scheduler.json` holds the active slots, the per-model throttle and the last minute's creations:

    {"version": 3, "at": t (the last write),
     "active": {"<run>:<part>": {"since": t, "first": t, "token": hex, "model": m, "state": s|null,
                                  "verify": bool, "orphan": bool, "entry": "<queue object name>", "input": uri}},
     "throttled": {"<model>": {"until": t, "strikes": n}},
     "creates": [t, ...]}

  It is written once per poll tick (observed states, released and newly reserved slots in ONE change),
  and otherwise only on rare events (a 429 or 403 at create, an adoption) or by one best-effort reservation
  right after an upload, which gives up on contention rather than retrying (the next tick does it).
  Job names are not kept here: poll matches Vertex jobs to slots by their display name, and the run
  record holds each part's job.

Invariants: `active` holds at most MAX_ACTIVE_JOBS entries; every change to a reservation names its token, so
a creator that lost its reservation (adopted by a poller) can no longer hand it back or release it. The run
record, not this state, says whether a part may still run: a stale queue entry or slot is dropped by
`start_job`. Version 2 objects (queue inside, job names in slots) are read and upgraded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shared.storage.base import INDEX_KEY

VERSION = 3
_RATE_WINDOW = 60.0
# Cloud Storage takes about one write per second to one object: the routine writers (the poll tick, the
# reservation after an upload) skip their turn when the slots object was written more recently than this.
MIN_WRITE_INTERVAL = 1.0
_MAX_THROTTLE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Queued:
    """One waiting part (the content of its queue object, plus the object's name)."""

    name: str
    qid: str
    model: str | None
    verify: bool = False
    denied: float | None = None
    not_before: float = 0.0
    input: str | None = None  # the input's URI, for the log labels of the job's events

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"q": self.qid, "model": self.model, "verify": self.verify, "input": self.input}
        if self.denied is not None:
            value.update(denied=self.denied, notBefore=self.not_before)
        # Also the object's custom metadata: a listing of the queue then reads no object.
        value[INDEX_KEY] = {k: "" if v is None else json.dumps(v) for k, v in value.items()}
        return value

    @classmethod
    def from_json(cls, name: str, value: Mapping[str, Any]) -> Queued:
        return cls(name=name, qid=value["q"], model=value.get("model"), verify=bool(value.get("verify")),
                   denied=value.get("denied"), not_before=float(value.get("notBefore") or 0.0),
                   input=value.get("input"))

    @classmethod
    def from_index(cls, name: str, index: Mapping[str, str]) -> Queued | None:
        """From a listing's metadata (None when the object was written without it)."""
        if not index.get("q"):
            return None
        return cls.from_json(name, {k: json.loads(v) if v else None for k, v in index.items()})


def empty() -> dict[str, Any]:
    return {"version": VERSION, "active": {}, "throttled": {}, "creates": []}


def upgrade(s: dict[str, Any] | None) -> dict[str, Any]:
    """A private, current-version copy of a stored scheduler object (or an empty one)."""
    # A JSON round trip copies it: the object is JSON (read as JSON, written as JSON). With 10,000 slots
    # copy.deepcopy took ~0.06 s, this ~0.02 s (`python -m bench.poll`).
    return current(None if s is None else orjson.loads(orjson.dumps(s)))


def current(s: dict[str, Any] | None) -> dict[str, Any]:
    """A stored scheduler object (or an empty one) in the current version, changed in place: for an object no
    one else holds (one just read, or the private copy `mutate_json` hands its change), which need not be
    copied again."""
    if s is None:
        return empty()
    for old in ("queue", "known"):  # version 1/2 kept the queue (and a history) here
        s.pop(old, None)
    s.setdefault("active", {})
    s.setdefault("throttled", {})
    s.setdefault("creates", [])
    for entry in s["active"].values():
        entry.pop("job", None)
    s["version"] = VERSION
    return s


def legacy_queue(s: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    """(queue id, model) of a version 1/2 object's queue, to move into queue objects once."""
    return [(e, None) if isinstance(e, str) else (e["q"], e.get("model")) for e in (s or {}).get("queue", [])]


def stamped(new: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """A change about to be written, with the time of the write."""
    if new is not None:
        new["at"] = now
    return new


def written_recently(s: dict[str, Any], now: float, interval: float = MIN_WRITE_INTERVAL) -> bool:
    return 0 <= now - s.get("at", float("-inf")) < interval


def throttled(s: dict[str, Any], model: str | None, now: float) -> bool:
    entry = s["throttled"].get(model or "")
    return entry is not None and entry["until"] > now


def may_start(s: dict[str, Any], entry: Queued, now: float) -> bool:
    return entry.qid not in s["active"] and not throttled(s, entry.model, now) and entry.not_before <= now


def reserve(s: dict[str, Any], queue: list[Queued], *, now: float, tokens, cap: int,
            creates_per_minute: int) -> tuple[dict[str, Any], list[tuple[Queued, str]]] | None:
    """Move queue entries, oldest first, into free slots while the creation rate allows; entries whose model
    is throttled or that wait after a 403 are passed over (they keep their place). `tokens` yields one
    fresh token per reservation. Returns (new state, [(entry, token)]) or None when nothing can start."""
    new = upgrade(s)
    new["creates"] = [t for t in new["creates"] if now - t < _RATE_WINDOW]
    taken: list[tuple[Queued, str]] = []
    for entry in queue:
        if len(new["active"]) >= cap or len(new["creates"]) >= creates_per_minute:
            break
        if not may_start(new, entry, now) or any(e.qid == entry.qid for e, _ in taken):
            continue
        token = next(tokens)
        new["active"][entry.qid] = {"since": now, "first": now, "token": token, "model": entry.model, "state": None,
                                    "verify": entry.verify, "orphan": False, "entry": entry.name,
                                    "input": entry.input,
                                    **({"denied": entry.denied} if entry.denied is not None else {})}
        new["creates"].append(now)
        taken.append((entry, token))
    return (new, taken) if taken else None


def holds(s: dict[str, Any], qid: str, token: str) -> dict[str, Any] | None:
    entry = s["active"].get(qid)
    return entry if entry is not None and entry.get("token") == token else None


def observe(s: dict[str, Any], *, states: dict[str, str], finished: set[str]) -> dict[str, Any] | None:
    """What one poll tick saw: new states of running jobs, and slots whose jobs are over (released)."""
    new = upgrade(s)
    changed = False
    for qid in finished:
        if new["active"].pop(qid, None) is not None:
            changed = True
    for qid, state in states.items():
        entry = new["active"].get(qid)
        if entry is not None and entry.get("state") != state:
            entry["state"] = state
            changed = True
    return new if changed else None


def release(s: dict[str, Any], qid: str, token: str) -> dict[str, Any] | None:
    """Free the slot this token holds (its part must not run, or Vertex refused it for good)."""
    new = upgrade(s)
    if holds(new, qid, token) is None:
        return None
    del new["active"][qid]
    return new


def created(s: dict[str, Any], qid: str, token: str, model: str | None) -> dict[str, Any] | None:
    """A create worked: the model's throttle is over (no write when there was none)."""
    if holds(s, qid, token) is None or (model or "") not in s["throttled"]:
        return None
    new = upgrade(s)
    new["throttled"].pop(model or "", None)
    return new


def throttle(s: dict[str, Any], qid: str, token: str, *, now: float) -> dict[str, Any] | None:
    """A 429 at create: free the slot and hold back that model (only that model) with a back-off that
    doubles on every strike, up to a minute. The caller puts the queue entry back first."""
    new = upgrade(s)
    entry = holds(new, qid, token)
    if entry is None:
        return None
    del new["active"][qid]
    model = entry.get("model") or ""
    strikes = new["throttled"].get(model, {}).get("strikes", 0) + 1
    new["throttled"][model] = {"until": now + min(_MAX_THROTTLE_SECONDS, 2.0 ** strikes), "strikes": strikes}
    return new


def orphan(s: dict[str, Any], qid: str, token: str) -> dict[str, Any] | None:
    """Vertex unreachable after an ambiguous create: the slot stays taken (a job may exist) and the next
    poll adopts it at once."""
    new = upgrade(s)
    entry = holds(new, qid, token)
    if entry is None or entry.get("orphan"):
        return None
    entry["orphan"] = True
    return new


def adopt(s: dict[str, Any], qid: str, *, now: float, stuck_after: float, token: str) -> dict[str, Any] | None:
    """Take over a slot whose job Vertex does not know and whose creator is gone (orphaned, or older than
    `stuck_after`, which no invocation outlives). The adopter looks the job up by label before creating."""
    new = upgrade(s)
    entry = new["active"].get(qid)
    if entry is None or (not entry.get("orphan") and now - entry["since"] <= stuck_after):
        return None
    entry.update(since=now, token=token, orphan=False, verify=True)
    return new
