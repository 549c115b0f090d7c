"""The steps the local run scripts share on the local cloud (`make demo`, `make chaos`, the bursts of `make soak`):
start it and say so, reach its buckets, drop a burst of files, gather the reports of exactly those uploads, and
count the events the functions logged."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from local.cloud import FUNCTIONS, LocalCloud, storage_client


def start(cloud: LocalCloud) -> dict[str, str] | None:
    """Start `cloud` between a line before and one after (seconds taken, where the logs are); None, after a
    `FAILED:` line with the reason, when it does not come up."""
    print("starting the local cloud ...", flush=True)
    started = time.monotonic()
    try:
        env = cloud.start()
    except Exception as exc:  # the message says what is missing or shows the logs
        print(f"FAILED: {exc}")
        return None
    print(f"local cloud up in {time.monotonic() - started:.1f}s (logs: {cloud.workdir / 'logs'})")
    return env


def buckets(env: Mapping[str, str]) -> tuple:
    """A storage client on the cloud `env` describes, and its input and output buckets."""
    gcs = storage_client(env)
    return gcs, gcs.bucket(env["INPUT_BUCKET"]), gcs.bucket(env["OUTPUT_BUCKET"])


def drop(inbound, files: Mapping[str, bytes], prefix: str) -> dict[str, int]:
    """Upload every file as `{prefix}{rel}.jsonl`, 8 uploads in flight; rel -> the generation written."""
    def one(item: tuple[str, bytes]) -> tuple[str, int]:
        blob = inbound.blob(f"{prefix}{item[0]}.jsonl")
        blob.upload_from_string(item[1], content_type="application/x-ndjson")
        return item[0], blob.generation

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, files.items()))


def gather(gcs, outbound, generations: Mapping[str, int], reports: dict[str, dict], prefix: str) -> None:
    """One look under `reports/{prefix}`: add to `reports` each dropped file's report, rel -> report, once it is
    the report of the generation dropped (an earlier upload of the same name has a report of its own)."""
    for blob in gcs.list_blobs(outbound, prefix=f"reports/{prefix}"):
        rel = blob.name.removeprefix(f"reports/{prefix}").removesuffix(".json")
        if rel in generations and rel not in reports:
            doc = json.loads(blob.download_as_bytes())
            if doc.get("input", {}).get("generation") == str(generations[rel]):
                reports[rel] = doc


def _logged(cloud: LocalCloud) -> Iterator[tuple[str, dict]]:
    """(function, its log line) for every JSON line the functions logged so far, function by function, in order
    (the lines functions-framework writes around them are passed over)."""
    for name in FUNCTIONS:
        for line in cloud.logs(name).splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    yield name, json.loads(line)


def failure_messages(cloud: LocalCloud) -> list[str]:
    """What each function failure said (`<function>.failed`: a transient error, the event redelivered), function
    by function, in the order they were logged."""
    return [str(doc.get("message", "")) for name, doc in _logged(cloud) if doc.get("event") == f"{name}.failed"]


def logged_events(cloud: LocalCloud) -> Counter[str]:
    """How often each event was logged so far by the functions (lines that are not JSON are passed over)."""
    return Counter(doc.get("event", "") for _, doc in _logged(cloud))
