"""The storage interface and the compare-and-swap rule every state change goes through.

State lives in the work bucket as small JSON objects changed only with generation preconditions: 0 to
create, G to compare-and-swap. `change_json` is the one place that loop is written.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import orjson

from shared.errors import StateConflictError, TransientError


@dataclass(frozen=True, slots=True)
class Versioned:
    """A JSON state object and the generation it was read at."""

    value: dict[str, Any]
    generation: int


@dataclass(frozen=True, slots=True)
class StoreOpener:
    """Opens a store in another process: a module-level factory and its (hashable) arguments, picklable, and
    equal to its unpickled copies. A worker keeps one store per opener for all its tasks (`shared/harvest.py`),
    and each task brings its own copy: an opener equal only to itself (a functools.partial) made every task
    open a new storage client, with a new connection, and keep it for the worker's life."""

    factory: Callable[..., ObjectStore]
    args: tuple = ()

    def __call__(self) -> ObjectStore:
        return self.factory(*self.args)


class ObjectStore(Protocol):
    """What the pipeline needs from Cloud Storage, and nothing more."""

    def read_json(self, bucket: str, name: str) -> Versioned | None:
        """The object parsed as JSON with its generation, or None when absent."""

    def write_json(self, bucket: str, name: str, value: Any, *, if_generation_match: int | None,
                   retry: bool = True) -> int | None:
        """Write `value`; 0 creates only if absent, G replaces only generation G. Returns the new generation,
        or None when the precondition failed (someone else wrote first). A value's `INDEX_KEY` entry is
        also written as the object's custom metadata (see `index_of`).

        `retry=False`: a failed call (429, 5xx, no answer) raises TransientError at once instead of being
        sent again by the client. After a 5xx the write may have committed; sent again, it would be refused
        by its own commit, and a refused write still counts against the object's write rate. The caller
        tells by reading (`change_json` does)."""

    def write_bytes(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
                    *, if_generation_match: int | None = None) -> int | None:
        """Write a whole small object (same precondition rule as write_json)."""

    def read_bytes(self, bucket: str, name: str) -> bytes | None:
        """A whole small object, or None when absent."""

    def open_read(self, bucket: str, name: str, generation: int | None = None, *, start: int = 0,
                  length: int | None = None) -> AbstractContextManager[IO[bytes]]:
        """Stream an object from byte `start` (never loaded whole); pinned to `generation` when given. Raises
        ObjectMissing. `length`: about how many bytes the caller will read (a hint: nothing is fetched ahead
        past it, and reading on still works)."""

    def opener(self) -> StoreOpener | None:
        """How another process (a worker) opens this same storage, or None when the storage lives only in
        this one."""

    def open_write(self, bucket: str, name: str,
                   content_type: str = "application/x-ndjson") -> AbstractContextManager[IO[bytes]]:
        """Stream bytes into a new version of an object."""

    def list_names(self, bucket: str, prefix: str) -> Iterator[str]:
        """Names of the objects under `prefix`, in lexicographic order."""

    def list_page(self, bucket: str, prefix: str, *, start_after: str = "", limit: int = 1000) -> list[Listed]:
        """Up to `limit` objects under `prefix` whose names sort after `start_after`, in name order: one page,
        so a caller can walk a large prefix a bit at a time and resume where it stopped. Each carries its
        custom metadata, so an index written with the objects (`INDEX_KEY`) is read without reading them."""

    def object_info(self, bucket: str, name: str, generation: int | None = None) -> dict[str, Any] | None:
        """{"size", "generation", "metadata", "content_type"} or None when absent."""

    def compose(self, bucket: str, sources: Iterable[str], destination: str, scratch_prefix: str,
                content_type: str = "application/x-ndjson", *,
                if_generation_match: int | None = None) -> int | None:
        """Concatenate objects server side into `destination` (any number of sources; empty makes an
        empty object). Intermediate objects go under `scratch_prefix`. With `if_generation_match`, the
        destination is written only if it is at that generation (0: absent). Returns the destination's new
        generation, or None when the precondition failed."""

    def delete(self, bucket: str, name: str) -> None:
        """Delete if present."""


@dataclass(frozen=True, slots=True)
class Listed:
    """One object of a listing: what the reconciliation needs to tell an input from its run."""

    name: str
    generation: int
    created: float  # epoch seconds
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)  # the object's custom metadata


