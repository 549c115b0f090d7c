"""`make bench`: every target of the performance issue, measured side by side in one run.

1. collect and validate, as `batchctl postprocess` and `batchctl validate` run them, beside what people would
   reach for on the same files: a bare `orjson.loads` loop ("parse-only"), DuckDB splitting the predictions by
   `status`, `jq -c 'select(.status=="")'` and `cat > /dev/null`. Every case runs in a fresh process of its own
   (`bench/measure.py`), so each peak RSS is that case's alone (with collect's worker processes counted). Collect
   runs with its workers (one per CPU) and again on one core (COLLECT_WORKERS=1), and both again on short lines
   (200,000 rows of ~900-byte predictions, the end-to-end run's shape), for their memory: what collect holds
   goes with a part's rows as much as with its bytes. Validate runs as submit runs it and on one core
   (SUBMIT_WORKERS=1), and both again on those rows' ~300-byte requests, where what a line costs whatever its
   length weighs more than its bytes; lines of one shape in a row are staged side by side in runs, so these two
   inputs are validated in one pass either way. Both run again on the same short lines in three shapes in turn,
   which runs take too, by groups of lines of one shape (each of the three has its own count of quotes).
2. the same two paths through the local Cloud Storage, beside that storage's own raw download of the same
   objects (`bench/through_storage.py`);
3. one poll tick at 10, 1,000 and 10,000 active jobs on the Vertex emulator (`bench/poll.py`);
4. 200,000 rows from upload to report on the local cloud, split by phase (`bench/e2e.py`);
5. what a function instance costs before its first event (`bench/cold_start.py`; no target).

Ratios are of figures taken in the same run on the same files, so they hold across machines even when the
absolute MB/s do not; the cases on one file take turns, round by round (`bench/turns.py`), so a host whose speed
drifts meanwhile weighs on each alike, and the best run of each counts (every run's seconds are in results.json).
Beside parse-only, two parse-only processes at once say what a second core adds on this machine, to read the
figures of the paths that use both. Writes bench/results.json (figures, ratios, targets, machine, commit) and
prints the tables.

    python -m bench                  # 200 MB files (about 6 minutes on 2 cores)
    python -m bench --mb 1000        # the 1 GB version (about 200,000 rows of ~5 KB)
    python -m bench --mb 0.3 --repeat 1 --poll-jobs 3 --e2e-rows 0   # tiny: that every script runs (the tests)

The input is `bench/inputs.py`'s (~5 KB request lines); `batchctl validate` stages it, and
`bench/predictions.py` turns the staged lines into a Vertex predictions file (shuffled, 5% failed rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import cold_start, e2e, inputs, poll, predictions, through_storage
from bench.turns import in_turns

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
OURS = "ours"
# (what, case, the figure it is compared with, the least throughput ratio asked for)
TARGETS = (
    ("collect", "postprocess", "parse-only", 1.5), ("collect", "postprocess", "duckdb", 3.0),
    ("collect", "postprocess", "jq", 10.0), ("collect", "postprocess-1", "parse-only", 1.5),
    ("validate", "validate", "parse-only", 1.0), ("validate", "validate-1", "parse-only", 1.0),
)
RSS_LIMIT_MB = 256
TWO_AT_ONCE = "parse-only-2x"
SHORT = "collect, short lines"
SHORT_VALIDATE = "validate, short lines"
MIXED_VALIDATE = "validate, short lines of three shapes in turn"
SHORT_ROWS = 200_000  # the most rows a part holds (MAX_ROWS_PER_JOB)
LABELS = {
    "postprocess": "batchctl postprocess (results, errors, report)",
    "postprocess-1": "batchctl postprocess, one core (COLLECT_WORKERS=1)",
    "validate": "batchctl validate (validated and staged)",
    "validate-1": "batchctl validate, one core (SUBMIT_WORKERS=1)",
    "parse-only": "parse-only: orjson.loads per line",
    "parse-only-2x": "parse-only, two processes at once (what a second core adds here)",
    "duckdb": "DuckDB: read_ndjson, COPY split by status",
    "jq": "jq -c 'select(.status==\"\")'",
    "cat": "cat > /dev/null",
}


def _measure_once(case: str, source: Path, work: Path, *extra: str) -> dict:
    """One fresh process: {"seconds", "peak_rss_mb", "note"}; seconds None when the case failed or its tool is
    not installed (the note says which)."""
    if case == TWO_AT_ONCE:
        return _two_at_once(source, work)
    shutil.rmtree(work, ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "bench.measure", case, str(source), str(work), *extra],
                          cwd=ROOT, capture_output=True, text=True)
    shutil.rmtree(work, ignore_errors=True)
    if done.returncode:
        return {"seconds": None, "peak_rss_mb": None, "note": "failed: " + done.stderr.strip()[-300:]}
    got = json.loads(done.stdout.splitlines()[-1])
    if got["note"] == "not installed":
        return got | {"seconds": None, "peak_rss_mb": None}
    return got


def _two_at_once(source: Path, work: Path) -> dict:
    """Two parse-only processes started together, each over the whole file: the slower one's seconds. Beside one
    such process alone, what a second process adds on this machine (two vCPU may be two hyperthreads of one core,
    or shared with neighbours), so the figures of the paths that use both cores can be read."""
    command = [sys.executable, "-m", "bench.measure", "parse-only", str(source)]
    started = []
    for i in range(2):
        (work / str(i)).mkdir(parents=True, exist_ok=True)
        started.append(subprocess.Popen([*command, str(work / str(i))], cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    outs = [process.communicate() for process in started]
    shutil.rmtree(work, ignore_errors=True)
    if any(process.returncode for process in started):
        return {"seconds": None, "peak_rss_mb": None, "note": "failed: " + outs[0][1].strip()[-300:]}
    got = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    return {"seconds": max(g["seconds"] for g in got), "peak_rss_mb": max(g["peak_rss_mb"] for g in got),
            "note": "two processes, each over the whole file: MB and MB/s count both"}


def _measure_side_by_side(cases: list[tuple[str, tuple[str, ...]]], source: Path, work: Path, repeat: int) \
        -> dict[str, dict]:
    """The best of `repeat` runs of each case on one file (the lowest seconds, and that run's peak RSS), with every
    run's seconds in "runs". The cases take turns (`bench/turns.py`)."""
    best: dict[str, dict] = {}
    runs: dict[str, list[float]] = {case: [] for case, _ in cases}
    for _, (case, extra) in in_turns(cases, repeat):
        if case in best and best[case]["seconds"] is None:
            continue  # failed or not installed: once is enough
        got = _measure_once(case, source, work, *extra)
        if got["seconds"] is not None:
            runs[case].append(round(got["seconds"], 3))
        if case not in best or got["seconds"] is None or got["seconds"] < best[case]["seconds"]:
            best[case] = got
    return {case: got | {"runs": runs[case]} for case, got in best.items()}


def _machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"python": platform.python_version(), "machine": platform.machine(), "cpu": model,
            "cpus": os.cpu_count(), "system": platform.system()}


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def prepare(work: Path, mb: float) -> dict[str, Path]:
    """The input, its staged part (through `batchctl validate`) and the predictions answering it; and the same
    for short lines (the end-to-end run's ~300-byte requests, ~900-byte predictions), as many rows as a part
    holds at 200 MB: a collect's memory goes with its rows as much as with its bytes."""
    source = work / "input.jsonl"
    inputs.input_file(source, mb)
    staged, preds = _predicted(source, work, "", mb)
    short = work / "short-input.jsonl"
    e2e.write_input(short, min(SHORT_ROWS, max(100, int(SHORT_ROWS * mb / 200))))
    short_staged, short_preds = _predicted(short, work, "short-", None)
    mixed = work / "mixed-input.jsonl"
    inputs.shapes_in_turn(short, mixed)
    return {"input": source, "staged": staged, "predictions": preds,
            "short-input": short, "short-staged": short_staged, "short-predictions": short_preds,
            "mixed-input": mixed}


