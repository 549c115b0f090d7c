"""The local cloud: the pipeline's three functions wired to real local servers like the cloud wiring.

    python -m local.cloud up [--workdir DIR]    # start detached, write DIR/env and DIR/cloud.json
    python -m local.cloud status                # what runs where
    python -m local.cloud down                  # stop exactly what `up` started

Tests and the demo use `LocalCloud` directly (a context manager). Every server gets its own process group
so that stopping one also stops its children (gunicorn workers, the JVM) and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from local import gcs, pubsub
from local._process import free_port, wait_http

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = REPO_ROOT / ".local"
FUNCTIONS = ("submit", "poll", "collect")
UPLOADS, POLL_TICKS, JOB_FINISHED, RUN_FINISHED = "uploads", "poll-ticks", "job-finished", "run-finished"
DEAD_LETTER = "uploads-dead-letter"
# function -> (topic, push subscription); the pull subscription lets tests and the demo wait for runs.
PUSH = {"submit": (UPLOADS, "uploads-submit"), "poll": (POLL_TICKS, "poll-ticks-poll"),
        "collect": (JOB_FINISHED, "job-finished-collect")}
RUN_FINISHED_WATCH = "run-finished-watch"
DEAD_LETTER_WATCH = "uploads-dead-letter-watch"


class LocalCloud:
    """Starts, wires and stops the local servers; `env` is what a client needs to talk to them."""

    def __init__(
        self,
        workdir: Path,
        *,
        function_env: Mapping[str, str] | None = None,
        vertex_args: Sequence[str] = (),
        tick_seconds: float = 1.0,
        functions_source: Path | None = None,
        project: str = "local-project",
        location: str = "us-central1",
        input_bucket: str = "gbp-local-input",
        output_bucket: str = "gbp-local-output",
        vertex: bool = True,
    ):
        self.workdir = Path(workdir)
        self.function_env = dict(function_env or {})
        self.vertex_args = list(vertex_args)
        self.tick_seconds = tick_seconds
        self.functions_source = Path(functions_source or REPO_ROOT / "functions" / "main.py")
        self.project, self.location = project, location
        self.input_bucket, self.output_bucket = input_bucket, output_bucket
        self.vertex = vertex
        self.env: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.dead_letter = False
        self._procs: dict[str, subprocess.Popen] = {}
        self._starttimes: dict[str, str | None] = {}
        self._logs: list[IO] = []

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> dict[str, str]:
        """Start everything and return once every server answers; on any failure stop what started."""
        if self._procs:
            raise RuntimeError("this LocalCloud is already started")
        try:
            return self._start()
        except BaseException as exc:
            tails = self.log_tails()
            self.stop()
            if isinstance(exc, Exception) and not isinstance(exc, pubsub.EmulatorMissing):
                raise RuntimeError(f"local cloud failed to start: {exc}\n{tails}") from exc
            raise

    def _start(self) -> dict[str, str]:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        if self.vertex and not vertex_available():
            raise RuntimeError("the Vertex emulator (package local.vertex) is missing")
        self.ports = dict(zip(("pubsub", "gcs", "vertex", *FUNCTIONS), pick_ports(6), strict=True))
        prefix = self.function_env.get("INPUT_PREFIX", "incoming/")
        self.env = {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports['gcs']}",
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.ports['pubsub']}",
            "VERTEX_BASE_URL": f"http://127.0.0.1:{self.ports['vertex']}",
            "GOOGLE_CLOUD_PROJECT": self.project,
            "GOOGLE_CLOUD_LOCATION": self.location,
            "INPUT_BUCKET": self.input_bucket,
            "INPUT_PREFIX": prefix,
            "OUTPUT_BUCKET": self.output_bucket,
        }
        if not self.vertex:
            del self.env["VERTEX_BASE_URL"], self.ports["vertex"]

        # The JVM takes ~1 s: overlap it with the Python servers' imports. None of them talks to
        # another server before the first request, and the ports are known already.
        emulator = pubsub.launch(self.ports["pubsub"], log_file=self._log("pubsub"))
        self._track("pubsub", emulator.process)
        for name in FUNCTIONS:
            self._spawn(name, [sys.executable, "-m", "functions_framework", "--target", name,
                               "--signature-type", "cloudevent", "--source", str(self.functions_source),
                               "--host", "127.0.0.1", "--port", str(self.ports[name])],
                        self.function_process_env())
        if self.vertex:
            self._spawn("vertex", [sys.executable, "-m", "local.vertex", "--host", "127.0.0.1",
                                   "--port", str(self.ports["vertex"]), *self.vertex_args],
                        {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"})
        pubsub.wait_ready(emulator)
        publisher, subscriber = _pubsub_clients(self.env["PUBSUB_EMULATOR_HOST"])
        for topic in (UPLOADS, POLL_TICKS, JOB_FINISHED, RUN_FINISHED, DEAD_LETTER):
            publisher.create_topic(name=publisher.topic_path(self.project, topic))

        # fake-gcs-server needs the uploads topic to exist before it starts.
        server = gcs.start(self.ports["gcs"], pubsub_project=self.project, pubsub_topic=UPLOADS,
                           object_prefix=prefix, log_file=self._log("gcs"), env=self.env)
        self._track("gcs", server.process)
        storage = _storage_client(self.env["STORAGE_EMULATOR_HOST"], self.project)
        for bucket in dict.fromkeys((self.input_bucket, self.output_bucket)):
            storage.create_bucket(bucket)
        self._subscribe(publisher, subscriber)
        publisher.transport.close()
        subscriber.transport.close()

        for name in FUNCTIONS:
            wait_http(f"http://127.0.0.1:{self.ports[name]}/", timeout=30, proc=self._procs[name])
        if self.vertex:
            wait_http(f"{self.env['VERTEX_BASE_URL']}/emulator/v1/health", timeout=30, proc=self._procs["vertex"])
        self._spawn("scheduler", [sys.executable, "-m", "local.scheduler", "--project", self.project,
                                  "--topic", POLL_TICKS, "--every", str(self.tick_seconds)],
                    {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"})
        # A server that lost its port to someone else exits, while the readiness check may have been
        # answered by that someone: make sure every process we started is still there.
        time.sleep(0.1)
        dead = [name for name, p in self._procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"exited right after starting: {', '.join(dead)}")
        self.write_env_file()
        return dict(self.env)

    def _subscribe(self, publisher, subscriber) -> None:
        from google.api_core import exceptions

        for function, (topic, name) in PUSH.items():
            request = {
                "name": subscriber.subscription_path(self.project, name),
                "topic": publisher.topic_path(self.project, topic),
                "push_config": {"push_endpoint": f"http://127.0.0.1:{self.ports[function]}/"},
                # Like an Eventarc trigger: a slow function is not redelivered while it still works...
                "ack_deadline_seconds": 600,
                # ...but an HTTP 500 is, after a backoff shortened from the cloud's 10 s so tests stay fast.
                "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 10}},
            }
            if topic == UPLOADS:
                policy = {"dead_letter_topic": publisher.topic_path(self.project, DEAD_LETTER),
                          "max_delivery_attempts": 5}
                try:
                    subscriber.create_subscription(request={**request, "dead_letter_policy": policy})
                    self.dead_letter = True
                    continue
                except (exceptions.InvalidArgument, exceptions.MethodNotImplemented):
                    # An emulator without dead-letter support: a plain subscription and no dead-letter topic.
                    publisher.delete_topic(topic=policy["dead_letter_topic"])
            subscriber.create_subscription(request=request)
        watches = {RUN_FINISHED_WATCH: RUN_FINISHED}
        if self.dead_letter:
            watches[DEAD_LETTER_WATCH] = DEAD_LETTER
        for name, topic in watches.items():
            subscriber.create_subscription(request={"name": subscriber.subscription_path(self.project, name),
                                                    "topic": publisher.topic_path(self.project, topic)})

    def stop(self) -> None:
        """Stop the process groups this object started (and nothing else), TERM first, then KILL."""
        procs, self._procs = self._procs, {}
        stop_groups({name: (p.pid, self._starttimes.get(name)) for name, p in procs.items()},
                    procs=list(procs.values()))
        for f in self._logs:
            f.close()
        self._logs.clear()

    # ---------------------------------------------------------------- helpers
    def function_process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "JOB_FINISHED_TOPIC": JOB_FINISHED,
                "RUN_FINISHED_TOPIC": RUN_FINISHED, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
                **self.function_env}

    def _log(self, name: str) -> IO:
        f = open(self.workdir / "logs" / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop)
        self._logs.append(f)
        return f

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str]) -> None:
        self._track(name, subprocess.Popen(cmd, stdout=self._log(name), stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=dict(env), cwd=REPO_ROOT,
                                           start_new_session=True))

    def _track(self, name: str, proc: subprocess.Popen) -> None:
        self._procs[name] = proc
        self._starttimes[name] = _starttime(proc.pid)

    def write_env_file(self) -> Path:
        path = self.workdir / "env"
        path.write_text("".join(f"export {k}={_single_quoted(v)}\n" for k, v in self.env.items()))
        return path

    def logs(self, name: str) -> str:
        """A component's log so far (pubsub, gcs, vertex, submit, poll, collect, scheduler); '' if none."""
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every component's log, for failure messages."""
        parts = []
        for path in sorted((self.workdir / "logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            if tail:
                parts.append(f"--- {path.stem} (last {len(tail)} lines of {path})\n" + "\n".join(tail))
        return "\n".join(parts)

    def state(self) -> dict:
        """What `down` and `status` need: process ids (with start times against pid reuse) and ports."""
        return {
            "workdir": str(self.workdir.resolve()),
            "env": dict(self.env),
            "components": {
                name: {"pid": p.pid, "starttime": self._starttimes.get(name), "port": self.ports.get(name),
                       "log": str((self.workdir / "logs" / f"{name}.log").resolve())}
                for name, p in self._procs.items()
            },
        }


def _single_quoted(value: str) -> str:
    """Shell single quotes, always (shlex.quote leaves safe words bare; a uniform file is easier to read)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def vertex_available() -> bool:
    """Whether `python -m local.vertex` can run (the emulator is written separately)."""
    try:
        return importlib.util.find_spec("local.vertex.__main__") is not None
    except ImportError:
        return False


def pick_ports(count: int) -> list[int]:
    """Distinct free ports below the kernel's ephemeral range.

    Ports from bind(0) are ephemeral ones: any outgoing connection, or another test asking the kernel for
    a free port, can take one between our check and the server's bind, which then "answers" for our
    server. Below the ephemeral range only explicit binds compete.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low < 12000:
        return _distinct(count, free_port)
    rng = random.SystemRandom()
    return _distinct(count, lambda: rng.randrange(10000, low))


def _distinct(count: int, candidate) -> list[int]:
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", candidate()))  # held until all are chosen: no duplicates
            except OSError:
                sock.close()
                continue
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


# -------------------------------------------------------------------- clients
def _pubsub_clients(host: str):
    """Publisher and subscriber bound to the emulator without touching os.environ (tests share it)."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)))
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))
    return publisher, subscriber


def pubsub_clients(env: Mapping[str, str]):
    """(publisher, subscriber) for a running local cloud's `env`."""
    return _pubsub_clients(env["PUBSUB_EMULATOR_HOST"])


def _storage_client(url: str, project: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=project, credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": url})


def storage_client(env: Mapping[str, str]):
    """A google-cloud-storage client for a running local cloud's `env`."""
    return _storage_client(env["STORAGE_EMULATOR_HOST"], env["GOOGLE_CLOUD_PROJECT"])


# -------------------------------------------------------------------- processes
def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (field 3), or None if there is no such live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields


def _starttime(pid: int) -> str | None:
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


def _ours(pid: int, starttime: str | None) -> bool:
    """True while group `pid` still holds processes we started.

    A leader whose start time differs is a recycled pid, not ours. Linux never hands out a pid that is
    still some group's id, so surviving members of group `pid` are ours even after their leader died.
    """
    leader = _starttime(pid)
    if leader is not None and (starttime is None or leader == starttime):
        return True
    return bool(group_members(pid))


def stop_groups(groups: Mapping[str, tuple[int, str | None]], procs: Sequence[subprocess.Popen] = (),
                timeout: float = 5.0) -> None:
    """SIGTERM the process groups led by these pids, wait up to `timeout`, then SIGKILL what is left.

    `procs` are our own children among them: they are reaped so they do not linger as zombies.
    """
    def signal_all(sig: int) -> list[int]:
        left = []
        for pid, starttime in groups.values():
            for p in procs:
                p.poll()
            if _ours(pid, starttime):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
                left.append(pid)
        return left

    if not signal_all(signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            p.poll()
        if not any(_ours(pid, st) for pid, st in groups.values()):
            break
        time.sleep(0.05)
    else:
        signal_all(signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


# -------------------------------------------------------------------- CLI
def _load_state(workdir: Path) -> dict | None:
    path = workdir / "cloud.json"
    return json.loads(path.read_text()) if path.exists() else None


def _running(state: dict) -> dict[str, bool]:
    return {name: _ours(c["pid"], c["starttime"]) for name, c in state["components"].items()}


def _print_status(state: dict, workdir: Path) -> None:
    alive = _running(state)
    for name, c in state["components"].items():
        where = f"http://127.0.0.1:{c['port']}" if c.get("port") else "-"
        if name == "pubsub":
            where = f"127.0.0.1:{c['port']} (gRPC + REST)"
        print(f"  {name:<10} pid {c['pid']:<8} {'running' if alive[name] else 'STOPPED':<8} {where}")
    print(f"  env: source {workdir / 'env'}    logs: {workdir / 'logs'}/")
    env = state["env"]
    print(f"  buckets: gs://{env['INPUT_BUCKET']} (drop files under {env['INPUT_PREFIX']}), "
          f"gs://{env['OUTPUT_BUCKET']}")


def _up(args) -> int:
    workdir = args.workdir
    state = _load_state(workdir)
    if state and any(_running(state).values()):
        print(f"local cloud already running (from {workdir / 'cloud.json'}); `make down` first to restart")
        _print_status(state, workdir)
        return 0
    started = time.monotonic()
    cloud = LocalCloud(workdir, vertex_args=args.vertex_arg, tick_seconds=args.tick,
                       functions_source=args.functions_source, vertex=not args.no_vertex)
    try:
        cloud.start()
        (workdir / "cloud.json").write_text(json.dumps(cloud.state(), indent=2))
    except Exception as exc:
        cloud.stop()
        print(f"local cloud did not start: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        cloud.stop()
        raise
    print(f"local cloud up in {time.monotonic() - started:.1f}s")
    _print_status(cloud.state(), workdir)
    return 0


def _down(args) -> int:
    state = _load_state(args.workdir)
    if state is None:
        print(f"nothing to stop: no local cloud recorded in {args.workdir / 'cloud.json'}")
        return 0
    names = [n for n, up in _running(state).items() if up]
    stop_groups({n: (c["pid"], c["starttime"]) for n, c in state["components"].items()})
    (args.workdir / "cloud.json").unlink()
    print(f"stopped: {', '.join(names)}" if names else "nothing was running any more; cleared cloud.json")
    return 0


def _status(args) -> int:
    state = _load_state(args.workdir)
    if state is None:
        print(f"not running: no local cloud recorded in {args.workdir / 'cloud.json'}")
        return 1
    alive = _running(state)
    print(f"local cloud: {sum(alive.values())}/{len(alive)} components running")
    _print_status(state, args.workdir)
    return 0 if all(alive.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.cloud", description="Run the local cloud.")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="default: <repo>/.local")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between poll ticks (up)")
    parser.add_argument("--functions-source", type=Path, help="default: functions/main.py (up)")
    parser.add_argument("--vertex-arg", action="append", default=[], metavar="ARG",
                        help="extra Vertex emulator argument, repeatable: --vertex-arg=--run-latency=2 (up)")
    parser.add_argument("--no-vertex", action="store_true", help="do not start the Vertex emulator (up)")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    return {"up": _up, "down": _down, "status": _status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
