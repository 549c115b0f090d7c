"""`make bench` runs end to end at a tiny scale: every case measured, the table and results.json written.
No timing is asserted here; the figures are `make bench`'s to report."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import orjson

from bench import inputs, predictions
from bench.turns import in_turns

ROOT = Path(__file__).resolve().parents[2]


def test_the_predictions_script_answers_every_staged_line_once_shuffled_with_some_failed(tmp_path):
    staged = tmp_path / "staged.jsonl"
    staged.write_bytes(b"".join(orjson.dumps({"gbp_row": f"r{i}", "request": {"contents": []}}) + b"\n"
                                for i in range(1, 401)))
    out = tmp_path / "predictions.jsonl"
    rows, failed = predictions.write([staged], out, failed=0.1)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert rows == len(lines) == 400
    assert sorted(int(line["gbp_row"][1:]) for line in lines) == list(range(1, 401))
    assert [line["gbp_row"] for line in lines] != [f"r{i}" for i in range(1, 401)]
    assert 0 < failed == sum(1 for line in lines if line["status"]) < 100
    assert all("response" in line for line in lines if not line["status"])


def test_the_predictions_are_spelled_as_the_reference_s_official_lines(tmp_path):
    staged = tmp_path / "staged.jsonl"
    staged.write_bytes(b"".join(orjson.dumps({"gbp_row": f"r{i}", "gbp_key": 'k"q\\\\"', "request": {
        "contents": [{"role": "user", "parts": [{"text": 'a, "b": [c] \\\\" \u00fc'}]}]}}) + b"\n"
        for i in range(1, 201)))
    out = tmp_path / "predictions.jsonl"
    predictions.write([staged], out, failed=0.2)
    for line in out.read_bytes().splitlines():
        record = orjson.loads(line)
        assert line == json.dumps(record, ensure_ascii=False).encode()  # ", " and ": " between values
        assert list(record)[:2] == ["status", "processed_time"]
        for key in ("request", "response"):
            if key in record:  # the echo's and the response's keys sorted, at every level
                assert record[key] == orjson.loads(orjson.dumps(record[key], option=orjson.OPT_SORT_KEYS))
                assert orjson.dumps(record[key]) == orjson.dumps(record[key], option=orjson.OPT_SORT_KEYS)


def test_spaced_puts_spaces_only_between_values_whatever_the_strings_hold():
    rnd = random.Random(5)
    pieces = ['"', "\\", ",", ":", "{", "}", "[", "]", " ", "\n", "\x00", "\x01", "\x02", "\u00e9", "\u2028",
              'x\\"', "\\\\", '\\\\"', "a"]

    def value(depth: int = 0):
        kind = rnd.randint(0, 6 if depth < 4 else 3)
        if kind == 0:
            return "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8)))
        if kind in (1, 2, 3):
            return rnd.choice([0, -7, 2**63 - 1, 0.5, -1.25, True, False, None])
        if kind in (4, 5):
            return [value(depth + 1) for _ in range(rnd.randint(0, 4))]
        return {"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 4))): value(depth + 1)
                for _ in range(rnd.randint(0, 4))}

    for _ in range(20_000):
        v = value()
        assert predictions.spaced(orjson.dumps(v)) == json.dumps(v, ensure_ascii=False).encode(), v


def test_the_bench_runs_every_case_at_a_tiny_scale_and_writes_its_results(tmp_path):
    results = tmp_path / "results.json"
    # The end-to-end run has its own test (tests/e2e/test_bench_e2e.py); the poll tick runs here at 3 jobs.
    done = subprocess.run([sys.executable, "-m", "bench", "--mb", "0.3", "--repeat", "1", "--poll-jobs", "3",
                           "--e2e-rows", "0", "--results", str(results)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(results.read_text())
    assert {"commit", "machine", "results", "checks", "command"} <= doc.keys()
    cases = {(r["path"], r["case"]): r for r in doc["results"]}
    for key in (("collect", "postprocess"), ("collect", "parse-only"),
                ("validate", "validate"), ("validate", "parse-only")):
        assert cases[key]["seconds"] is not None, cases[key]
        assert cases[key]["peak_rss_mb"] > 0
    assert "failed" in cases[("collect", "postprocess")]["note"]
    assert cases[("collect", "postprocess-1")]["seconds"] is not None
    for case in ("postprocess", "postprocess-1"):  # short lines: 300 rows at this scale
        assert cases[("collect, short lines", case)]["note"].endswith("failed"), cases
        assert cases[("collect, short lines", case)]["peak_rss_mb"] > 0
    for case in ("validate", "validate-1"):
        assert cases[("validate, short lines", case)]["note"].startswith("300 valid"), cases
        assert cases[("validate, short lines of three shapes in turn", case)]["note"].startswith("300 valid"), cases
        assert cases[("validate", case)]["peak_rss_mb"] > 0
    assert cases[("validate, short lines", "parse-only")]["seconds"] is not None
    assert cases[("validate, short lines of three shapes in turn", "parse-only")]["seconds"] is not None
    assert sum(c["baseline"] == "peak RSS MB" for c in doc["checks"]) == 10
    two = cases[("collect", "parse-only-2x")]
    assert two["seconds"] is not None and two["mb"] == 2 * cases[("collect", "parse-only")]["mb"], two
    second_core = [c for c in doc["checks"] if c["ours"] == "parse-only-2x"]
    assert len(second_core) == 1 and second_core[0]["x"] > 0 and second_core[0]["target"] is None
    assert all(len(r["runs"]) == 1 for r in doc["results"] if r["seconds"] is not None)
    assert "| check |" in done.stdout
    storage = {(r["path"], r["case"]): r for r in doc["throughStorage"]["results"]}
    assert storage[("collect", "raw download")]["seconds"] > 0
    assert storage[("collect", "raw copy")]["seconds"] > 0 and storage[("validate", "raw copy")]["seconds"] > 0
    baselines = {(c["path"], c["baseline"]) for c in doc["throughStorage"]["checks"]}
    assert ("validate", "raw copy through the storage") in baselines
    assert "succeeded" in storage[("collect", "postprocess")]["note"]
    for case in ("validate", "validate, one core"):
        assert storage[("validate, short lines", case)]["note"].startswith("300 valid"), storage
    assert {c["path"] for c in doc["throughStorage"]["checks"]} == {"collect", "validate", "validate, short lines"}
    assert [r["jobs"] for r in doc["poll"]] == [3] and doc["poll"][0]["vertex_calls"] >= 1
    assert doc["endToEnd"] is None
    start = doc["coldStart"]
    assert all(s["seconds"] > 0 and s["peak_rss_mb"] > 0 and len(s["runs"]) == 3 for s in start.values())
    assert start["collect"]["vertex_sdk_at_start"] is False and start["collect"]["first_vertex_call_adds_seconds"] > 0
    assert start["submit"]["vertex_sdk_at_start"] is True
    assert "A function instance's start" in done.stdout


def test_the_input_maker_writes_valid_request_lines_of_the_size_asked(tmp_path):
    path = tmp_path / "input.jsonl"
    rows = inputs.input_file(path, 0.05)
    lines = path.read_bytes().splitlines()
    assert rows == len(lines) and path.stat().st_size >= 50_000
    assert all("request" in orjson.loads(line) for line in lines)


def test_the_limits_proxy_benchmark_runs_at_a_tiny_scale():
    done = subprocess.run([sys.executable, "-m", "bench.gcs_limits", "--mb", "1", "--calls", "60", "--threads", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["proxy"] == "own process" and doc["proxy_peak_rss_mb"] > 0
    assert all(doc[key]["direct"] and doc[key]["proxy"] for key in ("upload_mb_s", "download_mb_s"))


def test_cases_on_one_file_take_turns_round_by_round_and_the_best_run_counts(monkeypatch, tmp_path):
    """A host that drifts weighs on every case alike: rounds alternate their order; a failed case is not run
    again; each case keeps its lowest seconds and lists every run's."""
    import bench.__main__ as bench_main

    calls = []
    seconds = {"a": iter([3.0, 1.0, 2.0]), "b": iter([1.5, 2.5, 0.5]), "c": iter([None])}

    def once(case, source, work, *extra):
        calls.append((case, extra))
        got = next(seconds[case])
        return {"seconds": got, "peak_rss_mb": 10.0 + (got or 0), "note": None if got else "failed: no"}

    monkeypatch.setattr(bench_main, "_measure_once", once)
    cases = [("a", ("--staged", "x")), ("b", ()), ("c", ())]
    got = bench_main._measure_side_by_side(cases, tmp_path / "f", tmp_path / "w", 3)
    assert [case for case, _ in calls] == ["a", "b", "c", "b", "a", "a", "b"]
    assert calls[0] == ("a", ("--staged", "x"))
    assert got["a"] == {"seconds": 1.0, "peak_rss_mb": 11.0, "note": None, "runs": [3.0, 1.0, 2.0]}
    assert got["b"]["seconds"] == 0.5 and got["b"]["runs"] == [1.5, 2.5, 0.5]
    assert got["c"]["seconds"] is None and got["c"]["note"] == "failed: no" and got["c"]["runs"] == []
    assert ["".join(case for _, case in in_turns("abc", 3))] == ["abccbaabc"]
    assert [n for n, _ in in_turns("ab", 2)] == [0, 0, 1, 1]