# The key under which a state object carries the token of the call that wrote it (see `change_json`).
WRITE_TOKEN = "_w"
_UNANSWERED_TRIES = 5  # failed writes in a row before change_json gives up (TransientError: the event is retried)
_UNANSWERED_PAUSE_MAX = 8.0

# The key under which a state object carries a small flat summary of itself (strings to strings) that
# `write_json` also stores as the object's custom metadata: one listing then answers for a thousand objects
# without reading one (`shared/runindex.py`). Cloud Storage keeps at most 8 KiB of custom metadata.
INDEX_KEY = "_i"


def index_of(value: Any) -> dict[str, str] | None:
    """The custom metadata a JSON state value asks for (its `INDEX_KEY` entry), or None."""
    index = value.get(INDEX_KEY) if isinstance(value, dict) else None
    return {str(k): str(v) for k, v in index.items()} if isinstance(index, dict) and index else None


class ObjectMissing(Exception):
    """The object (or the requested generation) does not exist."""


class ObjectUnreadable(Exception):
    """The object's stored bytes cannot be read as its metadata says (stored gzip-encoded, but not gzip, corrupt
    or cut short): what was read before the damage stands, nothing after it can be read, and reading it again
    meets the same damage. `line`: the first line (counted from 1) the damage leaves unread."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def mutate_json(
    store: ObjectStore,
    bucket: str,
    name: str,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    *,
    attempts: int = 40,
) -> dict[str, Any] | None:
    """Apply `change` to a JSON state object with compare-and-swap, retrying on lost races.

    `change` gets a private copy of the current value (None when absent) and returns the new value, or
    None to leave the object as it is. It may run several times, so it must be a pure function of its
    argument. Returns the value that is stored afterwards.
    """
    return change_json(store, bucket, name, change, attempts=attempts)[0]


def change_json(
    store: ObjectStore,
    bucket: str,
    name: str,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    *,
    attempts: int = 40,
) -> tuple[dict[str, Any] | None, bool]:
    """`mutate_json` that also says whether THIS call wrote: (value stored afterwards, wrote).

    Of two deliveries racing to make the same one-way change (collect a part, finish staging), exactly one
    gets True; the other sees `change` return None on the re-read value and must not act as the winner.

    Every value written carries this call's write token (`WRITE_TOKEN`). Cloud Storage can commit a write
    and lose its reply (a 503, or no answer). The write is not sent again by the client (which would get
    412 for its own commit, a second write against the object's rate of about one a second): a read tells
    whether our token is there. A 412 whose re-read shows our token is our success too, never a lost race:
    the change is not applied a second time. A write the storage failed without committing it is tried
    again after a pause of a second or more, doubling, as the client's own retry would; after
    `_UNANSWERED_TRIES` such failures in a row the TransientError goes to the caller."""
    token = secrets.token_hex(8)
    failed = 0  # writes in a row the storage failed (429, 5xx, no answer) and that did not commit
    for attempt in range(attempts):
        current = store.read_json(bucket, name)
        if current is not None and attempt and current.value.get(WRITE_TOKEN) == token:
            return current.value, True
        base = orjson.loads(dumps(current.value)) if current else None
        new = change(base)
        if new is None:
            return (current.value if current else None), False
        new = {**new, WRITE_TOKEN: token}
        generation = current.generation if current else 0
        try:
            if store.write_json(bucket, name, new, if_generation_match=generation, retry=False) is not None:
                return new, True
        except TransientError:
            # Committed or not: a read tells, where the client's own retry would have spent a second write
            # (refused by its own commit) against the object's rate.
            found = store.read_json(bucket, name)
            if found is not None and found.value.get(WRITE_TOKEN) == token:
                return found.value, True
            failed += 1
            if failed >= _UNANSWERED_TRIES or attempt == attempts - 1:
                raise
            # Not committed: the storage is failing, or the object is over its write rate (429). Wait as the
            # client would, from a second on, not the short pause of a lost race.
            time.sleep(min(_UNANSWERED_PAUSE_MAX, 2.0 ** (failed - 1)) * (0.5 + random.random()))
            continue
        failed = 0
        # Lost the race: back off a little, with jitter so racing writers spread out, and try again.
        time.sleep(min(0.5, 0.01 * (2 ** min(attempt, 6))) * (0.5 + random.random()))
    raise StateConflictError(f"gs://{bucket}/{name}: still contended after {attempts} attempts")
