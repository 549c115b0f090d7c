"""Helpers for the Vertex emulator tests: an SDK client built exactly as the pipeline builds it,
JSONL upload, polling, and reading every output shard back through google-cloud-storage."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import google.oauth2.credentials
from google import genai
from google.genai import types

PROJECT = "test-project"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
MODEL = "gemini-2.5-flash"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
            "JOB_STATE_PARTIALLY_SUCCEEDED"}


def make_client(url: str, timeout_ms: int | None = None) -> genai.Client:
    return genai.Client(
        vertexai=True, project=PROJECT, location=LOCATION,
        credentials=google.oauth2.credentials.Credentials(token="local"),
        http_options=types.HttpOptions(base_url=url, api_version="v1", timeout=timeout_ms),
    )


def request(text: str, role: str = "user", **extra) -> dict:
    return {"contents": [{"role": role, "parts": [{"text": text}]}], **extra}


def rows(n: int, prefix: str = "q") -> list[dict]:
    return [{"custom_id": f"{prefix}{i}", "request": request(f"Question {i}: what is {i} plus {i}?")}
            for i in range(n)]


def upload_jsonl(bucket, name: str, lines: list) -> str:
    """Write lines (dicts are JSON-encoded, strings are written as they are) and return the gs:// URI."""
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    bucket.blob(name).upload_from_string(text, content_type="application/jsonl")
    return f"gs://{bucket.name}/{name}"


def create(client, src: str, dest: str, *, labels: dict | None = None, model: str = MODEL,
           display_name: str = "test-job"):
    config = types.CreateBatchJobConfig(dest=dest, display_name=display_name)
    if labels:
        config.http_options = types.HttpOptions(extra_body={"labels": labels})
    return client.batches.create(model=model, src=src, config=config)


def state(job) -> str:
    return job.state.value if hasattr(job.state, "value") else str(job.state)


def wait_state(client, name: str, states, timeout: float = 20.0):
    """Poll until the job is in one of `states` (a str or a set); return the job."""
    wanted = {states} if isinstance(states, str) else set(states)
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if state(job) in wanted:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is {state(job)}, not {wanted} after {timeout}s")
        time.sleep(0.02)


def wait_done(client, name: str, timeout: float = 20.0):
    return wait_state(client, name, TERMINAL, timeout)


def raw(client, method: str, path: str) -> dict:
    """A raw REST answer (the JSON the service sent, before the SDK reshapes it), through the SDK's own
    transport."""
    response = client._api_client.request(method, path, {})
    return json.loads(response.body) if response.body else {}


def output_files(storage_client, job) -> list[str]:
    directory = job.output_info.gcs_output_directory
    bucket, _, prefix = directory[5:].partition("/")
    return sorted(b.name[len(prefix) + 1:] for b in storage_client.list_blobs(bucket, prefix=prefix + "/"))


def output_lines(storage_client, job) -> list[dict]:
    """Every output line of a job, shard by shard in export order (predictions.jsonl first)."""
    directory = job.output_info.gcs_output_directory
    bucket, _, prefix = directory[5:].partition("/")
    out = []
    for name in output_files(storage_client, job):
        text = storage_client.bucket(bucket).blob(f"{prefix}/{name}").download_as_text()
        out += [json.loads(line) for line in text.splitlines() if line.strip()]
    return out


def http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict]:
    """A plain HTTP call, for what the SDK cannot send (malformed bodies) and for the admin endpoint."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
