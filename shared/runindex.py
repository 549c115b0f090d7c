"""Which runs exist and how far each one is, from listings alone: the run index.

Every run record carries a flat summary of itself (`runstate.index`, renewed by every transition) that is
also stored as the object's custom metadata, so one list call of `state/runs/` answers for up to a thousand
runs without reading one. Run ids are `r` + hex digits, so the listing is split into 16 shards
(`state/runs/r0` .. `state/runs/rf`) walked in parallel: 10,000 runs cost ~16 list calls on a few threads
(`bench/batchctl_runs.py` measures it). A record written before the index existed has no metadata; it is
read instead (once it changes again, it has one).

Pure parts (`RunSummary`, `select`) are separate from the walk (`list_runs`), so the CLI and tests share
one reading of the summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from shared import layout, runstate
from shared.storage import ObjectStore
from shared.storage.base import Listed

RUNS_PREFIX = layout.run_state_name("").removesuffix(".json")  # "state/runs/"
_SHARDS = "0123456789abcdef"
_PAGE = 1000
# States `select` accepts: the run states, the outcomes of a done run, and two groupings.
STATES = (runstate.STAGING, runstate.RUNNING, runstate.FINALIZING, runstate.DONE, "succeeded", "partial",
          "failed", "superseded", "cancelled", "open")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as its index tells it."""

    run: str
    state: str
    input: str
    model: str | None
    received: str | None
    total: int
    done: int
    failed: int
    jobs: int
    outcome: str | None = None
    finished: str | None = None
    cancelled: str | None = None

    @classmethod
    def from_index(cls, run: str, index: Mapping[str, str]) -> RunSummary | None:
        """From a record's summary (metadata or `_i`); None when there is none."""
        if not index or "state" not in index:
            return None
        return cls(run=run, state=index["state"], input=index.get("input", ""), model=index.get("model"),
                   received=index.get("received") or None, total=_int(index.get("total")),
                   done=_int(index.get("done")), failed=_int(index.get("failed")), jobs=_int(index.get("jobs")),
                   outcome=index.get("outcome") or None, finished=index.get("finished") or None,
                   cancelled=index.get("cancelled") or None)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunSummary:
        summary = cls.from_index(record["run"], runstate.index(record))
        assert summary is not None
        return summary

    @property
    def label(self) -> str:
        """The state an operator reads: the outcome once done, "cancelled" while a cancelled run ends."""
        if self.state == runstate.DONE:
            return self.outcome or runstate.DONE
        return "cancelling" if self.cancelled else self.state

    def age_seconds(self, now: float) -> float | None:
        return now - _epoch(self.received) if self.received else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def select(runs: Iterable[RunSummary], *, state: str | None = None, since_seconds: float | None = None,
           now: float, input_uri: str | None = None) -> list[RunSummary]:
    """The runs matching every filter given, newest first. `state`: one of `STATES`."""
    chosen = []
    for run in runs:
        if state and not _in_state(run, state):
            continue
        if since_seconds is not None and (run.received is None or now - _epoch(run.received) > since_seconds):
            continue
        if input_uri is not None and run.input != input_uri:
            continue
        chosen.append(run)
    return sorted(chosen, key=lambda r: (r.received or "", r.run), reverse=True)


def _in_state(run: RunSummary, state: str) -> bool:
    if state == "open":
        return run.state != runstate.DONE
    if state == "cancelled":
        return run.cancelled is not None
    if state in (runstate.STAGING, runstate.RUNNING, runstate.FINALIZING, runstate.DONE):
        return run.state == state
    return run.state == runstate.DONE and run.outcome == state


def _shard(store: ObjectStore, bucket: str, prefix: str) -> list[Listed]:
    listed: list[Listed] = []
    after = ""
    while True:
        page = store.list_page(bucket, prefix, start_after=after, limit=_PAGE)
        listed += page
        if len(page) < _PAGE:
            return listed
        after = page[-1].name


def list_runs(store: ObjectStore, bucket: str, *, workers: int = 8) -> list[RunSummary]:
    """Every run in the work bucket, newest first: one listing per shard, a read only for a record that has
    no index yet. Raises what the store raises (TransientError when storage is unreachable or throttles)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        shards = list(pool.map(lambda h: _shard(store, bucket, RUNS_PREFIX + "r" + h), _SHARDS))
        listed = [obj for shard in shards for obj in shard if obj.name.endswith(".json")]
        found: list[RunSummary | None] = [RunSummary.from_index(_run_of(obj.name), obj.metadata) for obj in listed]
        legacy = [i for i, summary in enumerate(found) if summary is None]
        for i, summary in zip(legacy, pool.map(lambda i: _read(store, bucket, listed[i].name), legacy),
                              strict=True):
            found[i] = summary
    return sorted((s for s in found if s is not None), key=lambda r: (r.received or "", r.run), reverse=True)


def _run_of(name: str) -> str:
    return name[len(RUNS_PREFIX):].removesuffix(".json")


def _read(store: ObjectStore, bucket: str, name: str) -> RunSummary | None:
    found = store.read_json(bucket, name)
    return RunSummary.from_record(found.value) if found else None  # None: deleted since the listing
