"""What the local cloud keeps in its working directory, and how each file is written and read:

    env              shell exports for a client (`. .local/env`)
    cloud.json       pids (with start times), ports and env of a running cloud: what `down` and `status` read
    logs/<name>.log  one per server and function (every instance of a function appends to it), and
                     supervisor.log, the cloud's own: replacements, kills and chaos
    crashes/<step>   the crash hook's markers (see local/crash_hook.py)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO

STATE_FILE = "cloud.json"


def open_log(workdir: Path, name: str) -> IO:
    """A fresh log file, opened for appending: a replacement instance appends to its predecessor's lines."""
    path = workdir / "logs" / f"{name}.log"
    path.write_bytes(b"")
    return open(path, "ab")  # noqa: SIM115 (the caller closes it)


def read_log(workdir: Path, name: str) -> str:
    path = workdir / "logs" / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def log_tails(workdir: Path, lines: int = 15) -> str:
    """The last lines of every log, for failure messages."""
    parts = []
    for path in sorted((workdir / "logs").glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            parts.append(f"--- {path.stem} (last {len(tail)} lines of {path})\n" + "\n".join(tail))
    return "\n".join(parts)


def write_env_file(workdir: Path, env: Mapping[str, str]) -> Path:
    path = workdir / "env"
    path.write_text("".join(f"export {k}={_single_quoted(v)}\n" for k, v in env.items()))
    return path


def _single_quoted(value: str) -> str:
    """Shell single quotes, always (shlex.quote leaves safe words bare; a uniform file is easier to read)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def write_state(path: Path, state: Mapping) -> None:
    """Replace the state file in one step: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def load_state(workdir: Path) -> dict | None:
    try:
        return json.loads((workdir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None


def crashes(workdir: Path) -> dict[str, dict]:
    """step -> where the crash hook killed an instance at that step (function, pid, pgid, time)."""
    found = {}
    for path in sorted((workdir / "crashes").glob("*")):
        try:
            found[path.name] = json.loads(path.read_text() or "{}")
        except ValueError:
            found[path.name] = {}  # the hook died between creating and filling its marker
    return found


def reset_crashes(workdir: Path) -> Path:
    crash_dir = workdir / "crashes"
    crash_dir.mkdir(parents=True, exist_ok=True)
    for old in crash_dir.glob("*"):
        old.unlink()
    return crash_dir
