"""What a function instance costs before its first event: importing `functions/main.py`, which reads the
configuration and builds the pipeline's adapters (Cloud Storage, Pub/Sub, and Vertex, whose SDK collect imports
on its first Vertex call, and poll, submit and reconcile as they start: `shared/vertex/deferred.py`).

    python -m bench.cold_start [--repeat 3] [--json]

Each run is a fresh interpreter with a complete environment (the local servers' addresses, none of them needed
to start), as an instance of collect and as one of submit: seconds and CPU seconds of the import, the process's
peak RSS after it, whether the Vertex SDK was loaded by then, and what building the Vertex adapter on the first
call then adds. The fastest run of each counts. Cloud Run bills an instance's start, and a burst of uploads or of
finished jobs starts several.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.turns import in_turns
from local._table import text_table

ROOT = Path(__file__).resolve().parent.parent
_ENV = {"GOOGLE_CLOUD_PROJECT": "bench", "INPUT_BUCKET": "bench-in", "OUTPUT_BUCKET": "bench-out",
        "VERTEX_BASE_URL": "http://127.0.0.1:9", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}
_PROBE = """if True:
    import json, resource, sys, time
    wall, cpu = time.perf_counter(), time.process_time()
    import functions.main as main
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # VmHWM, not ru_maxrss: Linux keeps the latter across exec, so it may be the parent's (the bench's) size.
    with open("/proc/self/status") as f:
        rss = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0) / 1024
    rss = rss or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sdk = "google.genai" in sys.modules
    build = time.perf_counter()
    main.PIPELINE.vertex._real()  # what the adapter's first call does before it calls Vertex
    build = time.perf_counter() - build
    print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": round(rss, 1),
                      "vertex_sdk_at_start": sdk, "first_vertex_call_adds_seconds": build}))
"""


FUNCTIONS = ("collect", "submit")


def measure_once(function: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **_ENV, "FUNCTION_TARGET": function}
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    if done.returncode:
        raise RuntimeError(f"importing functions/main.py failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.splitlines()[-1])


def run(repeat: int = 3) -> dict[str, dict]:
    """Per function of `FUNCTIONS`: the fastest of `repeat` fresh starts, with every run's seconds (the functions
    take turns)."""
    runs: dict[str, list[dict]] = {function: [] for function in FUNCTIONS}
    for _, function in in_turns(FUNCTIONS, repeat):
        runs[function].append(measure_once(function))
    out = {}
    for function, got in runs.items():
        best = min(got, key=lambda r: r["seconds"])
        out[function] = {k: round(v, 3) if isinstance(v, float) else v for k, v in best.items()} | {
            "runs": [round(r["seconds"], 3) for r in got]}
    return out


def render(result: dict[str, dict]) -> str:
    rows = [[function, f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}", f"{r['peak_rss_mb']:.1f}",
             "yes" if r["vertex_sdk_at_start"] else "no", f"{r['first_vertex_call_adds_seconds']:.2f}"]
            for function, r in result.items()]
    head = ["instance of", "import s", "CPU s", "peak RSS MB", "Vertex SDK at start", "first Vertex call adds s"]
    return text_table([head, *rows], left=(0, 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    result = run(args.repeat)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
