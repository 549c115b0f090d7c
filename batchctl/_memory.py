"""In-memory doubles of the CLI's own backends (`_backends.py`), with the same rules: for unit tests, which
drive every command through CliRunner over these, the MemoryStore and a fake Vertex."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from batchctl._backends import Notification
from shared.redrive import MemoryRelay
from shared.storage.memory import MemoryStore


class MemoryBuckets:
    """Buckets over a MemoryStore: the ones named exist; uploads land in the store."""

    def __init__(self, store: MemoryStore, buckets: set[str],
                 notifications: dict[str, list[Notification]] | None = None) -> None:
        self._store, self.names = store, set(buckets)
        self._notifications = notifications

    def exists(self, bucket: str) -> bool:
        return bucket in self.names

    def notifications(self, bucket: str) -> list[Notification] | None:
        return None if self._notifications is None else list(self._notifications.get(bucket, []))

    def upload(self, bucket: str, name: str, path: Path, *, metadata: Mapping[str, str], content_type: str,
               progress: Callable[[int], None] | None = None) -> int:
        data = Path(path).read_bytes()
        if progress:
            progress(len(data))
        return self._store.put(bucket, name, data, dict(metadata))


class MemoryAdmin(MemoryRelay):
    """Topics and subscriptions in memory (see MemoryRelay), with the look-ups `doctor` makes."""

    def topic_exists(self, name: str) -> bool:
        return name in self.topics
