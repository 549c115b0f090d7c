"""What one poll tick costs with many active jobs: Vertex API calls, state reads and writes, seconds.

The issue's target: with 1,000 active jobs on the Vertex emulator, one tick makes at most 10 Vertex API calls and
finishes in 2 s or less; the table shows how calls and seconds grow from 10 to 1,000 to 10,000 jobs.

For each N the benchmark starts its own servers, as the local cloud runs them: fake-gcs-server, the GCS limits
proxy in front of it (`python -m local.gcs_limits`, its own process, the per-object write rate on) and the Vertex
emulator (`python -m local.vertex`, its own process, reading fake-gcs-server directly). Then it seeds what a tick
meets in the steady state at the cap (MAX_ACTIVE_JOBS = N):

- N jobs on the emulator, created through its REST API (seeding takes about ten seconds at 1,000 or 10,000),
  named and labelled as the pipeline names them. `--finishing` of them (default 2) have ended, SUCCEEDED,
  since the last tick; the others run for a day. The emulator runs each RUNNING job on a worker thread of its
  own and every new job wakes every idle worker, so `--running` (default 1,000) bounds the workers: at 10 and
  1,000 jobs all of them are RUNNING, at 10,000 the rest wait QUEUED for a worker, as jobs wait for capacity on
  Vertex. To the tick both are active jobs, one entry of a list page each (a waiting job's resource is a
  little smaller).
  All jobs read one small staged input: the tick never reads a job's input.
- `--history` more jobs (default 0) that ended before the last tick, their slots long freed. The tick's list
  asks for every pipeline job created since the oldest active reservation (less ten minutes), so jobs that
  ran and ended while the oldest one still runs come back on its pages too.
- `state/scheduler.json` with N slots whose states are what the previous tick saw (RUNNING, or QUEUED), so
  only the finished jobs are news; no slot was written within the last second.
- `--queued-runs` runs (default 3) of `--parts` parts each (default 4) waiting in the queue, each with its run
  record (running, parts queued) and its staged parts: the finished jobs' slots go to the oldest of them,
  and the tick creates their jobs. The active jobs' run records are not written: the tick does not read them.

Then it runs ONE `shared.poll.handle_tick` in this process and counts: Vertex API calls received by the
emulator (its `/emulator/v1/stats` `calls`, reset just before the tick), storage calls made through the
pipeline's storage adapter (object reads, listings, and writes with deletes), and wall seconds. Pub/Sub is the
pipeline's in-memory publisher (`shared.publisher.MemoryPublisher`): the tick's only messages are the finished
jobs' job-finished announcements, one publish each, counted in the row. The tick's log lines are captured
(counted, not printed). The tick runs on a warm instance (one list call made before, not counted): the first
call of a fresh process also builds the SDK's models, about 0.15 s more.

    python -m bench.poll [--jobs 10,1000,10000] [--finishing 2] [--queued-runs 3] [--parts 4] [--running 1000]
                         [--history 0] [--json]

`run(jobs)` returns the rows as a JSON-able list of dicts (`bench/__main__.py` can call it). A row's
`target_met` applies the issue's thresholds (at most 10 Vertex calls, at most 2 s) to that row; the issue
states them for 1,000 jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench._servers import spawn, stop
from local import gcs
from local._table import text_table
from shared import layout, poll, runstate, scheduler
from shared import scheduler_state as rules
from shared.config import Config
from shared.pipeline import Pipeline
from shared.publisher import MemoryPublisher
from shared.storage.gcs import GcsStore, make_client
from shared.vertex.base import label_filter
from shared.vertex.genai import GenaiVertexJobs
from shared.vertex.genai import make_client as make_vertex_client

ROOT = Path(__file__).resolve().parent.parent
PROJECT, LOCATION = "bench", "us-central1"
INPUT, WORK = "bench-input", "bench-work"
MODEL = "gemini-2.5-flash"
PIPELINE = Config.__dataclass_fields__["pipeline_label"].default
SHARED_INPUT = "staging/bench/input.jsonl"  # every seeded job's input: the tick never reads it
STAGED_LINE = b'{"request": {"contents": [{"role": "user", "parts": [{"text": "Why is the sky blue?"}]}]}}\n'
JOB_SECONDS = 86_400  # the seeded jobs' run latency: RUNNING through the whole measurement
PARTS_PER_ACTIVE_RUN = 10  # the active jobs belong to runs of this many parts (only their names show it)
TARGET_CALLS, TARGET_SECONDS = 10, 2.0
_READS = frozenset({"read_json", "read_bytes", "open_read", "object_info"})
_LISTS = frozenset({"list_page", "list_names"})
_WRITES = frozenset({"write_json", "write_bytes", "open_write", "compose", "delete"})


class _Counted:
    """An adapter that counts the calls made through it, by method name, then delegates them."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls[name] += 1
            if name == "list" and str(args[0] if args else kwargs.get("filter", "")).startswith("display_name="):
                self.calls["look_up"] += 1  # the starting parts' jobs looked up together (shared/scheduler.py)
            return attr(*args, **kwargs)

        return counted


