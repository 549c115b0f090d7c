"""The smoke test of a deployment: drop a small sample into the input bucket, wait for its report, and check
the row accounting of the output contract (every input row in the results or the errors file exactly once).

The sample is samples/malformed.jsonl: six rows, one of which is not JSON, so the run shows both a model
response and a validation error. Object names come from shared/layout.py, the contract's one spelling.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.tools import TRANSIENT, DeployError, Runner
from shared import layout, verify

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "malformed.jsonl"
_NOT_FOUND = ("matched no objects", "No URLs matched", "NotFound", "404", "not found")


@dataclass(frozen=True)
class Result:
    report: dict[str, Any]
    problems: list[str]
    summary: str


def expected_rows(sample: Path) -> list[int]:
    """Row numbers of the contract: the physical line numbers of the non-blank lines."""
    return verify.expected_rows(sample.read_bytes())


def _read(runner: Runner, uri: str) -> str | None:
    """An object's text, or None while it does not exist; other failures raise."""
    proc = runner.capture(["gcloud", "storage", "cat", uri], show=False)
    if proc.returncode == 0:
        return proc.stdout
    if any(s in proc.stderr for s in _NOT_FOUND):
        return None
    raise DeployError(f"reading {uri} failed: {proc.stderr.strip()[-500:]}")


def account(rel: str, report: dict[str, Any], results: str, errors: str, expected: list[int]) -> list[str]:
    """What breaks the row accounting (empty when every row is in one of the two files exactly once): the one
    checker the demo, the tests and `batchctl verify` use."""
    return verify.check(rel, expected, report, results.encode(), errors.encode())


def run(runner: Runner, outputs: dict[str, Any], *, timeout: float, interval: float,
        sample: Path = SAMPLE, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> Result:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    prefix = outputs["input_prefix"]
    name = f"{prefix}smoke/{stamp}.jsonl"
    rel = layout.relative_name(name, prefix)
    out = f"gs://{outputs['output_bucket']}/"
    report_uri, results_uri, errors_uri = (out + layout.report_name(rel), out + layout.results_name(rel),
                                           out + layout.errors_name(rel))
    source = f"gs://{outputs['input_bucket']}/{name}"

    runner.run(["gcloud", "storage", "cp", str(sample), source], what="dropping the sample")
    print(f"smoke: dropped {source}; waiting up to {timeout:.0f} s for {report_uri}", file=sys.stderr, flush=True)
    started = clock()
    while (text := _read(runner, report_uri)) is None:
        if clock() - started > timeout:
            raise DeployError(f"no report after {timeout:.0f} s (Vertex AI may still be queueing the job): look "
                              f"for it later at {report_uri}, or follow the run in Logs Explorer", TRANSIENT)
        sleep(interval)
    report = json.loads(text)
    problems = account(rel, report, _read(runner, results_uri) or "", _read(runner, errors_uri) or "",
                       expected_rows(sample))
    return Result(report, problems, _summary(report, source, report_uri, results_uri, errors_uri, problems))


def _summary(report: dict[str, Any], source: str, report_uri: str, results_uri: str, errors_uri: str,
             problems: list[str]) -> str:
    rows = report.get("rows", {})
    by_stage = ", ".join(f"{k}: {v}" for k, v in sorted((rows.get("failedByStage") or {}).items())) or "none"
    by_reason = ", ".join(f"{k}: {v}" for k, v in sorted((rows.get("failedByReason") or {}).items())) or "none"
    jobs = Counter(str(j.get("state")) for j in report.get("jobs", []))
    lines = [
        f"smoke: {source} -> {report.get('state')} in {report.get('seconds')} s (run {report.get('run')})",
        f"  rows {rows.get('total')}: {rows.get('succeeded')} succeeded, {rows.get('failed')} failed",
        f"  failed by stage: {by_stage}; by reason: {by_reason}",
        f"  jobs: {sum(jobs.values())} ({', '.join(f'{s} x{n}' for s, n in sorted(jobs.items())) or 'none'})",
        f"  results {results_uri}",
        f"  errors  {errors_uri}",
        f"  report  {report_uri}",
    ]
    lines += [f"  PROBLEM: {p}" for p in problems] or ["  every input row is in the results or the errors file, once"]
    return "\n".join(lines)
