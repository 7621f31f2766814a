"""Kafka in and out on the hot path, with aiokafka (the fastest Python client measured).

``KafkaSource`` consumes the input topics in a consumer group, in batches, and
commits only the offsets it is told to (after the batch's effects are durable).
``KafkaSink`` produces with ``acks="all"`` and returns only when every record of a
call is acknowledged.

Partitions are assigned with the range assignor: with the tracking and feedback
topics at the same partition count, a member gets the same partition numbers of
both, so a prediction and its feedback (keyed by ``request_id``) meet in one member.

aiokafka runs rebalances in a background task, so one can start while a batch is in
hand. The caller holds ``KafkaSource.batch_lock`` from fetch to commit, and
revoking partitions waits for it: a member gives partitions up only after
committing what it processed, and a batch fetched before the revocation leaves their
messages to the next owner (``KafkaSource.owned``). New partitions are paused, and
the lock held, while the assignment hook runs: nothing of them is fetched or
processed before the hook has sought and taken their state over. If a commit still
finds a partition gone (the member was fenced out), the new owner reads those
messages again, which the idempotent sinks make harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)

from collectors.arrow import ARROW, JSON, arrow_headers, encoding_of
from collectors.contract import DeadLetter, RawMessage
from common.errors import BrokerRejected, BrokerUnavailable, StartupError

#: Kafka's error code for "the topic already exists", in CreateTopics answers.
TOPIC_ALREADY_EXISTS = 36
#: Dead letters keep at most this much of the original value (the producer's request
#: limit is 1 MiB); a header says how long it was.
DEADLETTER_MAX_BYTES = 900_000

log = logging.getLogger(__name__)


async def _retry_until(timeout_s: float, what: str, bootstrap: str, attempt: Callable[[], Any],
                       close: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``attempt`` (a coroutine factory) until it succeeds or ``timeout_s`` passes; then
    ``close`` the client (it would be left unclosed) and raise ``BrokerUnavailable``.

    One line says that the wait began; aiokafka's own error line on every failed attempt
    is held back meanwhile (the final error says the same, once)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        while True:
            try:
                return await attempt()
            except (KafkaConnectionError, KafkaError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    with contextlib.suppress(Exception):
                        await close()
                    raise BrokerUnavailable(
                        f"could not {what} at {bootstrap} within {timeout_s:g}s (kafka.connect_timeout_s): {exc}. "
                        "Check kafka.bootstrap_servers and that the broker is running") from exc
                (log.debug if delay > 0.1 else log.info)(
                    "waiting up to %gs for Kafka at %s (%s)", timeout_s, bootstrap, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
    finally:
        quiet.setLevel(level)


async def ensure_topics(bootstrap: str, topics: dict[str, int], timeout_s: float, replication: int = 1,
                        **kafka_config: Any) -> dict[str, int]:
    """Create missing topics (name -> partitions); return every topic's partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_config)
    await _retry_until(timeout_s, "connect to Kafka", bootstrap, admin.start, admin.close)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, replication) for name, n in topics.items() if name not in existing]
        if missing:
            response = await admin.create_topics(missing)
            failed = [(t, code, msg) for t, code, msg in response.topic_errors
                      if code not in (0, TOPIC_ALREADY_EXISTS)]  # "exists": another daemon made it first
            if failed:
                raise StartupError("could not create topics: " + "; ".join(
                    f"{t}: error {code} {msg or ''}".strip() for t, code, msg in failed)
                    + ". Create them yourself, or check kafka.topic_replication and the broker's ACLs")
            log.info("created topics %s", ", ".join(t.name for t in missing))
        described = await admin.describe_topics(list(topics))
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # aiokafka awaits this before the partitions move: wait for the batch in hand to
        # be made durable and committed (the caller holds batch_lock until then).
        source = self.source
        gone = set(revoked)
        async with source.batch_lock:
            try:
                if source.on_revoked is not None and gone:  # what goes with them is saved now
                    await source.on_revoked(gone)
            finally:  # they are gone whatever the hook did
                source.assigned -= gone
                source.revoked_since_fetch |= gone
                for tp in gone:
                    source._fetched.pop(tp, None)
                    source.committed.pop(tp, None)
        log.info("partitions revoked: %s", _names(gone))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        source = self.source
        new = set(assigned)
        source.assigned |= new
        log.info("partitions assigned: %s", _names(new))
        if source.on_assigned is None:
            return
        # The hook may seek and take state over (awaiting the store meanwhile): nothing of
        # these partitions may be fetched before it is done, or be processed beside it.
        # Paused before the first await, so no record of them is fetched yet.
        source.pause(new)
        try:
            async with source.batch_lock:
                await source.on_assigned(new)
        finally:
            source.resume(new)


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"


