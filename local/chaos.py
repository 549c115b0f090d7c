"""`make chaos`: many files dropped at once while function instances are killed at random; every file must
still end with a report, every row accounted for exactly once, and no part with a second Vertex job.

    python -m local.chaos [--files 30] [--rows 2000] [--every 1] [--duration 30] [--timeout 300]

The local cloud runs with the Vertex emulator's run latency (1 s by default) so jobs are alive while
instances die. Chaos starts just before the files are dropped and kills one random instance (SIGKILL of its
whole process group) every ~`every` seconds for `duration` seconds; the supervisor replaces each one. Then it
waits up to `timeout` seconds after the last kill for every report and checks the books: rows (the same
checker as the demo), the report's counts, and one Vertex job per part (the emulator's list by label `run`).
It prints files, rows, kills, and the seconds from the last kill to the last report; it exits 1 if any file
has no report or the books do not balance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from local._steps import buckets, drop, gather, logged_events, start
from local._table import text_table
from local.accounting import check_books, expected_rows
from local.cloud import REPO_ROOT, LocalCloud

PREFIX = "chaos/"  # the files' folder under the input prefix, and so under reports/
# Events worth counting after the storm: repairs, runs given up on, messages that ran out of deliveries.
WATCHED_EVENTS = ("run.repaired", "run.stuck", "message.dead_lettered")


def make_file(index: int, rows: int) -> bytes:
    """`rows` lines; one in every 1,000 is not JSON, so the errors file has something to say too."""
    lines = []
    for row in range(1, rows + 1):
        if row % 1000 == 500:
            lines.append(b"{not json")
            continue
        request = {"contents": [{"role": "user", "parts": [{"text": f"File {index} question {row}: why?"}]}]}
        lines.append(json.dumps({"key": f"f{index}-r{row}", "request": request}).encode())
    return b"\n".join(lines) + b"\n"


def _wall(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run(args) -> int:
    env_overrides = {"MODEL": "gemini-2.5-flash", "MAX_ROWS_PER_JOB": str(args.rows_per_job)}
    cloud = LocalCloud(args.workdir, function_env=env_overrides, tick_seconds=args.tick,
                       vertex_args=[f"--run-latency={args.run_latency}"], function_timeout=args.function_timeout)
    try:
        env = start(cloud)
        if env is None:
            return 1
        gcs, inbound, outbound = buckets(env)
        files = {f"f{i:02d}": make_file(i, args.rows) for i in range(1, args.files + 1)}
        expected = {rel: expected_rows(data) for rel, data in files.items()}

        chaos = cloud.chaos(args.every, args.duration, seed=args.seed)
        print(f"chaos: killing a random function instance every ~{args.every:g}s for {args.duration:g}s")
        first_drop = time.time()
        generations = drop(inbound, files, f"{env['INPUT_PREFIX']}{PREFIX}")
        print(f"dropped {len(files)} files of {args.rows} rows in {time.time() - first_drop:.1f}s; "
              f"waiting for reports ", end="", flush=True)

        reports: dict[str, dict] = {}
        deadline = None
        while len(reports) < len(files):
            if deadline is None and not chaos.running:
                deadline = time.monotonic() + args.timeout  # the clock starts at the last kill, give or take
            if deadline is not None and time.monotonic() > deadline:
                break
            gather(gcs, outbound, generations, reports, PREFIX)
            print(".", end="", flush=True)
            time.sleep(1.0)
        print()
        chaos.stop()
        return _summarise(args, cloud, env, outbound, files, expected, reports, chaos, first_drop)
    finally:
        cloud.stop()


def _summarise(args, cloud, env, outbound, files, expected, reports, chaos, first_drop) -> int:
    kills = chaos.kills
    by_function = Counter(k.function for k in kills)
    replaced = cloud.replacements
    print(f"kills: {len(kills)} ({', '.join(f'{f} {n}' for f, n in sorted(by_function.items())) or 'none'}); "
          f"replacements: {len(replaced)}, longest time without an instance "
          f"{max((r.down for r in replaced), default=0):.1f}s")

    problems: list[str] = []
    table = [("file", "rows", "succeeded", "failed", "parts", "vertex jobs", "books")]
    for rel in files:
        name = f"{PREFIX}{rel}"
        report = reports.get(rel)
        if report is None:
            problems.append(f"{name}: no report")
            table.append((f"{name}.jsonl", str(len(expected[rel])), "-", "-", "-", "-", "NO REPORT"))
            continue
        found, jobs = check_books(env, outbound, name, expected[rel], report)
        problems += found
        rows = report["rows"]
        table.append((f"{name}.jsonl", str(rows["total"]), str(rows["succeeded"]), str(rows["failed"]),
                      str(len(report["jobs"])), str(len(jobs)), "ok" if not found else "WRONG"))
    print(text_table(table))

    events = logged_events(cloud)
    finished = [_wall(r["finished"]) for r in reports.values()]
    print(f"files: {len(files)}, reported: {len(reports)}")
    print(f"rows: {sum(map(len, expected.values()))}")
    last = f", the last {kills[-1].at - first_drop:.1f}s after the first drop" if kills else ""
    print(f"kills: {len(kills)}{last}")
    if finished:
        last_report = max(finished)
        since = last_report - kills[-1].at if kills else float("nan")
        print(f"seconds from the last kill to the last report: {since:.1f}")
        print(f"seconds from the first drop to the last report: {last_report - first_drop:.1f}")
    print("events: " + ", ".join(f"{e} {events[e]}" for e in WATCHED_EVENTS))
    if problems:
        print("FAILED:")
        print("\n".join(f"  {p}" for p in problems))
        print(cloud.log_tails(args.log_lines))
        return 1
    print(f"OK: every file reported, all {sum(map(len, expected.values()))} rows accounted for exactly once, "
          f"one Vertex job per part")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2000, help="rows per file")
    # Two parts a file: 60 jobs for 30 files, within Vertex's 60 creations a minute that the pipeline keeps to.
    parser.add_argument("--rows-per-job", type=int, default=1000, help="MAX_ROWS_PER_JOB: parts per file")
    parser.add_argument("--every", type=float, default=1.0, help="mean seconds between kills")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of chaos")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for reports after chaos")
    parser.add_argument("--run-latency", type=float, default=1.0, help="Vertex emulator: seconds a job runs")
    parser.add_argument("--function-timeout", type=int, default=20, help="the functions' timeout in seconds")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between poll ticks")
    parser.add_argument("--seed", type=int, help="seed of the chaos (which instance, when)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".local" / "chaos")
    parser.add_argument("--log-lines", type=int, default=20, help="log lines per component on failure")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
