"""The demo's accounting check, alone and end to end against a stand-in pipeline (fake_pipeline.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local import demo

FAKE = Path(__file__).with_name("fake_pipeline.py")


def _lines(*rows: dict) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def test_rows_are_the_physical_line_numbers_of_non_blank_lines():
    assert demo.expected_rows(b'{"a":1}\n\n  \r\n{"b":2}\nnot json\n') == [1, 4, 5]
    assert demo.expected_rows(b'{"a":1}\n{"b":2}') == [1, 2]  # no final newline
    assert demo.expected_rows(b"") == []


def test_the_samples_cover_the_documented_cases():
    samples = demo.sample_files(demo.SAMPLES)
    assert set(samples) == {"prompts", "malformed", "invalid-role", "importer-reject", "multimodal", "keyed",
                            "team-a/weekly-summaries"}
    malformed = samples["malformed"].read_bytes()
    assert demo.expected_rows(malformed) == [1, 2, 3, 4, 6, 7]  # line 5 is blank, line 3 is not JSON
    assert b"gs://{INPUT_BUCKET}/media/bar-chart.png" in samples["multimodal"].read_bytes()
    assert (demo.SAMPLES / "media" / "bar-chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for rel, path in samples.items():
        lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
        assert 4 <= len(lines) <= 30, rel
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                assert rel == "malformed"
        assert all("contents" in p["request"] for p in parsed)
    keys = [json.loads(line)["key"] for line in samples["keyed"].read_bytes().splitlines()]
    assert {type(k) for k in keys} == {str, int}


def test_check_accepts_complete_accounting():
    report = {"rows": {"total": 3, "succeeded": 2, "failed": 1}}
    assert demo.check("x", [1, 3, 4], report, _lines({"row": 4}, {"row": 1}), _lines({"row": 3})) == []


def test_check_names_missing_duplicated_and_foreign_rows():
    report = {"rows": {"total": 3, "succeeded": 2, "failed": 1}}
    problems = demo.check("x", [1, 3, 4], report, _lines({"row": 1}, {"row": 1}, {"row": 2}), _lines({"text": 1}))
    assert problems == [
        "x: errors line 1 has no row number: b'{\"text\": 1}'",
        "x: rows missing from results and errors: [3, 4]",
        "x: rows written more than once: [1]",
        "x: rows that are not input rows: [2]",
        "x: report says 2 succeeded / 1 failed but the files hold 3 results / 1 errors",
    ]


def test_check_compares_the_report_with_the_input():
    ok = _lines({"row": 1}, {"row": 2})
    assert demo.check("x", [1, 2], {"rows": {"total": 3, "succeeded": 2, "failed": 1}}, ok, b"") == [
        "x: report rows {'total': 3, 'succeeded': 2, 'failed': 1} do not add up to the 2 input rows",
        "x: report says 2 succeeded / 1 failed but the files hold 2 results / 0 errors",
    ]
    assert demo.check("x", [1, 2], {"rows": {"total": 2, "succeeded": 2}}, ok, b"") == [
        "x: report rows {'total': 2, 'succeeded': 2} do not add up to the 2 input rows",
        "x: report says 2 succeeded / None failed but the files hold 2 results / 0 errors",
    ]


@pytest.mark.functional
def test_demo_end_to_end_against_a_stand_in_pipeline(tmp_path, capsys):
    code = demo.main(["--workdir", str(tmp_path), "--functions-source", str(FAKE), "--no-vertex",
                      "--timeout", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    table = {line.split()[0]: line.split() for line in out.splitlines() if ".jsonl " in line}
    assert table["prompts.jsonl"][1:5] == ["14", "14", "0", "(-)"]
    assert table["malformed.jsonl"][1:6] == ["6", "5", "1", "(invalid_json", "1)"]
    assert table["team-a/weekly-summaries.jsonl"][1:3] == ["5", "5"]
    assert table["multimodal.jsonl"][1:4] == ["5", "5", "0"]  # the {INPUT_BUCKET} placeholder was filled
    assert "gs://gbp-local-output/results/team-a/weekly-summaries.jsonl" in out
    assert "OK: all 50 rows accounted for exactly once" in out


@pytest.mark.functional
def test_demo_fails_and_shows_logs_when_a_row_is_lost(tmp_path, capsys, monkeypatch):
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "one.jsonl").write_bytes(_lines({"request": {"contents": []}}, {"request": {"contents": []}}))
    monkeypatch.setitem(demo.FUNCTION_ENV, "FAKE_DROP_FIRST_ROW", "1")
    code = demo.main(["--samples", str(samples), "--workdir", str(tmp_path / "w"), "--functions-source",
                      str(FAKE), "--no-vertex", "--timeout", "20"])
    out = capsys.readouterr().out
    assert code == 1
    assert "one: rows missing from results and errors: [1]" in out
    assert "one: report rows {'total': 1, 'succeeded': 1, 'failed': 0, 'failedByReason': {}} do not add up" in out
    assert "--- scheduler" in out  # the component logs' tails follow
