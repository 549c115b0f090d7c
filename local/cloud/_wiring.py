"""The local cloud's wiring, as the cloud wiring has it: topics, push subscriptions with dead-letter topics,
pull subscriptions that keep what tests and the reconciliation read, and what every function instance finds
in its environment.

Names are declared here once; the cloud, its command line, the tests and the functions' environment derive
theirs from these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FUNCTIONS = ("submit", "poll", "collect", "reconcile")
UPLOADS, POLL_TICKS, JOB_FINISHED, RUN_FINISHED = "uploads", "poll-ticks", "job-finished", "run-finished"
RUN_FINISHED_WATCH = "run-finished-watch"
# As in the cloud wiring: after this many failed pushes a message moves to the subscription's dead-letter topic.
MAX_DELIVERY_ATTEMPTS = 5


@dataclass(frozen=True)
class Consumer:
    """One function's push subscription and the dead-letter topic behind it."""

    function: str
    topic: str
    subscription: str
    dead_letter: str

    @property
    def dead_letter_watch(self) -> str:
        """The pull subscription that keeps the dead letters until someone reads them."""
        return f"{self.dead_letter}-watch"


CONSUMERS = (
    Consumer("submit", UPLOADS, "uploads-submit", "uploads-dead-letter"),
    Consumer("poll", POLL_TICKS, "poll-ticks-poll", "poll-ticks-dead-letter"),
    Consumer("reconcile", POLL_TICKS, "poll-ticks-reconcile", "poll-ticks-reconcile-dead-letter"),
    Consumer("collect", JOB_FINISHED, "job-finished-collect", "job-finished-dead-letter"),
)
# function -> (topic, push subscription)
PUSH = {c.function: (c.topic, c.subscription) for c in CONSUMERS}
DEAD_LETTER = CONSUMERS[0].dead_letter
DEAD_LETTER_WATCH = CONSUMERS[0].dead_letter_watch
TOPICS = (UPLOADS, POLL_TICKS, JOB_FINISHED, RUN_FINISHED, *(c.dead_letter for c in CONSUMERS))
# pull subscription -> topic
WATCHES = {RUN_FINISHED_WATCH: RUN_FINISHED, **{c.dead_letter_watch: c.dead_letter for c in CONSUMERS}}


def function_env(function: str, timeout: int) -> dict[str, str]:
    """What the platform and the wiring put into every instance of `function` (the caller's env goes on top).

    Like Cloud Run: functions-framework enforces `timeout` per request (a threaded timeout), and prefixes
    each log line with the execution id. The pipeline derives its leases and deadlines from the same timeout.
    """
    return {
        "K_SERVICE": function,
        "FUNCTION_TARGET": function,
        "LOG_EXECUTION_ID": "true",
        "CLOUD_RUN_TIMEOUT_SECONDS": str(timeout),
        "THREADED_TIMEOUT_ENABLED": "true",
        "FUNCTION_TIMEOUT_SECONDS": str(timeout),
        "UPLOADS_TOPIC": UPLOADS,
        "JOB_FINISHED_TOPIC": JOB_FINISHED,
        "RUN_FINISHED_TOPIC": RUN_FINISHED,
        "DEAD_LETTER_SUBSCRIPTIONS": ",".join(c.dead_letter_watch for c in CONSUMERS),
    }


def create_topics(publisher, project: str) -> None:
    for topic in TOPICS:
        publisher.create_topic(name=publisher.topic_path(project, topic))


def create_subscriptions(publisher, subscriber, project: str, ports: Mapping[str, int], timeout: int) -> None:
    """Every consumer's push subscription (with its dead-letter policy) and every pull subscription."""
    for c in CONSUMERS:
        subscriber.create_subscription(request={
            "name": subscriber.subscription_path(project, c.subscription),
            "topic": publisher.topic_path(project, c.topic),
            "push_config": {"push_endpoint": f"http://127.0.0.1:{ports[c.function]}/"},
            # As in the cloud wiring: how long Pub/Sub waits for the answer, longer than the function may run,
            # so a delivery still at work is not sent again...
            "ack_deadline_seconds": min(600, timeout + 60),
            # ...but an HTTP 500 or a dead instance is, after a backoff shortened from the cloud's 10 s so
            # tests stay fast.
            "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 10}},
            "dead_letter_policy": {"dead_letter_topic": publisher.topic_path(project, c.dead_letter),
                                   "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS},
        })
    for name, topic in WATCHES.items():
        subscriber.create_subscription(request={"name": subscriber.subscription_path(project, name),
                                                "topic": publisher.topic_path(project, topic)})
