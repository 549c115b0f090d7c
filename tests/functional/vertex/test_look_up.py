"""The scheduler's look-up of several starting parts in one list call (display names joined by OR), against
the emulator's filter grammar: it finds the part that already has a job, and only that one."""

from __future__ import annotations

from shared import layout, scheduler
from shared.vertex.genai import GenaiVertexJobs
from tests.unit.fakes import make_pipeline


def test_parts_starting_together_are_looked_up_in_one_call(client, emu, bucket, prefix):
    p, *_ = make_pipeline()
    p.vertex = GenaiVertexJobs(client)
    label = p.config.pipeline_label
    run = "r0123456789abcdef0123"
    parts = [layout.part_id(n, 1) for n in range(1, 26)]  # more than one batch of look-ups
    src = f"gs://{bucket.name}/in.jsonl"
    bucket.blob("in.jsonl").upload_from_string(b'{"request":{"contents":[{"parts":[{"text":"hi"}]}]}}\n')
    existing = p.vertex.create(model="gemini-2.5-flash", source_uri=src, destination_prefix=prefix,
                               display_name=layout.job_display_name(label, run, parts[21]),
                               labels=layout.job_labels(label, run, parts[21]))
    other = p.vertex.create(model="gemini-2.5-flash", source_uri=src, destination_prefix=prefix + "x",
                            display_name=layout.job_display_name("another-pipeline", run, parts[3]),
                            labels=layout.job_labels("another-pipeline", run, parts[3]))
    assert other.name != existing.name
    found = scheduler._look_up(p, [layout.queue_id(run, part) for part in parts])
    assert found is not None and set(found) == {layout.queue_id(run, parts[21])}
    assert found[layout.queue_id(run, parts[21])].name == existing.name
