"""How fast `batchctl runs` answers with many runs in the bucket: the run index against reading every record.

Writes N run records (default 10,000; nine in ten done, the rest running, each with a few parts) through the
GCS limits proxy (`local.gcs_limits`, its own process, as the local cloud runs it) into fake-gcs-server, the
way the functions write them (`GcsStore.write_json`, so each carries its index as custom metadata). Then it
times the whole command, `batchctl runs --json` in a fresh process (interpreter start included), and, for
comparison, the index walk alone and reading the records one by one (on a sample, scaled to N).

    python -m bench.batchctl_runs [--runs 10000] [--repeat 3] [--threads 32] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._servers import limited_storage
from shared import layout, runindex, runstate
from shared.storage.gcs import GcsStore

ROOT = Path(__file__).resolve().parent.parent
INPUT, OUTPUT = "bench-input", "bench-output"
_SAMPLE = 1000  # records read one by one to time the path without an index


def record(i: int) -> dict:
    """Run i as the functions leave it: done (nine in ten) or running, two parts, rows and tokens counted."""
    name = f"incoming/team-{i % 17}/file-{i:06d}.jsonl"
    run = layout.run_id(INPUT, name, 1_000_000 + i)
    day, second = 1 + i % 28, i % 86_400
    received = f"2026-11-{day:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.000+00:00"
    rec = runstate.new_run(run=run, bucket=INPUT, name=name, generation=1_000_000 + i,
                           rel=name.removeprefix("incoming/").removesuffix(".jsonl"), model="gemini-2.5-flash",
                           now=received)
    parts = {layout.part_id(c, 1): runstate.new_part(c, 1, 100, 40_000, since=1.0, first_row=100 * c - 99,
                                                     last_row=100 * c) for c in (1, 2)}
    rec = runstate.staged(rec, parts=parts, total=200, validation={"failed": 0, "byReason": {}}, note=None, now=2.0)
    for c, part in enumerate(parts, 1):
        rec = runstate.job_submitted(rec, part, f"projects/p/locations/l/batchPredictionJobs/{i}{c}")
        if i % 10 or c == 1:
            outcome = {"succeeded": 98, "retried": 0, "failedByStage": {"prediction": 2},
                       "failedByReason": {"INVALID_ARGUMENT": 2}, "tokens": {"prompt": 900, "candidates": 2000,
                                                                              "total": 2900},
                       "jobState": "JOB_STATE_SUCCEEDED", "jobError": None, "job": None}
            rec = runstate.part_collected(rec, part, outcome, None, None, 3.0)
    if rec["state"] == runstate.FINALIZING:
        rec = runstate.finished(rec, now=received, superseded=False)
    return rec


def _command(url: str, runs: int) -> tuple[float, int]:
    """Seconds of one `batchctl runs --json` in a fresh process, and how many runs it counted."""
    env = {**os.environ, "STORAGE_EMULATOR_HOST": url, "GOOGLE_CLOUD_PROJECT": "bench", "INPUT_BUCKET": INPUT,
           "OUTPUT_BUCKET": OUTPUT, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "batchctl", "runs", "--json"], env=env, capture_output=True,
                          text=True, check=False, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"batchctl runs failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, json.loads(done.stdout)["total"]


def measure(runs: int, repeat: int, threads: int) -> dict:
    with limited_storage(OUTPUT) as (_, store, url):
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            names = list(pool.map(lambda i: _write(store, i), range(runs)))
        written = time.perf_counter() - started
        command = [_command(url, runs) for _ in range(repeat)]
        if any(count != runs for _, count in command):
            raise RuntimeError(f"batchctl runs counted {[c for _, c in command]} runs, not {runs}")
        started = time.perf_counter()
        listed = runindex.list_runs(store, OUTPUT)
        walk = time.perf_counter() - started
        sample = names[:min(_SAMPLE, runs)]
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: store.read_json(OUTPUT, n), sample))
        per_record = (time.perf_counter() - started) / len(sample)
        seconds = [s for s, _ in command]
        return {"runs": runs, "listed": len(listed), "write_seconds": round(written, 1),
                "batchctl_runs_json_seconds": {"median": round(statistics.median(seconds), 3),
                                               "best": round(min(seconds), 3), "repeat": repeat},
                "index_walk_seconds": round(walk, 3),
                "read_every_record_seconds_estimated": round(per_record * runs, 1),
                "read_sample": len(sample)}


def _write(store: GcsStore, i: int) -> str:
    rec = record(i)
    name = layout.run_state_name(rec["run"])
    store.write_json(OUTPUT, name, rec, if_generation_match=0)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batchctl_runs", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="run records in the bucket")
    parser.add_argument("--repeat", type=int, default=3, help="timed `batchctl runs --json` calls")
    parser.add_argument("--threads", type=int, default=32, help="writers filling the bucket")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)
    result = measure(args.runs, args.repeat, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        took = result["batchctl_runs_json_seconds"]
        print(f"batchctl runs --json with {result['runs']} runs: {took['median']:.2f}s median, "
              f"{took['best']:.2f}s best of {took['repeat']} (a fresh process each; the index walk alone "
              f"{result['index_walk_seconds']:.2f}s; reading every record instead: about "
              f"{result['read_every_record_seconds_estimated']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
