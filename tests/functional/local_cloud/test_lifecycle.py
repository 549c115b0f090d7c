"""Starting and stopping: nothing is left running, the CLI manages a detached cloud, missing tools are named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local import pubsub
from local.cloud import FUNCTIONS, REPO_ROOT, LocalCloud, group_members

from .conftest import RECORDER, VERTEX

COMPONENTS = {"pubsub", "gcs", "storage", "scheduler", *FUNCTIONS} | ({"vertex"} if VERTEX else set())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.functional
def test_stop_leaves_no_process_running(tmp_path):
    with LocalCloud(tmp_path, functions_source=RECORDER, vertex=VERTEX) as cloud:
        pids = {name: c["pid"] for name, c in cloud.state()["components"].items()}
        assert set(pids) == COMPONENTS
        assert all(_alive(pid) for pid in pids.values())
        # Each server leads its own process group; gunicorn's worker sits in the function's group.
        assert all(os.getpgid(pid) == pid for pid in pids.values())
        assert len(group_members(pids["submit"])) == 2
        assert os.getpgid(0) not in pids.values()
    assert [name for name, pid in pids.items() if _alive(pid) or group_members(pid)] == []
    cloud.stop()  # a second stop is harmless


def _cli(*args: str, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local.cloud", *args, "--workdir", str(workdir)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)


@pytest.mark.functional
def test_cli_up_status_down(tmp_path):
    extra = ["--functions-source", str(RECORDER), "--tick", "0.5"] + ([] if VERTEX else ["--no-vertex"])
    up = _cli("up", *extra, workdir=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "local cloud up in" in up.stdout
        state = json.loads((tmp_path / "cloud.json").read_text())
        pids = {name: c["pid"] for name, c in state["components"].items()}
        assert set(pids) == COMPONENTS
        assert all(_alive(pid) for pid in pids.values()), up.stdout  # still running after `up` returned
        assert (tmp_path / "env").read_text().count("export ") == len(state["env"])
        assert (tmp_path / "logs" / "pubsub.log").exists()

        status = _cli("status", workdir=tmp_path)
        assert status.returncode == 0, status.stdout
        assert f"{len(COMPONENTS)}/{len(COMPONENTS)} components running" in status.stdout
        assert f"127.0.0.1:{state['components']['submit']['port']}" in status.stdout

        again = _cli("up", workdir=tmp_path)
        assert again.returncode == 0 and "already running" in again.stdout
        assert json.loads((tmp_path / "cloud.json").read_text()) == state
    finally:
        down = _cli("down", workdir=tmp_path)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.startswith("stopped: ")
    assert [name for name, pid in pids.items() if _alive(pid) or group_members(pid)] == []
    assert not (tmp_path / "cloud.json").exists()

    assert "nothing to stop" in _cli("down", workdir=tmp_path).stdout
    status = _cli("status", workdir=tmp_path)
    assert status.returncode == 1 and "not running" in status.stdout


def test_missing_emulator_says_what_to_install(tmp_path, monkeypatch):
    packages = ("google-cloud-cli", "google-cloud-cli-pubsub-emulator", "openjdk-17-jre-headless")
    with pytest.raises(pubsub.EmulatorMissing) as missing_component:
        pubsub.emulator_script(tmp_path / "no-sdk")
    assert "pubsub-emulator component is not installed" in str(missing_component.value)

    monkeypatch.setenv("PATH", str(tmp_path))  # neither gcloud nor java
    monkeypatch.delenv("JAVA_HOME", raising=False)
    fake_sdk = tmp_path / "sdk"
    (fake_sdk / "platform" / "pubsub-emulator" / "bin").mkdir(parents=True)
    (fake_sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator").write_text("#!/bin/sh\n")
    with pytest.raises(pubsub.EmulatorMissing) as missing_java:
        pubsub.emulator_script(fake_sdk)
    assert "java is not on PATH" in str(missing_java.value)

    with pytest.raises(pubsub.EmulatorMissing) as missing_gcloud:
        LocalCloud(tmp_path / "w", functions_source=RECORDER, vertex=False).start()
    assert "gcloud is not on PATH" in str(missing_gcloud.value)
    for error in (missing_component.value, missing_java.value, missing_gcloud.value):
        assert all(p in str(error) for p in packages), str(error)
    assert not (tmp_path / "w" / "logs" / "submit.log").exists()  # nothing was started
