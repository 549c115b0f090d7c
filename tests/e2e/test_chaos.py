"""Chaos on the whole local cloud: files dropped while function instances are killed at random (SIGKILL of the
whole process group, replaced like Cloud Run's) all end with a report, every row accounted for exactly once,
exactly one Vertex job per part, and no `run.stuck` for a run that finished by itself."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime

import pytest

from local.cloud import FUNCTIONS, LocalCloud, vertex_jobs
from shared.verify import check, check_jobs, expected_rows

FILES = 24
CHAOS_EVERY = 1.0      # mean seconds between kills
CHAOS_SECONDS = 15
HEAL_SECONDS = 60      # every report within this long after the last kill
# 20-30 rows a file, 15 rows a job: two parts a file, 48 jobs in all, within Vertex's 60 creations a minute
# (which the pipeline keeps to), so the time to heal is not hidden behind the quota.
CHAOS_ENV = {"MAX_ROWS_PER_JOB": "15", "MAX_ATTEMPTS": "3", "MODEL": "gemini-2.5-flash"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    # A short function timeout: the leases and deadlines the healing waits out derive from it.
    with LocalCloud(tmp_path_factory.mktemp("chaos"), function_env=CHAOS_ENV, tick_seconds=0.5,
                    vertex_args=["--run-latency=0.5"], function_timeout=10) as running:
        yield running


def _file(index: int, rng: random.Random) -> bytes:
    """20-30 rows; some files with a line that is not JSON, so errors files are exercised too."""
    lines = [json.dumps({"key": f"k{index}-{row}", "request": {"contents": [
        {"role": "user", "parts": [{"text": f"Chaos file {index}, question {row}"}]}]}}).encode()
        for row in range(1, rng.randint(20, 30) + 1)]
    if index % 3 == 0:
        lines[rng.randrange(len(lines))] = b"{not json"
    return b"\n".join(lines) + b"\n"


def _events(cloud: LocalCloud, event: str) -> list[dict]:
    found = []
    for function in FUNCTIONS:
        for line in cloud.logs(function).splitlines():
            if f'"{event}"' in line:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == event:
                    found.append(entry)
    return found


def test_files_dropped_during_chaos_all_end_with_exact_books_and_one_job_per_part(cloud, env):
    rng = random.Random(7)
    files = {f"chaos/f{i:02d}": _file(i, rng) for i in range(1, FILES + 1)}
    generations: dict[str, int] = {}
    chaos = cloud.chaos(every=CHAOS_EVERY, duration=CHAOS_SECONDS, seed=24)
    for n, (rel, body) in enumerate(files.items()):  # two files a second, while instances die
        blob = env.input.blob(f"incoming/{rel}.jsonl")
        blob.upload_from_string(body, content_type="application/x-ndjson")
        generations[rel] = blob.generation
        if n % 2 == 1:
            time.sleep(1)
    assert chaos.join(timeout=CHAOS_SECONDS + 10)
    assert len(chaos.kills) >= 5, chaos.kills
    last_kill = chaos.last_kill.at

    reports: dict[str, dict] = {}
    while len(reports) < len(files) and time.time() < last_kill + HEAL_SECONDS:
        for blob in env.gcs.list_blobs(env.output, prefix="reports/chaos/"):
            rel = blob.name.removeprefix("reports/").removesuffix(".json")
            if rel in files and rel not in reports:
                doc = json.loads(blob.download_as_bytes())
                if doc["input"]["generation"] == str(generations[rel]):
                    reports[rel] = doc
        time.sleep(0.5)
    missing = sorted(set(files) - set(reports))
    kills = ", ".join(f"{k.function}@{k.at - chaos.started_at:.1f}s" for k in chaos.kills)
    assert not missing, (f"no report {HEAL_SECONDS}s after the last kill for {len(missing)} of {len(files)} files: "
                         f"{missing}\nkills: {kills}\n{cloud.log_tails(40)}")

    problems: list[str] = []
    for rel, body in files.items():
        report = reports[rel]
        problems += check(rel, expected_rows(body), report,
                          env.output.blob(f"results/{rel}.jsonl").download_as_bytes(),
                          env.output.blob(f"errors/{rel}.jsonl").download_as_bytes())
        problems += check_jobs(rel, report, vertex_jobs(env.env, pipeline="gemini-batch-pipeline", run=report["run"]))
        assert len(report["jobs"]) == 2  # every part once, no retry rounds
    assert problems == [], "\n".join(problems)
    last_report = max(datetime.fromisoformat(r["finished"]).timestamp() for r in reports.values())
    print(f"{len(files)} files, {len(chaos.kills)} kills; the last report {last_report - last_kill:.1f}s "
          f"after the last kill")
    finished = {r["run"] for r in reports.values()}
    stuck = [e for e in _events(cloud, "run.stuck")
             if e.get("logging.googleapis.com/labels", {}).get("run") in finished]
    assert stuck == [], stuck

