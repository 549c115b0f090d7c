"""End to end on the local cloud: one input of N rows from upload to report, and where the time went.

    python -m bench.e2e                        # 200,000 rows (~60 MB), the issue's target: <= 10 s
    python -m bench.e2e --rows 200 --repeat 1  # tiny: that it runs (the tests do this)

Each run starts a fresh local cloud (`local.cloud.LocalCloud`) with the Vertex emulator's queue and run latency
at 0, drops one file of short request lines (`bench/inputs.py`, ~300 bytes a row, so this measures the
pipeline, not parsing), waits for the report, checks every row's accounting with the shared checker
(`shared.verify`) and one Vertex job per part, then splits the seconds from upload to report into phases.

The phases come from what the run itself recorded, never from estimates: the functions' structured log lines
(`run.received`, `run.staged`, `job.finished`, `part.collected`, kept per function in the cloud's
`logs/<function>.log`), the Vertex jobs' createTime / startTime / endTime, the report's `finished` (taken
right after the compose) and the report object's creation time. They follow the part that finished last
(for a retried chunk, each attempt in turn), so they add up to the total; the jobs that ran beside it are
listed per job. What no record says: when collect starts on a part (its time counts from the poll that
announced the job, Pub/Sub's push included) and when the report is built (the compose's end is its start).

Beside each phase: the CPU seconds each component of the local cloud used meanwhile (sampled from /proc), so
a phase can be told apart as work or as waiting, and the CPU the rest of the machine used, since on two shared
cores a neighbour's load stretches every wall time.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bench import inputs
from local._process import KeptConnection
from local._table import text_table
from local.cloud import LocalCloud, storage_client, vertex_jobs
from shared import verify

REL = "bench/e2e"
INPUT = f"{REL}.jsonl"
PIPELINE_LABEL = "gemini-batch-pipeline"
# Seconds to wait for the report: generous (a run of 200,000 rows takes ~15-25 s on two cores), but short enough
# that a pipeline broken mid-edit fails the benchmark in minutes rather than hanging it.
TIMEOUT_BASE, TIMEOUT_PER_ROW = 60.0, 0.001
# The target: 200,000 rows from upload to report on the local cloud within this many seconds.
TARGET_ROWS, TARGET_SECONDS = 200_000, 10.0
# Words per prompt: lines of ~250-350 bytes, ~300 on average (200,000 rows ~ 60 MB).
WORDS = (16, 32)
OTHERS, STEAL = "(other processes)", "(stolen by the host)"
# (phase, what it covers), in the order they follow each other on the way to the report.
PHASES = (
    ("upload", "the client's upload of the input, until Cloud Storage answered"),
    ("notify", "upload answered -> submit claimed the run (notification, Pub/Sub push)"),
    ("validate+stage", "submit: one streaming pass, validation and part files (run.received -> run.staged)"),
    ("queue", "staged (or the previous attempt collected) -> the Vertex job created"),
    ("vertex", "the job's createTime -> endTime at Vertex (pending and running)"),
    ("poll tick", "the job ended -> a poll tick saw it and announced it (job.finished)"),
    ("collect", "announced -> part collected (push delivery, two streaming passes, run record)"),
    ("compose", "last part collected -> results and errors composed (the report's `finished`)"),
    ("report", "composed -> the report object written"),
    ("seen", "report written -> this benchmark saw it (its own polling, every 0.1 s)"),
)


def write_input(path: Path, rows: int, seed: int = 7) -> int:
    """`rows` short request lines (`bench/inputs.py`'s shape, a prompt of 16-32 words); returns the bytes."""
    rnd = random.Random(seed)
    size = 0
    with open(path, "wb") as out:
        for i in range(rows):
            line = inputs.request_line(rnd, i, rnd.randint(*WORDS))
            out.write(line)
            size += len(line)
    return size


def _epoch(stamp: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time (the log's `...Z`, Vertex's microseconds, GCS's); None stays None."""
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def events(cloud: LocalCloud, run: str) -> list[dict]:
    """The run's structured log lines from every function, each with `function` and epoch `at`, in time order."""
    found = []
    for function in ("submit", "poll", "collect", "reconcile"):
        for line in cloud.logs(function).splitlines():
            if not line.startswith("{"):
                continue  # the framework's own lines
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            labels = entry.get("logging.googleapis.com/labels") or {}
            if labels.get("run") == run and "time" in entry:
                found.append({**entry, "function": function, "at": _epoch(entry["time"])})
    return sorted(found, key=lambda e: e["at"])


def _first(found: list[dict], event: str, **match) -> dict | None:
    return next((e for e in found if e["event"] == event and all(e.get(k) == v for k, v in match.items())), None)


def _part_name(job: Mapping) -> str:
    """The part a job ran: its label `part` is `<run>-<part>` (run ids have no dash)."""
    return (job.get("labels") or {}).get("part", "").split("-", 1)[-1]


def part_timings(found: list[dict], jobs: Sequence[Mapping]) -> dict[str, dict]:
    """part -> the times of its way through the pipeline (epoch seconds; None where nothing was recorded)."""
    parts: dict[str, dict] = {}
    for job in jobs:
        part = _part_name(job)
        submitted = _first(found, "job.submitted", part=part)
        finished = _first(found, "job.finished", part=part)
        collected = _first(found, "part.collected", part=part)
        parts[part] = {
            "job": job["name"].rsplit("/", 1)[-1], "state": job.get("state"),
            "rows": submitted.get("rows") if submitted else None,
            "created_by": submitted["function"] if submitted else None,
            "created": _epoch(job.get("createTime")), "started": _epoch(job.get("startTime")),
            "ended": _epoch(job.get("endTime")),
            "noticed": finished["at"] if finished else None,
            "collected": collected["at"] if collected else None,
        }
    return parts


def collect_timings(found: list[dict]) -> dict[str, dict]:
    """part -> collect's own timing of it (`part.collected`): seconds in all, its two passes, and the seconds
    of them spent waiting for the part's files to be written."""
    keys = {"seconds": "seconds", "pass1": "pass1Seconds", "pass2": "pass2Seconds", "write": "writeSeconds"}
    return {e["part"]: {k: e.get(field) for k, field in keys.items()}
            for e in found if e.get("event") == "part.collected" and "part" in e}


def _chain(parts: dict[str, dict]) -> list[str]:
    """The parts on the way to the report: the one collected last, preceded by its chunk's earlier attempts
    (none when no row was sent to Vertex)."""
    if not parts:
        return []
    last = max(parts, key=lambda name: parts[name]["collected"] or 0.0)
    chunk, attempt = last[1:].split("-a")
    return [f"p{chunk}-a{a}" for a in range(1, int(attempt) + 1) if f"p{chunk}-a{a}" in parts]


def intervals(marks: dict[str, float | None], parts: dict[str, dict]) -> list[tuple[str, float, float]]:
    """(phase, from, to) along the critical path, from the boundaries the run recorded, in time order.

    Each boundary is taken no earlier than the one before (the log keeps milliseconds, the other clocks
    microseconds), so no interval is negative and together they span exactly upload to report."""
    steps: list[tuple[str, float | None]] = [("upload", marks["uploaded"]), ("notify", marks["received"]),
                                             ("validate+stage", marks["staged"])]
    for part in _chain(parts):
        t = parts[part]
        steps += [("queue", t["created"]), ("vertex", t["ended"]), ("poll tick", t["noticed"]),
                  ("collect", t["collected"])]
    steps += [("compose", marks["composed"]), ("report", marks["reported"]), ("seen", marks["seen"])]
    out = []
    previous = marks["start"]
    assert previous is not None
    for name, at in steps:
        if at is None:
            raise RuntimeError(f"the run left no record of the end of its {name!r} phase")
        at = max(at, previous)
        out.append((name, previous, at))
        previous = at
    return out


def phases(marks: dict[str, float | None], parts: dict[str, dict]) -> dict[str, float]:
    """Seconds per phase along the critical path (`intervals`), adding up to the total."""
    out = {name: 0.0 for name, _ in PHASES}
    for name, begin, end in intervals(marks, parts):
        out[name] += end - begin
    return {name: round(seconds, 3) for name, seconds in out.items()}


class ObjectWatch:
    """Whether an object exists yet, asked of the storage with a bare HTTP request on one kept-alive connection.

    The benchmark asks ten times a second on a machine whose every CPU second it counts: a `get_blob` costs the
    google-cloud-storage client a few milliseconds of CPU, ~0.5 CPU-s over a run (in "bench"), where a bare request
    costs a fraction of one. Any answer but 200 (a 404, or a fault the storage was told to answer) is "not yet"."""

    def __init__(self, endpoint: str, bucket: str, name: str) -> None:
        url = urlsplit(endpoint)
        self._conn = KeptConnection(url.hostname or "127.0.0.1", url.port or 80)
        self._path = f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"

    def exists(self) -> bool:
        try:
            return self._conn.request("GET", self._path)[0] == 200
        except (OSError, http.client.HTTPException):
            return False  # the next call connects anew

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ObjectWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CpuSampler:
    """Samples every component's CPU seconds (`cpu_seconds`) a few times a second in a thread, so the CPU each
    one used can be told per phase: work being done versus waiting."""

    def __init__(self, cloud: LocalCloud, every: float = 0.2) -> None:
        self._cloud, self._every = cloud, every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        ours = {**cpu_seconds(self._cloud), "bench": time.process_time()}
        busy, steal = machine_cpu()
        # What the rest of the machine did meanwhile: a wall time is only comparable with its neighbours'.
        self.samples.append((time.time(), {**ours, OTHERS: busy - sum(ours.values()), STEAL: steal}))

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def at(self, when: float) -> dict[str, float]:
        """Each component's CPU seconds at `when`, interpolated between the samples around it."""
        times = [t for t, _ in self.samples]
        i = min(max(bisect.bisect_left(times, when), 1), len(times) - 1)
        (t0, a), (t1, b) = self.samples[i - 1], self.samples[i]
        f = 0.0 if t1 <= t0 else min(max((when - t0) / (t1 - t0), 0.0), 1.0)
        return {name: a.get(name, 0.0) + f * (b.get(name, 0.0) - a.get(name, 0.0)) for name in b}

    def between(self, begin: float, end: float) -> dict[str, float]:
        a, b = self.at(begin), self.at(end)
        return {name: b[name] - a.get(name, 0.0) for name in b}


def cpu_seconds(cloud: LocalCloud) -> dict[str, float]:
    """Component -> CPU seconds (user + system) its live processes have used so far: a server's whole process
    group (gunicorn's worker beside its master, the JVM under its launcher). One pass over /proc."""
    by_group: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            # fields[0] is the state (field 3 of the file): pgrp is field 5, utime and stime fields 14 and 15.
            by_group[int(fields[2])] = by_group.get(int(fields[2]), 0) + int(fields[11]) + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return {name: by_group.get(c["pid"], 0) / tick for name, c in cloud.state()["components"].items()}


def machine_cpu() -> tuple[float, float]:
    """(CPU seconds every process on the machine has used since boot, seconds stolen by the hypervisor)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal ...
    return (values[0] + values[1] + values[2] + values[5] + values[6]) / tick, values[7] / tick


def object_sizes(gcs, bucket: str, run: str) -> dict[str, int]:
    """Bytes of what the run wrote, by kind: staged parts, Vertex's predictions, results, errors."""
    kinds = {"staged": f"staging/{run}/p", "predictions": f"vertex/{run}/", "results": f"results/{REL}",
             "errors": f"errors/{REL}"}
    return {kind: sum(b.size or 0 for b in gcs.list_blobs(bucket, prefix=prefix)) for kind, prefix in kinds.items()}


def check_books(out, work: Path, source: Path, report: dict) -> list[str]:
    """The shared checker's row accounting of the run's outputs, streamed from files (the results of 200,000
    rows are ~180 MB): every input row exactly once in results or errors, and a report that agrees."""
    files = {}
    for kind in ("results", "errors"):
        files[kind] = work / f"{kind}.jsonl"
        out.blob(f"{kind}/{REL}.jsonl").download_to_filename(str(files[kind]))
    with open(source, "rb") as lines, open(files["results"], "rb") as results, open(files["errors"], "rb") as errors:
        return verify.check(REL, verify.input_rows(lines), report, results, errors)


def _vertex_args(latency: float) -> list[str]:
    return [f"--queue-latency={latency:g}", f"--run-latency={latency:g}"]


def run(rows: int = TARGET_ROWS, *, rows_per_job: int | None = None, tick_seconds: float = 1.0,
        vertex_latency: float = 0.0, function_env: Mapping[str, str] | None = None,
        cloud_options: Mapping[str, Any] | None = None) -> dict:
    """Drop one input of `rows` rows into a fresh local cloud and time it from upload to report.

    Returns {"seconds", "phases" (name -> seconds, adding up to seconds), "rows", "succeeded", "jobs", "MB",
    "parts" (per part: its job and times relative to the upload), "cpu" (component -> CPU seconds from upload to
    report), "phase_cpu" (phase -> the same, during that phase), "bytes" (what was written, by kind),
    "storage_429" (writes refused for the per-object rate), "settings"}. `rows_per_job` sets MAX_ROWS_PER_JOB (None:
    the pipeline's default); `function_env` adds to the functions' environment; `cloud_options` are more
    `LocalCloud` arguments (`storage_args`, `functions_source`, ... for what-if runs). Raises RuntimeError when the
    run does not finish in time (TIMEOUT_BASE + TIMEOUT_PER_ROW a row) or its books do not balance."""
    env = {**({"MAX_ROWS_PER_JOB": str(rows_per_job)} if rows_per_job else {}), **(function_env or {})}
    with tempfile.TemporaryDirectory(prefix="gbp-e2e-") as work:
        source = Path(work) / "input.jsonl"
        size = write_input(source, rows)
        with LocalCloud(Path(work) / "cloud", function_env=env, tick_seconds=tick_seconds,
                        vertex_args=_vertex_args(vertex_latency), **(cloud_options or {})) as cloud:
            gcs = storage_client(cloud.env)
            out = gcs.bucket(cloud.env["OUTPUT_BUCKET"])
            blob = gcs.bucket(cloud.env["INPUT_BUCKET"]).blob(cloud.env["INPUT_PREFIX"] + INPUT)
            timeout = TIMEOUT_BASE + TIMEOUT_PER_ROW * rows
            with CpuSampler(cloud) as sampler:
                start = time.time()
                blob.upload_from_filename(str(source), content_type="application/x-ndjson")
                uploaded = time.time()
                with ObjectWatch(cloud.env["STORAGE_EMULATOR_HOST"], out.name, f"reports/{REL}.json") as report_at:
                    while not report_at.exists():
                        if time.time() - start > timeout:
                            raise RuntimeError(f"no report within {timeout:.0f} s:\n{cloud.log_tails(20)}")
                        time.sleep(0.1)
                seen = time.time()
                report_blob = out.get_blob(f"reports/{REL}.json")
            report = json.loads(report_blob.download_as_bytes())
            sizes = object_sizes(gcs, cloud.env["OUTPUT_BUCKET"], report["run"])
            found = events(cloud, report["run"])
            jobs = vertex_jobs(cloud.env, pipeline=PIPELINE_LABEL, run=report["run"])
            # Writes Cloud Storage refused for going over one a second to one object (the client retried them).
            refused = int(cloud.storage_stats().get("totals", {}).get("rejected429", 0))
            problems = check_books(out, Path(work), source, report) + verify.check_jobs(REL, report, jobs)
    if problems:
        raise RuntimeError("the books do not balance:\n" + "\n".join(problems))
    received, staged = _first(found, "run.received"), _first(found, "run.staged")
    marks = {"start": start, "uploaded": uploaded, "received": received and received["at"],
             "staged": staged and staged["at"], "composed": _epoch(report["finished"]),
             "reported": report_blob.time_created.timestamp(), "seen": seen}
    parts = part_timings(found, jobs)
    split = phases(marks, parts)
    cpu: dict[str, dict[str, float]] = {name: {} for name, _ in PHASES}
    for name, begin, end in intervals(marks, parts):
        for component, seconds in sampler.between(begin, end).items():
            cpu[name][component] = cpu[name].get(component, 0.0) + seconds
    cpu_total = sampler.between(start, seen)
    return {
        "seconds": round(seen - start, 3), "phases": split, "rows": report["rows"]["total"],
        "succeeded": report["rows"]["succeeded"], "jobs": len(jobs), "MB": round(size / 1e6, 1),
        "parts": {name: {k: (round(v - start, 3) if isinstance(v, float) else v) for k, v in t.items()}
                  for name, t in sorted(parts.items())},
        "cpu": {name: round(seconds, 2) for name, seconds in sorted(cpu_total.items())},
        "phase_cpu": {phase: {name: round(seconds, 2) for name, seconds in sorted(by.items()) if seconds >= 0.005}
                      for phase, by in cpu.items()},
        "staging": {"seconds": staged.get("seconds"), "read": staged.get("readSeconds"),
                    "write": staged.get("writeSeconds")} if staged else {},
        "collects": collect_timings(found),
        "bytes": {"input": size, **sizes}, "storage_429": refused,
        "settings": {"rows_per_job": rows_per_job, "tick_seconds": tick_seconds, "vertex_latency": vertex_latency,
                     "function_env": dict(function_env or {})},
    }


def _busiest(by: Mapping[str, float], top: int = 3) -> str:
    """The components that used the most CPU, as `name seconds`."""
    ranked = sorted(((seconds, name) for name, seconds in by.items() if seconds >= 0.05), reverse=True)[:top]
    return ", ".join(f"{name} {seconds:.1f}" for seconds, name in ranked) or "-"


def render(results: list[dict]) -> str:
    """Phases by run (seconds, share of the total, the CPU the busiest components used meanwhile in the fastest
    run), each run's parts, then CPU seconds per component from upload to report."""
    best = min(range(len(results)), key=lambda i: results[i]["seconds"])
    header = ("phase", *(f"run {i + 1} s" for i in range(len(results))), "share",
              f"CPU s meanwhile (run {best + 1})")
    table = [header]
    for name, _ in PHASES:
        seconds = [r["phases"][name] for r in results]
        share = sum(seconds) / max(sum(r["seconds"] for r in results), 1e-9)
        table.append((name, *(f"{s:.2f}" for s in seconds), f"{share:.0%}",
                      _busiest(results[best]["phase_cpu"][name])))
    table.append(("total", *(f"{r['seconds']:.2f}" for r in results), "100%", _busiest(results[best]["cpu"], 4)))
    r0 = results[0]
    lines = [f"{r0['rows']:,} rows ({r0['MB']} MB), {r0['jobs']} Vertex job(s), from upload to report:", "",
             text_table(table, left=(0, len(header) - 1)), ""]
    lines += [f"  {name:<15} {what}" for name, what in PHASES]
    lines += ["", "validate+stage is one streaming pass; submit's own timing of it (`run.staged`), in seconds:",
              text_table([("run", "pass", "waiting for the input", "validating and splitting",
                           "waiting for the staged files to be written")]
                         + [_staging_row(i, r["staging"]) for i, r in enumerate(results, 1)], left=(0,))]
    collects = [("run", "part", "collect", "pass 1", "pass 2", "waiting for the part's files to be written")]
    for i, r in enumerate(results, 1):
        for part, t in sorted(r["collects"].items()):
            collects.append((str(i), part, *(f"{t[k]:.2f}" if t[k] is not None else "-"
                                             for k in ("seconds", "pass1", "pass2", "write"))))
    lines += ["", "collect's own timing of each part (`part.collected`), in seconds, from its start to its log line:",
              text_table(collects, left=(0, 1))]
    for i, r in enumerate(results, 1):
        jobs = [("part", "rows", "created by", "created", "started", "ended", "noticed", "collected")]
        for part, t in r["parts"].items():
            jobs.append((part, str(t["rows"]), str(t["created_by"]),
                         *(f"{t[k]:.2f}" if t[k] is not None else "-"
                           for k in ("created", "started", "ended", "noticed", "collected"))))
        lines += ["", f"run {i}: seconds after the upload started, per part", text_table(jobs, left=(0, 2))]
    cpu = [("component", *(f"run {i + 1} CPU s" for i in range(len(results))))]
    ours = [name for name in sorted(r0["cpu"], key=lambda n: -r0["cpu"][n]) if name not in (OTHERS, STEAL)]
    for name in ours:
        cpu.append((name, *(f"{r['cpu'].get(name, 0.0):.2f}" for r in results)))
    cpu.append(("all of the above", *(f"{sum(r['cpu'].get(n, 0.0) for n in ours):.2f}" for r in results)))
    for name in (OTHERS, STEAL):
        cpu.append((name, *(f"{r['cpu'].get(name, 0.0):.2f}" for r in results)))
    cpu.append(("(wall s)", *(f"{r['seconds']:.2f}" for r in results)))
    sizes = ", ".join(f"{kind} {n / 1e6:.1f} MB" for kind, n in r0["bytes"].items())
    cpus = os.cpu_count() or 1
    lines += ["", f"CPU seconds from upload to report, per component of the local cloud ({cpus} CPUs: at most "
              f"{cpus} CPU seconds a second)", text_table(cpu), "", f"objects written: {sizes}",
              "writes refused for the rate of one a second per object (429, retried): "
              + ", ".join(str(r["storage_429"]) for r in results)]
    return "\n".join(lines)


def _staging_row(run: int, staging: dict) -> tuple[str, ...]:
    total, read, write = (staging.get(k) for k in ("seconds", "read", "write"))
    if total is None or read is None or write is None:
        return (str(run), "-", "-", "-", "-")
    return (str(run), f"{total:.2f}", f"{read:.2f}", f"{max(0.0, total - read - write):.2f}", f"{write:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=TARGET_ROWS, help=f"rows of the input (default {TARGET_ROWS:,})")
    parser.add_argument("--repeat", type=int, default=2, help="runs, each on a fresh local cloud")
    parser.add_argument("--rows-per-job", type=int, help="MAX_ROWS_PER_JOB (default: the pipeline's)")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between poll ticks (the local cloud's)")
    parser.add_argument("--vertex-latency", type=float, default=0.0,
                        help="the Vertex emulator's queue and run latency, seconds per job")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    results = []
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat}: {args.rows:,} rows on a fresh local cloud ...", file=sys.stderr, flush=True)
        results.append(run(args.rows, rows_per_job=args.rows_per_job, tick_seconds=args.tick,
                           vertex_latency=args.vertex_latency))
    print(render(results))
    best = min(r["seconds"] for r in results)
    if args.rows == TARGET_ROWS:
        print(f"\nbest {best:.2f} s from upload to report (target <= {TARGET_SECONDS:g} s: "
              f"{'met' if best <= TARGET_SECONDS else 'not met'})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
