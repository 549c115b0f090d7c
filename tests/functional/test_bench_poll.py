"""`python -m bench.poll` runs end to end at a tiny scale: real servers, one poll tick each, rows well formed and
their counts plausible. No timing is asserted here; the figures are the benchmark's to report."""

from __future__ import annotations

import json

import pytest

from bench import poll

KEYS = {"jobs", "running", "waiting_at_vertex", "history", "finished", "queued_runs", "queued_parts", "started",
        "vertex_calls", "vertex_calls_by_kind", "list_pages", "state_reads", "state_lists", "state_writes",
        "storage_calls_by_method", "published", "log_lines", "seconds", "seed_seconds", "target_met"}


def test_one_tick_is_measured_per_job_count_with_calls_reads_and_writes_counted():
    rows = poll.run([3, 20], finishing=2, queued_runs=2, parts=2, running=10)
    assert [r["jobs"] for r in rows] == [3, 20]
    json.dumps(rows)  # JSON-able as they are
    for row in rows:
        assert set(row) == KEYS
        # What was seeded: the finished jobs' slots went to the oldest waiting parts.
        assert row["finished"] == row["published"] == 2
        assert row["queued_parts"] == 4 and row["started"] == 2
        assert row["running"] + row["waiting_at_vertex"] + row["finished"] == row["jobs"]
        # One page lists every active job; each started part costs a look-up by label and a create.
        assert row["vertex_calls"] == sum(row["vertex_calls_by_kind"].values()) >= 1
        assert row["list_pages"] == 1 and row["vertex_calls_by_kind"].get("create") == row["started"]
        assert row["vertex_calls_by_kind"].get("get", 0) == 0  # never one get per job
        # The slots object is read and written; the queue is listed; reserved queue entries are deleted.
        assert row["state_reads"] >= 1 and row["state_writes"] >= 1 and row["state_lists"] >= 1
        assert row["storage_calls_by_method"].get("delete") == row["started"]
        assert row["seconds"] > 0 and isinstance(row["target_met"], bool)
    assert rows[1]["running"] == 10 and rows[1]["waiting_at_vertex"] == 8  # `running` bounds the workers


def test_the_command_prints_a_table_or_one_json_document(capsys):
    assert poll.main(["--jobs", "2", "--queued-runs", "1", "--parts", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["jobs"] == 2 and rows[0]["started"] == 1
    table = poll.render(rows)
    assert table.splitlines()[0].startswith("jobs") and len(table.splitlines()) == 3


def test_job_counts_outside_the_caps_range_are_refused():
    with pytest.raises(SystemExit):
        poll.main(["--jobs", "0,10"])
    with pytest.raises(SystemExit):
        poll.main(["--jobs", "ten"])
