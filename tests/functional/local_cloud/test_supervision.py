"""Function instances behave like Cloud Run's: a dead one is replaced on the same port and the replacement is
logged; chaos kills at random and records each kill; the crash hook kills an instance at a named step once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from local.cloud import FUNCTIONS, REPO_ROOT, LocalCloud, group_members, pubsub_clients

from .conftest import RECORDER, TICK, wait_for

pytestmark = pytest.mark.functional

CRASH_STEP = "submit.recording"  # the recorder's submit passes it before it writes its record


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("supervised"), functions_source=RECORDER, tick_seconds=TICK,
                    vertex=False, function_timeout=7, crash_at=[CRASH_STEP]) as running:
        yield running


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _replaced(cloud: LocalCloud, pid: int):
    return [r for r in cloud.replacements if r.old_pid == pid]


def test_a_killed_instance_is_replaced_on_the_same_port_with_the_same_environment(cloud, recorded):
    before = cloud.state()["components"]["collect"]
    kill = cloud.kill("collect")
    assert (kill.function, kill.pid) == ("collect", before["pid"])

    [replaced] = wait_for(lambda: _replaced(cloud, kill.pid), "the replacement of collect", cloud)
    after = cloud.state()["components"]["collect"]
    assert after["pid"] == replaced.new_pid != kill.pid
    assert after["port"] == before["port"] and _answers(after["port"])
    assert group_members(kill.pid) == []  # gunicorn's worker died with its master
    assert 0 < replaced.down < 10

    publisher, _ = pubsub_clients(cloud.env)
    marker = uuid.uuid4().hex
    publisher.publish(publisher.topic_path("local-project", "job-finished"), marker.encode()).result(timeout=10)
    [record] = wait_for(lambda: [r for r in recorded("collect") if r["data"] == marker],
                        "a message at the new collect instance", cloud)
    assert record["env"]["K_SERVICE"] == "collect"
    assert record["env"]["FUNCTION_TIMEOUT_SECONDS"] == record["env"]["CLOUD_RUN_TIMEOUT_SECONDS"] == "7"

    log = cloud.logs("supervisor")
    assert f"killed collect (pid {kill.pid}, its whole process group) on request" in log
    assert f"replaced collect: pid {kill.pid} -> {replaced.new_pid}, down " in log
    # One log file per function, appended to by every instance.
    instances = cloud.logs("collect")
    assert f"started, pid {kill.pid}" in instances and f"started, pid {replaced.new_pid}" in instances


def test_the_crash_hook_kills_the_first_instance_to_reach_the_step_and_no_other(cloud, gcs, recorded):
    leader = cloud.state()["components"]["submit"]["pid"]
    bucket = gcs.bucket(cloud.env["INPUT_BUCKET"])
    first, second = (f"incoming/{uuid.uuid4().hex}/{n}.jsonl" for n in ("first", "second"))
    bucket.blob(first).upload_from_string(b"{}\n")

    # The first delivery died at the step (no record); Pub/Sub delivered it again to the replacement.
    wait_for(lambda: [r for r in recorded("submit") if r["attributes"].get("objectId") == first],
             "the redelivered upload at the new submit instance", cloud, timeout=30)
    crash = cloud.crashes()
    assert list(crash) == [CRASH_STEP]
    assert crash[CRASH_STEP]["function"] == "submit" and crash[CRASH_STEP]["pgid"] == leader
    [replaced] = _replaced(cloud, leader)
    assert f"submit (pid {leader}) is gone (exit -9)" in cloud.logs("supervisor")

    bucket.blob(second).upload_from_string(b"{}\n")
    wait_for(lambda: [r for r in recorded("submit") if r["attributes"].get("objectId") == second],
             "the second upload at submit", cloud)
    assert cloud.state()["components"]["submit"]["pid"] == replaced.new_pid  # no second crash
    assert cloud.logs("submit").count(f"crash hook: killing this instance at step {CRASH_STEP}") == 1
    assert [r["attributes"]["objectId"] for r in recorded("submit")].count(first) == 1


def test_chaos_kills_random_instances_records_every_kill_and_each_is_replaced(cloud):
    earlier = len(cloud.kills)
    chaos = cloud.chaos(every=0.4, duration=3, seed=7)
    assert chaos.join(timeout=15)
    kills = chaos.kills
    assert len(kills) >= 3
    assert cloud.kills[earlier:] == kills and chaos.last_kill == kills[-1]
    assert {k.function for k in kills} <= set(FUNCTIONS)
    times = [k.at for k in kills]
    assert times == sorted(times) and chaos.started_at < times[0] and times[-1] < chaos.started_at + 3.5
    assert len({k.pid for k in kills}) == len(kills)  # never an instance that was already dead

    wait_for(lambda: all(_replaced(cloud, k.pid) for k in kills), "every killed instance replaced", cloud)
    state = cloud.state()["components"]
    assert all(_alive(state[f]["pid"]) and _answers(state[f]["port"]) for f in FUNCTIONS)
    log = cloud.logs("supervisor")
    assert "chaos: killing a random function instance every ~0.4s for 3s" in log
    assert f"chaos: over after {len(kills)} kills" in log


def _cli(*args: str, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local.cloud", *args, "--workdir", str(workdir)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=90)


def test_up_keeps_supervising_after_it_returns_with_chaos_and_down_stops_every_instance(tmp_path):
    up = _cli("up", "--functions-source", str(RECORDER), "--no-vertex", "--chaos", "0.3", "--chaos-duration", "1.5",
              workdir=tmp_path)
    seen: set[int] = set()
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "chaos: kills one every ~0.3s for 1.5s" in up.stdout
        state = json.loads((tmp_path / "cloud.json").read_text())
        serve = state["supervisor"]["pid"]
        seen |= {c["pid"] for c in state["components"].values()} | {serve}
        log = tmp_path / "logs" / "supervisor.log"
        over = wait_for(lambda: "chaos: over after" in log.read_text() and log.read_text(), "the end of chaos")
        kills = int(over.split("chaos: over after ")[1].split()[0])
        assert kills >= 1
        wait_for(lambda: log.read_text().count("replaced ") == kills, "every kill replaced", timeout=15)

        def current() -> dict:
            return json.loads((tmp_path / "cloud.json").read_text())["components"]

        # Without chaos too: an instance killed from outside is replaced, and cloud.json follows.
        submit = current()["submit"]
        os.killpg(submit["pid"], signal.SIGKILL)
        renewed = wait_for(lambda: current()["submit"]["pid"] != submit["pid"] and current()["submit"],
                           "a new submit pid in cloud.json", timeout=15)
        wait_for(lambda: f"replaced submit: pid {submit['pid']} -> {renewed['pid']}" in log.read_text(),
                 "the replacement in supervisor.log")
        assert renewed["port"] == submit["port"] and _answers(renewed["port"])
        status = _cli("status", workdir=tmp_path)
        assert status.returncode == 0, status.stdout
        assert "supervisor pid" in status.stdout and f"{serve}" in status.stdout
        seen |= {c["pid"] for c in current().values()}
    finally:
        down = _cli("down", workdir=tmp_path)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "supervisor" in down.stdout
    assert [pid for pid in seen if _alive(pid) or group_members(pid)] == []
    assert not (tmp_path / "cloud.json").exists()
    wait_for(lambda: "local cloud stopped" in (tmp_path / "logs" / "supervisor.log").read_text(), "serve's goodbye")
