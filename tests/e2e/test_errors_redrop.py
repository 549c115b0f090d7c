"""An errors file is itself an input: rows that failed because an image was missing succeed once the image is
uploaded and the errors file is dropped back into incoming/."""

from __future__ import annotations

import uuid

from local import demo
from tests.e2e.conftest import assert_accounted


def prompt(text: str, image: str | None = None, **extra) -> dict:
    parts: list[dict] = [{"text": text}]
    if image:
        parts.append({"fileData": {"fileUri": image, "mimeType": "image/png"}})
    return {"request": {"contents": [{"role": "user", "parts": parts}]}, **extra}


def test_errors_file_dropped_back_retries_the_failed_rows(env):
    image_name = f"media/redrop-{uuid.uuid4().hex[:8]}.png"
    image = f"gs://{env.env['INPUT_BUCKET']}/{image_name}"
    first = [prompt("Plain question one"), prompt("Describe the chart", image, key="img-2"), "",
             prompt("Plain question two", key="p-4"), prompt("Name the tallest bar", image, key=5),
             prompt("Plain question three")]
    gen = env.drop("redrop/photos.jsonl", first)
    report = env.report("redrop/photos.jsonl", gen)
    results, errors = assert_accounted(env, "redrop/photos.jsonl", first, report)
    assert sorted(r["row"] for r in results) == [1, 4, 6]
    assert [(e["row"], e.get("key"), e["stage"], e["code"], e["retryable"], e["attempts"]) for e in errors] == \
        [(2, "img-2", "prediction", 400, False, 1), (5, 5, "prediction", 400, False, 1)]
    assert all(image in e["message"] for e in errors)
    assert report["state"] == "partial" and report["rows"]["failedByStage"] == {"prediction": 2}

    env.input.blob(image_name).upload_from_filename(str(demo.SAMPLES / "media" / "bar-chart.png"))
    errors_file = env.output.blob("errors/redrop/photos.jsonl").download_as_bytes()
    blob = env.input.blob("incoming/redrop/photos-retry.jsonl")
    blob.upload_from_string(errors_file, content_type="application/x-ndjson")
    again = [line for line in errors_file.split(b"\n") if line.strip()]
    retry_report = env.report("redrop/photos-retry.jsonl", blob.generation)
    retried, still_failed = assert_accounted(env, "redrop/photos-retry.jsonl", again, retry_report)
    assert still_failed == [] and retry_report["state"] == "succeeded"
    # Rows are numbered by their line in the errors file; the user's keys come back unchanged.
    assert sorted((r["row"], r["key"]) for r in retried) == [(1, "img-2"), (2, 5)]
    assert all(r["text"] and r["usage"]["promptTokenCount"] >= 258 for r in retried)  # the image was read

    # The first run's outputs are untouched by the second.
    assert_accounted(env, "redrop/photos.jsonl", first, env.report("redrop/photos.jsonl", gen))
