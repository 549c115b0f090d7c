"""Function instances and their supervisor: like Cloud Run, an instance that dies is replaced.

An instance is one functions-framework server: gunicorn's master and worker in one process group. When the
master is gone (killed, crashed, out of memory), the supervisor kills what is left of the group, so that no
orphaned worker keeps the port, then starts the same command with the same environment on the same port.
The instance's log file is appended to, never truncated, across replacements.

Every replacement is one line in the cloud's own log (`supervisor.log`): which function, the old and the
new pid, and how long the function had no instance. An instance that dies again before it answers is
started again after a growing pause (0.2 s, 0.4 s, ... up to 5 s), so a broken instance does not spin.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from local.cloud._groups import group_members, kill_group, starttime

_ROUND = 0.1  # seconds between two looks at every instance
_MAX_PAUSE = 5.0


@dataclass(frozen=True)
class Kill:
    """An instance killed on purpose (SIGKILL of its whole process group); `at` is wall-clock time."""

    function: str
    pid: int
    at: float


@dataclass(frozen=True)
class Replacement:
    """A dead instance replaced: `down` is the seconds from its death to the new instance's first answer."""

    function: str
    old_pid: int
    new_pid: int
    down: float
    at: float


class Instance:
    """One function's running server and how to start it again."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str], port: int, log: IO, cwd: Path):
        self.name, self.cmd, self.env, self.port, self.log, self.cwd = name, list(cmd), dict(env), port, log, cwd
        self.proc = self._spawn()
        self.start = starttime(self.proc.pid)
        self.ready = False          # answered on its port since it was started
        self.died_at: float | None = None  # monotonic time of the death not yet repaired
        self.old_pid = self.proc.pid       # the last instance that answered
        self.failures = 0           # deaths in a row before answering
        self.noticed = False        # this process's death was seen
        self.retry_at = 0.0         # monotonic time of the next start

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, cwd=self.cwd, start_new_session=True)

    def respawn(self) -> None:
        self.proc = self._spawn()
        self.start = starttime(self.proc.pid)
        self.ready = self.noticed = False

    def listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            return True
        return False


class Supervisor:
    """Watches the instances in a thread of its own; `kill` is the chaos switch's way in."""

    def __init__(self, log_path: Path, on_change: Callable[[], None] = lambda: None):
        self.instances: dict[str, Instance] = {}
        self.kills: list[Kill] = []
        self.replacements: list[Replacement] = []
        self.lock = threading.RLock()
        self._log_path = log_path
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- life cycle
    def add(self, instance: Instance) -> None:
        with self.lock:
            self.instances[instance.name] = instance

    def start(self) -> None:
        """Start watching; every instance must have answered once already (the cloud waited for it)."""
        with self.lock:
            for inst in self.instances.values():
                inst.ready = True
        self._thread = threading.Thread(target=self._run, name="local-cloud-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> list[Instance]:
        """Stop watching (the instances keep running) and hand them over to be stopped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self.lock:
            instances, self.instances = list(self.instances.values()), {}
        return instances

    def say(self, text: str) -> None:
        """One line in the cloud's own log."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with open(self._log_path, "a") as log:
            log.write(f"{stamp} {text}\n")

    # ---------------------------------------------------------------- killing
    def kill(self, function: str | None = None, rng: random.Random | None = None,
             why: str = "on request") -> Kill | None:
        """SIGKILL the whole process group of a running instance (of `function`, else a random one).

        Returns None when no instance is up to be killed (all are being replaced).
        """
        with self.lock:
            up = [i for i in self.instances.values()
                  if i.ready and i.proc.poll() is None and function in (None, i.name)]
            if not up:
                return None
            inst = (rng or random).choice(up)
            # poll() said the leader is not reaped yet: its pid still names our group, never a recycled one.
            kill_group(inst.proc.pid)
            inst.died_at, inst.old_pid = time.monotonic(), inst.proc.pid
            kill = Kill(inst.name, inst.proc.pid, time.time())
            self.kills.append(kill)
        self.say(f"killed {kill.function} (pid {kill.pid}, its whole process group) {why}")
        return kill

    # ---------------------------------------------------------------- watching
    def _run(self) -> None:
        while not self._stop.wait(_ROUND):
            changed = False
            for name in list(self.instances):
                with self.lock:
                    inst = self.instances.get(name)
                    if inst is None or self._stop.is_set():
                        continue
                    changed |= self._check(inst)
            if changed:
                self._on_change()

    def _check(self, inst: Instance) -> bool:
        """One look at one instance; True when a new process was started."""
        now = time.monotonic()
        code = inst.proc.poll()
        if code is None:
            if not inst.ready and inst.listening():
                inst.ready, inst.failures = True, 0
                if inst.died_at is not None:
                    replaced = Replacement(inst.name, inst.old_pid, inst.proc.pid, now - inst.died_at, time.time())
                    self.replacements.append(replaced)
                    inst.died_at, inst.old_pid = None, inst.proc.pid
                    self.say(f"replaced {replaced.function}: pid {replaced.old_pid} -> {replaced.new_pid}, "
                             f"down {replaced.down:.2f}s (port {inst.port})")
            return False
        if not inst.noticed:
            inst.noticed = True
            if inst.died_at is None:
                inst.died_at = now
            if inst.ready:
                inst.old_pid, inst.ready, inst.retry_at = inst.proc.pid, False, now
                self.say(f"{inst.name} (pid {inst.proc.pid}) is gone (exit {code}); replacing it")
            else:
                inst.failures += 1
                inst.retry_at = now + min(_MAX_PAUSE, 0.1 * 2 ** inst.failures)
                self.say(f"{inst.name} (pid {inst.proc.pid}) died before it answered (exit {code}); "
                         f"next try in {inst.retry_at - now:.1f}s")
        # A worker whose master died keeps the port: nothing may be left of the group before the restart.
        # (Members still exist, so the group id cannot have been handed out again.)
        if group_members(inst.proc.pid):
            kill_group(inst.proc.pid)
            return False
        if now < inst.retry_at:
            return False
        inst.respawn()
        return True