class _Rest:
    """Plain REST calls to the emulator for seeding and its admin endpoint: keep-alive, one connection per
    thread, none of it counted (the stats are reset before the tick)."""

    def __init__(self, url: str) -> None:
        self._parts = urlsplit(url)
        self._local = threading.local()

    def call(self, method: str, path: str, body: Any = None) -> dict:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._parts.hostname, self._parts.port, timeout=60)
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = json.loads(resp.read() or b"{}")
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: {resp.status} {payload}")
        return payload

    def create(self, run: str, part: str) -> None:
        self.call("POST", f"/v1/projects/{PROJECT}/locations/{LOCATION}/batchPredictionJobs", {
            "displayName": layout.job_display_name(PIPELINE, run, part),
            "model": f"publishers/google/models/{MODEL}",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{WORK}/{SHARED_INPUT}"]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {
                "outputUriPrefix": f"gs://{WORK}/{layout.vertex_output_prefix(run, part)}"}},
            "labels": layout.job_labels(PIPELINE, run, part),
        })

    def states(self) -> dict[str, str]:
        """Display name -> state of every job (pages of 1,000)."""
        found: dict[str, str] = {}
        token = ""
        while True:
            page = self.call("GET", f"/v1/projects/{PROJECT}/locations/{LOCATION}/batchPredictionJobs"
                                    f"?pageSize=1000{'&pageToken=' + token if token else ''}")
            found.update((job["displayName"], job["state"]) for job in page.get("batchPredictionJobs", []))
            token = page.get("nextPageToken", "")
            if not token:
                return found

    def wait(self, ready, what: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.call("GET", "/emulator/v1/stats")
            if ready(stats["states"]):
                return stats
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Vertex emulator did not reach {what} within {timeout:.0f}s: {stats}")
            time.sleep(0.1)


def _active_qids(n: int) -> list[tuple[str, str]]:
    """(run, part) of the N active jobs, in runs of PARTS_PER_ACTIVE_RUN parts."""
    out = []
    for i in range(n):
        run = layout.run_id(INPUT, f"incoming/active/{i // PARTS_PER_ACTIVE_RUN:05d}.jsonl", 1)
        out.append((run, layout.part_id(i % PARTS_PER_ACTIVE_RUN + 1, 1)))
    return out


def _seed_vertex(rest: _Rest, active: list[tuple[str, str]], finishing: int, history: int,
                 workers: int) -> dict[str, str]:
    """Create the jobs: the ones that end (history, then the finishing ones) first, at once, then the long
    ones. Returns each job's state by display name once they have settled (one RUNNING per worker, the rest
    QUEUED)."""
    ended = [(layout.run_id(INPUT, f"incoming/history/{i:05d}.jsonl", 1), layout.part_id(1, 1))
             for i in range(history)] + active[:finishing]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda q: rest.create(*q), ended))
        rest.wait(lambda s: s.get("JOB_STATE_SUCCEEDED", 0) == len(ended), f"{len(ended)} SUCCEEDED",
                  60 + len(ended) / 20)
        rest.call("POST", "/emulator/v1/switches", {"run_latency": JOB_SECONDS})
        list(pool.map(lambda q: rest.create(*q), active[finishing:]))
    long_jobs = len(active) - finishing
    want = min(long_jobs, workers)
    rest.wait(lambda s: s.get("JOB_STATE_RUNNING", 0) == want and
              s.get("JOB_STATE_QUEUED", 0) == long_jobs - want, f"{want} RUNNING", 120 + long_jobs / 50)
    return rest.states()


