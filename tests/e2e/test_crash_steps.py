"""A crash at every step boundary on the whole local cloud: with the crash hook, the first function instance to
reach each step the core marks dies there (SIGKILL of its process group, no `finally`, no reply), and is replaced;
the run still ends with the outputs of a clean run, and no part gets a second Vertex job."""

from __future__ import annotations

import json
import time

import pytest

from local.cloud import LocalCloud, vertex_jobs
from shared.verify import check, check_jobs, expected_rows
from tests.e2e.conftest import Env

MODEL = "gemini-2.5-flash"


# Every step boundary the core marks, in the order a run passes them.
STEPS = ["submit.claimed", "submit.staging", "submit.written", "submit.staged", "scheduler.reserved",
         "scheduler.created", "collect.harvesting", "collect.written", "finalize.claimed", "finalize.composed",
         "finalize.reported"]


@pytest.fixture(scope="module")
def crashing(tmp_path_factory):
    """A local cloud whose functions die (SIGKILL of the instance) the first time any of them reaches each step."""
    # The shortest function timeout: a crash that only the leases' expiry repairs costs the least time.
    with LocalCloud(tmp_path_factory.mktemp("crashing"), function_env={"MAX_ROWS_PER_JOB": "5", "MODEL": MODEL},
                    tick_seconds=0.5, vertex_args=["--run-latency=0.3"], function_timeout=5,
                    crash_at=STEPS) as running:
        yield running


def test_a_crash_at_every_step_boundary_still_ends_with_the_outputs_of_a_clean_run_and_no_extra_job(crashing):
    env = Env(crashing)
    lines = [json.dumps({"key": f"k{row}", "request": {"contents": [
        {"role": "user", "parts": [{"text": f"Crash test question {row}"}]}]}}).encode() for row in range(1, 13)]
    lines[6] = b"{not json"
    body = b"\n".join(lines) + b"\n"  # 11 good rows: three parts of at most five
    outputs = {}
    for rel in ("crash/steps", "crash/clean"):  # the second run passes every step without dying
        blob = env.input.blob(f"incoming/{rel}.jsonl")
        blob.upload_from_string(body, content_type="application/x-ndjson")
        report = env.report(f"{rel}.jsonl", blob.generation, timeout=120)
        results = env.output.blob(f"results/{rel}.jsonl").download_as_bytes()
        errors = env.output.blob(f"errors/{rel}.jsonl").download_as_bytes()
        assert check(rel, expected_rows(body), report, results, errors) == []
        assert check_jobs(rel, report, vertex_jobs(env.env, pipeline="gemini-batch-pipeline", run=report["run"])) == []
        outputs[rel] = (report, sorted(results.splitlines()), sorted(errors.splitlines()))
        if rel == "crash/steps":
            assert sorted(crashing.crashes()) == sorted(STEPS), crashing.log_tails(30)
    (steps, *steps_files), (clean, *clean_files) = outputs["crash/steps"], outputs["crash/clean"]
    assert steps_files == clean_files
    assert steps["rows"] == clean["rows"] and steps["state"] == clean["state"]
    assert len(steps["jobs"]) == len(clean["jobs"]) == 3
    # Every instance killed at a step came back: its function was replaced after the crash. Not one replacement per
    # crash: an instance that comes up, takes a redelivered message and dies at the next step before the supervisor
    # looks again (every 0.1 s) was never seen up, and its function's next instance replaces both.
    def back(crash: dict) -> bool:
        return any(r.function == crash["function"] and r.at >= crash["at"] for r in crashing.replacements)

    deadline = time.monotonic() + 15  # the last instance to die may still be on its way back
    while not all(map(back, crashing.crashes().values())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(map(back, crashing.crashes().values())), (crashing.crashes(), crashing.replacements)
