"""`make bench`: throughput of the hot paths next to the cost of just parsing the same bytes.

Every row is measured in the same run on the same data, so the ratios hold across machines even when the
absolute MB/s do not. Writes bench/results.json.

    python -m bench [--rows N]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from shared import joining
from shared.lines import iter_lines
from shared.validation import LineValidator

WORDS = ("summarise", "the", "report", "in", "three", "bullet", "points", "about", "quarterly", "sales",
         "translate", "into", "french", "explain", "why", "sky", "is", "blue", "write", "haiku")


def make_input(rows: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    out = io.BytesIO()
    for i in range(rows):
        prompt = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(8, 60)))
        line = {"key": f"q-{i}", "request": {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                                              "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256}}}
        out.write(orjson.dumps(line) + b"\n")
    return out.getvalue()


def make_predictions(staged: bytes, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    lines = [orjson.loads(raw) for raw in staged.splitlines() if raw]
    rnd.shuffle(lines)
    out = io.BytesIO()
    for line in lines:
        text = " ".join(rnd.choice(WORDS) for _ in range(40))
        line.update(status="", processed_time="2026-11-21T10:00:00.000+00:00", response={
            "candidates": [{"avgLogprobs": -0.4, "content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": "STOP"}],
            "modelVersion": "gemini-2.5-flash-001",
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 60, "totalTokenCount": 100}})
        out.write(orjson.dumps(line) + b"\n")
    return out.getvalue()


def parse_only(data: bytes) -> None:
    for raw in iter_lines(io.BytesIO(data)):
        if raw:
            orjson.loads(raw)


def validate_and_stage(data: bytes) -> bytes:
    validator = LineValidator()
    out = io.BytesIO()
    for row, raw in enumerate(iter_lines(io.BytesIO(data)), 1):
        verdict = validator.validate(row, raw)
        if verdict is not None and hasattr(verdict, "request"):
            out.write(joining.staged_line(row, verdict.request, verdict.has_key, verdict.key))
    return out.getvalue()


def join_predictions(data: bytes) -> None:
    out = io.BytesIO()
    for raw in iter_lines(io.BytesIO(data)):
        record = orjson.loads(raw)
        outcome = joining.classify(record)
        has_key, key = joining.key_of(record)
        out.write(joining.result_line(outcome.row, has_key, key, outcome.response, 1))


def pipeline_end_to_end(rows: int) -> tuple[float, int, dict]:
    """Drop one file of `rows` rows into a fresh local cloud; seconds from upload to report."""
    import tempfile

    from local.cloud import LocalCloud, storage_client

    body = make_input(rows)
    with tempfile.TemporaryDirectory() as work, \
            LocalCloud(Path(work), function_env={"MAX_ROWS_PER_JOB": str(max(1, rows // 2))}) as cloud:
        gcs = storage_client(cloud.env)
        out = gcs.bucket(cloud.env["OUTPUT_BUCKET"])
        start = time.perf_counter()
        gcs.bucket(cloud.env["INPUT_BUCKET"]).blob("incoming/bench.jsonl").upload_from_string(body)
        while (blob := out.get_blob("reports/bench.json")) is None:
            if time.perf_counter() - start > 900:
                raise SystemExit("the pipeline did not finish within 900 s:\n" + cloud.log_tails(20))
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        report = orjson.loads(blob.download_as_bytes())
    if report["rows"]["succeeded"] != rows:
        raise SystemExit(f"end-to-end run lost rows: {report['rows']}")
    return seconds, len(body), report


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--e2e-rows", type=int, default=200_000,
                        help="rows of the end-to-end run on the local cloud (0 skips it)")
    args = parser.parse_args()
    data = make_input(args.rows)
    staged = validate_and_stage(data)
    predictions = make_predictions(staged)
    cases = [
        ("submit: parse input lines (baseline)", data, lambda: parse_only(data), None),
        ("submit: validate + stage", data, lambda: validate_and_stage(data), "submit: parse input lines (baseline)"),
        ("collect: parse prediction lines (baseline)", predictions, lambda: parse_only(predictions), None),
        ("collect: join + result lines", predictions, lambda: join_predictions(predictions),
         "collect: parse prediction lines (baseline)"),
    ]
    rows = []
    seconds: dict[str, float] = {}
    for name, payload, fn, baseline in cases:
        t = best_of(fn)
        seconds[name] = t
        rows.append({"case": name, "rows": args.rows, "mb": round(len(payload) / 1e6, 1), "seconds": round(t, 3),
                     "mb_per_s": round(len(payload) / 1e6 / t, 1), "rows_per_s": round(args.rows / t),
                     "x_baseline_time": round(t / seconds[baseline], 2) if baseline else 1.0})
    if args.e2e_rows:
        t, size, report = pipeline_end_to_end(args.e2e_rows)
        rows.append({"case": f"pipeline: upload to report, local cloud ({len(report['jobs'])} jobs)",
                     "rows": args.e2e_rows, "mb": round(size / 1e6, 1), "seconds": round(t, 3),
                     "mb_per_s": round(size / 1e6 / t, 1), "rows_per_s": round(args.e2e_rows / t),
                     "x_baseline_time": None})
    width = max(len(r["case"]) for r in rows)
    print(f"{'case':<{width}}  {'MB':>6}  {'s':>7}  {'MB/s':>7}  {'rows/s':>9}  {'x baseline':>10}")
    for r in rows:
        print(f"{r['case']:<{width}}  {r['mb']:>6}  {r['seconds']:>7}  {r['mb_per_s']:>7}  {r['rows_per_s']:>9}  "
              f"{r['x_baseline_time'] if r['x_baseline_time'] is not None else '-':>10}")
    result = {"python": platform.python_version(), "machine": platform.machine(), "results": rows}
    path = Path(__file__).parent / "results.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
