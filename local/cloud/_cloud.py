"""`LocalCloud`: starts the local servers, wires them like the cloud, supervises the function instances
and stops exactly what it started.

Every server gets its own process group, so that stopping one also stops its children (gunicorn workers,
the JVM) and nothing else. The function instances are supervised like Cloud Run's (`_supervisor`) and can
be killed at random on purpose (`_chaos`); the other servers are not: their death is an outage to notice.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from local import gcs, pubsub
from local._process import wait_http
from local.cloud._chaos import Chaos
from local.cloud._clients import pubsub_clients, storage_client
from local.cloud._groups import starttime, stop_groups
from local.cloud._ports import pick_ports
from local.cloud._supervisor import Instance, Kill, Replacement, Supervisor
from local.cloud._wiring import FUNCTIONS, POLL_TICKS, UPLOADS, create_subscriptions, create_topics, function_env
from local.cloud._workdir import (
    crashes,
    log_tails,
    open_log,
    read_log,
    reset_crashes,
    write_env_file,
    write_state,
)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_WORKDIR = REPO_ROOT / ".local"
DEFAULT_FUNCTION_TIMEOUT = 20
# The functions with a crash hook: test-only, outside functions/ and shared/ so it can never be deployed.
CRASH_SOURCE = REPO_ROOT / "local" / "crash_hook.py"


class LocalCloud:
    """Starts, wires, supervises and stops the local servers; `env` is what a client needs to talk to them.

    `function_timeout` is the functions' timeout in seconds (enforced per request, and the one setting the
    pipeline derives its leases and deadlines from). With `chaos_seconds` a random function instance is
    killed every ~that many seconds, for `chaos_duration` seconds or until the cloud stops. With `crash_at`
    (step names) the functions run with the crash hook: the first instance to reach each named step kills
    its own process group there.

    Cloud Storage is fake-gcs-server behind the limits proxy (`local.gcs_limits`), as strict as the real
    service: about one write per second per object name, compose preconditions enforced, faults on demand
    (`storage_args` at start, `storage_switches()` at runtime, `storage_stats()` for writes and 429s per
    object). Every client, the functions' included, reaches it through STORAGE_EMULATOR_HOST.
    """

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
        function_timeout: int = DEFAULT_FUNCTION_TIMEOUT,
        chaos_seconds: float | None = None,
        chaos_duration: float | None = None,
        crash_at: Sequence[str] = (),
        state_file: Path | None = None,
        storage_args: Sequence[str] = (),
    ):
        self.workdir = Path(workdir)
        self.function_env = dict(function_env or {})
        self.vertex_args = list(vertex_args)
        self.tick_seconds = tick_seconds
        self.functions_source = Path(functions_source or REPO_ROOT / "functions" / "main.py")
        self.project, self.location = project, location
        self.input_bucket, self.output_bucket = input_bucket, output_bucket
        self.vertex = vertex
        self.function_timeout = function_timeout
        self.chaos_seconds, self.chaos_duration = chaos_seconds, chaos_duration
        self.crash_at = list(crash_at)
        self.state_file = state_file
        self.storage_args = list(storage_args)
        self.env: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.chaos_runs: list[Chaos] = []
        self._procs: dict[str, subprocess.Popen] = {}
        self._starttimes: dict[str, str | None] = {}
        self._logs: list[IO] = []
        self._supervisor = Supervisor(self.workdir / "logs" / "supervisor.log", on_change=self._changed)

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> dict[str, str]:
        """Start everything and return once every server answers; on any failure stop what started."""
        if self._procs or self._supervisor.instances:
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
        (self.workdir / "logs" / "supervisor.log").write_bytes(b"")  # this cloud's own log, appended to
        self._supervisor = Supervisor(self.workdir / "logs" / "supervisor.log", on_change=self._changed)
        names = ("pubsub", "gcs", "storage", "vertex", *FUNCTIONS)
        self.ports = dict(zip(names, pick_ports(len(names)), strict=True))
        prefix = self.function_env.get("INPUT_PREFIX", "incoming/")
        self.env = {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports['storage']}",
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
        source = self._functions_source()
        for name in FUNCTIONS:
            cmd = [sys.executable, "-m", "local.cloud._instance", "--target", name, "--signature-type", "cloudevent",
                   "--source", str(source), "--host", "127.0.0.1", "--port", str(self.ports[name])]
            self._supervisor.add(Instance(name, cmd, self.function_process_env(name), self.ports[name],
                                          self._log(name), REPO_ROOT))
        if self.vertex:
            # The emulator stands for Google's service: its own reads and writes of the buckets are not the
            # pipeline's to limit or fault, so it talks to the storage directly, not through the proxy.
            self._spawn("vertex", [sys.executable, "-m", "local.vertex", "--host", "127.0.0.1",
                                   "--port", str(self.ports["vertex"]), *self.vertex_args],
                        {**self._server_env(), "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports['gcs']}"})
        pubsub.wait_ready(emulator)
        publisher, subscriber = pubsub_clients(self.env)
        create_topics(publisher, self.project)

        # fake-gcs-server needs the uploads topic to exist before it starts; its notifications go straight to
        # Pub/Sub, every client call goes through the limits proxy in front of it.
        server = gcs.start(self.ports["gcs"], pubsub_project=self.project, pubsub_topic=UPLOADS,
                           object_prefix=prefix, log_file=self._log("gcs"), env=self.env)
        self._track("gcs", server.process)
        self._spawn("storage", [sys.executable, "-m", "local.gcs_limits", "--backend", server.url,
                                "--port", str(self.ports["storage"]), *self.storage_args], self._server_env())
        wait_http(f"{self.env['STORAGE_EMULATOR_HOST']}/emulator/v1/health", timeout=30, proc=self._procs["storage"])
        storage = storage_client(self.env)
        for bucket in dict.fromkeys((self.input_bucket, self.output_bucket)):
            storage.create_bucket(bucket)
        create_subscriptions(publisher, subscriber, self.project, self.ports, self.function_timeout)
        publisher.transport.close()
        subscriber.transport.close()

        for inst in self._supervisor.instances.values():
            wait_http(f"http://127.0.0.1:{inst.port}/", timeout=30, proc=inst.proc)
        if self.vertex:
            wait_http(f"{self.env['VERTEX_BASE_URL']}/emulator/v1/health", timeout=30, proc=self._procs["vertex"])
        self._spawn("scheduler", [sys.executable, "-m", "local.scheduler", "--project", self.project,
                                  "--topic", POLL_TICKS, "--every", str(self.tick_seconds)], self._server_env())
        # A server that lost its port to someone else exits, while the readiness check may have been
        # answered by that someone: make sure every process we started is still there.
        time.sleep(0.1)
        dead = [name for name, p in self._all_procs().items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"exited right after starting: {', '.join(dead)}")
        self._supervisor.start()
        self.write_env_file()
        self._changed()
        if self.chaos_seconds:
            self.chaos(self.chaos_seconds, self.chaos_duration)
        return dict(self.env)

    def stop(self) -> None:
        """Stop chaos, supervision and the process groups this object started (and nothing else)."""
        for run in self.chaos_runs:
            run.stop()
        instances = self._supervisor.stop()
        procs = {**{i.name: i.proc for i in instances}, **self._procs}
        starts = {**{i.name: i.start for i in instances}, **self._starttimes}
        self._procs = {}
        stop_groups({name: (p.pid, starts.get(name)) for name, p in procs.items()}, procs=list(procs.values()))
        for f in self._logs:
            f.close()
        self._logs.clear()

    # ---------------------------------------------------------------- faults
    def kill(self, function: str) -> Kill | None:
        """SIGKILL the process group of `function`'s instance now (None while it is being replaced)."""
        return self._supervisor.kill(function)

    def chaos(self, every: float, duration: float | None = None, seed: int | None = None) -> Chaos:
        """Kill a random function instance every ~`every` seconds for `duration` seconds (None: until
        `stop`); returns the running period, whose `kills` say what died when."""
        run = Chaos(lambda rng: self._supervisor.kill(rng=rng, why="by chaos"), every, duration, seed,
                    say=self._supervisor.say)
        self.chaos_runs.append(run)
        return run.start()

    @property
    def kills(self) -> list[Kill]:
        """Every instance killed on purpose so far (by chaos or `kill`), oldest first."""
        return list(self._supervisor.kills)

    @property
    def replacements(self) -> list[Replacement]:
        """Every dead instance replaced so far, oldest first."""
        return list(self._supervisor.replacements)

    def crashes(self) -> dict[str, dict]:
        """step -> where the crash hook killed an instance at that step (function, pid, pgid, time)."""
        return crashes(self.workdir)

    # ---------------------------------------------------------------- storage limits
    def storage_switches(self, **changes) -> dict:
        """The limits proxy's switches, after applying `changes` (none: just read them)."""
        return _admin(self.env["STORAGE_EMULATOR_HOST"], "switches", changes if changes else None)

    def storage_stats(self, reset: bool = False) -> dict:
        """Writes, 429s and faults per object name, and totals (`reset`: start counting again after)."""
        stats = _admin(self.env["STORAGE_EMULATOR_HOST"], "stats")
        if reset:
            _admin(self.env["STORAGE_EMULATOR_HOST"], "stats/reset", {})
        return stats

    def vertex_stats(self, reset: bool = False) -> dict:
        """The Vertex emulator's job counts, with `peakActive`: the most jobs active at once."""
        stats = _admin(self.env["VERTEX_BASE_URL"], "stats")
        if reset:
            _admin(self.env["VERTEX_BASE_URL"], "stats/reset", {})
        return stats

    # ---------------------------------------------------------------- helpers
    def _functions_source(self) -> Path:
        if not self.crash_at:
            return self.functions_source
        reset_crashes(self.workdir)
        return CRASH_SOURCE

    def _server_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}

    def function_process_env(self, function: str) -> dict[str, str]:
        """The environment of `function`'s instances: ours, the platform's defaults, then `function_env`."""
        env = {**self._server_env(), **function_env(function, self.function_timeout), **self.function_env}
        if self.crash_at:
            env.update({"GBP_CRASH_AT": ",".join(self.crash_at), "GBP_CRASH_DIR": str(self.workdir / "crashes"),
                        "GBP_CRASH_SOURCE": str(self.functions_source)})
        return env

    def _log(self, name: str) -> IO:
        f = open_log(self.workdir, name)
        self._logs.append(f)  # closed in stop
        return f

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str]) -> None:
        self._track(name, subprocess.Popen(cmd, stdout=self._log(name), stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=dict(env), cwd=REPO_ROOT,
                                           start_new_session=True))

    def _track(self, name: str, proc: subprocess.Popen) -> None:
        self._procs[name] = proc
        self._starttimes[name] = starttime(proc.pid)

    def _all_procs(self) -> dict[str, subprocess.Popen]:
        with self._supervisor.lock:
            return {**self._procs, **{i.name: i.proc for i in self._supervisor.instances.values()}}

    def _changed(self) -> None:
        """Keep the state file current: `down` and `status` read the pids from it."""
        if self.state_file is not None:
            write_state(self.state_file, self.state())

    def write_env_file(self) -> Path:
        return write_env_file(self.workdir, self.env)

    def logs(self, name: str) -> str:
        """A component's log so far (pubsub, gcs, vertex, a function, scheduler, supervisor); '' if none."""
        return read_log(self.workdir, name)

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every component's log, for failure messages."""
        return log_tails(self.workdir, lines)

    def say(self, text: str) -> None:
        """One line in the cloud's own log (supervisor.log)."""
        self._supervisor.say(text)

    def state(self) -> dict:
        """What `down` and `status` need: process ids (with start times against pid reuse) and ports."""
        with self._supervisor.lock:
            starts = {**self._starttimes, **{i.name: i.start for i in self._supervisor.instances.values()}}
            procs = self._all_procs()
        chaos = {"every": self.chaos_seconds, "duration": self.chaos_duration} if self.chaos_seconds else None
        return {
            "workdir": str(self.workdir.resolve()),
            "env": dict(self.env),
            "supervisor": {"pid": os.getpid(), "starttime": starttime(os.getpid()), "chaos": chaos,
                           "log": str((self.workdir / "logs" / "supervisor.log").resolve())},
            "components": {
                name: {"pid": p.pid, "starttime": starts.get(name), "port": self.ports.get(name),
                       "log": str((self.workdir / "logs" / f"{name}.log").resolve())}
                for name, p in procs.items()
            },
        }


def _admin(base: str, path: str, body: dict | None = None) -> dict:
    """GET (or POST `body`) an emulator's admin endpoint."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/emulator/v1/{path}", data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"{}")


def vertex_available() -> bool:
    """Whether `python -m local.vertex` can run."""
    try:
        return importlib.util.find_spec("local.vertex.__main__") is not None
    except ImportError:
        return False
