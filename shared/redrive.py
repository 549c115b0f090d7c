"""Moving dead letters back to the topics they came from (`batchctl redrive`), for after an outage.

A push subscription that fails to deliver a message 10 times moves it to its dead-letter topic, where a pull
subscription keeps it (DEAD_LETTER_SUBSCRIPTIONS). The source topic of a dead-letter subscription is found
from the wiring itself: the topics of the subscriptions whose dead-letter policy names that subscription's
topic. A message is published to each of them with its data and attributes unchanged, then acknowledged;
a crash in between publishes it again on the next redrive (every consumer is idempotent).

The reconciliation also reads these subscriptions on every tick: it logs each message
(`message.dead_lettered`), starts the run an upload names and acknowledges it. So redrive finds what the
reconciliation has not read yet (or everything, where DEAD_LETTER_SUBSCRIPTIONS is not given to it), and
neither loses a message: both only acknowledge what they handled.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from shared.errors import PermanentError
from shared.publisher import DeadLetter

_BATCH = 100


@dataclass(frozen=True, slots=True)
class Subscription:
    """What the wiring says about one subscription (short names, in the pipeline's project)."""

    name: str
    topic: str
    push_endpoint: str | None = None
    dead_letter_topic: str | None = None


class Relay(Protocol):
    """The Pub/Sub calls a redrive needs."""

    def subscription(self, name: str) -> Subscription | None:
        """One subscription, or None when it does not exist."""

    def subscriptions(self) -> list[Subscription]:
        """Every subscription of the project."""

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        """Up to `max_messages` waiting messages (an empty list when none)."""

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        """Acknowledge: the messages are gone from the subscription."""

    def release(self, subscription: str, ack_ids: list[str]) -> None:
        """Give pulled messages back at once (a deadline of 0), unacknowledged."""

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish one message as it is; returns its new message id."""


@dataclass(frozen=True, slots=True)
class Redriven:
    """What a redrive of one dead-letter subscription found and did."""

    subscription: str
    topics: tuple[str, ...]
    found: int
    moved: int
    dry_run: bool

    def to_json(self) -> dict:
        return {"subscription": self.subscription, "topics": list(self.topics), "found": self.found,
                "moved": self.moved, "dryRun": self.dry_run}


def source_topics(dead_letters: Subscription, wiring: list[Subscription]) -> tuple[str, ...]:
    """The topics whose subscriptions dead-letter into `dead_letters`' topic (pure)."""
    return tuple(sorted({s.topic for s in wiring if s.dead_letter_topic == dead_letters.topic}))


def dead_letter_subscriptions(wiring: list[Subscription]) -> list[str]:
    """The pull subscriptions on a topic some subscription dead-letters into (pure): where dead letters wait
    when DEAD_LETTER_SUBSCRIPTIONS does not name them."""
    topics = {s.dead_letter_topic for s in wiring if s.dead_letter_topic}
    return sorted(s.name for s in wiring if s.topic in topics and not s.push_endpoint)


def redrive(relay: Relay, subscription: str, *, dry_run: bool = False, limit: int | None = None) -> Redriven:
    """Move up to `limit` messages of a dead-letter subscription back to their source topics (or, with
    `dry_run`, count them and give them back). Raises PermanentError when the subscription does not exist
    or no subscription dead-letters into its topic (nothing to send them back to)."""
    found_sub = relay.subscription(subscription)
    if found_sub is None:
        raise PermanentError(f"subscription {subscription} does not exist")
    topics = source_topics(found_sub, relay.subscriptions())
    if not topics:
        raise PermanentError(f"no subscription dead-letters into topic {found_sub.topic} (the topic of "
                             f"{subscription}): nowhere to send its messages back to")
    found = moved = 0
    held: list[str] = []
    try:
        while limit is None or found < limit:
            batch = relay.pull(subscription, _BATCH if limit is None else min(_BATCH, limit - found))
            if not batch:
                break
            found += len(batch)
            if dry_run:
                held += [m.ack_id for m in batch]  # held until the end, so the next pull finds the others
                continue
            for message in batch:
                for topic in topics:
                    relay.publish(topic, message.data, message.attributes)
            relay.ack(subscription, [m.ack_id for m in batch])
            moved += len(batch)
    finally:
        if held:
            relay.release(subscription, held)
    return Redriven(subscription, topics, found, moved, dry_run)


@dataclass
class _Sub:
    info: Subscription
    waiting: list[DeadLetter] = field(default_factory=list)
    pulled: dict[str, DeadLetter] = field(default_factory=dict)


class MemoryRelay:
    """Topics and subscriptions in memory with Pub/Sub's fan-out: for unit tests. A pull subscription keeps
    what is published to its topic; a push subscription's deliveries are kept in `pushed`."""

    def __init__(self) -> None:
        self.topics: set[str] = set()
        self._subs: dict[str, _Sub] = {}
        self.pushed: dict[str, list[DeadLetter]] = {}
        self._ids = itertools.count(1)

    def add_topic(self, name: str) -> None:
        self.topics.add(name)

    def add_subscription(self, name: str, topic: str, *, push_endpoint: str | None = None,
                         dead_letter_topic: str | None = None) -> None:
        self.topics.add(topic)
        self._subs[name] = _Sub(Subscription(name, topic, push_endpoint, dead_letter_topic))

    def subscription(self, name: str) -> Subscription | None:
        found = self._subs.get(name)
        return found.info if found else None

    def subscriptions(self) -> list[Subscription]:
        return [s.info for s in self._subs.values()]

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        if topic not in self.topics:
            raise PermanentError(f"topic {topic} does not exist")
        n = next(self._ids)
        for sub in self._subs.values():
            if sub.info.topic == topic:
                message = DeadLetter(ack_id=f"{sub.info.name}-{n}", message_id=str(n), data=bytes(data),
                                     attributes=MappingProxyType(dict(attributes)))
                if sub.info.push_endpoint:
                    self.pushed.setdefault(sub.info.name, []).append(message)
                else:
                    sub.waiting.append(message)
        return str(n)

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        sub = self._subs[subscription]
        batch, sub.waiting = sub.waiting[:max_messages], sub.waiting[max_messages:]
        sub.pulled.update({m.ack_id: m for m in batch})
        return batch

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        for ack_id in ack_ids:
            self._subs[subscription].pulled.pop(ack_id, None)

    def release(self, subscription: str, ack_ids: list[str]) -> None:
        sub = self._subs[subscription]
        sub.waiting[:0] = [sub.pulled.pop(a) for a in ack_ids if a in sub.pulled]

    def waiting(self, subscription: str) -> list[DeadLetter]:
        return list(self._subs[subscription].waiting)
