"""`make soak`: the pipeline under load on Cloud Storage as strict as the real one, at full scale.

    python -m local.soak [--files 200] [--rows 20] [--big-rows 200000] [--run-latency 2] [--cap 8]

Scenarios, each on a fresh local cloud: a burst of files dropped at once with the storage's write limit OFF,
the same burst with it ON (the ratio of the two is the price of the limit), one large file, and both again
with the storage's faults on (writes that commit but answer 503, random 429 and 503). For each it prints
files, rows, seconds, the busiest object with its most writes in any 10 s window, 429s answered, faults
injected and function failures (each redelivered by Pub/Sub), and checks every promise: every file reported,
every row exactly once, one Vertex job per part, the job cap never exceeded, no object above one write a
second over any 10 s window. Exit 1 when a promise is broken or the limit costs more than 1.5x.

Vertex's 60 job creations a minute is lifted here (MAX_CREATES_PER_MINUTE): the emulator has no such quota,
and with it the burst would measure the quota, not the storage.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from local._table import text_table
from local.cloud import FUNCTIONS, LocalCloud
from local.load import Outcome, burst, make_file

FAULTS = ["--commit-then-503=0.05", "--random-429=0.02", "--random-503=0.02"]


def _scenario(name: str, args, files: dict[str, bytes], storage_args: list[str]) -> Outcome:
    env = {"MAX_ACTIVE_JOBS": str(args.cap), "MAX_ROWS_PER_JOB": str(args.rows_per_job),
           "MAX_CREATES_PER_MINUTE": "10000", "MODEL": "gemini-2.5-flash"}
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        print(f"{name}: starting a local cloud ...", flush=True)
        with LocalCloud(Path(workdir), function_env=env, tick_seconds=args.tick,
                        vertex_args=[f"--run-latency={args.run_latency}"], storage_args=storage_args) as cloud:
            started = time.monotonic()
            outcome = burst(cloud, files, timeout=args.timeout, prefix=f"{name}/", cap=args.cap)
            print(f"{name}: done in {time.monotonic() - started:.1f}s, {len(outcome.problems)} problem(s)", flush=True)
            if outcome.problems:
                print(cloud.log_tails(10))
            if outcome.failures:
                _show_failures(name, outcome.failures, Path(workdir), faults=bool(set(storage_args) & set(FAULTS)))
            return outcome


def _show_failures(name: str, failures: list[str], workdir: Path, *, faults: bool) -> None:
    """Say what the scenario's function failures said, and keep the local cloud's logs (the scenario's directory
    goes with it) so that their cause can be traced: each failure was redelivered, so the books may balance all the
    same. With storage faults injected some are expected (a write refused past its retries, and two deliveries of
    one upload at once when the reconciliation hands a slow one to submit again); none without."""
    counts = Counter(failures)
    print(f"{name}: {len(failures)} function failure(s), each redelivered"
          f"{' (storage faults were injected)' if faults else ' (no fault was injected)'}:")
    for message, times in counts.most_common(5):
        print(f"  {times}x {message[:300]}")
    kept = Path(tempfile.mkdtemp(prefix=f"soak-{name}-logs-"))
    shutil.copytree(workdir / "logs", kept, dirs_exist_ok=True)
    print(f"{name}: the local cloud's logs are kept in {kept}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20, help="rows per file of the burst")
    parser.add_argument("--big-rows", type=int, default=200_000, help="rows of the large file")
    parser.add_argument("--rows-per-job", type=int, default=200_000, help="MAX_ROWS_PER_JOB")
    parser.add_argument("--run-latency", type=float, default=2.0, help="Vertex emulator: seconds a job runs")
    parser.add_argument("--cap", type=int, default=8, help="MAX_ACTIVE_JOBS")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between poll ticks")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the reports")
    parser.add_argument("--no-faults", action="store_true", help="skip the two scenarios with storage faults")
    args = parser.parse_args(argv)

    burst_files = {f"f{i:03d}": make_file(i, args.rows) for i in range(args.files)}
    big = {"big": make_file(0, args.big_rows, bad_every=1000)}
    runs = [("burst-limit-off", burst_files, ["--rate-per-object=0"]), ("burst", burst_files, []),
            ("big", big, [])]
    if not args.no_faults:
        runs += [("burst-faults", burst_files, FAULTS), ("big-faults", big, FAULTS)]
    results = {name: _scenario(name, args, files, storage) for name, files, storage in runs}

    header = ("scenario", "files", "rows", "seconds", "busiest object (writes in 10 s)", "429s", "faults",
              "fn failures", "peak jobs", "books")
    table = [header]
    problems = []
    for name, out in results.items():
        totals = out.storage.get("totals", {})
        busiest, peak = out.busiest
        faults = sum(int(totals.get(k, 0)) for k in ("committed503", "committedHang", "random429", "random503"))
        failures = sum(out.events.get(f"{fn}.failed", 0) for fn in FUNCTIONS)
        table.append((name, str(out.files), str(out.rows), f"{out.seconds:.1f}",
                      f"{busiest.split('/', 1)[-1]} ({peak})", str(totals.get("rejected429", 0)), str(faults),
                      str(failures), str(out.peak_active_jobs), "ok" if not out.problems else "WRONG"))
        problems += [f"{name}: {p}" for p in out.problems]
        if name != "burst-limit-off" and peak > 10:
            problems.append(f"{name}: {busiest} was written {peak} times within 10 s (more than 1 write/s)")
    print()
    print(text_table(table, left=(0, 4)))
    ratio = results["burst"].seconds / max(results["burst-limit-off"].seconds, 1e-9)
    print(f"\nburst with the write limit on / off: {ratio:.2f}x (target <= 1.5x)")
    if ratio > 1.5:
        problems.append(f"the write limit costs {ratio:.2f}x on the burst (target <= 1.5x)")
    if problems:
        print("FAILED:\n" + "\n".join(f"  {p}" for p in problems[:40]))
        return 1
    print("OK: every file reported, every row exactly once, one job per part, the cap and the write rate kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