def _seed_state(p: Pipeline, active: list[tuple[str, str]], states: dict[str, str], queued_runs: int, parts: int,
                since: float) -> int:
    """The slots object (N slots, states as the last tick saw them) and the waiting runs. Returns how many
    parts wait in the queue."""
    waiting = 0
    for r in range(queued_runs):
        name = f"incoming/queued/{r:03d}.jsonl"
        run = layout.run_id(INPUT, name, 1)
        record = runstate.new_run(run=run, bucket=INPUT, name=name, generation=1,
                                  rel=name.removeprefix("incoming/").removesuffix(".jsonl"), model=MODEL,
                                  now=p.now())
        made = since + r  # the runs' parts wait in upload order
        part_ids = [layout.part_id(c, 1) for c in range(1, parts + 1)]
        record = runstate.staged(record, total=parts, validation={"failed": 0, "byReason": {}}, note=None,
                                 now=made, parts={part: runstate.new_part(c, 1, 1, len(STAGED_LINE), since=made,
                                                                          first_row=c, last_row=c)
                                                  for c, part in enumerate(part_ids, 1)})
        p.store.write_json(WORK, layout.run_state_name(run), record, if_generation_match=0)
        for part in part_ids:
            p.store.write_bytes(WORK, layout.staged_name(run, part), STAGED_LINE)
        scheduler.enqueue(p, record, part_ids)
        waiting += parts
    slots = rules.empty()
    for run, part in active:
        qid = layout.queue_id(run, part)
        state = states[layout.job_display_name(PIPELINE, run, part)]
        slots["active"][qid] = {
            "since": since, "first": since, "token": os.urandom(8).hex(), "model": MODEL,
            # A finished job was running at the last tick: its end is this tick's news.
            "state": "JOB_STATE_RUNNING" if state == "JOB_STATE_SUCCEEDED" else state,
            "verify": False, "orphan": False, "entry": layout.queue_entry_name(since, qid),
            "input": f"gs://{INPUT}/incoming/active.jsonl"}
    p.store.write_json(WORK, layout.SCHEDULER_NAME, rules.stamped(slots, since), if_generation_match=0)
    return waiting


def measure(jobs: int, *, finishing: int = 2, queued_runs: int = 3, parts: int = 4, running: int = 1000,
            history: int = 0) -> dict:
    """Seed N active jobs on fresh servers and measure one poll tick (see the module docstring)."""
    finishing = min(finishing, jobs)
    fake = gcs.start()
    proxy = emulator = None
    workers = max(1, min(jobs, running))
    try:
        proxy, storage_url = spawn(["local.gcs_limits", "--backend", fake.url])
        emulator, vertex_url = spawn(["local.vertex", "--workers", str(workers),
                                       "--project", PROJECT], env={"STORAGE_EMULATOR_HOST": fake.url})
        make_client(PROJECT, endpoint=fake.url).create_bucket(WORK)
        config = Config(project=PROJECT, location=LOCATION, input_bucket=INPUT, output_bucket=WORK, model=MODEL,
                        max_active_jobs=jobs, vertex_base_url=vertex_url)
        vertex = GenaiVertexJobs(make_vertex_client(PROJECT, LOCATION, vertex_url))
        seeding = Pipeline(config=config, store=GcsStore(make_client(PROJECT, endpoint=storage_url)), vertex=vertex,
                           publisher=MemoryPublisher())
        rest = _Rest(vertex_url)
        started = time.perf_counter()
        since = time.time() - 60  # the slots were reserved, and last written, a minute ago
        seeding.store.write_bytes(WORK, SHARED_INPUT, STAGED_LINE)
        active = _active_qids(jobs)
        states = _seed_vertex(rest, active, finishing, history, workers)
        waiting = _seed_state(seeding, active, states, queued_runs, parts, since)
        seconds_to_seed = time.perf_counter() - started
        time.sleep(1.1)  # the slots object was just written: Cloud Storage takes one write a second to it
        store = _Counted(seeding.store)
        counted_vertex = _Counted(vertex)
        publisher = MemoryPublisher()
        p = Pipeline(config=config, store=store, vertex=counted_vertex, publisher=publisher)
        # Measure a warm instance, as most ticks are: the SDK has built its models and holds a connection.
        list(vertex.list(label_filter({"pipeline": "bench-warm-up"}), page_size=1))
        rest.call("POST", "/emulator/v1/stats/reset")
        logs = io.StringIO()
        with contextlib.redirect_stdout(logs):
            t0 = time.perf_counter()
            summary = poll.handle_tick(p)
            seconds = time.perf_counter() - t0
        calls = rest.call("GET", "/emulator/v1/stats")["calls"]
    finally:
        stop(emulator)
        stop(proxy)
        fake.stop()
    startable = min(finishing, waiting, config.max_creates_per_minute)  # the freed slots, within the quota
    expected = {"active": jobs, "finished": finishing, "started": startable, "adopted": 0, "failed": 0}
    if any(summary[k] != v for k, v in expected.items()):
        raise RuntimeError(f"the tick did not do what the seeded state asks: {summary}, expected {expected}\n"
                           + logs.getvalue()[-2000:])
    vertex_calls = sum(calls.values())
    finds = counted_vertex.calls["find"] + counted_vertex.calls["look_up"]
    row = {
        "jobs": jobs,
        "running": sum(s == "JOB_STATE_RUNNING" for s in states.values()),
        "history": history,
        "waiting_at_vertex": sum(s in ("JOB_STATE_PENDING", "JOB_STATE_QUEUED") for s in states.values()),
        "finished": summary["finished"],
        "queued_runs": queued_runs,
        "queued_parts": waiting,
        "started": summary["started"],
        "vertex_calls": vertex_calls,
        "vertex_calls_by_kind": dict(sorted(calls.items())),
        # A look-up of existing jobs before the creates (one for the parts starting together, or one find per
        # part when that fails) is a list call too; the rest are pages of jobs.
        "list_pages": calls.get("list", 0) - finds,
        "state_reads": sum(n for name, n in store.calls.items() if name in _READS),
        "state_lists": sum(n for name, n in store.calls.items() if name in _LISTS),
        "state_writes": sum(n for name, n in store.calls.items() if name in _WRITES),
        "storage_calls_by_method": dict(sorted(store.calls.items())),
        "published": len(publisher.messages),
        "log_lines": logs.getvalue().count("\n"),
        "seconds": round(seconds, 3),
        "seed_seconds": round(seconds_to_seed, 1),
    }
    row["target_met"] = vertex_calls <= TARGET_CALLS and seconds <= TARGET_SECONDS
    return row


