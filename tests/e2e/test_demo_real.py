"""`make demo` for real: every sample through the real functions, Pub/Sub emulator and Vertex emulator."""

from __future__ import annotations

from local import demo


def test_the_demo_accounts_for_every_sample_row(tmp_path, capsys):
    samples = demo.sample_files(demo.SAMPLES)
    rows = sum(len(demo.expected_rows(path.read_bytes())) for path in samples.values())
    code = demo.main(["--workdir", str(tmp_path), "--tick", "0.5", "--timeout", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"OK: all {rows} rows accounted for exactly once" in out
    assert "FAILED" not in out
    table = {line.split()[0]: line.split() for line in out.splitlines()
             if ".jsonl " in line and not line.lstrip().startswith("gs://")}
    assert set(table) == {f"{rel}.jsonl" for rel in samples}
    # file, rows, succeeded, failed, (reasons...), jobs, seconds
    assert table["prompts.jsonl"][1:5] == ["14", "14", "0", "(-)"] and table["prompts.jsonl"][-2] == "2"
    assert table["malformed.jsonl"][1:6] == ["6", "5", "1", "(invalid_json", "1)"]
    assert table["invalid-role.jsonl"][1:6] == ["5", "4", "1", "(bad_role", "1)"]
    assert table["importer-reject.jsonl"][1:4] == ["7", "5", "2"]
    # The image that was never uploaded fails its row alone, as a prediction error from the Vertex emulator.
    assert table["multimodal.jsonl"][1:6] == ["5", "4", "1", "(INVALID_ARGUMENT", "1)"]
    assert table["team-a/weekly-summaries.jsonl"][1:3] == ["5", "5"]
    assert "gs://gbp-local-output/results/team-a/weekly-summaries.jsonl" in out
