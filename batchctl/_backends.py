"""The Cloud Storage and Pub/Sub calls only the CLI makes (bucket and wiring checks, uploads with progress,
dead-letter redrive), behind two narrow interfaces, with their Google implementations. The core's own
adapters (`shared/storage`, `shared/vertex`, `shared/publisher`) serve everything else. The doubles are in
`batchctl/_memory.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Protocol

from shared.errors import PermanentError, TransientError
from shared.publisher import DeadLetter
from shared.redrive import Relay, Subscription

_PULL_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Notification:
    """A bucket's Pub/Sub notification (short topic name)."""

    topic: str
    prefix: str | None
    event_types: tuple[str, ...]
    payload_format: str | None


class Buckets(Protocol):
    def exists(self, bucket: str) -> bool:
        """Whether the bucket exists (and the caller may see it)."""

    def notifications(self, bucket: str) -> list[Notification] | None:
        """The bucket's notifications, or None when this storage cannot list them."""

    def upload(self, bucket: str, name: str, path: Path, *, metadata: Mapping[str, str], content_type: str,
               progress: Callable[[int], None] | None = None) -> int:
        """Upload a local file (streamed; `progress` gets the bytes sent so far). Returns the generation."""


class Admin(Relay, Protocol):
    def topic_exists(self, name: str) -> bool:
        """Whether the topic exists."""


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1] if path else path


class GcsBuckets:
    """Buckets on google-cloud-storage (the client from `shared.storage.gcs.make_client`)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def exists(self, bucket: str) -> bool:
        return self._client.lookup_bucket(bucket) is not None

    def notifications(self, bucket: str) -> list[Notification] | None:
        from google.api_core import exceptions as gexc

        try:
            found = list(self._client.bucket(bucket).list_notifications())
        except gexc.NotFound:
            return None  # the bucket exists (checked first): this storage has no notification API
        return [Notification(_short(n.topic_name or ""), n.blob_name_prefix, tuple(n.event_types or ()),
                             n.payload_format) for n in found]

    def upload(self, bucket: str, name: str, path: Path, *, metadata: Mapping[str, str], content_type: str,
               progress: Callable[[int], None] | None = None) -> int:
        blob = self._client.bucket(bucket).blob(name)
        blob.metadata = dict(metadata) or None
        size = path.stat().st_size
        with open(path, "rb") as f:
            blob.upload_from_file(_Counting(f, progress) if progress else f, size=size, content_type=content_type)
        return int(blob.generation)


class _Counting:
    """A file that reports how far it has been read."""

    def __init__(self, f: IO[bytes], progress: Callable[[int], None]) -> None:
        self._f, self._progress = f, progress

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._progress(self._f.tell())
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class PubSubAdmin:
    """Pub/Sub administration and pulls on google-cloud-pubsub (honours PUBSUB_EMULATOR_HOST)."""

    def __init__(self, project: str) -> None:
        from google.cloud import pubsub_v1

        self._project = project
        self._publisher = pubsub_v1.PublisherClient()
        self._subscriber = pubsub_v1.SubscriberClient()

    def _sub_path(self, name: str) -> str:
        return name if name.startswith("projects/") else self._subscriber.subscription_path(self._project, name)

    def _topic_path(self, name: str) -> str:
        return name if name.startswith("projects/") else self._publisher.topic_path(self._project, name)

    @staticmethod
    def _info(sub: Any) -> Subscription:
        policy = sub.dead_letter_policy.dead_letter_topic if sub.dead_letter_policy else ""
        return Subscription(_short(sub.name), _short(sub.topic), sub.push_config.push_endpoint or None,
                            _short(policy) or None)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return call()
        except gexc.NotFound:
            raise
        except (gexc.PermissionDenied, gexc.InvalidArgument) as exc:
            raise PermanentError(f"{what}: {exc}") from exc
        except Exception as exc:
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def subscription(self, name: str) -> Subscription | None:
        from google.api_core import exceptions as gexc

        try:
            return self._info(self._call(f"get subscription {name}", lambda: self._subscriber.get_subscription(
                request={"subscription": self._sub_path(name)}, timeout=30)))
        except gexc.NotFound:
            return None

    def subscriptions(self) -> list[Subscription]:
        return [self._info(s) for s in self._call("list subscriptions", lambda: list(
            self._subscriber.list_subscriptions(request={"project": f"projects/{self._project}"}, timeout=30)))]

    def topic_exists(self, name: str) -> bool:
        from google.api_core import exceptions as gexc

        try:
            self._call(f"get topic {name}", lambda: self._publisher.get_topic(
                request={"topic": self._topic_path(name)}, timeout=30))
            return True
        except gexc.NotFound:
            return False

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        from google.api_core import exceptions as gexc

        try:
            # An empty subscription answers at this deadline (Pub/Sub may hold a pull open while it waits
            # for messages): short, since the last pull of every redrive finds nothing.
            answer = self._subscriber.pull(request={"subscription": self._sub_path(subscription),
                                                    "max_messages": max_messages}, timeout=_PULL_SECONDS)
        except gexc.DeadlineExceeded:
            return []
        except gexc.NotFound as exc:
            raise PermanentError(f"subscription {subscription} does not exist") from exc
        except Exception as exc:
            raise TransientError(f"pull {subscription}: {type(exc).__name__}: {exc}") from exc
        return [DeadLetter(ack_id=m.ack_id, message_id=m.message.message_id, data=bytes(m.message.data),
                           attributes=MappingProxyType(dict(m.message.attributes)))
                for m in answer.received_messages]

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        if ack_ids:
            self._call(f"acknowledge {subscription}", lambda: self._subscriber.acknowledge(
                request={"subscription": self._sub_path(subscription), "ack_ids": ack_ids}, timeout=30))

    def release(self, subscription: str, ack_ids: list[str]) -> None:
        if ack_ids:
            self._call(f"release {subscription}", lambda: self._subscriber.modify_ack_deadline(
                request={"subscription": self._sub_path(subscription), "ack_ids": ack_ids,
                         "ack_deadline_seconds": 0}, timeout=30))

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        from google.api_core import exceptions as gexc

        try:
            return self._publisher.publish(self._topic_path(topic), data, **dict(attributes)).result(timeout=60)
        except gexc.NotFound as exc:
            raise PermanentError(f"topic {topic} does not exist") from exc
        except Exception as exc:
            raise TransientError(f"publish to {topic}: {type(exc).__name__}: {exc}") from exc
