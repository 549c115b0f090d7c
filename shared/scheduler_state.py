"""The scheduler object's transitions, as pure functions: `(state, ...) -> new state | None` ("no change").

Shape (version 2; version 1, with bare queue ids and a `known` map, is read and upgraded):

    {"version": 2,
     "queue":  [{"q": "<run>:<part>", "model": m, "since": t, "verify": bool,       # FIFO, oldest first
                 "denied": t?, "notBefore": t?}, ...],
     "active": {"<run>:<part>": {"job": name|null, "since": t, "state": s, "token": hex, "model": m,
                                  "input": uri, "orphan": bool, "verify": bool}},
     "throttled": {"<model>": {"until": t, "strikes": n}},   # 429 at create: that model waits, others go on
     "creates": [t, ...]}                                      # reservations of the last minute (rate cap)

Invariants: a queue id is in the queue or in `active`, never both, never twice; `active` holds at most
MAX_ACTIVE_JOBS entries; every change to a reservation names its token, so a creator that lost its
reservation (adopted by a poller) can no longer record, release or requeue it. The run record, not this
object, says whether a part may still run: the scheduler may hold a stale entry, and `start_job` drops it.
"""

from __future__ import annotations

import copy
from typing import Any

VERSION = 2
_RATE_WINDOW = 60.0
_MAX_THROTTLE_SECONDS = 60.0


def empty() -> dict[str, Any]:
    return {"version": VERSION, "queue": [], "active": {}, "throttled": {}, "creates": []}


def upgrade(s: dict[str, Any] | None) -> dict[str, Any]:
    """A private, current-version copy of a stored scheduler object (or an empty one)."""
    if s is None:
        return empty()
    new = copy.deepcopy(s)
    new["queue"] = [{"q": e, "model": None, "since": 0.0, "verify": False} if isinstance(e, str) else e
                    for e in new.get("queue", [])]
    new.pop("known", None)  # version 1 kept every part ever queued; the run record is the authority now
    new.setdefault("active", {})
    new.setdefault("throttled", {})
    new.setdefault("creates", [])
    new["version"] = VERSION
    return new


def holds(s: dict[str, Any], qid: str) -> bool:
    return qid in s["active"] or any(e["q"] == qid for e in s["queue"])


def enqueue(s: dict[str, Any], items: list[tuple[str, str | None]], now: float, *,
            verify: bool = False) -> dict[str, Any] | None:
    """Append (queue id, model) pairs not already held. `verify`: the part may have a job already (a repair
    re-queues it), so its creator must look the job up by label before creating one."""
    new = upgrade(s)
    fresh = [(q, m) for q, m in dict(items).items() if not holds(new, q)]
    if not fresh:
        return None
    new["queue"].extend({"q": q, "model": m, "since": now, "verify": verify} for q, m in fresh)
    return new


def _throttled(s: dict[str, Any], model: str | None, now: float) -> bool:
    entry = s["throttled"].get(model or "")
    return entry is not None and entry["until"] > now


def reserve(s: dict[str, Any], *, now: float, token: str, cap: int,
            creates_per_minute: int) -> tuple[dict[str, Any], str] | None:
    """Move the oldest queue entry that may start now into a free slot: (new state, queue id), or None when
    no slot is free, the creation rate is used up, or every queued entry waits (throttled model, denied)."""
    new = upgrade(s)
    if len(new["active"]) >= cap:
        return None
    new["creates"] = [t for t in new["creates"] if now - t < _RATE_WINDOW]
    if len(new["creates"]) >= creates_per_minute:
        return None
    for index, entry in enumerate(new["queue"]):
        if _throttled(new, entry.get("model"), now) or entry.get("notBefore", 0) > now:
            continue
        del new["queue"][index]
        new["active"][entry["q"]] = {
            "job": None, "since": now, "state": None, "token": token, "model": entry.get("model"),
            "verify": bool(entry.get("verify")),
            **{k: entry[k] for k in ("denied",) if k in entry},
        }
        new["creates"].append(now)
        return new, entry["q"]
    return None


