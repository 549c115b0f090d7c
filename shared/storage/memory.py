"""ObjectStore in memory, with the same generation rules, so the core can be unit-tested without servers."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import orjson

from shared.storage.base import Listed, ObjectMissing, Versioned, dumps, index_of


class MemoryStore:
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], tuple[bytes, int, dict[str, str]]] = {}
        self._generations = itertools.count(1_000_000)
        self._lock = threading.Lock()
        self._created: dict[tuple[str, str], float] = {}
        self.clock = time.time  # tests may set the pipeline's clock, so object ages and the clock agree

    def put(self, bucket: str, name: str, data: bytes, metadata: dict[str, str] | None = None) -> int:
        """Test helper: write an object unconditionally."""
        with self._lock:
            gen = next(self._generations)
            self._objects[(bucket, name)] = (data, gen, dict(metadata or {}))
            self._created[(bucket, name)] = self.clock()
            return gen

    def read_json(self, bucket: str, name: str) -> Versioned | None:
        found = self._objects.get((bucket, name))
        return Versioned(orjson.loads(found[0]), found[1]) if found else None

    def write_bytes(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
                    *, if_generation_match: int | None = None, metadata: dict[str, str] | None = None) -> int | None:
        with self._lock:
            found = self._objects.get((bucket, name))
            if if_generation_match is not None and (found[1] if found else 0) != if_generation_match:
                return None
            gen = next(self._generations)
            self._objects[(bucket, name)] = (bytes(data), gen, dict(metadata or {}))
            self._created[(bucket, name)] = self.clock()
            return gen

    def write_json(self, bucket: str, name: str, value: Any, *, if_generation_match: int | None,
                   retry: bool = True) -> int | None:
        return self.write_bytes(bucket, name, dumps(value), if_generation_match=if_generation_match,
                                metadata=index_of(value))

    def read_bytes(self, bucket: str, name: str) -> bytes | None:
        found = self._objects.get((bucket, name))
        return found[0] if found else None

    @contextmanager
    def open_read(self, bucket: str, name: str, generation: int | None = None, *,
                  start: int = 0, length: int | None = None) -> Iterator[IO[bytes]]:
        found = self._objects.get((bucket, name))
        if not found or (generation is not None and found[1] != generation):
            raise ObjectMissing(f"gs://{bucket}/{name}")
        stream = io.BytesIO(found[0])
        stream.seek(start)
        yield stream

    def opener(self) -> None:
        return None  # its objects live in this process only

    @contextmanager
    def open_write(self, bucket: str, name: str, content_type: str = "application/x-ndjson") -> Iterator[IO[bytes]]:
        # Like a resumable upload: the object appears on close(), and not at all when the writer fails.
        writer = _Writer(lambda data: self.put(bucket, name, data))
        try:
            yield writer
        except BaseException:
            writer.discard()
            raise
        writer.close()

    def list_names(self, bucket: str, prefix: str) -> Iterator[str]:
        yield from sorted(n for (b, n) in list(self._objects) if b == bucket and n.startswith(prefix))

    def list_page(self, bucket: str, prefix: str, *, start_after: str = "", limit: int = 1000) -> list[Listed]:
        names = sorted(n for (b, n) in list(self._objects) if b == bucket and n.startswith(prefix)
                       and n > start_after)[:limit]
        found = [(n, self._objects.get((bucket, n)), self._created.get((bucket, n), 0.0)) for n in names]
        return [Listed(n, f[1], created, len(f[0]), dict(f[2])) for n, f, created in found if f]

    def object_info(self, bucket: str, name: str, generation: int | None = None) -> dict[str, Any] | None:
        found = self._objects.get((bucket, name))
        if not found or (generation is not None and found[1] != generation):
            return None
        return {"size": len(found[0]), "generation": found[1], "metadata": dict(found[2]), "content_type": None}

    def compose(self, bucket: str, sources: Iterable[str], destination: str, scratch_prefix: str,
                content_type: str = "application/x-ndjson", *,
                if_generation_match: int | None = None) -> int | None:
        parts = []
        for name in sources:
            found = self._objects.get((bucket, name))
            if not found:
                raise ObjectMissing(f"gs://{bucket}/{name}")
            parts.append(found[0])
        return self.write_bytes(bucket, destination, b"".join(parts), if_generation_match=if_generation_match)

    def delete(self, bucket: str, name: str) -> None:
        with self._lock:
            self._objects.pop((bucket, name), None)


class _Writer(io.BytesIO):
    def __init__(self, commit) -> None:
        super().__init__()
        self._commit = commit

    def discard(self) -> None:
        self._commit = None
        super().close()

    def close(self) -> None:
        if not self.closed and self._commit is not None:
            self._commit(self.getvalue())
        super().close()
