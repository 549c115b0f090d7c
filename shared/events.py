"""Typed, read-only views over the raw CloudEvents the functions receive.

Handlers only translate: they turn a CloudEvent into one of these views and pass it to the core. Anything
malformed raises BadEventError (acknowledged: redelivering a malformed event cannot fix it).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from shared.errors import BadEventError

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"


def _event_parts(event: Any) -> tuple[str, str, Any]:
    """(type, id, data) of a cloudevents CloudEvent or of a plain {"type", "id", "data"} mapping (tests)."""
    try:
        if hasattr(event, "get_attributes"):
            attrs = event.get_attributes()
            return attrs.get("type", ""), attrs.get("id", ""), event.get_data()
        return event.get("type", ""), event.get("id", ""), event.get("data")
    except (AttributeError, TypeError) as exc:
        raise BadEventError(f"not a CloudEvent: {exc}") from None


@dataclass(frozen=True, slots=True)
class PubSubMessage:
    """A Pub/Sub message as delivered by a push subscription / Eventarc Pub/Sub trigger."""

    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    subscription: str = ""

    @classmethod
    def from_cloud_event(cls, event: Any) -> PubSubMessage:
        kind, event_id, data = _event_parts(event)
        if kind != PUBSUB_PUBLISHED:
            raise BadEventError(f"expected a {PUBSUB_PUBLISHED} event, got {kind!r}")
        if isinstance(data, bytes | str):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise BadEventError("Pub/Sub event data is not JSON") from None
        message = (data or {}).get("message") if isinstance(data, Mapping) else None
        if not isinstance(message, Mapping):
            raise BadEventError("Pub/Sub event has no message")
        try:
            payload = base64.b64decode(message.get("data") or b"", validate=False)
        except (ValueError, TypeError):
            raise BadEventError("Pub/Sub message data is not base64") from None
        attributes = message.get("attributes") or {}
        return cls(
            message_id=str(message.get("messageId") or message.get("message_id") or event_id),
            data=payload,
            attributes=MappingProxyType(dict(attributes)),
            subscription=str(data.get("subscription", "")),
        )

    def json(self) -> dict[str, Any]:
        """The payload as a JSON object (the pipeline's own messages are JSON objects)."""
        try:
            value = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            raise BadEventError(f"message {self.message_id} is not JSON") from None
        if not isinstance(value, dict):
            raise BadEventError(f"message {self.message_id} is not a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class StorageObjectEvent:
    """A finalized Cloud Storage object, from either supported wiring:

    - a Pub/Sub-wrapped GCS notification (attributes bucketId/objectId/objectGeneration/eventType, the
      object resource as JSON data), the default wiring;
    - Eventarc's direct `google.cloud.storage.object.v1.finalized` event (the object resource as data).
    `event_type` is the notification's eventType (OBJECT_FINALIZE for both when finalized).
    """

    bucket: str
    name: str
    generation: int
    event_type: str = "OBJECT_FINALIZE"
    size: int | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @classmethod
    def from_cloud_event(cls, event: Any) -> StorageObjectEvent:
        kind, _, data = _event_parts(event)
        if kind == STORAGE_FINALIZED:
            if isinstance(data, bytes | str):
                try:
                    data = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise BadEventError("storage event data is not JSON") from None
            if not isinstance(data, Mapping):
                raise BadEventError("storage event has no object resource")
            return cls._from_resource(data, "OBJECT_FINALIZE", {})
        if kind == PUBSUB_PUBLISHED:
            message = PubSubMessage.from_cloud_event(event)
            attrs = message.attributes
            resource: Mapping[str, Any] = {}
            if message.data:
                try:
                    parsed = orjson.loads(message.data)
                except orjson.JSONDecodeError:
                    parsed = {}
                resource = parsed if isinstance(parsed, Mapping) else {}
            return cls._from_resource(resource, attrs.get("eventType", ""), attrs)
        raise BadEventError(f"unsupported event type {kind!r}")

    def to_notification(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(object resource, attributes) of a GCS Pub/Sub notification for this object: what the
        reconciliation publishes to the uploads topic to start or restage a run through submit."""
        resource: dict[str, Any] = {"bucket": self.bucket, "name": self.name, "generation": str(self.generation),
                                    "metadata": dict(self.metadata)}
        if self.size is not None:
            resource["size"] = str(self.size)
        if self.content_type:
            resource["contentType"] = self.content_type
        return resource, {"bucketId": self.bucket, "objectId": self.name, "objectGeneration": str(self.generation),
                          "eventType": self.event_type, "payloadFormat": "JSON_API_V1"}

    @classmethod
    def _from_resource(cls, resource: Mapping[str, Any], event_type: str,
                       attrs: Mapping[str, str]) -> StorageObjectEvent:
        bucket = attrs.get("bucketId") or resource.get("bucket")
        name = attrs.get("objectId") or resource.get("name")
        generation = attrs.get("objectGeneration") or resource.get("generation")
        if not bucket or not name or generation in (None, ""):
            raise BadEventError("storage event lacks bucket, name or generation")
        try:
            gen = int(generation)
        except (TypeError, ValueError):
            raise BadEventError(f"storage event generation is not a number: {generation!r}") from None
        size = resource.get("size")
        return cls(
            bucket=str(bucket),
            name=str(name),
            generation=gen,
            event_type=event_type,
            size=int(size) if size not in (None, "") else None,
            content_type=resource.get("contentType"),
            metadata=MappingProxyType(dict(resource.get("metadata") or {})),
        )
