"""Worker processes an instance keeps for work that pays to run side by side: collect's pieces of job output
(`shared/harvest.py`) and submit's blocks of input lines (`shared/staging.py`).

Per line, both paths are Python (a few microseconds a line on top of the decoding), so one core caps them; a
function with 2 vCPU gets up to twice the throughput from two processes. The workers are plain subprocesses
running `python -m shared.worker_process`, fed pickled tasks (a module-level function and its arguments) over a
pipe: not multiprocessing, whose start methods either fork a threaded process (a function instance, with its
storage client's threads and locks) or run the parent's main module again in every worker (functions-framework's).
They live as long as the instance, so only its first large task pays for starting them (~0.1 s each).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from shared.errors import TransientError

__all__ = ["AHEAD", "Team", "WorkerLost", "available_cpus", "discard", "receive", "running", "send", "serve",
           "team", "team_lock"]

AHEAD = 2  # tasks per worker sent ahead of the reply being read: bounds what is in flight, so memory


class WorkerLost(TransientError):
    """A worker process ended mid-task: the delivery is retried (with new workers)."""


_FRAME = struct.Struct("<QQ")  # the pickle's length, then how many out-of-band buffers follow it
_LENGTH = struct.Struct("<Q")


def send(stream: IO[bytes], value: object) -> None:
    """`value` pickled, then each buffer it hands out of band (blocks of lines) written as it is: the bytes are
    not copied into the pickle, nor on the other side out of it."""
    _write(stream, _frames(value))


def _frames(value: object) -> list[bytes | memoryview]:
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    views = [buffer.raw() for buffer in buffers]
    return [_FRAME.pack(len(data), len(views)) + b"".join(_LENGTH.pack(view.nbytes) for view in views), data,
            *views]


def _write(stream: IO[bytes], frames: list[bytes | memoryview]) -> None:
    for frame in frames:
        stream.write(frame)
    stream.flush()


def receive(stream: IO[bytes]) -> object:
    size, count = _FRAME.unpack(_read(stream, _FRAME.size))
    sizes = [_LENGTH.unpack(_read(stream, _LENGTH.size))[0] for _ in range(count)]
    data = _read(stream, size)
    # Each buffer read whole into a bytes object of its size (one copy from the pipe, no zero-fill first).
    return pickle.loads(data, buffers=[_read(stream, n) for n in sizes])


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def serve(tasks: IO[bytes], replies: IO[bytes]) -> None:
    """A worker's loop: (function, args) in, ("done", its value) or ("error", exception) out."""
    while True:
        try:
            function, args = receive(tasks)
        except EOFError:
            return
        try:
            reply: tuple[str, object] = ("done", function(*args))
        except Exception as exc:  # noqa: BLE001 - the parent raises it; the worker lives on
            reply = ("error", exc)
        try:
            send(replies, reply)
        except (pickle.PicklingError, TypeError, AttributeError):
            send(replies, ("error", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))


Task = tuple[Callable[..., Any], tuple]


class Team:
    def __init__(self, size: int, preload: Iterable[str]) -> None:
        root = str(Path(__file__).resolve().parent.parent)  # where `shared` is importable from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.size = size
        self.preload = frozenset(preload)
        # `preload`: the modules the tasks will need (google-cloud-storage takes ~0.2 s to import), imported while
        # the first task is on its way.
        self.procs = [subprocess.Popen([sys.executable, "-m", "shared.worker_process", *sorted(self.preload)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) for _ in range(size)]

    def map(self, tasks: Iterable[Task]) -> Iterator[Any]:
        """Task i goes to worker i % size; replies are read back in task order, at most AHEAD sent ahead per
        worker, so memory holds a few tasks whatever the input's size. `tasks` is drawn (and pickled) here,
        lazily: a task made by a generator sees what the caller did with the replies before it.

        Each worker's tasks are written by a thread of this process: a task larger than a pipe holds (a block
        of input lines) would otherwise wait for its worker to read it while that worker waits for this process
        to read its reply. Written here, in the worker, by a thread of its own, each 64 KB of a task would wait
        for the worker's busy thread to let go of the interpreter (up to 5 ms a time)."""
        todo = iter(tasks)
        outboxes = [queue.SimpleQueue() for _ in self.procs]
        writers = [threading.Thread(target=_post, args=(proc.stdin, outbox), name="worker-tasks", daemon=True)
                   for proc, outbox in zip(self.procs, outboxes, strict=True)]
        for thread in writers:
            thread.start()
        sent = received = 0
        more = True
        try:
            while True:
                while more and sent < received + self.size * AHEAD:
                    task = next(todo, None)
                    if task is None:
                        more = False
                        break
                    outboxes[sent % self.size].put(_frames(task))
                    sent += 1
                if received == sent:
                    return
                try:
                    kind, value = receive(self.procs[received % self.size].stdout)
                except (EOFError, OSError):  # its pipe closed: it died (killed, out of memory)
                    raise WorkerLost("a worker process ended mid-task") from None
                received += 1
                if kind == "error":
                    raise value
                yield value
        finally:
            for outbox in outboxes:
                outbox.put(None)

    def close(self, *, kill: bool = False) -> None:
        """Stop the workers: their pipes closed, they finish and leave; with `kill`, at once (a task of theirs was
        abandoned, and a thread may still be writing the next one to them)."""
        for proc in self.procs:
            if kill:
                proc.kill()
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def _post(stream: IO[bytes], outbox: queue.SimpleQueue) -> None:
    """A writer thread of `Team.map`: each task in `outbox` to the worker's pipe, until None. A worker that died
    closed its pipe, or the team was stopped: its tasks are dropped (the caller learns of it from the reply that
    does not come)."""
    while (frames := outbox.get()) is not None:
        with contextlib.suppress(OSError, ValueError):  # (ValueError: the pipe was closed here)
            _write(stream, frames)


_TEAM: Team | None = None
# Held by the one caller that uses the team: another's tasks and replies on the same pipes would be taken for its
# own. Cloud Run with concurrency 1 never runs two; a server on threads (functions-framework's gunicorn, as the
# local cloud runs it) does, when an event is delivered twice. The second one works in its own thread.
team_lock = threading.Lock()


def team(size: int, preload: Iterable[str]) -> Team:
    """The instance's workers, started on first use and kept for later tasks (the caller holds `team_lock`).
    New ones when the size changes, one has died, or a task needs a module they did not load."""
    global _TEAM
    preload = frozenset(preload)
    if _TEAM is None or _TEAM.size != size or not preload <= _TEAM.preload or \
            any(p.poll() is not None for p in _TEAM.procs):
        if _TEAM is not None:
            preload |= _TEAM.preload
        discard()
        _TEAM = Team(size, preload)
        atexit.register(discard)
    return _TEAM


def running(size: int, preload: Iterable[str]) -> bool:
    """Whether `team(size, preload)` would hand back workers already running: no start (~0.2-0.3 s) to pay."""
    current = _TEAM
    return current is not None and current.size == size and frozenset(preload) <= current.preload and \
        all(p.poll() is None for p in current.procs)


def discard(*, kill: bool = False) -> None:
    """Stop the workers; the next caller starts new ones. `kill`: after a task failed or was abandoned (a worker
    left mid-task, killed or out of memory, or is busy with a task no one will read)."""
    global _TEAM
    if _TEAM is not None:
        _TEAM.close(kill=kill)
        _TEAM = None


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (Cloud Run gives an instance
    its vCPUs as a quota, while os.cpu_count() counts the host's)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cpus
