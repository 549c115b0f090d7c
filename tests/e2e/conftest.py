"""The whole local cloud, as `make up` starts it, with lowered limits so splitting, the job cap and retries
all happen on small files. One cloud per test module (tests in a module run in one worker: --dist loadfile)."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest

from local.cloud import LocalCloud, storage_client
from shared import verify

E2E_ENV = {"MAX_ROWS_PER_JOB": "5", "MAX_ACTIVE_JOBS": "2", "MAX_ATTEMPTS": "3", "MODEL": "gemini-2.5-flash"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(Path(tmp_path_factory.mktemp("cloud")), function_env=E2E_ENV, tick_seconds=0.5) as running:
        yield running


def body(lines: list[bytes | str | dict]) -> bytes:
    """The bytes of an input file made of these lines (dicts as JSON), one per line."""
    return b"".join((orjson.dumps(x) if isinstance(x, dict) else x.encode() if isinstance(x, str) else x)
                    + b"\n" for x in lines)


class Env:
    """What a test needs from the running cloud: buckets, the Vertex emulator's switches, and waiting."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.env = cloud.env
        self.gcs = storage_client(cloud.env)
        self.input = self.gcs.bucket(cloud.env["INPUT_BUCKET"])
        self.output = self.gcs.bucket(cloud.env["OUTPUT_BUCKET"])

    def drop(self, rel: str, lines: list[bytes | str | dict], metadata: dict | None = None) -> int:
        """Upload incoming/<rel>; returns the generation."""
        blob = self.input.blob(f"incoming/{rel}")
        blob.metadata = metadata
        blob.upload_from_string(body(lines), content_type="application/x-ndjson")
        return blob.generation

    def report(self, rel: str, generation: int, timeout: float = 90) -> dict:
        """Wait until reports/<rel>.json exists for this generation of the input."""
        name = f"reports/{rel.removesuffix('.jsonl')}.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            blob = self.output.get_blob(name)
            if blob is not None:
                doc = orjson.loads(blob.download_as_bytes())
                if doc["input"]["generation"] == str(generation):
                    return doc
            time.sleep(0.2)
        raise AssertionError(f"no report for {rel}#{generation} after {timeout}s\n{self.cloud.log_tails(30)}")

    def jsonl(self, name: str) -> list[dict]:
        return [orjson.loads(x) for x in self.output.blob(name).download_as_bytes().splitlines() if x]

    def outputs(self, rel: str) -> tuple[list[dict], list[dict]]:
        rel = rel.removesuffix(".jsonl")
        return self.jsonl(f"results/{rel}.jsonl"), self.jsonl(f"errors/{rel}.jsonl")

    def switches(self, **changes) -> dict:
        request = urllib.request.Request(f"{self.env['VERTEX_BASE_URL']}/emulator/v1/switches",
                                         data=orjson.dumps(changes), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return orjson.loads(answer.read())

    def jobs(self, run: str | None = None) -> list[dict]:
        """Every Vertex job of the pipeline (optionally of one run), straight from the emulator's REST list."""
        flt = 'labels.pipeline="gemini-batch-pipeline"' + (f' AND labels.run="{run}"' if run else "")
        base = (f"{self.env['VERTEX_BASE_URL']}/v1/projects/{self.env['GOOGLE_CLOUD_PROJECT']}/locations/"
                f"{self.env['GOOGLE_CLOUD_LOCATION']}/batchPredictionJobs")
        jobs, token = [], ""
        while True:
            query = urllib.parse.urlencode({"filter": flt, "pageSize": 100, "pageToken": token})
            with urllib.request.urlopen(f"{base}?{query}", timeout=10) as answer:
                page = orjson.loads(answer.read())
            jobs += page.get("batchPredictionJobs", [])
            token = page.get("nextPageToken")
            if not token:
                return jobs


@pytest.fixture(scope="module")
def env(cloud) -> Env:
    return Env(cloud)


def assert_accounted(env: Env, rel: str, lines: list, report: dict) -> tuple[list[dict], list[dict]]:
    """The contract's row accounting (the shared checker): results and errors together hold each input row
    number exactly once, and the report's counts agree with them."""
    results, errors = env.outputs(rel)
    problems = verify.check(rel, verify.expected_rows(body(lines)), report, results, errors)
    assert problems == [], "\n".join(problems)
    return results, errors
