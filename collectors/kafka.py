"""Kafka in and out on the hot path, with aiokafka (the fastest Python client measured).

``KafkaSource`` consumes the input topics in a consumer group, in batches, and
commits only the offsets it is told to (after the batch's effects are durable).
``KafkaSink`` produces with ``acks="all"`` and returns only when every record of a
call is acknowledged.

Partitions are assigned with the range assignor: with the tracking and feedback
topics at the same partition count, a member gets the same partition numbers of
both, so a prediction and its feedback (keyed by ``request_id``) meet in one member.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from collectors.contract import DeadLetter, RawMessage
from collectors.errors import BrokerUnavailable

log = logging.getLogger(__name__)


async def _retry_until(deadline: float, what: str, bootstrap: str, attempt: Callable[[], Any]) -> Any:
    """Run ``attempt`` (a coroutine factory) until it succeeds or ``deadline`` passes."""
    delay = 0.1
    while True:
        try:
            return await attempt()
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise BrokerUnavailable(
                    f"could not {what} at {bootstrap}: {exc}. Check kafka.bootstrap_servers and that the "
                    "broker is running (kafka.connect_timeout_s bounds this wait)") from exc
            log.info("waiting for Kafka at %s (%s); retrying in %.1fs", bootstrap, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def ensure_topics(bootstrap: str, topics: dict[str, int], timeout_s: float,
                        **kafka_config: Any) -> dict[str, int]:
    """Create missing topics (name -> partitions); return every topic's partition count."""
    deadline = time.monotonic() + timeout_s
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_config)
    await _retry_until(deadline, "connect to Kafka", bootstrap, admin.start)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
                log.info("created topics %s", ", ".join(t.name for t in missing))
            except TopicAlreadyExistsError:
                pass  # another daemon made them first
        described = await admin.describe_topics(list(topics))
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Offsets are committed after every batch, before the next fetch, and the
        # rebalance only happens inside a fetch: nothing processed is uncommitted here.
        self.source.assigned -= set(revoked)
        log.info("partitions revoked: %s", _names(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.source.assigned |= set(assigned)
        log.info("partitions assigned: %s", _names(assigned))


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"


class KafkaSource:
    """Batches of raw messages from a consumer group; commits on request."""

    def __init__(self, topics: Sequence[str], bootstrap: str, group_id: str, *, max_records: int,
                 fetch_timeout_ms: int, auto_offset_reset: str = "earliest", session_timeout_ms: int = 10000,
                 rebalance_timeout_ms: int = 10000, heartbeat_interval_ms: int = 3000,
                 client_id: str = "model-monitor", **kafka_config: Any) -> None:
        self.topics = list(topics)
        self.bootstrap = bootstrap
        self.max_records = max_records
        self.fetch_timeout_ms = fetch_timeout_ms
        self.assigned: set[TopicPartition] = set()
        self._fetched: dict[TopicPartition, int] = {}  # next offset to fetch, per partition
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset=auto_offset_reset,
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=session_timeout_ms, rebalance_timeout_ms=rebalance_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms, max_poll_records=max_records,
            **kafka_config)
        self._started = False

    async def start(self, timeout_s: float) -> None:
        """Connect and subscribe, waiting at most ``timeout_s`` for the broker."""
        deadline = time.monotonic() + timeout_s
        await _retry_until(deadline, "connect to Kafka", self.bootstrap, self._consumer.start)
        self._started = True
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def fetch(self) -> list[RawMessage]:
        """The next batch, merged across partitions by message timestamp."""
        batches = await self._consumer.getmany(timeout_ms=self.fetch_timeout_ms, max_records=self.max_records)
        runs = []
        for tp, records in batches.items():
            if records:
                self._fetched[tp] = records[-1].offset + 1
                runs.append([RawMessage(tp.topic, tp.partition, r.offset, r.key, r.value, r.timestamp)
                             for r in records])
        if len(runs) == 1:
            return runs[0]
        return list(heapq.merge(*runs, key=lambda m: m.timestamp_ms))

    async def commit(self, messages: Sequence[RawMessage]) -> int:
        """Commit the offsets after ``messages``; return how many messages that covers."""
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            if m.offset + 1 > offsets.get(tp, -1):
                offsets[tp] = m.offset + 1
        if offsets:
            await self._consumer.commit(offsets)
        return len(messages)

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages between what was fetched and the end of each assigned partition."""
        out = {}
        for tp in self.assigned:
            high = self._consumer.highwater(tp)
            if high is not None and tp in self._fetched:
                out[(tp.topic, tp.partition)] = max(0, high - self._fetched[tp])
        return out

    async def stop(self) -> None:
        """Leave the group and close; safe to call twice."""
        if self._started:
            self._started = False
            await self._consumer.stop()


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """Headers that say why and where from; the value stays the original bytes."""
    m = letter.message
    return [
        ("monitor.reason", letter.reason.encode()),
        ("monitor.detail", letter.detail.encode()[:1000]),
        ("monitor.source.topic", m.topic.encode()),
        ("monitor.source.partition", str(m.partition).encode()),
        ("monitor.source.offset", str(m.offset).encode()),
    ]


class KafkaSink:
    """An acks=all producer whose ``send_all`` returns when every record is acknowledged."""

    def __init__(self, bootstrap: str, client_id: str = "model-monitor", **kafka_config: Any) -> None:
        self.bootstrap = bootstrap
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all",
                                          linger_ms=5, **kafka_config)
        self._started = False

    async def start(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        await _retry_until(deadline, "connect the producer to Kafka", self.bootstrap, self._producer.start)
        self._started = True

    async def send_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes | None,
                                                                  list[tuple[str, bytes]] | None]]) -> None:
        """Send (key, value, headers) records; wait for all acknowledgements."""
        if not records:
            return
        try:
            futures = [await self._producer.send(topic, value=value, key=key, headers=headers)
                       for key, value, headers in records]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise BrokerUnavailable(f"topic {topic} did not acknowledge {len(records)} records: {exc}") from exc

    async def send_dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> None:
        await self.send_all(topic, [(d.message.key, d.message.value, dead_letter_headers(d)) for d in letters])

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()