def _reservation(s: dict[str, Any], qid: str, token: str) -> dict[str, Any] | None:
    entry = s["active"].get(qid)
    return entry if entry is not None and entry.get("token") == token else None


def set_job(s: dict[str, Any], qid: str, token: str, *, job: str, state: str | None,
            input_uri: str | None, now: float) -> dict[str, Any] | None:
    """Record the job of the reservation `token` holds (and clear the model's throttle: creates work)."""
    new = upgrade(s)
    entry = _reservation(new, qid, token)
    if entry is None or entry.get("job") == job:
        return None
    entry.update(job=job, state=state, input=input_uri)
    entry.pop("denied", None)
    new["throttled"].pop(entry.get("model") or "", None)
    return new


def set_state(s: dict[str, Any], qid: str, job: str, state: str) -> dict[str, Any] | None:
    new = upgrade(s)
    entry = new["active"].get(qid)
    if entry is None or entry.get("job") != job or entry.get("state") == state:
        return None
    entry["state"] = state
    return new


def release(s: dict[str, Any], qid: str, *, token: str | None = None,
            job: str | None = None) -> dict[str, Any] | None:
    """Free a slot, but only the one the caller knows: by its reservation token or by its job name."""
    new = upgrade(s)
    entry = new["active"].get(qid)
    if entry is None:
        return None
    if (token is None or entry.get("token") != token) and (job is None or entry.get("job") != job):
        return None
    del new["active"][qid]
    return new


def throttle(s: dict[str, Any], qid: str, token: str, *, now: float) -> dict[str, Any] | None:
    """A 429 at create: hand the reservation back to the head of the queue and hold back that model (only
    that model) with a back-off that doubles on every strike, up to a minute."""
    new = upgrade(s)
    entry = _reservation(new, qid, token)
    if entry is None or entry.get("job"):
        return None
    del new["active"][qid]
    model = entry.get("model") or ""
    strikes = new["throttled"].get(model, {}).get("strikes", 0) + 1
    new["throttled"][model] = {"until": now + min(_MAX_THROTTLE_SECONDS, 2.0 ** strikes), "strikes": strikes}
    new["queue"].insert(0, _back_to_queue(qid, entry))
    return new


def deny(s: dict[str, Any], qid: str, token: str, *, now: float, retry_in: float) -> dict[str, Any] | None:
    """A 401/403 at create: back to the head of the queue, not before `retry_in`; remembers when it began."""
    new = upgrade(s)
    entry = _reservation(new, qid, token)
    if entry is None or entry.get("job"):
        return None
    del new["active"][qid]
    queued = _back_to_queue(qid, entry)
    queued["denied"] = entry.get("denied", now)
    queued["notBefore"] = now + retry_in
    new["queue"].insert(0, queued)
    return new


def _back_to_queue(qid: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"q": qid, "model": entry.get("model"), "since": entry.get("since", 0.0),
            "verify": bool(entry.get("verify"))}


def orphan(s: dict[str, Any], qid: str, token: str) -> dict[str, Any] | None:
    """Vertex unreachable after an ambiguous create: the slot stays taken (a job may exist) and the next
    poll adopts it at once."""
    new = upgrade(s)
    entry = _reservation(new, qid, token)
    if entry is None or entry.get("job") or entry.get("orphan"):
        return None
    entry["orphan"] = True
    return new


def adopt(s: dict[str, Any], qid: str, *, now: float, stuck_after: float, token: str) -> dict[str, Any] | None:
    """Take over a reservation without a job whose creator is gone (orphaned, or older than `stuck_after`)."""
    new = upgrade(s)
    entry = new["active"].get(qid)
    if entry is None or entry.get("job"):
        return None
    if not entry.get("orphan") and now - entry["since"] <= stuck_after:
        return None
    entry.update(since=now, token=token, orphan=False, verify=True)
    return new


def requeue_missing(s: dict[str, Any], items: list[tuple[str, str | None]], now: float) -> dict[str, Any] | None:
    """The reconciliation's repair: parts their run holds as queued but the scheduler does not. They may
    have a job already (their creator died after the create), so they are queued to be looked up first."""
    return enqueue(s, items, now, verify=True)
