"""Measure what one job costs the emulator: CPU seconds and wall time of a job at latency 0.

    python -m local.vertex._perf --rows 200000            # CPU-s and wall, best of --repeat runs
    python -m local.vertex._perf --rows 200000 --profile  # plus a cProfile of the worker thread
    python -m local.vertex._perf --rows 200000 --parts    # the per-row parts alone, no servers

It starts its own fake-gcs-server (no limits proxy: the emulator's own cost is measured, not the
proxy's), uploads `rows` short request lines (`bench/inputs.py`'s `request_line`, a prompt of 16-32
words, ~345 bytes, the shape the end-to-end run uses), starts the emulator in this process with one
worker, and times create -> SUCCEEDED. CPU is this process's (the emulator's threads, its Storage client
and the few polling calls) and its answer processes' (`--answer-processes`, `_answers`); fake-gcs-server's CPU
is reported apart. `--parts` times the per-row work
one part at a time over the same lines held in memory: the importer pass, the parse, the model and the
output line, so a change to one of them can be measured without the noise of the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import sys
import time
import urllib.request
from pathlib import Path

import orjson


def _child_cpu(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _answer_processes_cpu(skip: int) -> float:
    """CPU seconds of this process's children but `skip` (fake-gcs-server): the emulator's answer processes."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != skip:
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == os.getpid():
                total += _child_cpu(int(entry.name))
    return total


def _call(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return orjson.loads(resp.read())


def make_input(rows: int, seed: int = 7) -> bytes:
    from bench import inputs

    rnd = random.Random(seed)
    return b"".join(inputs.request_line(rnd, i, rnd.randint(16, 32)) for i in range(rows))


def parts(rows: int) -> None:
    """CPU seconds of each per-row part over `rows` lines, one line at a time as a job streams them."""
    from local.vertex import _output
    from local.vertex._importer import SchemaChecker
    from local.vertex._model import predict

    lines = make_input(rows).split(b"\n")[:-1]

    def timed(name: str, step) -> float:
        start = time.process_time()
        for number, raw in enumerate(lines, 1):
            step(number, raw)
        spent = time.process_time() - start
        print(f"{name:28s} {spent:6.2f} CPU-s  {spent / rows * 1e6:5.1f} us/row")
        return spent

    checker = SchemaChecker()
    timed("importer pass", lambda n, raw: checker.check_line(raw, n))
    parse = timed("parse (orjson)", lambda n, raw: orjson.loads(raw))
    model = timed("parse + model", lambda n, raw: predict(orjson.loads(raw)["request"], "gemini-2.5-flash", bool))
    when = _output.processed_time()
    timed("parse + model + line", lambda n, raw: _output.success_line(
        obj := orjson.loads(raw), predict(obj["request"], "gemini-2.5-flash", bool), when))
    print(f"{'model alone':28s} {model - parse:6.2f} CPU-s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.vertex._perf")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the jobs (in the worker thread; it slows them about 2x)")
    parser.add_argument("--parts", action="store_true", help="time the per-row parts alone, without servers")
    parser.add_argument("--answer-processes", type=int, default=None,
                        help="the emulator's answer processes (default: one per CPU; 1: rows in the job's thread)")
    args = parser.parse_args(argv)
    if args.parts:
        parts(args.rows)
        return 0

    from local import gcs

    server = gcs.start()
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    try:
        from local.vertex import _runner, start_server
        from shared.storage.gcs import make_client

        storage = make_client("perf", endpoint=server.url)
        bucket = storage.create_bucket("perf-vertex")
        data = make_input(args.rows)
        bucket.blob("in.jsonl").upload_from_string(data, content_type="application/jsonl")
        print(f"input: {args.rows} rows, {len(data) / 1e6:.1f} MB", file=sys.stderr)

        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            run = _runner.Runner._run

            def profiled(self, job):
                profiler.enable()
                try:
                    run(self, job)
                finally:
                    profiler.disable()

            _runner.Runner._run = profiled

        results = []
        with start_server(workers=1, answer_processes=args.answer_processes) as emu:
            parent = f"{emu.url}/v1/projects/perf/locations/us-central1"
            for i in range(args.repeat):
                body = {"displayName": f"perf-{i}", "model": "publishers/google/models/gemini-2.5-flash",
                        "inputConfig": {"instancesFormat": "jsonl",
                                        "gcsSource": {"uris": ["gs://perf-vertex/in.jsonl"]}},
                        "outputConfig": {"predictionsFormat": "jsonl",
                                         "gcsDestination": {"outputUriPrefix": f"gs://perf-vertex/out/{i}"}}}
                gcs_pid = server.process.pid
                here0, pool0 = time.process_time(), _answer_processes_cpu(gcs_pid)
                gcs0, wall0 = _child_cpu(gcs_pid), time.monotonic()
                job = _call(f"{parent}/batchPredictionJobs", "POST", body)
                while job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
                    time.sleep(0.05)
                    job = _call(f"{emu.url}/v1/{job['name']}")
                wall = time.monotonic() - wall0
                here, pool = time.process_time() - here0, _answer_processes_cpu(gcs_pid) - pool0
                cpu = here + pool
                gcs_cpu = _child_cpu(server.process.pid) - gcs0
                assert job["state"] == "JOB_STATE_SUCCEEDED", job
                results.append((cpu, wall, gcs_cpu))
                print(f"run {i}: emulator {cpu:.2f} CPU-s ({pool:.2f} of them in answer processes), wall {wall:.2f} s, "
                      f"fake-gcs-server {gcs_cpu:.2f} CPU-s, {cpu / args.rows * 1e6:.1f} us/row", file=sys.stderr)
        best = min(results)
        print(f"best: emulator {best[0]:.2f} CPU-s, wall {min(r[1] for r in results):.2f} s "
              f"({args.rows} rows, {best[0] / args.rows * 1e6:.1f} us/row)")
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            out.write("\n")
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
            print(out.getvalue())
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