class KafkaSource:
    """Batches of raw messages from a consumer group; commits on request."""

    def __init__(self, topics: Sequence[str], bootstrap: str, group_id: str, *, max_records: int,
                 fetch_timeout_ms: int, auto_offset_reset: str = "earliest", session_timeout_ms: int = 10000,
                 rebalance_timeout_ms: int = 10000, heartbeat_interval_ms: int = 3000,
                 max_poll_interval_ms: int = 300000, commit_timeout_s: float = 10.0,
                 client_id: str = "model-monitor", **kafka_config: Any) -> None:
        self.topics = list(topics)
        self.bootstrap = bootstrap
        self.max_records = max_records
        self.fetch_timeout_ms = fetch_timeout_ms
        self.commit_timeout_s = commit_timeout_s
        self.assigned: set[TopicPartition] = set()
        #: Held from a fetch's return until its batch is committed (see the module docstring).
        self.batch_lock = asyncio.Lock()
        self._fetched: dict[TopicPartition, int] = {}  # next offset to fetch, per partition
        #: Called with the partitions assigned, before anything is fetched from them.
        self.on_assigned: Callable[[set[TopicPartition]], Awaitable[None]] | None = None
        #: Called with the partitions being revoked, between batches, before they move.
        self.on_revoked: Callable[[set[TopicPartition]], Awaitable[None]] | None = None
        #: Partitions revoked since the last fetch returned: the batch in hand must leave
        #: them to their next owner (see ``owned``).
        self.revoked_since_fetch: set[TopicPartition] = set()
        #: The offset this member last committed for each partition it holds (the next to read).
        self.committed: dict[TopicPartition, int] = {}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset=auto_offset_reset,
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=session_timeout_ms, rebalance_timeout_ms=rebalance_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms, max_poll_records=max_records,
            max_poll_interval_ms=max_poll_interval_ms,
            **kafka_config)
        self._started = False

    async def start(self, timeout_s: float) -> None:
        """Connect and subscribe, waiting at most ``timeout_s`` for the broker."""
        await _retry_until(timeout_s, "connect to Kafka", self.bootstrap, self._consumer.start, self._consumer.stop)
        self._started = True
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def fetch(self) -> list[RawMessage]:
        """The next batch, merged across partitions by message timestamp."""
        batches = await self._consumer.getmany(timeout_ms=self.fetch_timeout_ms, max_records=self.max_records)
        # What getmany returns is of the assignment it returned in (aiokafka drops records of
        # a revoked one): only a revocation from here until the batch is processed matters.
        self.revoked_since_fetch = set()
        runs = []
        for tp, records in batches.items():
            if records:
                self._fetched[tp] = records[-1].offset + 1
                runs.append([RawMessage(tp.topic, tp.partition, r.offset, r.key, r.value, r.timestamp,
                                        encoding_of(r.headers) if r.headers else JSON)
                             for r in records])
        if len(runs) == 1:
            return runs[0]
        return list(heapq.merge(*runs, key=lambda m: m.timestamp_ms))

    async def unreachable(self, timeout_s: float) -> str | None:
        """Why the broker cannot be reached now (its cluster metadata did not come within
        ``timeout_s``), or None when it answers. A fetch says nothing of this: it comes back
        empty alike from an idle topic and from a broker that is down."""
        try:
            await asyncio.wait_for(self._consumer.topics(), timeout_s)  # a metadata request
        except (TimeoutError, KafkaError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return f"the broker at {self.bootstrap} does not answer ({detail})"
        return None

    def owned(self, messages: list[RawMessage]) -> list[RawMessage]:
        """``messages`` without those of partitions revoked since they were fetched: their
        next owner reads them from the committed offset (even if that is this member again)."""
        gone = self.revoked_since_fetch
        if not gone:
            return messages
        kept = [m for m in messages if (m.topic, m.partition) not in gone]
        log.info("left %d fetched messages of revoked partitions to their next owner", len(messages) - len(kept))
        return kept

    async def commit(self, messages: Sequence[RawMessage]) -> int:
        """Commit the offsets after ``messages``; return how many messages that covers.

        Partitions this member no longer owns are left to their new owner, which reads
        those messages again (0 is returned for them). A broker that does not answer
        within ``commit_timeout_s`` raises ``BrokerUnavailable``: retry.
        """
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            if m.offset + 1 > offsets.get(tp, -1):
                offsets[tp] = m.offset + 1
        owned = self._consumer.assignment()
        moved = {tp for tp in offsets if tp not in owned}
        for tp in moved:
            del offsets[tp]
        if moved:
            log.warning("partitions %s moved before their batch was committed; the new owner reads it again",
                        _names(moved))
        if not offsets:
            return 0
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), self.commit_timeout_s)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit refused (%s): the partitions moved; their new owner reads the batch again", exc)
            return 0
        except (TimeoutError, KafkaTimeoutError) as exc:
            raise BrokerUnavailable(f"the offset commit got no answer within {self.commit_timeout_s:.0f}s") from exc
        except KafkaError as exc:
            raise BrokerUnavailable(f"the offset commit failed: {exc}") from exc
        self.committed.update(offsets)
        return sum(1 for m in messages if TopicPartition(m.topic, m.partition) in offsets)

    async def positions(self) -> list[tuple[str, int, int]]:
        """(topic, partition, next offset to read) of every assigned partition. Between
        batches every fetched message is committed, so these are the committed offsets;
        -1 where the broker did not say (the partition is then read from its committed
        offset on a restore)."""
        return [(tp.topic, tp.partition, await self.position(tp)) for tp in sorted(self.assigned)]

    async def position(self, tp: TopicPartition) -> int:
        """The next offset this member reads from an assigned partition (-1 if the broker
        did not say)."""
        offset = self._fetched.get(tp)
        if offset is not None:
            return offset
        try:  # nothing fetched from it yet: where reading starts (the committed offset, or a seek's)
            return int(await asyncio.wait_for(self._consumer.position(tp), self.commit_timeout_s))
        except (TimeoutError, KafkaError, IllegalStateError) as exc:
            log.warning("no position for %s[%d] (%s)", tp.topic, tp.partition, exc)
            return -1

    def pause(self, partitions: set[TopicPartition]) -> None:
        """Fetch nothing of these partitions until ``resume``."""
        self._consumer.pause(*partitions)

    def resume(self, partitions: set[TopicPartition]) -> None:
        """Fetch these partitions again (those still assigned: a rebalance may have taken some)."""
        self._consumer.resume(*(partitions & self._consumer.assignment()))

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Read these partitions from these offsets next (they must be assigned)."""
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(topic, partition)
            self._consumer.seek(tp, offset)
            self._fetched[tp] = offset

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


def dead_letter_record(letter: DeadLetter) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Key, value and headers of a dead letter: the original bytes (cut to
    ``DEADLETTER_MAX_BYTES``, with ``monitor.truncated`` giving the full length), and
    headers that say why and where from. A bad row of an Arrow message is that row as
    JSON, with ``monitor.source.row``; a whole Arrow message keeps its ``content-type``."""
    m = letter.message
    headers = [
        ("monitor.reason", letter.reason.encode()),
        ("monitor.detail", letter.detail.encode()[:1000]),
        ("monitor.source.topic", m.topic.encode()),
        ("monitor.source.partition", str(m.partition).encode()),
        ("monitor.source.offset", str(m.offset).encode()),
    ]
    if m.row >= 0:  # one bad row of an Arrow message: the value is that row as JSON
        headers.append(("monitor.source.row", str(m.row).encode()))
    elif m.encoding == ARROW:  # a whole Arrow message: kept as it came, so it can be read again
        headers += arrow_headers()
    value = m.value
    if value is not None and len(value) > DEADLETTER_MAX_BYTES:
        headers.append(("monitor.truncated", str(len(value)).encode()))
        value = value[:DEADLETTER_MAX_BYTES]
    return m.key, value, headers


