"""Publishing the pipeline's own messages (job-finished, run-finished) behind a one-method interface."""

from __future__ import annotations

import threading
from typing import Any, Protocol

import orjson

from shared.errors import TransientError


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
        path = topic if topic.startswith("projects/") else self._client.topic_path(self._project, topic)
        try:
            self._client.publish(path, orjson.dumps(payload), **attributes).result(timeout=60)
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
