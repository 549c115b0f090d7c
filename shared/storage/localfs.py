"""ObjectStore over local directories, so the core's submit and collect paths run on local files
(`batchctl validate`, `batchctl postprocess`) with the same code the functions run, streaming.

Each bucket is a directory (`buckets` maps a name to one; any other name is `root/<name>`) and an object
name is a path under it. Generation rules are kept: a generation is the file's modification time in
nanoseconds, set by every write to a fresh value above the last one, so "0 creates only if absent, G
replaces only generation G" holds. Writes go to a temporary file that replaces the object when complete.
Meant for one process at a time (conditional writes are checked under a lock of this object, not across
processes). Custom metadata is not kept (`object_info` and listings show none).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

from shared.storage.base import Listed, ObjectMissing, StoreOpener, Versioned, dumps

_TMP = ".gbp-tmp-"
_CHUNK = 8 * 1024 * 1024


class LocalFsStore:
    def __init__(self, root: Path, buckets: Mapping[str, Path] | Iterable[tuple[str, Path]] | None = None) -> None:
        self._root = Path(root)
        self._buckets = {name: Path(path) for name, path in dict(buckets or {}).items()}
        self._lock = threading.RLock()
        self._last = 0

    # ------------------------------------------------------------------------------------------ paths
    def _dir(self, bucket: str) -> Path:
        return self._buckets.get(bucket, self._root / bucket)

    def _path(self, bucket: str, name: str) -> Path:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) or \
                parts[-1] in ("", ".", ".."):
            raise ValueError(f"object name {name!r} cannot be a local file name")
        return self._dir(bucket).joinpath(*parts)

    @staticmethod
    def _generation(path: Path) -> int | None:
        try:
            return path.stat().st_mtime_ns if path.is_file() else None
        except OSError:
            return None

    def _stamp(self, path: Path) -> int:
        """Give a just-written file a generation above every earlier one (file times can be coarse)."""
        wanted = max(time.time_ns(), self._last + 1)
        os.utime(path, ns=(wanted, wanted))
        self._last = path.stat().st_mtime_ns  # what the file system kept of it
        return self._last

    @contextmanager
    def _replacing(self, bucket: str, name: str, if_generation_match: int | None) -> Iterator[tuple[IO[bytes], list]]:
        """A temporary file that becomes the object on success (if the precondition still holds)."""
        path = self._path(bucket, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP, dir=path.parent)
        outcome: list[int | None] = [None]
        try:
            with os.fdopen(fd, "wb") as f:
                yield f, outcome
            with self._lock:
                if if_generation_match is not None and (self._generation(path) or 0) != if_generation_match:
                    return
                os.replace(tmp, path)
                outcome[0] = self._stamp(path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # ------------------------------------------------------------------------------------------ ObjectStore
    def read_json(self, bucket: str, name: str) -> Versioned | None:
        path = self._path(bucket, name)
        with self._lock:
            generation = self._generation(path)
            if generation is None:
                return None
            return Versioned(orjson.loads(path.read_bytes()), generation)

    def write_bytes(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
                    *, if_generation_match: int | None = None, metadata: dict[str, str] | None = None) -> int | None:
        with self._replacing(bucket, name, if_generation_match) as (f, outcome):
            f.write(data)
        return outcome[0]

    def write_json(self, bucket: str, name: str, value: Any, *, if_generation_match: int | None,
                   retry: bool = True) -> int | None:
        return self.write_bytes(bucket, name, dumps(value), "application/json",
                                if_generation_match=if_generation_match)

    def read_bytes(self, bucket: str, name: str) -> bytes | None:
        path = self._path(bucket, name)
        try:
            return path.read_bytes() if path.is_file() else None
        except FileNotFoundError:
            return None

    @contextmanager
    def open_read(self, bucket: str, name: str, generation: int | None = None, *,
                  start: int = 0, length: int | None = None) -> Iterator[IO[bytes]]:
        path = self._path(bucket, name)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"{path}") from None
        with f:
            if generation is not None and os.fstat(f.fileno()).st_mtime_ns != generation:
                raise ObjectMissing(f"{path} (generation {generation})")
            if start:
                f.seek(start)
            yield f

    def opener(self) -> StoreOpener:
        return StoreOpener(type(self), (self._root, tuple(self._buckets.items())))

    @contextmanager
    def open_write(self, bucket: str, name: str, content_type: str = "application/x-ndjson") -> Iterator[IO[bytes]]:
        # Like a resumable upload: the object appears on success, and not at all when the writer fails.
        with self._replacing(bucket, name, None) as (f, _):
            yield f

    def list_names(self, bucket: str, prefix: str) -> Iterator[str]:
        yield from self._names(bucket, prefix)

    def _names(self, bucket: str, prefix: str) -> list[str]:
        top = self._dir(bucket)
        # Only the directories a name with this prefix can be in are walked.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = top.joinpath(*head.split("/")) if head else top
        names = []
        for folder, _, files in os.walk(start):
            rel = Path(folder).relative_to(top).as_posix()
            for file in files:
                if file.startswith(_TMP):
                    continue
                name = file if rel == "." else f"{rel}/{file}"
                if name.startswith(prefix):
                    names.append(name)
        return sorted(names)

    def list_page(self, bucket: str, prefix: str, *, start_after: str = "", limit: int = 1000) -> list[Listed]:
        listed = []
        for name in self._names(bucket, prefix):
            if name <= start_after:
                continue
            try:
                st = self._path(bucket, name).stat()
            except FileNotFoundError:
                continue
            listed.append(Listed(name, st.st_mtime_ns, st.st_mtime, st.st_size))
            if len(listed) == limit:
                break
        return listed

    def object_info(self, bucket: str, name: str, generation: int | None = None) -> dict[str, Any] | None:
        try:
            st = self._path(bucket, name).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if generation is not None and st.st_mtime_ns != generation:
            return None
        return {"size": st.st_size, "generation": st.st_mtime_ns, "metadata": {}, "content_type": None}

    def compose(self, bucket: str, sources: Iterable[str], destination: str, scratch_prefix: str,
                content_type: str = "application/x-ndjson", *,
                if_generation_match: int | None = None) -> int | None:
        with self._replacing(bucket, destination, if_generation_match) as (out, outcome):
            for name in sources:
                try:
                    with open(self._path(bucket, name), "rb") as f:
                        _append(f, out)
                except FileNotFoundError:
                    raise ObjectMissing(f"{self._path(bucket, name)}") from None
        return outcome[0]

    def delete(self, bucket: str, name: str) -> None:
        path = self._path(bucket, name)
        with self._lock, contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            path.unlink()


def _append(source: IO[bytes], out: IO[bytes]) -> None:
    """Copy a whole file onto the end of `out` inside the kernel where it can (Cloud Storage composes on its
    side, without the function reading a byte; a user-space copy made the local compose a tenth of collect)."""
    out.flush()
    try:
        while os.copy_file_range(source.fileno(), out.fileno(), _CHUNK * 16):
            pass
    except OSError:  # a file system without it: copy through user space, from where the kernel stopped
        shutil.copyfileobj(source, out, _CHUNK)
