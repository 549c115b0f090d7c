"""Bursts of uploads on a running local cloud, checked the way a demanding user would: every file reported,
every row exactly once (`shared.verify`), one Vertex job per part, the job cap never exceeded (the Vertex
emulator's peak of active jobs), and Cloud Storage's write rate per object (the limits proxy's counters).

Used by `make soak` (`local.soak`) at full scale and by the load tests at a scale that fits CI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from local._steps import buckets, drop, failure_messages, gather, logged_events
from local.accounting import check_books, expected_rows
from local.cloud import LocalCloud


def make_file(index: int, rows: int, *, bad_every: int = 0) -> bytes:
    """`rows` request lines (every `bad_every`-th one not JSON, when set), each with a user key."""
    lines = []
    for row in range(1, rows + 1):
        if bad_every and row % bad_every == 0:
            lines.append(b"{not json")
            continue
        request = {"contents": [{"role": "user", "parts": [{"text": f"File {index}, question {row}?"}]}]}
        lines.append(json.dumps({"key": f"f{index}-r{row}", "request": request}).encode())
    return b"\n".join(lines) + b"\n"


@dataclass
class Outcome:
    """What one burst did, and what was wrong with it (`problems` empty when every promise held)."""

    files: int
    rows: int
    seconds: float
    reported: int
    problems: list[str] = field(default_factory=list)
    peak_active_jobs: int = 0
    jobs: int = 0
    storage: Mapping = field(default_factory=dict)
    events: Mapping[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # what each function failure said (`_steps.failure_messages`)

    @property
    def busiest(self) -> tuple[str, int]:
        """The object written most within any 10 s window, and how often."""
        totals = self.storage.get("totals", {})
        return str(totals.get("busiest") or "-"), int(totals.get("peakPer10s") or 0)


def burst(cloud: LocalCloud, files: Mapping[str, bytes], *, timeout: float, prefix: str = "load/",
          cap: int | None = None) -> Outcome:
    """Drop every file at once (8 uploads in flight), wait for every report, check everything."""
    env = cloud.env
    gcs, inbound, outbound = buckets(env)
    cloud.storage_stats(reset=True)
    cloud.vertex_stats(reset=True)
    started = time.monotonic()
    generations = drop(inbound, files, f"{env['INPUT_PREFIX']}{prefix}")
    reports: dict[str, dict] = {}
    deadline = started + timeout
    while len(reports) < len(files) and time.monotonic() < deadline:
        gather(gcs, outbound, generations, reports, prefix)
        time.sleep(0.5)
    seconds = time.monotonic() - started
    outcome = Outcome(files=len(files), rows=0, seconds=seconds, reported=len(reports))
    for rel, data in files.items():
        expected = expected_rows(data)
        outcome.rows += len(expected)
        report = reports.get(rel)
        if report is None:
            outcome.problems.append(f"{prefix}{rel}: no report after {timeout:.0f}s")
            continue
        found, jobs = check_books(env, outbound, f"{prefix}{rel}", expected, report)
        outcome.problems += found
        outcome.jobs += len(jobs)
    outcome.peak_active_jobs = int(cloud.vertex_stats().get("peakActive", 0))
    if cap is not None and outcome.peak_active_jobs > cap:
        outcome.problems.append(f"{outcome.peak_active_jobs} Vertex jobs were active at once, above the cap {cap}")
    outcome.storage = cloud.storage_stats()
    outcome.events = logged_events(cloud)
    outcome.failures = failure_messages(cloud)
    return outcome

