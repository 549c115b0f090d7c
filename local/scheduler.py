"""Stand-in for Cloud Scheduler: publishes a tick to the poll topic at a fixed interval.

Cloud Scheduler fires every minute; locally a tick every second or two keeps the demo and the tests
fast. The poller must not care what a tick contains, so the payload only helps when reading logs.

It publishes through the emulator's REST interface on one kept-alive connection: the gRPC client took ~0.4 CPU-s
to import and start, in the first second of every local cloud (a benchmark's upload, a test's first steps), and
kept background threads busy for one message a second.

    PUBSUB_EMULATOR_HOST=127.0.0.1:P python -m local.scheduler --project P --topic poll-ticks --every 1
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from urllib.parse import quote

from local._process import KeptConnection


def run(project: str, topic: str, every: float, stop: threading.Event) -> None:
    publish = _Publisher(os.environ["PUBSUB_EMULATOR_HOST"], project, topic)
    tick = 0
    next_at = time.monotonic()
    while not stop.is_set():
        tick += 1
        data = json.dumps({"tick": tick, "time": datetime.now(UTC).isoformat()}).encode()
        try:
            publish(data, source="local-scheduler")
        except Exception as exc:  # a missed tick is harmless: the next one does the same work
            print(f"tick {tick} not published: {exc}", file=sys.stderr, flush=True)
        # Fixed-rate rather than fixed-delay, like a cron: a slow publish does not stretch the period.
        next_at = max(next_at + every, time.monotonic() - every)  # after a stall, no burst of catch-up ticks
        stop.wait(max(0.0, next_at - time.monotonic()))


class _Publisher:
    """`topics.publish` of the Pub/Sub emulator's REST interface, one message a call."""

    def __init__(self, host: str, project: str, topic: str) -> None:
        name, _, port = host.rpartition(":")
        self._conn = KeptConnection(name or "127.0.0.1", int(port))
        self._path = f"/v1/projects/{quote(project, safe='')}/topics/{quote(topic, safe='')}:publish"

    def __call__(self, data: bytes, **attributes: str) -> None:
        body = json.dumps({"messages": [{"data": base64.b64encode(data).decode(), "attributes": attributes}]})
        status, text = self._conn.request("POST", self._path, body, {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"{status}: {text[:200].decode(errors='replace')}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--topic", default="poll-ticks")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between ticks")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"publishing a tick to {args.topic} every {args.every:g}s", flush=True)
    run(args.project, args.topic, args.every, stop)


if __name__ == "__main__":
    main()
