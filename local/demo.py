"""`make demo`: run every sample file through the whole pipeline on the local cloud and check the books.

The demo is also the project's smoke test, so it does not trust the report alone: it exits 0 only if
every non-blank input line comes back exactly once, in results or in errors, under its physical line
number, and the report's counts agree with those files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from local._steps import buckets, start
from local._table import text_table
from local.accounting import check, expected_rows
from local.cloud import REPO_ROOT, LocalCloud

SAMPLES = REPO_ROOT / "samples"
PLACEHOLDER = b"{INPUT_BUCKET}"
FUNCTION_ENV = {
    "MODEL": "gemini-2.5-flash",
    # Small enough that prompts.jsonl is split into two Vertex jobs, to show splitting.
    "MAX_ROWS_PER_JOB": "10",
}


def sample_files(root: Path) -> dict[str, Path]:
    """rel -> file for every JSONL sample, folders kept: team-a/x.jsonl becomes rel 'team-a/x'."""
    return {p.relative_to(root).as_posix().removesuffix(".jsonl"): p
            for p in sorted(root.rglob("*.jsonl")) if "media" not in p.relative_to(root).parts}


def _reasons(report: dict) -> str:
    reasons = report.get("rows", {}).get("failedByReason") or {}
    return ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "-"


def run(args) -> int:
    samples = sample_files(args.samples)
    if not samples:
        print(f"no *.jsonl samples under {args.samples}", file=sys.stderr)
        return 1
    cloud = LocalCloud(args.workdir, function_env=FUNCTION_ENV, vertex_args=args.vertex_arg,
                       tick_seconds=args.tick, functions_source=args.functions_source,
                       vertex=not args.no_vertex)
    try:
        env = start(cloud)
        if env is None:
            return 1
        gcs, inbound, outbound = buckets(env)
        prefix = env["INPUT_PREFIX"]

        for image in sorted((args.samples / "media").glob("*")):
            inbound.blob(f"media/{image.name}").upload_from_filename(str(image))
        expected: dict[str, list[int]] = {}
        first_drop = time.monotonic()
        for rel, path in samples.items():
            data = path.read_bytes().replace(PLACEHOLDER, env["INPUT_BUCKET"].encode())
            expected[rel] = expected_rows(data)
            inbound.blob(f"{prefix}{rel}.jsonl").upload_from_string(data, content_type="application/jsonl")
        print(f"dropped {len(samples)} files into gs://{env['INPUT_BUCKET']}/{prefix}; waiting for reports ",
              end="", flush=True)

        done: dict[str, float] = {}
        deadline = first_drop + args.timeout
        while len(done) < len(samples) and time.monotonic() < deadline:
            names = {b.name for b in gcs.list_blobs(outbound, prefix="reports/")}
            for rel in samples:
                if rel not in done and f"reports/{rel}.json" in names:
                    done[rel] = time.monotonic()
            print(".", end="", flush=True)
            time.sleep(0.5)
        print()
        if len(done) < len(samples):
            late = sorted(set(samples) - set(done))
            print(f"FAILED: no report after {args.timeout:.0f}s for: {', '.join(late)}")
            print(cloud.log_tails(args.log_lines))
            return 1

        table = [["file", "rows", "succeeded", "failed (by reason)", "jobs", "seconds"]]
        problems: list[str] = []
        uris: list[str] = []
        for rel in samples:
            report = json.loads(outbound.blob(f"reports/{rel}.json").download_as_bytes())
            results = outbound.blob(f"results/{rel}.jsonl")
            errors = outbound.blob(f"errors/{rel}.jsonl")
            for blob in (results, errors):
                if not blob.exists():
                    problems.append(f"{rel}: gs://{env['OUTPUT_BUCKET']}/{blob.name} does not exist")
            problems += check(rel, expected[rel], report,
                              results.download_as_bytes() if results.exists() else b"",
                              errors.download_as_bytes() if errors.exists() else b"")
            rows = report.get("rows", {})
            seconds = report.get("seconds")
            table.append([f"{rel}.jsonl", str(rows.get("total")), str(rows.get("succeeded")),
                          f"{rows.get('failed')} ({_reasons(report)})", str(len(report.get("jobs", []))),
                          f"{seconds:.1f}" if isinstance(seconds, int | float) else "?"])
            uris.append(f"  {report.get('results')}  {report.get('errors')}  "
                        f"gs://{env['OUTPUT_BUCKET']}/reports/{rel}.json")
        print(text_table(table, left=(0, 3)))
        print("outputs (results, errors, report):")
        print("\n".join(uris))
        print(f"total: {max(done.values()) - first_drop:.1f}s from the first drop to the last report")
        if problems:
            print("FAILED: the rows do not add up:")
            print("\n".join(f"  {p}" for p in problems))
            print(cloud.log_tails(args.log_lines))
            return 1
        print(f"OK: all {sum(map(len, expected.values()))} rows accounted for exactly once")
        return 0
    finally:
        cloud.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".local" / "demo")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for all reports")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between poll ticks")
    parser.add_argument("--log-lines", type=int, default=20, help="log lines per component on failure")
    parser.add_argument("--vertex-arg", action="append", default=[], metavar="ARG",
                        help="extra Vertex emulator argument, repeatable")
    # For testing the demo itself against a stand-in pipeline:
    parser.add_argument("--functions-source", type=Path, help="default: functions/main.py")
    parser.add_argument("--no-vertex", action="store_true", help="do not start the Vertex emulator")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