def run(jobs: list[int], **options: int) -> list[dict]:
    """One row per N in `jobs` (fresh servers each); `options` are `measure`'s keywords."""
    return [measure(n, **options) for n in jobs]


def render(rows: list[dict]) -> str:
    head = ["jobs", "running", "queued at Vertex", "ended earlier", "finished", "queued parts (runs)", "started",
            "Vertex calls", "list pages", "state reads", "state lists", "state writes", "seconds", "target"]
    body = [[str(r["jobs"]), str(r["running"]), str(r["waiting_at_vertex"]), str(r["history"]), str(r["finished"]),
             f"{r['queued_parts']} ({r['queued_runs']})", str(r["started"]), str(r["vertex_calls"]),
             str(r["list_pages"]), str(r["state_reads"]), str(r["state_lists"]), str(r["state_writes"]),
             f"{r['seconds']:.3f}", "met" if r["target_met"] else "missed"] for r in rows]
    return text_table([head, *body])


def _jobs(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give job counts like 10,1000,10000") from None
    if not values or any(v < 1 or v > 10_000 for v in values):
        raise argparse.ArgumentTypeError("job counts are 1 to 10,000 (MAX_ACTIVE_JOBS' range)")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poll", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=_jobs, default=[10, 1000, 10_000], help="active jobs, comma-separated")
    parser.add_argument("--finishing", type=int, default=2, help="active jobs that ended since the last tick")
    parser.add_argument("--queued-runs", type=int, default=3, help="runs with parts waiting in the queue")
    parser.add_argument("--parts", type=int, default=4, help="waiting parts per queued run")
    parser.add_argument("--running", type=int, default=1000,
                        help="the most jobs RUNNING at the emulator (its workers); the rest wait QUEUED")
    parser.add_argument("--history", type=int, default=0,
                        help="jobs that ended before the last tick, still inside the tick's listing window")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON document")
    args = parser.parse_args(argv)
    rows = run(args.jobs, finishing=args.finishing, queued_runs=args.queued_runs, parts=args.parts,
               running=args.running, history=args.history)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(render(rows))
        print(f"\ntarget: at most {TARGET_CALLS} Vertex calls and {TARGET_SECONDS:g} s per tick (stated at 1,000 "
              "jobs); Vertex calls include one look-up of the starting parts' jobs and a create per started part")
    return 0


if __name__ == "__main__":
    sys.exit(main())
