"""Google's Pub/Sub emulator, started straight from the SDK's launcher script.

The script is run directly rather than through `gcloud beta emulators pubsub start`: the gcloud wrapper
adds a Python process and about a second of start-up for nothing we need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from local._process import free_port, wait_http

INSTALL_HINT = (
    "install the Debian packages google-cloud-cli, google-cloud-cli-pubsub-emulator and "
    "openjdk-17-jre-headless (apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator "
    "openjdk-17-jre-headless)"
)
_SCRIPT = Path("platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")


class EmulatorMissing(RuntimeError):
    """Something the Pub/Sub emulator needs is not installed; the message says what to install."""

    def __init__(self, what: str):
        super().__init__(f"Google's Pub/Sub emulator cannot start: {what}; {INSTALL_HINT}")


def sdk_root() -> Path:
    """The Cloud SDK root, as `gcloud info` reports it.

    The common Debian layout (/usr/bin/gcloud -> <root>/bin/gcloud) is recognised without running gcloud,
    which saves half a second per start; anything else asks gcloud itself.
    """
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorMissing("gcloud is not on PATH")
    guess = Path(os.path.realpath(gcloud)).parent.parent
    if (guess / _SCRIPT).is_file():
        return guess
    out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or not out.stdout.strip():
        raise EmulatorMissing(f"`gcloud info` failed: {out.stderr.strip()[-300:]}")
    return Path(out.stdout.strip())


def emulator_script(root: Path | None = None) -> Path:
    """Path of the emulator launcher under `root` (default: the installed SDK), after checking java."""
    script = (root or sdk_root()) / _SCRIPT
    if not script.is_file():
        raise EmulatorMissing(f"{script} does not exist (the pubsub-emulator component is not installed)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EmulatorMissing("java is not on PATH")
    return script


@dataclass
class PubSubEmulator:
    """A running emulator; `host` is what PUBSUB_EMULATOR_HOST must be set to."""

    process: subprocess.Popen
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def launch(port: int | None = None, *, log_file=None, root: Path | None = None) -> PubSubEmulator:
    """Start the emulator in its own process group without waiting (callers overlap its ~1 s JVM start)."""
    port = port or free_port()
    env = dict(os.environ)
    # Only the client-side (C1) JIT and one GC thread: starts ~30% sooner on two cores, which it shares
    # with the functions starting at the same time; plenty fast for an emulator.
    env.setdefault("CLOUD_PUBSUB_EMULATOR_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    proc = subprocess.Popen(
        [str(emulator_script(root)), "--host=127.0.0.1", f"--port={port}"],
        stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    return PubSubEmulator(proc, port)


def wait_ready(emulator: PubSubEmulator, timeout: float = 30.0) -> None:
    """Block until the emulator answers HTTP (`GET /` says `Ok`)."""
    wait_http(f"http://{emulator.host}/", timeout=timeout, proc=emulator.process)