def _predicted(source: Path, work: Path, prefix: str, mb: float | None) -> tuple[Path, Path]:
    """`source` staged (through `batchctl validate`), and predictions answering its rows (up to `mb` MB)."""
    staged_dir = work / "validated"
    done = subprocess.run([sys.executable, "-m", "batchctl", "validate", str(source), "--out", str(staged_dir),
                           "--json"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"batchctl validate failed: {done.stderr}")
    parts = [Path(part["file"]) for part in orjson.loads(done.stdout)["parts"]]
    staged, preds = work / f"{prefix}staged.jsonl", work / f"{prefix}predictions.jsonl"
    predictions.write(parts, preds, staged_out=staged, mb=mb)
    shutil.rmtree(staged_dir)
    return staged, preds


def run_cases(files: dict[str, Path], work: Path, repeat: int) -> list[dict]:
    """Every case of item 1 of the module's docstring; the cases on one file are measured side by side."""
    staged = ("--staged", str(files["staged"]))
    short_staged = ("--staged", str(files["short-staged"]))
    plan = [
        ("collect", files["predictions"],
         [(case, staged if case.startswith("postprocess") else ())
          for case in ("postprocess", "postprocess-1", "parse-only", TWO_AT_ONCE, "duckdb", "jq", "cat")]),
        (SHORT, files["short-predictions"], [(case, short_staged) for case in ("postprocess", "postprocess-1")]),
        ("validate", files["input"], [(case, ()) for case in ("validate", "validate-1", "parse-only")]),
        (SHORT_VALIDATE, files["short-input"], [(case, ()) for case in ("validate", "validate-1", "parse-only")]),
        (MIXED_VALIDATE, files["mixed-input"], [(case, ()) for case in ("validate", "validate-1", "parse-only")]),
    ]
    rows = []
    for what, source, cases in plan:
        measured = _measure_side_by_side(cases, source, work / "case", repeat)
        size = source.stat().st_size / 1e6
        for case, _ in cases:
            got = measured[case]
            seconds = got["seconds"]
            mb = 2 * size if case == TWO_AT_ONCE else size
            rows.append({"path": what, "case": case, "label": LABELS[case], "mb": round(mb, 1),
                         "seconds": None if seconds is None else round(seconds, 3),
                         "mb_per_s": None if not seconds else round(mb / seconds, 1),
                         "peak_rss_mb": got["peak_rss_mb"], "note": got["note"], "runs": got["runs"]})
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """Throughput of ours over each baseline (same file, same run), against the issue's targets."""
    by = {(r["path"], r["case"]): r for r in rows}
    out = []
    for what, ours, base, target in TARGETS:
        a, b = by[(what, ours)], by[(what, base)]
        x = round(b["seconds"] / a["seconds"], 2) if a["seconds"] and b["seconds"] else None
        out.append({"path": what, "ours": ours, "baseline": base, "x": x, "target": target,
                    "met": None if x is None else x >= target})
    a, b = by.get(("collect", TWO_AT_ONCE)), by.get(("collect", "parse-only"))
    if a and b:  # no target: how much a second process gains here, to read the figures of those that use two
        x = round(a["mb_per_s"] / b["mb_per_s"], 2) if a["mb_per_s"] and b["mb_per_s"] else None
        out.append({"path": "collect", "ours": TWO_AT_ONCE, "baseline": "parse-only", "x": x, "target": None,
                    "met": None})
    for r in rows:
        if r["case"] in ("postprocess", "postprocess-1", "validate", "validate-1") and r["peak_rss_mb"] is not None:
            out.append({"path": r["path"], "ours": r["case"], "baseline": "peak RSS MB", "x": r["peak_rss_mb"],
                        "target": RSS_LIMIT_MB, "met": r["peak_rss_mb"] <= RSS_LIMIT_MB})
    return out


def render(rows: list[dict], checks: list[dict]) -> str:
    lines = ["| path | case | MB | s | MB/s | peak RSS MB |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        s = r["seconds"] if r["seconds"] is not None else r["note"] or "-"
        lines.append(f"| {r['path']} | {r['label']} | {r['mb']} | {s} | {r['mb_per_s'] or '-'} | "
                     f"{r['peak_rss_mb'] or '-'} |")
    lines += ["", "| check | measured | target | met |", "|---|---:|---:|---|"]
    for c in checks:
        if c["baseline"] == "peak RSS MB":
            name, measured, target = f"{c['path']}: {LABELS[c['ours']]} peak RSS MB", c["x"], f"<= {c['target']}"
        else:
            name = f"{c['path']}: {LABELS[c['ours']]} vs {c['baseline']} (throughput)"
            measured = "-" if c["x"] is None else f"{c['x']}x"
            target = "-" if c["target"] is None else f">= {c['target']}x"
        met = "-" if c["met"] is None else ("yes" if c["met"] else "no")
        lines.append(f"| {name} | {measured} | {target} | {met} |")
    return "\n".join(lines)


def render_storage(rows: list[dict], checks: list[dict]) -> str:
    lines = ["Through the local Cloud Storage (fake-gcs-server behind the limits proxy, streamed):", "",
             "| path | case | MB | s | MB/s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['path']} | {r['case']} | {r['mb']} | {r['seconds']} | {r['mb_per_s']} |" for r in rows]
    lines += ["", "| check | measured | target | met |", "|---|---:|---:|---|"]
    lines += [f"| {c['path']}: {c['ours']} vs {c['baseline']} | {c['x']}x | "
              + ("- | - |" if c["target"] is None else f">= {c['target']}x | {'yes' if c['met'] else 'no'} |")
              for c in checks]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200,
                        help="size of the input and of the predictions file, in MB (1000: the 1 GB version)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the fastest counts")
    parser.add_argument("--no-storage", action="store_true",
                        help="skip collect and validate through the local Cloud Storage")
    parser.add_argument("--poll-jobs", default="10,1000,10000",
                        help="active job counts for one poll tick each (bench/poll.py); empty: skip")
    parser.add_argument("--e2e-rows", type=int, default=e2e.TARGET_ROWS,
                        help="rows from upload to report on the local cloud (bench/e2e.py); 0: skip")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gbp-bench-") as tmp:
        work = Path(tmp)
        files = prepare(work, args.mb)
        rows = run_cases(files, work, args.repeat)
        storage = None if args.no_storage else through_storage.run(files["predictions"], files["staged"],
                                                                   files["input"], args.repeat,
                                                                   files["short-input"])
    checks = ratios(rows)
    poll_jobs = [int(n) for n in args.poll_jobs.split(",") if n.strip()]
    ticks = poll.run(poll_jobs) if poll_jobs else None
    ends = [e2e.run(args.e2e_rows) for _ in range(args.repeat)] if args.e2e_rows else None
    start = cold_start.run(max(args.repeat, 3))
    sections = [render(rows, checks)]
    if storage:
        sections.append(render_storage(storage, through_storage.ratios(storage)))
    if ticks:
        sections.append("One poll tick (bench/poll.py), target at 1,000 jobs: at most "
                        f"{poll.TARGET_CALLS} Vertex calls, {poll.TARGET_SECONDS:g} s:\n\n" + poll.render(ticks))
    if ends:
        sections.append(f"End to end on the local cloud (bench/e2e.py), target {e2e.TARGET_SECONDS:g} s for "
                        f"{e2e.TARGET_ROWS:,} rows:\n\n" + e2e.render(ends))
    sections.append("A function instance's start (bench/cold_start.py), the best of "
                    f"{len(start['collect']['runs'])} each:\n\n" + cold_start.render(start))
    print("\n\n".join(sections))
    command = "python -m bench" + (f" --mb {args.mb:g}" if args.mb != 200 else "")
    doc = {"command": command, "commit": _commit(), "machine": _machine(),
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mb": args.mb, "repeat": args.repeat,
           "results": rows, "checks": checks,
           "throughStorage": storage and {"results": storage, "checks": through_storage.ratios(storage)},
           "poll": ticks, "endToEnd": ends and [_e2e_summary(r) for r in ends], "coldStart": start}
    args.results.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwritten {args.results}")


def _e2e_summary(result: dict) -> dict:
    """What results.json keeps of an end-to-end run: the figures, not the per-sample detail."""
    keep = ("seconds", "phases", "rows", "succeeded", "jobs", "MB", "cpu", "storage_429")
    return {k: result[k] for k in keep if k in result} | {"target_met": result["seconds"] <= e2e.TARGET_SECONDS}


if __name__ == "__main__":
    main()
