"""What a function instance does before its first event: read its configuration and build its adapters. Collect
leaves the google-genai SDK for its first Vertex call; poll, submit and reconcile build their Vertex client then,
on the main thread (`shared/vertex/deferred.py`)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.vertex import JobInfo
from shared.vertex.deferred import DeferredVertexJobs

ROOT = Path(__file__).resolve().parents[2]


def _start_instance(function: str | None, then: str) -> None:
    """Import functions/main.py as an instance of `function` starts, in a fresh interpreter, then run `then`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GOOGLE_CLOUD_PROJECT": "p", "INPUT_BUCKET": "in-bucket",
           "OUTPUT_BUCKET": "out-bucket", "VERTEX_BASE_URL": "http://127.0.0.1:9",
           "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9", "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}
    env.pop("FUNCTION_TARGET", None)
    if function is not None:  # None: run outside the platform, which names no function
        env["FUNCTION_TARGET"] = function
    code = "import sys, threading\nimport functions.main as main\njobs = main.PIPELINE.vertex\n" + then
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("function", ["collect", None])
def test_collect_starts_without_the_vertex_sdk_and_imports_it_on_its_first_vertex_call(function):
    _start_instance(function, """if True:
        assert "google.genai" not in sys.modules, "imported at start"
        assert not jobs.built
        jobs._real()
        assert jobs.built and "google.genai" in sys.modules
        assert type(jobs._real()).__name__ == "GenaiVertexJobs"
    """)


@pytest.mark.parametrize("function", ["poll", "submit", "reconcile"])
def test_poll_submit_and_reconcile_build_their_vertex_client_as_they_start(function):
    _start_instance(function, """if True:
        assert jobs.built and "google.genai" in sys.modules
        assert type(jobs._real()).__name__ == "GenaiVertexJobs"
        assert [t.name for t in threading.enumerate()] == ["MainThread"]  # nothing a fork would lose
    """)


class _Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def create(self, **kwargs):
        self.calls.append(("create", kwargs))
        return JobInfo("jobs/1", "JOB_STATE_PENDING")

    def find(self, labels):
        self.calls.append(("find", labels))
        return None

    def list(self, filter, page_size=100):  # noqa: A002
        self.calls.append(("list", filter, page_size))
        return iter([JobInfo("jobs/2", "JOB_STATE_RUNNING")])

    def get(self, name):
        self.calls.append(("get", name))
        return JobInfo(name, "JOB_STATE_SUCCEEDED")

    def cancel(self, name):
        self.calls.append(("cancel", name))


def test_the_deferred_adapter_is_built_once_whichever_threads_call_first_and_passes_every_call_on():
    built: list[_Recorded] = []

    def build() -> _Recorded:
        time.sleep(0.05)  # long enough for the other threads to arrive meanwhile
        built.append(_Recorded())
        return built[-1]

    jobs = DeferredVertexJobs(build)
    assert not jobs.built and built == []
    threads = [threading.Thread(target=jobs.get, args=(f"jobs/{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and jobs.built
    real = built[0]
    real.calls.clear()
    assert jobs.create(model="m", source_uri="gs://b/i", destination_prefix="gs://b/o", display_name="d",
                       labels={"run": "r"}).name == "jobs/1"
    assert jobs.find({"run": "r"}) is None
    assert [j.name for j in jobs.list("labels.run=\"r\"", page_size=7)] == ["jobs/2"]
    assert jobs.get("jobs/3").state == "JOB_STATE_SUCCEEDED"
    jobs.cancel("jobs/4")
    assert real.calls == [
        ("create", {"model": "m", "source_uri": "gs://b/i", "destination_prefix": "gs://b/o", "display_name": "d",
                    "labels": {"run": "r"}}),
        ("find", {"run": "r"}), ("list", "labels.run=\"r\"", 7), ("get", "jobs/3"), ("cancel", "jobs/4")]
    assert len(built) == 1


def test_a_failed_build_is_tried_again_by_the_next_call():
    attempts = []

    def build() -> _Recorded:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("no credentials")
        return _Recorded()

    jobs = DeferredVertexJobs(build)
    with pytest.raises(RuntimeError, match="no credentials"):
        jobs.cancel("jobs/1")
    assert not jobs.built
    jobs.cancel("jobs/1")
    assert attempts == [1, 1] and jobs.built
