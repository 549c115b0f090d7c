"""The local cloud's command line: `up` starts a detached supervising process, `down` stops it and all it
started, `status` says what runs where.

    python -m local.cloud up [--workdir DIR] [--chaos SECONDS]   # start detached; DIR/env, DIR/cloud.json
    python -m local.cloud status                                 # what runs where
    python -m local.cloud down                                   # stop exactly what `up` started

`up` starts `serve` in a session of its own and returns once the cloud answers; `serve` runs the cloud,
supervises the function instances (and the chaos switch), keeps DIR/cloud.json current with the pids, and
stops everything it started on SIGTERM. Its own log is DIR/logs/supervisor.log.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from local.cloud._cloud import DEFAULT_FUNCTION_TIMEOUT, DEFAULT_WORKDIR, REPO_ROOT, LocalCloud
from local.cloud._groups import kill_group, ours, stop_groups
from local.cloud._workdir import STATE_FILE, load_state

_READY_TIMEOUT = 120.0  # seconds `up` waits for the cloud (a cold start on two busy cores takes ~5 s)
_STOP_TIMEOUT = 30.0


def _running(state: dict) -> dict[str, bool]:
    return {name: ours(c["pid"], c["starttime"]) for name, c in state["components"].items()}


def _supervising(state: dict) -> bool:
    sup = state.get("supervisor")
    return bool(sup) and ours(sup["pid"], sup["starttime"])


def _print_status(state: dict, workdir: Path) -> None:
    alive = _running(state)
    for name, c in state["components"].items():
        where = f"http://127.0.0.1:{c['port']}" if c.get("port") else "-"
        if name == "pubsub":
            where = f"127.0.0.1:{c['port']} (gRPC + REST)"
        print(f"  {name:<10} pid {c['pid']:<8} {'running' if alive[name] else 'STOPPED':<8} {where}")
    sup = state.get("supervisor")
    if sup:
        chaos = sup.get("chaos")
        what = "replaces dead function instances"
        if chaos:
            span = f"for {chaos['duration']:g}s" if chaos.get("duration") else "until down"
            what += f"; chaos: kills one every ~{chaos['every']:g}s {span}"
        print(f"  {'supervisor':<10} pid {sup['pid']:<8} {'running' if _supervising(state) else 'STOPPED':<8} "
              f"{what}")
    print(f"  env: source {workdir / 'env'}    logs: {workdir / 'logs'}/")
    env = state["env"]
    print(f"  buckets: gs://{env['INPUT_BUCKET']} (drop files under {env['INPUT_PREFIX']}), "
          f"gs://{env['OUTPUT_BUCKET']}")


def _cloud_args(args) -> list[str]:
    """`up`'s options, as `serve` takes them."""
    out = ["--workdir", str(args.workdir), "--tick", str(args.tick), "--function-timeout", str(args.function_timeout)]
    if args.functions_source:
        out += ["--functions-source", str(args.functions_source.resolve())]
    out += [f"--vertex-arg={a}" for a in args.vertex_arg]
    out += [f"--storage-arg={a}" for a in args.storage_arg]
    if args.no_vertex:
        out.append("--no-vertex")
    if args.chaos:
        out += ["--chaos", str(args.chaos)]
    if args.chaos_duration:
        out += ["--chaos-duration", str(args.chaos_duration)]
    return out


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _up(args) -> int:
    workdir = args.workdir
    state = load_state(workdir)
    if state and (any(_running(state).values()) or _supervising(state)):
        print(f"local cloud already running (from {workdir / STATE_FILE}); `make down` first to restart")
        _print_status(state, workdir)
        return 0
    started = time.monotonic()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    log_path = workdir / "logs" / "supervisor.log"
    with open(log_path, "ab") as log:
        serve = subprocess.Popen([sys.executable, "-m", "local.cloud", "serve", *_cloud_args(args)],
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                                 start_new_session=True)
    deadline = started + _READY_TIMEOUT
    while True:
        state = load_state(workdir)
        if state and state.get("supervisor", {}).get("pid") == serve.pid:
            break
        if serve.poll() is not None or time.monotonic() > deadline:
            if serve.poll() is None:
                kill_group(serve.pid, signal.SIGTERM)
                serve.wait(timeout=_STOP_TIMEOUT)
            print(f"local cloud did not start (see {log_path}):\n{_tail(log_path)}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"local cloud up in {time.monotonic() - started:.1f}s")
    _print_status(state, workdir)
    return 0


def _serve(args) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cloud = LocalCloud(args.workdir, vertex_args=args.vertex_arg, tick_seconds=args.tick,
                       functions_source=args.functions_source, vertex=not args.no_vertex,
                       function_timeout=args.function_timeout, chaos_seconds=args.chaos,
                       chaos_duration=args.chaos_duration, state_file=args.workdir / STATE_FILE,
                       storage_args=args.storage_arg)
    try:
        cloud.start()
    except Exception as exc:
        print(f"local cloud did not start: {exc}", file=sys.stderr, flush=True)
        return 1
    cloud.say(f"local cloud serving from pid {os.getpid()}; SIGTERM stops it")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        cloud.stop()
        cloud.say(f"local cloud stopped ({len(cloud.kills)} instances killed on purpose, "
                  f"{len(cloud.replacements)} replaced)")
    return 0


def _down(args) -> int:
    state = load_state(args.workdir)
    if state is None:
        print(f"nothing to stop: no local cloud recorded in {args.workdir / STATE_FILE}")
        return 0
    names = [n for n, up in _running(state).items() if up]
    sup = state.get("supervisor")
    if _supervising(state):
        names.append("supervisor")
        # The supervisor stops what it started (and stops replacing it) on SIGTERM.
        kill_group(sup["pid"], signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while _supervising(state) and time.monotonic() < deadline:
            time.sleep(0.1)
        state = load_state(args.workdir) or state  # the pids as it last wrote them
    # Whatever is left: a supervisor killed hard leaves its servers behind.
    stop_groups({n: (c["pid"], c["starttime"]) for n, c in state["components"].items()})
    if _supervising(state):
        kill_group(sup["pid"], signal.SIGKILL)
    (args.workdir / STATE_FILE).unlink(missing_ok=True)
    print(f"stopped: {', '.join(names)}" if names else "nothing was running any more; cleared cloud.json")
    return 0


def _status(args) -> int:
    state = load_state(args.workdir)
    if state is None:
        print(f"not running: no local cloud recorded in {args.workdir / STATE_FILE}")
        return 1
    alive = _running(state)
    print(f"local cloud: {sum(alive.values())}/{len(alive)} components running")
    _print_status(state, args.workdir)
    return 0 if all(alive.values()) and _supervising(state) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.cloud", description="Run the local cloud.")
    parser.add_argument("command", choices=("up", "down", "status", "serve"),
                        help="serve runs the cloud in the foreground (up starts it detached)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="default: <repo>/.local")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between poll ticks (up)")
    parser.add_argument("--functions-source", type=Path, help="default: functions/main.py (up)")
    parser.add_argument("--vertex-arg", action="append", default=[], metavar="ARG",
                        help="extra Vertex emulator argument, repeatable: --vertex-arg=--run-latency=2 (up)")
    parser.add_argument("--storage-arg", action="append", default=[], metavar="ARG",
                        help="extra Cloud Storage limits argument, repeatable: --storage-arg=--random-503=0.02 "
                             "(up; see local/gcs_limits/README.md)")
    parser.add_argument("--no-vertex", action="store_true", help="do not start the Vertex emulator (up)")
    parser.add_argument("--function-timeout", type=int, default=DEFAULT_FUNCTION_TIMEOUT, metavar="SECONDS",
                        help="the functions' timeout; the pipeline's leases and deadlines derive from it "
                             f"(default {DEFAULT_FUNCTION_TIMEOUT}) (up)")
    parser.add_argument("--chaos", type=float, metavar="SECONDS",
                        help="kill a random function instance every ~SECONDS (up)")
    parser.add_argument("--chaos-duration", type=float, metavar="SECONDS",
                        help="stop the chaos after SECONDS (default: never) (up)")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    if args.chaos is not None and args.chaos <= 0:
        parser.error("--chaos needs a positive number of seconds")
    return {"up": _up, "down": _down, "status": _status, "serve": _serve}[args.command](args)
