"""Stand-in for Cloud Scheduler: publishes a tick to the poll topic at a fixed interval.

Cloud Scheduler fires every minute; locally a tick every second or two keeps the demo and the tests
fast. The poller must not care what a tick contains, so the payload only helps when reading logs.

    PUBSUB_EMULATOR_HOST=127.0.0.1:P python -m local.scheduler --project P --topic poll-ticks --every 1
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import UTC, datetime


def run(project: str, topic: str, every: float, stop: threading.Event) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic)
    tick = 0
    next_at = time.monotonic()
    while not stop.is_set():
        tick += 1
        data = json.dumps({"tick": tick, "time": datetime.now(UTC).isoformat()}).encode()
        try:
            publisher.publish(path, data, source="local-scheduler").result(timeout=10)
        except Exception as exc:  # a missed tick is harmless: the next one does the same work
            print(f"tick {tick} not published: {exc}", file=sys.stderr, flush=True)
        # Fixed-rate rather than fixed-delay, like a cron: a slow publish does not stretch the period.
        next_at = max(next_at + every, time.monotonic() - every)  # after a stall, no burst of catch-up ticks
        stop.wait(max(0.0, next_at - time.monotonic()))


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
