"""`python -m bench.e2e` at a tiny scale on a whole local cloud of its own: the run's books balance, every phase
is reported and the phases add up to the seconds from upload to report. No timing is asserted here; the
figures are the benchmark's to report."""

from __future__ import annotations

import json

import pytest

from bench import e2e


def test_the_end_to_end_bench_splits_a_two_part_run_into_phases_that_add_up(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    assert e2e.main(["--rows", "200", "--repeat", "1", "--rows-per-job", "120", "--json", str(out)]) == 0
    [result] = json.loads(out.read_text())
    assert (result["rows"], result["succeeded"], result["jobs"]) == (200, 200, 2)
    assert set(result["phases"]) == {name for name, _ in e2e.PHASES}
    assert all(seconds >= 0 for seconds in result["phases"].values())
    assert sum(result["phases"].values()) == pytest.approx(result["seconds"], abs=0.02)
    assert result["phases"]["validate+stage"] > 0 and result["phases"]["vertex"] > 0
    assert result["phases"]["collect"] > 0
    assert sorted(result["parts"]) == ["p0001-a1", "p0002-a1"]
    for part in result["parts"].values():
        assert part["created"] <= part["started"] <= part["ended"] <= part["noticed"] <= part["collected"]
    assert {"submit", "collect", "vertex", "gcs"} <= result["cpu"].keys()
    assert result["bytes"]["input"] > 0 and result["bytes"]["results"] > 0
    staging = result["staging"]  # submit's own timing of its pass, within the phase the log lines bound
    assert 0 <= staging["read"] + staging["write"] <= staging["seconds"] + 0.002
    assert staging["seconds"] <= result["phases"]["validate+stage"] + 0.01
    assert sorted(result["collects"]) == ["p0001-a1", "p0002-a1"]
    for timing in result["collects"].values():  # collect's own timing of each part
        assert timing["pass1"] + timing["pass2"] <= timing["seconds"] + 0.002
        assert 0 <= timing["write"] <= timing["seconds"] + 0.002
    table = capsys.readouterr().out
    assert "waiting for the staged files to be written" in table and "waiting for the part's files" in table
    for name, _ in e2e.PHASES:
        assert f"\n{name} " in table
    assert "p0002-a1" in table and "CPU seconds" in table


def test_a_retried_chunk_is_followed_through_each_of_its_attempts():
    # Pure: the phases of a chunk that needed two attempts count both, one after the other.
    marks = {"start": 0.0, "uploaded": 1.0, "received": 1.5, "staged": 3.0, "composed": 20.0, "reported": 20.5,
             "seen": 21.0}
    times = ("created", "started", "ended", "noticed", "collected")
    parts = {"p0001-a1": dict(zip(times, (3.5, 3.5, 6.0, 7.0, 9.0), strict=True)),
             "p0001-a2": dict(zip(times, (10.0, 10.0, 14.0, 15.0, 19.0), strict=True)),
             "p0002-a1": dict(zip(times, (3.6, 3.6, 6.5, 7.0, 10.0), strict=True))}
    split = e2e.phases(marks, parts)
    assert split == {"upload": 1.0, "notify": 0.5, "validate+stage": 1.5, "queue": 1.5, "vertex": 6.5,
                     "poll tick": 2.0, "collect": 6.0, "compose": 1.0, "report": 0.5, "seen": 0.5}
    assert sum(split.values()) == pytest.approx(21.0)