class KafkaSink:
    """An acks=all producer whose ``send_all`` returns when every record is acknowledged."""

    def __init__(self, bootstrap: str, client_id: str = "model-monitor", **kafka_config: Any) -> None:
        self.bootstrap = bootstrap
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all",
                                          linger_ms=5, **kafka_config)
        self._started = False

    async def start(self, timeout_s: float) -> None:
        await _retry_until(timeout_s, "connect the producer to Kafka", self.bootstrap, self._producer.start,
                           self._producer.stop)
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
            if not getattr(exc, "retriable", False) and not isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
                raise BrokerRejected(f"topic {topic} refused {len(records)} records: {exc}") from exc
            raise BrokerUnavailable(f"topic {topic} did not acknowledge {len(records)} records: {exc}") from exc

    async def partitions_for(self, topic: str) -> list[int]:
        """The partition numbers of ``topic`` (sorted)."""
        try:
            return sorted(await self._producer.partitions_for(topic))
        except KafkaError as exc:
            raise BrokerUnavailable(f"no partitions of topic {topic}: {exc}") from exc

    async def send_partitioned(self, topic: str, records: Sequence[tuple[int, bytes | None, bytes,
                                                                          list[tuple[str, bytes]]]]) -> None:
        """Send (partition, key, value, headers) records; wait for all acknowledgements."""
        if not records:
            return
        try:
            futures = [await self._producer.send(topic, value=value, key=key, headers=headers, partition=partition)
                       for partition, key, value, headers in records]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            if not getattr(exc, "retriable", False) and not isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
                raise BrokerRejected(f"topic {topic} refused {len(records)} records: {exc}") from exc
            raise BrokerUnavailable(f"topic {topic} did not acknowledge {len(records)} records: {exc}") from exc

    async def send_dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> None:
        await self.send_all(topic, [dead_letter_record(d) for d in letters])

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()
