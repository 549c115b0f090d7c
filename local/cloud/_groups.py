"""Process groups: every server of the local cloud leads its own, so stopping one stops its children too.

A group is named by its leader's pid plus the leader's start time (field 22 of /proc/PID/stat), so a pid the
kernel handed out again after our process died is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (field 3), or None if there is no such live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields


def starttime(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone (or a zombie)."""
    fields = _stat(pid)
    return fields[19] if fields else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[2] == str(pgid):
                members.append(int(entry.name))
    return members


def ours(pid: int, start: str | None) -> bool:
    """True while group `pid` still holds processes we started.

    A leader whose start time differs is a recycled pid, not ours. Linux never hands out a pid that is
    still some group's id, so surviving members of group `pid` are ours even after their leader died.
    """
    leader = starttime(pid)
    if leader is not None and (start is None or leader == start):
        return True
    return bool(group_members(pid))


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the whole group `pid`; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_groups(groups: Mapping[str, tuple[int, str | None]], procs: Sequence[subprocess.Popen] = (),
                timeout: float = 5.0) -> None:
    """SIGTERM the process groups led by these pids, wait up to `timeout`, then SIGKILL what is left.

    `procs` are our own children among them: they are reaped so they do not linger as zombies.
    """
    def signal_all(sig: int) -> list[int]:
        left = []
        for pid, start in groups.values():
            for p in procs:
                p.poll()
            if ours(pid, start):
                kill_group(pid, sig)
                left.append(pid)
        return left

    if not signal_all(signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            p.poll()
        if not any(ours(pid, st) for pid, st in groups.values()):
            break
        time.sleep(0.05)
    else:
        signal_all(signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
