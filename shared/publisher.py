"""Pub/Sub behind narrow interfaces: publishing the pipeline's own messages (job-finished, run-finished,
republished uploads), and reading the dead-letter subscriptions the reconciliation reports and repairs."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import orjson

from shared.errors import ConfigError, TransientError


class Publisher(Protocol):
    def publish(self, topic: str, payload: dict[str, Any], **attributes: str) -> None:
        """Publish a JSON object and wait until the service has it (at-least-once: duplicates are fine)."""


class PubSubPublisher:
    """google-cloud-pubsub (honours PUBSUB_EMULATOR_HOST). Topic names are short names in `project`."""

    def __init__(self, project: str) -> None:
        from google.cloud import pubsub_v1

        self._client = pubsub_v1.PublisherClient()
        self._project = project

    def publish(self, topic: str, payload: dict[str, Any], **attributes: str) -> None:
        from google.api_core import exceptions as gexc

        path = topic if topic.startswith("projects/") else self._client.topic_path(self._project, topic)
        try:
            self._client.publish(path, orjson.dumps(payload), **attributes).result(timeout=60)
        except gexc.NotFound as exc:  # a deploy without the topic: redelivered, and loud, never acknowledged
            raise ConfigError(f"topic {path} does not exist (check the *_TOPIC settings): {exc}") from exc
        except Exception as exc:  # the publish future raises many kinds; all of them mean "try again"
            raise TransientError(f"publish to {topic}: {exc}") from exc


class MemoryPublisher:
    """Keeps messages in a list: for unit tests."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, payload: dict[str, Any], **attributes: str) -> None:
        with self._lock:
            self.messages.append((topic, orjson.loads(orjson.dumps(payload)), attributes))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message found in a dead-letter subscription."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: Mapping[str, str]


class DeadLetters(Protocol):
    """The dead-letter subscriptions the reconciliation reads: pull a few, acknowledge what it handled."""

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        """Up to `max_messages` messages waiting now (an empty list when none; never blocks for long)."""

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        """Acknowledge handled messages (they are gone from the subscription)."""


class PubSubDeadLetters:
    """google-cloud-pubsub pull subscriptions (honours PUBSUB_EMULATOR_HOST). Short names are in `project`."""

    def __init__(self, project: str) -> None:
        from google.cloud import pubsub_v1

        self._client = pubsub_v1.SubscriberClient()
        self._project = project

    def _path(self, subscription: str) -> str:
        if subscription.startswith("projects/"):
            return subscription
        return self._client.subscription_path(self._project, subscription)

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        from google.api_core import exceptions as gexc

        try:
            # return_immediately: an empty subscription (the usual case) answers at once instead of holding
            # the pull open for seconds on each of the subscriptions a tick reads.
            answer = self._client.pull(request={"subscription": self._path(subscription),
                                                "max_messages": max_messages, "return_immediately": True},
                                       timeout=10)
        except gexc.DeadlineExceeded:
            return []
        except gexc.NotFound as exc:
            raise ConfigError(f"DEAD_LETTER_SUBSCRIPTIONS: {subscription} does not exist") from exc
        except Exception as exc:  # noqa: BLE001 - every other failure means "try on a later tick"
            raise TransientError(f"pull {subscription}: {exc}") from exc
        return [DeadLetter(ack_id=m.ack_id, message_id=m.message.message_id, data=bytes(m.message.data),
                           attributes=MappingProxyType(dict(m.message.attributes)))
                for m in answer.received_messages]

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        if not ack_ids:
            return
        try:
            self._client.acknowledge(request={"subscription": self._path(subscription), "ack_ids": ack_ids},
                                     timeout=10)
        except Exception as exc:  # noqa: BLE001 - unacknowledged messages come back: handled again, harmlessly
            raise TransientError(f"acknowledge {subscription}: {exc}") from exc


class MemoryDeadLetters:
    """Dead letters in lists: for unit tests."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[DeadLetter]] = {}
        self._ids = iter(range(1, 10**9))

    def add(self, subscription: str, payload: dict[str, Any] | bytes, **attributes: str) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        n = next(self._ids)
        self.waiting.setdefault(subscription, []).append(
            DeadLetter(ack_id=f"a{n}", message_id=str(n), data=data, attributes=MappingProxyType(attributes)))

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        return list(self.waiting.get(subscription, [])[:max_messages])

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        done = set(ack_ids)
        self.waiting[subscription] = [m for m in self.waiting.get(subscription, []) if m.ack_id not in done]
