"""A stand-in pipeline for testing the demo itself: submit answers every row at once, no Vertex involved.

Valid JSON lines become results, other non-blank lines become `invalid_json` errors; a line that still
holds the demo's `{INPUT_BUCKET}` placeholder becomes an `unsubstituted_placeholder` error. With
FAKE_DROP_FIRST_ROW=1 it forgets row 1, so the demo's accounting check has something to catch.
"""

from __future__ import annotations

import json
import os

import functions_framework

from shared.storage.gcs import make_client


@functions_framework.cloud_event
def submit(event):
    attributes = event.data["message"]["attributes"]
    client = make_client(os.environ["GOOGLE_CLOUD_PROJECT"])
    name = attributes["objectId"]
    data = client.bucket(attributes["bucketId"]).blob(name).download_as_bytes()
    rel = name.removeprefix(os.environ["INPUT_PREFIX"]).removesuffix(".jsonl")
    results, errors, reasons = [], [], {}
    for row, line in enumerate(data.split(b"\n"), 1):
        if not line.strip() or (row == 1 and os.environ.get("FAKE_DROP_FIRST_ROW") == "1"):
            continue
        reason = "unsubstituted_placeholder" if b"{INPUT_BUCKET}" in line else None
        try:
            parsed = json.loads(line)
        except ValueError:
            reason = "invalid_json"
        if reason:
            errors.append({"row": row, "stage": "validation", "status": reason})
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            results.append({"row": row, "key": parsed.get("key"), "text": "fake answer"})
    out = client.bucket(os.environ["OUTPUT_BUCKET"])
    for kind, lines in (("results", results), ("errors", errors)):
        out.blob(f"{kind}/{rel}.jsonl").upload_from_string("".join(json.dumps(x) + "\n" for x in lines))
    report = {"run": "r-fake", "state": "partial" if errors else "succeeded",
              "rows": {"total": len(results) + len(errors), "succeeded": len(results), "failed": len(errors),
                       "failedByReason": reasons},
              "jobs": [{"name": "fake/1", "state": "JOB_STATE_SUCCEEDED"}], "seconds": 0.25,
              "results": f"gs://{out.name}/results/{rel}.jsonl", "errors": f"gs://{out.name}/errors/{rel}.jsonl"}
    out.blob(f"reports/{rel}.json").upload_from_string(json.dumps(report))


@functions_framework.cloud_event
def poll(event):
    pass


@functions_framework.cloud_event
def collect(event):
    pass


@functions_framework.cloud_event
def reconcile(event):
    pass
